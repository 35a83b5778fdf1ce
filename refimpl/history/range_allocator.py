"""Before cd5faf4e425 (2021-08-06): Range and RangeAllocator.

The commit renamed `Range` to `VirtualRange` and `RangeAllocator` to `VirtualRangeAllocator`,
and changed nothing else. `RangeAllocator` here is the allocator as it was at the parent commit
(93d98d49769:Kernel/Memory/RangeAllocator.{h,cpp}), not this project's modern one:
- results are `Optional<Range>`: a Range, or None when nothing fits (no error code);
- `allocate_specific` walks the free ranges one by one (O(n)), `deallocate` returns nothing and
  VERIFYs its argument (a bad one is a kernel panic);
- first fit with a guard page on each side, and freed ranges merged with their neighbours, as
  today.
The later changes are what `refimpl.kernel.VirtualRangeAllocator` has and this lacks: `try_`
names and KResultOr (f4a9a0d5612), the O(log n) `find_largest_not_above` lookup in
`allocate_specific` (4174fe0156e), ErrorOr (79fa9765ca8), EEXIST for a taken range
(4195a7ef4b8). `Range` is our VirtualRange under its old name: Range.h was renamed with no
other change. Tree nodes are kmalloc'd as in the modern allocator (`NODE_SIZE` bytes each); a
failed kmalloc panics, as a failed `new` in the 2021 kernel would have.

The rename was a search-and-replace, and it matched too much: every identifier that merely
*contained* "Range" became "...VirtualRange...", physical-memory types included, which
f770b9d430e ("Fix bad search-and-replace renames") undid hours later. `search_and_replace` and
`rename_whole_identifiers` show the difference on the kernel's real identifiers.
"""

from __future__ import annotations

import random
import re
from typing import TYPE_CHECKING

from sortedcontainers import SortedDict

from refimpl.ak import MUST, VERIFY
from refimpl.kernel.address import PAGE_SIZE
from refimpl.kernel.virtual_range import VirtualRange, round_up_to_power_of_two

if TYPE_CHECKING:
    from refimpl.kernel.memory_manager import MemoryManager

Range = VirtualRange


class RangeAllocator:
    """The free ranges of an address space, in a tree keyed by base address."""

    NODE_SIZE = 56

    def __init__(self, mm: MemoryManager, seed: int = 0) -> None:
        self._mm = mm
        self.total_range = Range(0, 0)
        self._available: SortedDict = SortedDict()  # base -> (free Range, its tree node)
        self._random = random.Random(seed)  # get_fast_random() in the kernel

    def _insert(self, free: Range) -> None:
        self._available[free.base] = (free, MUST(self._mm.kmalloc(self.NODE_SIZE)))

    def _remove(self, base: int) -> None:
        self._mm.kfree(self._available.pop(base)[1])

    def initialize_with_range(self, base: int, size: int) -> None:
        self.total_range = Range(base, size)
        self._insert(self.total_range)

    def destroy(self) -> None:
        """What the C++ destructor did: free every tree node."""
        for base in list(self._available):
            self._remove(base)

    def available_ranges(self) -> list[Range]:
        return [free for free, _ in self._available.values()]

    def contains(self, range_: Range) -> bool:
        return self.total_range.contains(range_)

    def _carve(self, free: Range, allocated: Range) -> Range:
        self._remove(free.base)
        for piece in free.carve(allocated):
            self._insert(piece)
        return allocated

    def allocate_anywhere(self, size: int, alignment: int = PAGE_SIZE) -> Range | None:
        """The first free range with room for `size` and a guard page on each side."""
        if size == 0:
            return None
        VERIFY(size % PAGE_SIZE == 0 and alignment % PAGE_SIZE == 0, "unaligned request")
        effective_size = size + 2 * PAGE_SIZE  # VM_GUARD_PAGES
        for free in self.available_ranges():
            if free.size < effective_size + alignment:
                continue
            base = round_up_to_power_of_two(free.base + PAGE_SIZE, alignment)
            return self._carve(free, Range(base, size))
        return None

    def allocate_specific(self, base: int, size: int) -> Range | None:
        """Exactly `[base, base + size)`, found by walking every free range in turn."""
        if size == 0:
            return None
        VERIFY(base % PAGE_SIZE == 0 and size % PAGE_SIZE == 0, "unaligned request")
        allocated = Range(base, size)
        if not self.total_range.contains(allocated):
            return None
        for free in self.available_ranges():
            if free.contains(allocated):
                return self._carve(free, allocated)
        return None

    def allocate_randomized(self, size: int, alignment: int = PAGE_SIZE) -> Range | None:
        """Up to 1000 random addresses tried with allocate_specific, then anywhere."""
        if size == 0:
            return None
        for _ in range(1000):
            base = round_up_to_power_of_two(self._random.randrange(self.total_range.end),
                                            alignment)
            if self.total_range.contains(Range(base, size)) and \
                    (found := self.allocate_specific(base, size)) is not None:
                return found
        return self.allocate_anywhere(size, alignment)

    def deallocate(self, range_: Range) -> None:
        """Give `range_` back, merged with a free range ending at its base or starting at its
        end. A range outside the allocator, empty or unaligned is a kernel bug: VERIFY."""
        VERIFY(self.total_range.contains(range_), f"{range_} is outside {self.total_range}")
        VERIFY(range_.size > 0 and range_.size % PAGE_SIZE == 0, f"{range_} is empty or unaligned")
        merged = range_
        index = self._available.bisect_right(range_.base) - 1  # find_largest_not_above
        if index >= 0 and (before := self._available.peekitem(index)[1][0]).end == range_.base:
            merged = Range(before.base, before.size + range_.size)
            self._remove(before.base)
        following = self._available.get(range_.end)
        if following is not None:
            merged = Range(merged.base, merged.size + following[0].size)
            self._remove(following[0].base)
        self._insert(merged)


