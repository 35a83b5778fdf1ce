"""The checks of lesson 01: ranges of virtual memory."""

from __future__ import annotations

import random

from refimpl.ak import MUST
from refimpl.grading.checks.common import call, fresh_kernel, passed, range_values, seeds
from refimpl.grading.exercises import CheckFailed, exercise
from refimpl.grading.transcript import record
from refimpl.grading.problems import random_free_ranges
from refimpl.kernel import VirtualRange, VirtualRangeAllocator
from refimpl.kernel.address import PAGE_SIZE

def _random_carve(rng: random.Random) -> tuple[VirtualRange, VirtualRange]:
    pages = rng.randrange(1, 12)
    whole = VirtualRange(0x40_0000 + rng.randrange(64) * PAGE_SIZE, pages * PAGE_SIZE)
    first = rng.randrange(pages)
    count = rng.randrange(1, pages - first + 1)
    return whole, VirtualRange(whole.base + first * PAGE_SIZE, count * PAGE_SIZE)


@exercise("01-carve", "Carve a range out of another", 2, "carve",
          forbids=("refimpl.kernel.virtual_range.VirtualRange.carve",))
def check_carve(carve, hidden=False):
    for seed in seeds(hidden, visible=30, hidden_count=200):
        whole, taken = _random_carve(random.Random(seed))
        case = f"carve({whole}, {taken})"
        got = [VirtualRange(r.base, r.size) for r in call(carve, whole, taken, case=case)]
        wanted = whole.carve(taken)
        record(case, [[r.base, r.size] for r in got])
        if got != wanted:
            raise CheckFailed(f"{case}: expected [{', '.join(map(str, wanted))}], "
                              f"got [{', '.join(map(str, got))}]")
    return passed(len(seeds(hidden, 30, 200)), "carves")


RENAME_TEXTS = (
    "Range RangeAllocator UsedMemoryRange PhysicalMemoryRangeType",
    "auto range = Range(base, size); // a Range of virtual memory",
    "RangeAllocator::allocate(Range const&) returns Optional<Range>",
    "ContiguousPhysicalRange(Range) and ShouldDeallocateVirtualMemoryRange::Yes",
)


@exercise("01-rename", "Rename whole identifiers only", 2, "rename_whole_identifiers")
def check_rename(rename_whole_identifiers, hidden=False):
    from refimpl.history.range_allocator import RENAMES
    from refimpl.history.range_allocator import rename_whole_identifiers as reference
    texts = list(RENAME_TEXTS)
    words = ["Range", "RangeAllocator", "Ranges", "XRange", "Range_", "range", "Range2",
             "(Range)", "Range::", "RangeAllocator*"]
    for seed in seeds(hidden, visible=6, hidden_count=30):
        rng = random.Random(seed)
        texts.append(" ".join(rng.choice(words) for _ in range(8)))
    for text in texts:
        got = call(rename_whole_identifiers, text, dict(RENAMES), case=repr(text))
        record(repr(text), got)
        wanted = reference(text, RENAMES)
        if got != wanted:
            for got_word, wanted_word in zip(got.split(), wanted.split()):
                if got_word != wanted_word:
                    raise CheckFailed(f"in {text!r}: expected {wanted_word!r}, got {got_word!r}")
            raise CheckFailed(f"in {text!r}: expected {wanted!r}, got {got!r}")
    return passed(len(texts), "texts")


def first_fit_with_guard_pages(free_ranges: list[VirtualRange], size: int,
                               alignment: int) -> VirtualRange | None:
    """The reference: what a real VirtualRangeAllocator holding exactly these free ranges
    returns for try_allocate_anywhere(size, alignment), or None for ENOMEM."""
    allocator = VirtualRangeAllocator(fresh_kernel())
    first, last = free_ranges[0], free_ranges[-1]
    MUST(allocator.initialize_with_range(first.base, last.end - first.base))
    for before, after in zip(free_ranges, free_ranges[1:]):
        MUST(allocator.try_allocate_specific(before.end, after.base - before.end))
    result = allocator.try_allocate_anywhere(size, alignment)
    return None if result.is_error() else result.value()


@exercise("01-first-fit", "Choose a range the way VirtualRangeAllocator did", 3,
          "allocate_anywhere", forbids=("refimpl.kernel.virtual_range_allocator."
                                        "VirtualRangeAllocator.try_allocate_anywhere",))
def check_first_fit(allocate_anywhere, hidden=False):
    for seed in seeds(hidden, visible=20, hidden_count=80):
        free, size, alignment = random_free_ranges(seed)
        case = (f"free [{', '.join(map(str, free))}], {size:#x} bytes aligned to "
                f"{alignment:#x}")
        got = call(allocate_anywhere, list(free), size, alignment, case=case)
        wanted = first_fit_with_guard_pages(free, size, alignment)
        if got != wanted:
            raise CheckFailed(f"{case}: expected {wanted}, got {got}")
        record(case, range_values(got))
    return passed(len(seeds(hidden, 20, 80)), "requests")
