"""The checks of lesson 08: locks you can see. The deterministic scheduler is the judge: each
check runs the learner's code on two simulated CPUs under every interleaving (`explore()`).

The programs have no random part, so the hidden checks run the same exploration as the visible
ones; what the learner's process cannot fake is the record of what the exploration found."""

from __future__ import annotations

from refimpl.grading.checks.common import call, passed
from refimpl.grading.exercises import CheckFailed, exercise
from refimpl.grading.transcript import record
from refimpl.history.kernel_tree_races import (destroy_program, every_region_mapped,
                                               lookup_is_right, lookup_program)
from refimpl.history.missed_sites import READERS, reader_program, saw_a_consistent_tree
from refimpl.kernel import explore, replay
from refimpl.kernel.invariants import kernel_region_violations


def _explored(make, check, what: str):
    """explore(), with the learner's exceptions (other than a KernelPanic, which the scheduler
    records as a finding) reported as feedback."""
    try:
        return explore(make, check=check)
    except (NotImplementedError, CheckFailed):
        raise
    except Exception as error:  # noqa: BLE001 - any learner exception is feedback
        raise CheckFailed(f"{what}: your code raised {type(error).__name__}: {error}") from None


@exercise("08-missed-site", "Find a reader the stopgap missed", 2, "a_missed_site")
def check_missed_site(a_missed_site, hidden=False):
    missed_site = call(a_missed_site, case="a_missed_site()")
    if not isinstance(missed_site, str) or missed_site not in READERS:
        raise CheckFailed(f"a_missed_site() must return one of {', '.join(map(repr, READERS))}, "
                          f"not {missed_site!r}")
    found = explore(reader_program(missed_site), check=saw_a_consistent_tree)
    record("the scheduler on the reader you named", found.failure is not None)
    if found.failure is None:
        raise CheckFailed(f"{missed_site} against a thread creation: all {found.runs} "
                          f"interleavings saw a consistent tree. It takes m_lock and the "
                          f"tree's lock (f0f97e1db02 added the latter): not a missed site")
    return (f"passed: {missed_site} saw {found.failure.state.found} under schedule "
            f"{found.failing_schedule!r} ({found.runs} interleavings tried)")


@exercise("08-lookup-lock", "Take the locks a kernel lookup needs", 3,
          "kernel_region_from_vaddr_steps")
def check_lookup_lock(kernel_region_from_vaddr_steps, hidden=False):
    found = _explored(lookup_program(kernel_region_from_vaddr_steps), lookup_is_right,
                      "a lookup against a placement")
    record("every interleaving of a lookup and a placement", found.reason)
    if found.failure is not None:
        got = found.failure.state.found
        raise CheckFailed(f"schedule {found.failing_schedule!r} ({found.reason}): your lookup "
                          f"returned {getattr(got, 'name', got)!r} for the live stack's "
                          f"address.\n{found.failure.format_trace()}")
    return passed(found.runs, "interleavings with a placement on the other CPU")


@exercise("08-region-destroy", "Destroy a kernel region in the right order", 2, "destroy_steps")
def check_region_destroy(destroy_steps, hidden=False):
    make = destroy_program(destroy_steps)
    try:
        serial = replay(make, "")
    except (NotImplementedError, CheckFailed):
        raise
    except Exception as error:  # noqa: BLE001 - any learner exception is feedback
        raise CheckFailed(f"destroying a kernel stack: your code raised "
                          f"{type(error).__name__}: {error}") from None
    labels = [step.label for step in serial.trace if step.thread == "destroy"]
    yours = [label for label in labels if label in ("unmapped", "unregistered")]
    record("what destroy_steps yields", yours)
    if sorted(yours) != ["unmapped", "unregistered"]:
        raise CheckFailed(f"your thread yielded {labels}: yield \"unmapped\" right after the "
                          f"unmap and \"unregistered\" right after leaving the tree, once each")
    if serial.state.target in serial.state.mm.region_tree.regions():
        raise CheckFailed("after your destroy_steps the stack is still in the kernel tree")
    found = _explored(make, every_region_mapped, "a destroy against an allocation")
    record("every interleaving of a destroy and an allocation", found.reason)
    if found.failure is not None:
        problems = kernel_region_violations(found.failure.state.mm)
        raise CheckFailed(f"schedule {found.failing_schedule!r} ({found.reason}): "
                          f"{'; '.join(problems)}.\n{found.failure.format_trace()}")
    return passed(found.runs, "interleavings with an allocation on the other CPU")