KERNEL_IDENTIFIERS_WITH_RANGE = (
    "Range", "RangeAllocator", "ShouldDeallocateVirtualMemoryRange", "PhysicalMemoryRange",
    "PhysicalMemoryRangeType", "UsedMemoryRange", "UsedMemoryRangeType", "RequiredLoadRange",
    "ContiguousReservedMemoryRange", "ContiguousPhysicalRange", "UserMemoryRangeTypeNames",
)
"""Every identifier containing "Range" in SerenityOS's Kernel/ just before cd5faf4e425
(`git grep -ohw '\\w*Range\\w*' cd5faf4e425^ -- Kernel`)."""

RENAMES = {"Range": "VirtualRange", "RangeAllocator": "VirtualRangeAllocator"}
"""What the commit meant to do."""


def search_and_replace(text: str, old: str, new: str) -> str:
    """What an editor's replace-all does: every occurrence, inside longer names too."""
    return text.replace(old, new)


def rename_whole_identifiers(text: str, renames: dict[str, str]) -> str:
    """Rename only whole identifiers: `Range` but not the `Range` inside `UsedMemoryRange`.
    Comments and docstrings are renamed too, wherever the name stands as a whole word."""
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, sorted(renames, key=len,
                                                                    reverse=True))) + r")\b")
    return pattern.sub(lambda match: renames[match.group(1)], text)


def compare_with_modern(mm: MemoryManager, base: int, size: int,
                        requests: list[tuple]) -> list[tuple[str, str, str]]:
    """Run `requests` through this RangeAllocator and through the modern VirtualRangeAllocator,
    each over `[base, base + size)`: one row (request, old result, modern result) per request.
    Requests: ("anywhere", size), ("specific", base, size) or ("free", base, size)."""
    from refimpl.kernel.virtual_range_allocator import VirtualRangeAllocator
    old, new = RangeAllocator(mm), VirtualRangeAllocator(mm)
    old.initialize_with_range(base, size)
    MUST(new.initialize_with_range(base, size))
    rows = []
    for kind, *arguments in requests:
        if kind == "anywhere":
            results = old.allocate_anywhere(*arguments), new.try_allocate_anywhere(*arguments)
        elif kind == "specific":
            results = old.allocate_specific(*arguments), new.try_allocate_specific(*arguments)
        else:
            results = old.deallocate(Range(*arguments)), new.deallocate(Range(*arguments))
        shown = ", ".join(f"{value:#x}" for value in arguments)
        old_result, new_result = results
        rows.append((f"{kind}({shown})", str(old_result),
                     str(new_result.error() if new_result.is_error() else new_result.value())))
    old_free, new_free = old.available_ranges(), new.available_ranges()
    rows.append(("free ranges after", ", ".join(map(str, old_free)),
                 ", ".join(map(str, new_free))))
    old.destroy()
    new.destroy()
    return rows
