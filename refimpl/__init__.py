"""A reference implementation of the SerenityOS kernel's memory management on simulated x86_64.

- `refimpl.ak`: Error, ErrorOr, TRY, MUST (the kernel's standard library).
- `refimpl.hw`: the simulated hardware: paging formats, RAM, MMU with TLB, CPUs.
- `refimpl.kernel`: the modern memory-management core, names as in SerenityOS's Kernel/Memory.
- `refimpl.history`: the code *before* each refactoring the course replays.
- `refimpl.viz`: widgets for the notebooks (never imported by the kernel or the hardware).
- `refimpl.grading`: the exercise generator and the autograder.
"""
