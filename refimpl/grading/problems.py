"""Problems generated from a seed: the same seed, the same problem; a new seed, a fresh one.

The checks draw their cases from these, and learners can ask for practice instances:
`practice("00-walk", seed=7)` prints a problem; `.answer()` on what it returns tells the answer.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from refimpl.hw import I386, I686_PAE, TINY, X86_64, Machine, PagingFormat, PTEFlags, trace_walk
from refimpl.kernel.address import PAGE_SIZE
from refimpl.kernel.prekernel import PageTableBuilder
from refimpl.kernel.virtual_range import VirtualRange

OSTEP = PagingFormat(name="ostep", page_shift=5, level_bits=(5, 5), entry_size=1, present_bit=7,
                     frame_shift=0, frame_bits=7)
"""OSTEP's multi-level paging homework format: 32-byte pages, one-byte entries."""

FORMATS = (X86_64, I686_PAE, I386, TINY, OSTEP)


def random_address(fmt: PagingFormat, rng: random.Random) -> int:
    """A valid virtual address of `fmt` (either half of the canonical space on x86_64)."""
    bits = fmt.virtual_address_bits
    address = rng.randrange(1 << (bits - 1 if fmt.canonical else bits))
    if fmt.canonical and rng.random() < 0.3:
        address |= (1 << 64) - (1 << (bits - 1))
    return address


def random_entry(fmt: PagingFormat, rng: random.Random) -> int:
    """An entry with a random frame and a random subset of the format's flags."""
    flags = PTEFlags(0)
    for flag in PTEFlags:
        if fmt.has(flag) and rng.random() < 0.5:
            flags |= flag
    return fmt.encode(rng.randrange(fmt.frame_mask + 1), flags)


@dataclass
class TinyMachineProblem:
    """A TINY machine with a process's page tables, and addresses to translate."""

    machine: Machine
    cr3: int
    addresses: list[int]

    def answer(self) -> dict[int, int | None]:
        """Each address -> its physical address, or None where the walk finds no entry."""
        memory = self.machine.memory
        return {address: trace_walk(memory, self.cr3, address).physical_address
                for address in self.addresses}

    def __str__(self) -> str:
        return (f"TINY machine, CR3 = {self.cr3:#x}; translate "
                f"{', '.join(f'{a:#05x}' for a in self.addresses)} (None where it faults)")


def random_tiny_machine(seed: int) -> TinyMachineProblem:
    """Tables in frames 1..5, 6 to 12 mapped pages, 6 addresses to translate (some unmapped)."""
    rng = random.Random(seed)
    machine = Machine(TINY, ram_size=512)
    builder = PageTableBuilder(machine.memory, range(1, 6))
    mapped = rng.sample(range(256), rng.randrange(6, 13))
    flags = PTEFlags.PRESENT | PTEFlags.USER_SUPERVISOR
    for page in sorted(mapped):
        try:
            builder.map(page << 4, rng.randrange(8, 32), flags)
        except ValueError:  # out of frames for tables: fewer pages then
            break
    for frame in range(8, 32):
        machine.memory.write(frame * 16, bytes(rng.randrange(256) for _ in range(16)))
    candidates = [(page << 4) | rng.randrange(16) for page in mapped]
    candidates += [rng.randrange(0x1000) for _ in range(4)]
    return TinyMachineProblem(machine, builder.root, rng.sample(candidates, 6))


def random_free_ranges(seed: int) -> tuple[list[VirtualRange], int, int]:
    """Sorted, disjoint, non-touching free ranges, a size and an alignment to ask for."""
    rng = random.Random(seed)
    ranges, base = [], 0x10_0000 + rng.randrange(16) * PAGE_SIZE
    for _ in range(rng.randrange(1, 7)):
        size = rng.randrange(1, 24) * PAGE_SIZE
        ranges.append(VirtualRange(base, size))
        base += size + rng.randrange(1, 8) * PAGE_SIZE
    size = rng.randrange(1, 9) * PAGE_SIZE
    alignment = rng.choice([PAGE_SIZE] * 3 + [4 * PAGE_SIZE, 16 * PAGE_SIZE])
    return ranges, size, alignment


@dataclass
class Practice:
    statement: str
    _answer: object

    def answer(self) -> object:
        return self._answer

    def __repr__(self) -> str:
        return f"{self.statement}\n(call .answer() to see the answer)"


def practice(grade_id: str, seed: int) -> Practice:
    """A fresh instance of an exercise's problem, for practice (never one of the hidden
    cases the autograder uses)."""
    from refimpl.grading.checks.common import HIDDEN_SEED
    if HIDDEN_SEED <= seed < HIDDEN_SEED + 1000:
        raise ValueError(f"seeds {HIDDEN_SEED} to {HIDDEN_SEED + 999} are the autograder's "
                         f"hidden cases; practise with any other seed")
    rng = random.Random(seed)
    if grade_id == "00-split-address":
        fmt = rng.choice(FORMATS)
        address = random_address(fmt, rng)
        return Practice(f"Split {address:#x} in the {fmt.name} format into its indices and "
                        f"offset.", (fmt.indices(address), fmt.page_offset(address)))
    if grade_id == "00-walk":
        problem = random_tiny_machine(seed)
        return Practice(str(problem), problem.answer())
    if grade_id == "01-first-fit":
        from refimpl.grading.checks.lesson01 import first_fit_with_guard_pages
        ranges, size, alignment = random_free_ranges(seed)
        return Practice(f"Free ranges {', '.join(map(str, ranges))}: where does "
                        f"VirtualRangeAllocator put {size:#x} bytes aligned to {alignment:#x}?",
                        first_fit_with_guard_pages(ranges, size, alignment))
    raise ValueError(f"no practice generator for {grade_id!r}; try 00-split-address, 00-walk "
                     f"or 01-first-fit")
