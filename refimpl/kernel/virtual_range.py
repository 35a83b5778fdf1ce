"""VirtualRange: a base address and a size, nothing more (Kernel/Memory/VirtualRange).

Ranges are half-open, `[base, end)`, and never wrap around the top of the 64-bit address space.
The operations are the ones the region code needs: containment, intersection, and `carve`, which
returns what is left of a range once a sub-range is taken out of it (munmap punching a hole).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

from refimpl.ak import Errno, Error, ErrorOr, check_int, fallible
from refimpl.kernel.address import (PAGE_SIZE, VirtualAddress, is_page_aligned, page_round_down,
                                    page_round_up)

ADDRESS_LIMIT = 1 << 64


@dataclass(frozen=True)
class VirtualRange:
    base: VirtualAddress
    size: int

    def __post_init__(self) -> None:
        check_int("base", self.base)
        check_int("size", self.size)
        if self.base < 0 or self.size < 0:
            raise ValueError(f"a range has a non-negative base and size, not "
                             f"base={self.base:#x} size={self.size:#x}")
        if self.base + self.size > ADDRESS_LIMIT:
            raise ValueError(f"base {self.base:#x} + size {self.size:#x} overflows the "
                             f"64-bit address space")
        if not isinstance(self.base, VirtualAddress):
            object.__setattr__(self, "base", VirtualAddress(self.base))

    @property
    def end(self) -> VirtualAddress:
        return VirtualAddress(self.base + self.size)

    def is_empty(self) -> bool:
        return self.size == 0

    def is_page_aligned(self) -> bool:
        return is_page_aligned(self.base) and is_page_aligned(self.size)

    def page_count(self) -> int:
        return self.size // PAGE_SIZE

    def contains(self, other: int | VirtualRange) -> bool:
        """An address inside, or a whole range inside. (Region lookups call this on their hot
        path, so it adds plain integers instead of building `end` addresses.)"""
        if isinstance(other, VirtualRange):
            return self.base <= other.base and other.base + other.size <= self.base + self.size
        return self.base <= other < self.base + self.size

    def intersects(self, other: VirtualRange) -> bool:
        return self.base < other.base + other.size and other.base < self.base + self.size

    def intersect(self, other: VirtualRange) -> VirtualRange:
        if not self.intersects(other):
            raise ValueError(f"{self} and {other} do not intersect")
        base = max(self.base, other.base)
        return VirtualRange(base, min(self.end, other.end) - base)

    def carve(self, taken: VirtualRange) -> list[VirtualRange]:
        """The 0, 1 or 2 pieces of this range left after removing `taken` from it."""
        if not self.contains(taken) or not taken.is_page_aligned():
            raise ValueError(f"cannot carve {taken} out of {self}: it must be a page-aligned "
                             f"part of it")
        pieces = [VirtualRange(self.base, taken.base - self.base),
                  VirtualRange(taken.end, self.end - taken.end)]
        return [piece for piece in pieces if piece.size]

    @staticmethod
    def expand_to_page_boundaries(address: int, size: int) -> ErrorOr[VirtualRange]:
        """The smallest page-aligned range covering `[address, address + size)`."""
        check_int("address", address)
        check_int("size", size)
        if address < 0 or size < 0 or page_round_up(address + size) > ADDRESS_LIMIT:
            return ErrorOr.from_error(Error.from_errno(
                Errno.EINVAL, f"[{address:#x}, +{size:#x}) overflows the address space"))
        base = page_round_down(address)
        return ErrorOr(VirtualRange(VirtualAddress(base), page_round_up(address + size) - base))

    def __str__(self) -> str:
        return f"[{self.base:#x}, {self.end:#x})"

    def __repr__(self) -> str:
        return f"VirtualRange({self})"


# Shared by the two range allocators (VirtualRangeAllocator and RegionTree) -------------------

RANDOMIZATION_ATTEMPTS = 1000


def round_up_to_power_of_two(value: int, alignment: int) -> int:
    return (value + alignment - 1) & ~(alignment - 1)


def check_request(size: int, alignment: int = PAGE_SIZE) -> Error | None:
    """Why `size` and `alignment` cannot be allocated, or None."""
    if size <= 0:
        return Error.from_errno(Errno.EINVAL, f"size {size:#x} is not positive")
    if not is_page_aligned(size):
        return Error.from_errno(Errno.EINVAL, f"size {size:#x} is not a multiple of the page size")
    if alignment < PAGE_SIZE or alignment & (alignment - 1):
        return Error.from_errno(Errno.EINVAL, f"alignment {alignment:#x} is not a power of two "
                                              f"of at least a page")
    if size + alignment >= ADDRESS_LIMIT:
        return Error.from_errno(Errno.EOVERFLOW, f"size {size:#x} plus alignment overflows")
    return None


@fallible
def check_specific_request(total_range: VirtualRange, base: int, size: int):
    """ErrorOr[VirtualRange]: `[base, base + size)`, if it is a valid request inside
    `total_range` (whether it is free is the allocator's business)."""
    problem = check_request(size)
    if problem:
        return problem
    if not is_page_aligned(base):
        return Error.from_errno(Errno.EINVAL, f"base {base:#x} is not page-aligned")
    wanted = VirtualRange(VirtualAddress(base), size)
    if not total_range.contains(wanted):
        return Error.from_errno(Errno.ENOMEM, f"{wanted} is outside {total_range}")
    return wanted


@fallible
def allocate_randomized(rng: random.Random, total_range: VirtualRange, size: int,
                        alignment: int, try_specific: Callable, try_anywhere: Callable):
    """ErrorOr[VirtualRange]: SerenityOS's ASLR placement. Up to 1000 times, take a random
    aligned address below the end of `total_range` and try it; then fall back to anywhere."""
    problem = check_request(size, alignment)
    if problem:
        return problem
    for _ in range(RANDOMIZATION_ATTEMPTS):
        base = round_up_to_power_of_two(rng.randrange(total_range.end), alignment)
        if total_range.base <= base and base + size <= total_range.end:
            result = try_specific(base, size)
            if not result.is_error():
                return result
    return try_anywhere(size, alignment)
