"""02a95a196f0 (2022-04-02 20:01): the first version of "find holes in the region tree".

The commit gave AddressSpace three functions that find ranges among its regions instead of asking
a range allocator. It shipped with two bugs, both fixed within days:

1. The tail. After the last region, the first version returns the *whole* remaining range
   whenever the total range contains it, whatever its size: `[window_start, total end)`, not
   `size` bytes from there. In a fresh process, the first anonymous mmap therefore gets the
   entire user range, and `allocate_region_with_vmobject` refuses it (EINVAL: the range ends
   past the end of its VMObject). ffe2e77eba1, an hour later, sends the tail through the same
   `allocate_from_window` test as every other hole (`region_tree_scan.ScanRegionTree`).
2. The specific allocation. `try_allocate_specific` looks only at the region that starts at or
   below `base` (and the one after it). When no region starts at or below `base`, it says yes
   without looking above, so a range can overlap the lowest region. 9765f9f67ed looked up the
   region at or below `base + size` instead: off by one, since a region starting exactly at
   `base + size` then hides an overlapping one below it. db75bab4934 used `base + size - 1`.

`FirstVersionTree` and `OffByOneFixTree` are those two states, as minimal variants of
`ScanRegionTree`. `AddressSpaceAt02a95a196f0` puts the first version under the modern
AddressSpace the way SerenityOS's mmap used it then (find the range first, then make the
region), so both bugs happen on the simulated machine. `bitmap_model_failure` is the property
test that finds all three: a plain bitmap of pages against every answer the tree gives.
"""

from __future__ import annotations

from refimpl.ak import MUST, TRY, Errno, Error, fallible
from refimpl.kernel.address import PAGE_SIZE, VirtualAddress
from refimpl.kernel.address_space import AddressSpace
from refimpl.kernel.anonymous_vmobject import AnonymousVMObject
from refimpl.kernel.region import Access, Region
from refimpl.kernel.region_tree import RegionTree
from refimpl.kernel.user_access import write_user_memory
from refimpl.kernel.virtual_range import (VirtualRange, check_request, check_specific_request,
                                          round_up_to_power_of_two)
from refimpl.history.region_tree_scan import ScanRegionTree, unbacked_region


class FirstVersionTree(ScanRegionTree):
    """The scan as 02a95a196f0 shipped it (AddressSpace::try_allocate_anywhere/_specific)."""

    @fallible
    def try_allocate_anywhere(self, size: int, alignment: int = PAGE_SIZE):
        """ErrorOr[VirtualRange]: first fit, walking every region in address order."""
        problem = check_request(size, alignment)
        if problem:
            return problem
        window_start = self.total_range.base
        for region in self._regions:
            if window_start == region.vaddr():
                window_start = region.range.end
                continue
            available_range = VirtualRange(window_start, region.vaddr() - window_start)
            window_start = region.range.end
            # FIXME (SerenityOS's): this check probably excludes valid candidates for large
            # alignments.
            if available_range.size < size + alignment:
                continue
            aligned_base = round_up_to_power_of_two(available_range.base, alignment)
            return VirtualRange(VirtualAddress(aligned_base), size)

        available_range = VirtualRange(window_start, self.total_range.end - window_start)
        if self.total_range.contains(available_range):
            return available_range
        return Error.from_errno(Errno.ENOMEM, f"failed to allocate anywhere: size={size:#x}, "
                                              f"alignment={alignment:#x}")

    @fallible
    def try_allocate_specific(self, base: int, size: int):
        """ErrorOr[VirtualRange]: exactly `[base, base + size)`, unless a region overlaps it."""
        wanted = check_specific_request(self.total_range, base, size)
        if wanted.is_error():
            return wanted
        wanted = wanted.value()
        region = self.find_largest_not_above(base)
        if region is None:
            return wanted  # "The range can be accommodated below the current lowest range."
        if region.range.intersects(wanted):
            return Error.from_errno(Errno.ENOMEM, f"{wanted} overlaps {region.range}")
        following = self.next_region(region)
        if following is None:
            return wanted  # "The range can be accommodated above the nearest range."
        if following.range.intersects(wanted):
            return Error.from_errno(Errno.ENOMEM, f"{wanted} overlaps {following.range}")
        return wanted


