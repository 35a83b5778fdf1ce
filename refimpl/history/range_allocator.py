"""Before cd5faf4e425 (2021-08-06): Range and RangeAllocator.

The commit renamed `Range` to `VirtualRange` and `RangeAllocator` to `VirtualRangeAllocator`,
and changed no behaviour: the old names are simply the same classes here. What the old names
hid is that these ranges are *virtual*: the kernel also handles physical memory in ranges, and
a `Range` did not say which kind it was.

The rename was a search-and-replace, and it matched too much: every identifier that merely
*contained* "Range" became "...VirtualRange...", physical-memory types included, which
f770b9d430e ("Fix bad search-and-replace renames") undid hours later. `search_and_replace` and
`rename_whole_identifiers` show the difference on the kernel's real identifiers.
"""

from __future__ import annotations

import re

from refimpl.ak import MUST
from refimpl.kernel.virtual_range import VirtualRange
from refimpl.kernel.virtual_range_allocator import VirtualRangeAllocator

Range = VirtualRange
RangeAllocator = VirtualRangeAllocator

KERNEL_IDENTIFIERS_WITH_RANGE = (
    "Range", "RangeAllocator", "ShouldDeallocateVirtualMemoryRange", "PhysicalMemoryRange",
    "PhysicalMemoryRangeType", "UsedMemoryRange", "UsedMemoryRangeType", "RequiredLoadRange",
    "ContiguousReservedMemoryRange", "ContiguousPhysicalRange", "UserMemoryRangeTypeNames",
)
"""Every identifier containing "Range" in SerenityOS's Kernel/ just before cd5faf4e425."""

RENAMES = {"Range": "VirtualRange", "RangeAllocator": "VirtualRangeAllocator"}
"""What the commit meant to do."""

OLD_NAMES = {"VirtualRangeAllocator": "RangeAllocator", "VirtualRange": "Range"}
"""This project's class names mapped back to the old ones. (Module names stay: the old one,
`range`, would be the name of Python's built-in, and of the word in every comment.)"""


def search_and_replace(text: str, old: str, new: str) -> str:
    """What an editor's replace-all does: every occurrence, inside longer names too."""
    return text.replace(old, new)


def rename_whole_identifiers(text: str, renames: dict[str, str]) -> str:
    """Rename only whole identifiers: `Range` but not the `Range` inside `UsedMemoryRange`.
    Comments and docstrings are renamed too, wherever the name stands as a whole word."""
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, sorted(renames, key=len,
                                                                    reverse=True))) + r")\b")
    return pattern.sub(lambda match: renames[match.group(1)], text)


def same_allocations(allocator_class: type, range_class: type, mm) -> tuple[list, list]:
    """A fixed sequence of allocations and a free through `allocator_class`: what it handed out
    and what stayed free. A pure rename must give the same answer under either name."""
    page = 4096
    allocator = allocator_class(mm, seed=7)
    MUST(allocator.initialize_with_range(0x10_0000, 64 * page))
    handed_out = [MUST(allocator.try_allocate_anywhere(2 * page)),
                  MUST(allocator.try_allocate_randomized(page)),
                  MUST(allocator.try_allocate_specific(0x12_0000, page))]
    MUST(allocator.deallocate(range_class(0x12_0000, page)))
    return [str(r) for r in handed_out], [str(r) for r in allocator.available_ranges()]
