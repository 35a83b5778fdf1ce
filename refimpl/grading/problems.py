"""Problems generated from a seed: the same seed, the same problem; a new seed, a fresh one.

The checks draw their cases from these, and learners can ask for practice instances:
`practice("00-walk", seed=7)` shows a problem with everything needed to solve it (for a walk, the
tiny machine's whole RAM, drawn as in lesson 00); `.answer()` tells the answer, written in the
question's radix. Practice uses only the formats the lessons teach (TINY and x86_64); the checks
also try others, to show an answer is general.
"""

from __future__ import annotations

import html
import random
from dataclasses import dataclass

from refimpl.hw import (I386, I686_PAE, TINY, X86_64, Machine, PagingFormat, PTEFlags, level_name,
                        trace_walk)
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
                f"{', '.join(f'{a:#05x}' for a in self.addresses)}: to which physical "
                f"address each, or does it fault?")


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


LESSON_FORMATS = (TINY, X86_64)
"""The formats lesson 00 teaches: practice problems use only these."""


@dataclass(frozen=True)
class Answer:
    """A practice answer: the value, and how the question's radix writes it."""

    value: object
    text: str

    def __repr__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Practice:
    """A problem with everything needed to solve it, and its answer on request."""

    statement: str
    _answer: Answer
    picture: str = ""
    """The problem's machine as HTML (drawn as in lesson 00); `details` says it in text."""
    details: str = ""

    def answer(self) -> Answer:
        return self._answer

    def __repr__(self) -> str:
        return "\n".join(filter(None, [self.statement, self.details,
                                       "(call .answer() to see the answer)"]))

    def _repr_html_(self) -> str:
        return (f"<p>{html.escape(self.statement)}</p>{self.picture}"
                f"<p><i>Call <code>.answer()</code> to see the answer.</i></p>")


def _geometry(fmt: PagingFormat) -> str:
    levels = ", ".join(f"{level_name(fmt, level)} {bits}" for level, bits in
                       enumerate(fmt.level_bits))
    return (f"{fmt.name}: {fmt.page_size}-byte pages ({fmt.page_shift} offset bits), "
            f"{fmt.levels} levels, index bits top first: {levels}")


def _split_address(rng: random.Random) -> Practice:
    fmt = rng.choice(LESSON_FORMATS)
    address = random_address(fmt, rng)
    indices, offset = fmt.indices(address), fmt.page_offset(address)
    text = ", ".join(f"{level_name(fmt, level)} index {index:#x}"
                     for level, index in enumerate(indices)) + f", offset {offset:#x}"
    return Practice(f"Split {address:#x} into its table indices and page offset "
                    f"({_geometry(fmt)}).", Answer((indices, offset), text))


def _decode_entry(rng: random.Random) -> Practice:
    fmt = rng.choice(LESSON_FORMATS)
    entry = random_entry(fmt, rng)
    flags = fmt.decode_flags(entry)
    names = [flag.name for flag in PTEFlags
             if flag is not PTEFlags.PRESENT and fmt.has(flag) and flag & flags]
    text = (f"present: {bool(flags & PTEFlags.PRESENT)}, frame {fmt.decode_frame(entry):#x}, "
            f"flags: {' | '.join(names) or 'none'}")
    bits = ", ".join([f"present bit {fmt.present_bit}"] + [
        f"{flag.name} bit {bit}" for flag, bit in fmt.flag_bits.items()])
    return Practice(f"Decode the {fmt.name} entry {entry:#x}: is it present, which frame, which "
                    f"other flags? ({fmt.name} entries: frame in bits {fmt.frame_shift}.."
                    f"{fmt.frame_shift + fmt.frame_bits - 1}; {bits}.)",
                    Answer((bool(flags & PTEFlags.PRESENT), fmt.decode_frame(entry), flags),
                           text))


def _walk(seed: int) -> Practice:
    from refimpl.viz.ram_view import RamModel, render_ram  # ipywidgets: notebooks only
    problem = random_tiny_machine(seed)
    memory = problem.machine.memory
    answers = problem.answer()
    text = ", ".join(f"{address:#05x} -> {'fault' if paddr is None else f'{paddr:#05x}'}"
                     for address, paddr in answers.items())
    size = memory.page_size
    dump = "\n".join(f"frame {frame:#04x}: {memory.read(frame * size, size).hex(' ')}"
                     for frame in range(memory.frame_count))
    return Practice(f"{problem}. {_geometry(TINY)}; an entry is one byte: bit 7 present, "
                    f"6 writable, 5 user, 4..0 frame. The RAM, one row per frame:",
                    Answer(answers, text), picture=render_ram(RamModel(memory, problem.cr3)),
                    details=dump)


def _first_fit(seed: int) -> Practice:
    from refimpl.grading.checks.lesson01 import first_fit_with_guard_pages
    ranges, size, alignment = random_free_ranges(seed)
    found = first_fit_with_guard_pages(ranges, size, alignment)
    return Practice(f"Free ranges {', '.join(map(str, ranges))}: where does "
                    f"VirtualRangeAllocator (lesson 01: first fit, a guard page on each side, "
                    f"the alignment added in full) put {size:#x} bytes aligned to "
                    f"{alignment:#x}?", Answer(found, "ENOMEM" if found is None else str(found)))


def _region_tree_first_fit(seed: int, rng: random.Random) -> Practice:
    from refimpl.grading.checks.lesson06 import first_fit, random_regions, random_request
    total, regions = random_regions(seed)
    size, alignment = random_request(rng)
    found = first_fit(total, regions, size, alignment)
    return Practice(f"Total range {total}, regions {', '.join(map(str, regions)) or 'none'}: "
                    f"where does RegionTree (lesson 06: first fit, a hole must hold size + "
                    f"alignment) put {size:#x} bytes aligned to {alignment:#x}?",
                    Answer(found, "ENOMEM" if found is None else str(found)))


def practice(grade_id: str, seed: int) -> Practice:
    """A fresh instance of an exercise's problem, for practice (never one of the hidden
    cases the autograder uses)."""
    from refimpl.grading.checks.common import HIDDEN_SEED
    if HIDDEN_SEED <= seed < HIDDEN_SEED + 1000:
        raise ValueError(f"seeds {HIDDEN_SEED} to {HIDDEN_SEED + 999} are the autograder's "
                         f"hidden cases; practise with any other seed")
    rng = random.Random(seed)
    makers = {"00-split-address": lambda: _split_address(rng),
              "00-decode-entry": lambda: _decode_entry(rng),
              "00-walk": lambda: _walk(seed), "01-first-fit": lambda: _first_fit(seed),
              "06-first-fit": lambda: _region_tree_first_fit(seed, rng)}
    if grade_id not in makers:
        raise ValueError(f"no practice generator for {grade_id!r}; try "
                         f"{', '.join(sorted(makers))}")
    return makers[grade_id]()