class OffByOneFixTree(ScanRegionTree):
    """9765f9f67ed: the tail fixed (ffe2e77eba1), the specific lookup moved to `base + size`."""

    @fallible
    def try_allocate_specific(self, base: int, size: int):
        """ErrorOr[VirtualRange]: exactly `[base, base + size)`, unless a region overlaps it."""
        wanted = check_specific_request(self.total_range, base, size)
        if wanted.is_error():
            return wanted
        wanted = wanted.value()
        region = self.find_largest_not_above(base + size)
        if region is None:
            return wanted  # "The range can be accommodated below the current lowest range."
        if region.range.intersects(wanted):
            return Error.from_errno(Errno.ENOMEM, f"{wanted} overlaps {region.range}")
        following = self.next_region(region)
        if following is None:
            return wanted  # "The range can be accommodated above the nearest range."
        if following.range.intersects(wanted):
            return Error.from_errno(Errno.ENOMEM, f"{wanted} overlaps {following.range}")
        return wanted


# The bugs on the simulated machine ---------------------------------------------------------------

class AddressSpaceAt02a95a196f0(AddressSpace):
    """The modern AddressSpace with the first version's tree, and mmap in the order SerenityOS's
    `sys$mmap` used then: find the range (`try_allocate_range`), make the VMObject for the
    requested size, then `allocate_region_with_vmobject(range, vmobject)`."""

    @staticmethod
    @fallible
    def try_create(mm, seed: int = 0):
        """ErrorOr[AddressSpaceAt02a95a196f0]: a fresh process's address space."""
        modern = TRY(AddressSpace.try_create(mm, seed=seed))
        return AddressSpaceAt02a95a196f0(mm, modern.page_directory,
                                         FirstVersionTree(modern.region_tree.total_range),
                                         modern._object_address)

    @fallible
    def try_allocate_range(self, address: int | None, size: int, alignment: int = PAGE_SIZE):
        """ErrorOr[VirtualRange]: at `address` if one is given, else anywhere."""
        if address is None:
            return self.region_tree.try_allocate_anywhere(size, alignment)
        return self.region_tree.try_allocate_specific(address, size)

    @fallible
    def mmap(self, size: int, address: int | None = None, name: str = "mmap"):
        """ErrorOr[Region]: an anonymous read-write mapping, placed by the first version."""
        placed = TRY(self.try_allocate_range(address, size))
        vmobject = TRY(AnonymousVMObject.try_create_with_size(self.mm, size))
        result = self.allocate_region_with_range(placed, vmobject, name)
        vmobject.unref()
        return result

    @fallible
    def allocate_region_with_range(self, placed: VirtualRange, vmobject: AnonymousVMObject,
                                   name: str):
        """SerenityOS's allocate_region_with_vmobject(range, vmobject, 0, ...) of that day."""
        if placed.size > vmobject.size():
            return Error.from_errno(Errno.EINVAL, f"{placed} ends past the end of its VMObject "
                                                  f"({vmobject.size():#x} bytes)")
        region = TRY(Region.try_create_unplaced(self.mm, vmobject, 0, name,
                                                Access.READ | Access.WRITE))
        region.mmap = True
        self.region_tree.insert(region, placed)
        TRY(region.map(self.page_directory))
        return region


def overlapping_mmaps(mm, seed: int = 0):
    """Bug 2 on the machine: mmap two pages at +64 KiB into a fresh process and write b"hello"
    there, then mmap two pages at +60 KiB. No region starts at or below +60 KiB, so the first
    version says yes, and the new region's mapping replaces the first one's page at +64 KiB.
    Returns (space, first, second)."""
    space = MUST(AddressSpaceAt02a95a196f0.try_create(mm, seed))
    base = space.region_tree.total_range.base
    first = MUST(space.mmap(2 * PAGE_SIZE, address=base + 0x10000, name="first"))
    MUST(write_user_memory(space, first.vaddr(), b"hello"))
    second = MUST(space.mmap(2 * PAGE_SIZE, address=base + 0xF000, name="second"))
    return space, first, second


# The property test -------------------------------------------------------------------------------

def _allocators(tree):
    """The tree's (anywhere, specific, insert) functions, under their names of the day. The
    modern tree's finders are private since e89c9ed2cac (kernel code can only place); this
    harness tests the finders themselves, and inserts what they return by placing it there."""
    if isinstance(tree, RegionTree):
        return (tree._allocate_range_anywhere, tree._allocate_range_specific,
                lambda region, placed: MUST(tree.place_specifically(region, placed)))
    return tree.try_allocate_anywhere, tree.try_allocate_specific, tree.insert


def bitmap_model_failure(tree_class, steps, pages: int = 16, base: int = 0x100_0000):
    """Replay `steps` on a `tree_class` of `pages` pages and on a bitmap of the same pages, and
    return the first answer the bitmap disproves (a sentence), or None.

    Steps are ("anywhere", page_count) or ("specific", first_page, page_count); every range the
    tree hands out is inserted, as the kernel would. The bitmap disproves an answer that is not
    the requested size, or that covers a page already taken."""
    tree = tree_class(VirtualRange(VirtualAddress(base), pages * PAGE_SIZE))
    anywhere, specific, insert = _allocators(tree)
    taken = [False] * pages
    for step in steps:
        if step[0] == "anywhere":
            size = step[1] * PAGE_SIZE
            request = f"anywhere({size:#x})"
            result = anywhere(size)
        else:
            size = step[2] * PAGE_SIZE
            request = f"specific({base + step[1] * PAGE_SIZE:#x}, {size:#x})"
            result = specific(base + step[1] * PAGE_SIZE, size)
        if result.is_error():
            continue
        placed = result.value()
        if placed.size != size:
            return f"{request} returned {placed}: {placed.size:#x} bytes, not {size:#x}"
        first = (placed.base - base) // PAGE_SIZE
        covered = range(first, first + placed.size // PAGE_SIZE)
        overlap = [page for page in covered if taken[page]]
        if overlap:
            return f"{request} returned {placed}, but its page {overlap[0]} is already taken"
        for page in covered:
            taken[page] = True
        insert(unbacked_region(), placed)
    return None


def steps_strategy(pages: int = 16, kinds=("anywhere", "specific")):
    """Hypothesis strategy: lists of steps for `bitmap_model_failure`."""
    from hypothesis import strategies as st
    options = []
    if "anywhere" in kinds:
        options.append(st.tuples(st.just("anywhere"), st.integers(1, 4)))
    if "specific" in kinds:
        options.append(st.tuples(st.just("specific"), st.integers(0, pages - 1),
                                 st.integers(1, 4)))
    return st.lists(st.one_of(*options), max_size=12)


def find_counterexample(tree_class, kinds=("anywhere", "specific"), pages: int = 8,
                        max_examples: int = 200):
    """The shortest list of steps on which a `tree_class` of `pages` pages fails the bitmap
    model, as Hypothesis shrinks it (derandomized, so the same every run), with the failure;
    None if `max_examples` random lists found nothing."""
    from hypothesis import find, settings
    from hypothesis.errors import NoSuchExample
    try:
        steps = find(steps_strategy(pages, kinds),
                     lambda steps: bitmap_model_failure(tree_class, steps, pages) is not None,
                     settings=settings(max_examples=max_examples, derandomize=True,
                                       database=None, deadline=None))
    except NoSuchExample:
        return None
    return steps, bitmap_model_failure(tree_class, steps, pages)
