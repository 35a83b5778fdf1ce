"""Before 02a95a196f0 (2022-04-02): a VirtualRangeAllocator beside the region tree.

Until this commit a user address space knew its memory twice. Its PageDirectory owned a
VirtualRangeAllocator holding the *free* ranges (`refimpl.kernel.virtual_range_allocator`), and
the AddressSpace owned the tree of *regions* (2617adac526 had just made that tree intrusive, so
inserting a region allocates nothing). Every change had to be made in both:
- mmap asked the allocator for a range, then inserted the region into the tree;
- munmap removed or split regions, then gave the unmapped range back to the allocator
  ("Instead we give back the unwanted VM manually");
- fork copied the parent's free ranges into the child's allocator
  (`PageDirectory::try_create_for_userspace(parent_range_allocator)` calling
  `initialize_from_parent`).

The allocator is not intrusive: every free range is a tree node on the kernel heap. So mmap,
munmap and fork all call kmalloc just to do bookkeeping about *virtual* addresses, which the
commit message calls "a source of unpleasant MM/kmalloc deadlocks". And its first fit leaves a
guard page on each side of every allocation, so mappings never touch.

`AddressSpaceWithRangeAllocator` is the modern AddressSpace with those steps put back; its
region tree only stores regions (the allocator decides where they go). SerenityOS had no
rollback here; a kmalloc failure while giving a range back panics (MUST).
"""

from __future__ import annotations

import random

from refimpl.ak import MUST, TRY, VERIFY, Errno, Error, check_int, fallible
from refimpl.hw.paging import MiB
from refimpl.kernel.address import PAGE_SIZE, is_page_aligned, page_round_up
from refimpl.kernel.address_space import PROT_READ, PROT_WRITE, AddressSpace
from refimpl.kernel.anonymous_vmobject import AnonymousVMObject
from refimpl.kernel.page_directory import PageDirectory
from refimpl.kernel.region import Access, Region
from refimpl.kernel.region_tree import RegionTree
from refimpl.kernel.user_access import write_user_memory
from refimpl.kernel.virtual_range_allocator import VirtualRangeAllocator


class PageDirectoryWithRangeAllocator(PageDirectory):
    """A user PageDirectory that owns the address space's free ranges."""

    @classmethod
    @fallible
    def try_create_for_userspace(cls, mm, parent_range_allocator=None, seed: int = 0):
        """ErrorOr[PageDirectoryWithRangeAllocator]: the free ranges copied from the parent's
        allocator (fork), else the whole user range from a random MiB offset."""
        directory = TRY(super().try_create_for_userspace(mm))
        directory.range_allocator = VirtualRangeAllocator(mm, seed)
        if parent_range_allocator is not None:
            initialized = directory.range_allocator.initialize_from_parent(parent_range_allocator)
        else:
            base = mm.layout.user_range_base + random.Random(seed).randrange(32) * MiB
            initialized = directory.range_allocator.initialize_with_range(
                base, mm.layout.user_range_ceiling - base)
        if initialized.is_error():
            directory.destroy()
            return initialized
        return directory

    def destroy(self) -> None:
        self.range_allocator.destroy()
        super().destroy()


class AddressSpaceWithRangeAllocator(AddressSpace):
    """Regions in the tree, free ranges in the page directory's allocator: two trees."""

    @staticmethod
    @fallible
    def try_create(mm, parent=None, seed: int = 0):
        """ErrorOr[AddressSpaceWithRangeAllocator]."""
        address = TRY(mm.kmalloc(AddressSpace.OBJECT_SIZE))
        directory = PageDirectoryWithRangeAllocator.try_create_for_userspace(
            mm, parent.page_directory.range_allocator if parent is not None else None, seed)
        if directory.is_error():
            mm.kfree(address)
            return directory
        directory = directory.value()
        tree = RegionTree(directory.range_allocator.total_range)  # only stores the regions
        return AddressSpaceWithRangeAllocator(mm, directory, tree, address)

    @property
    def range_allocator(self) -> VirtualRangeAllocator:
        return self.page_directory.range_allocator

    @fallible
    def try_allocate_range(self, address: int | None, size: int, alignment: int = PAGE_SIZE,
                           randomize: bool = False):
        """ErrorOr[VirtualRange] from the range allocator: at `address`, else anywhere (or at
        random)."""
        if address is not None:
            return self.range_allocator.try_allocate_specific(address, size)
        if randomize:
            return self.range_allocator.try_allocate_randomized(size, alignment)
        return self.range_allocator.try_allocate_anywhere(size, alignment)

    @fallible
    def allocate_region_with_vmobject(self, size: int, vmobject: AnonymousVMObject,
                                      offset_in_vmobject: int, *, address: int | None = None,
                                      alignment: int = PAGE_SIZE, name: str = "",
                                      prot: int = PROT_READ | PROT_WRITE, shared: bool = False,
                                      randomize: bool = False, mmap: bool = False,
                                      replace: bool = False):
        """ErrorOr[Region] mapping `vmobject` from `offset_in_vmobject` (page-aligned) on.
        MAP_FIXED replacing a mapping (`replace`) is not modelled in this before design."""
        VERIFY(not replace, "the design before 02a95a196f0 is modelled without MAP_FIXED "
                            "replacement")
        if not isinstance(vmobject, AnonymousVMObject):
            raise TypeError(f"vmobject must be an AnonymousVMObject, not {vmobject!r}")
        check_int("offset_in_vmobject", offset_in_vmobject)
        problem = self._check_region_request(size, address, alignment, prot, name)
        if problem:
            return problem
        size = page_round_up(size)
        if not is_page_aligned(offset_in_vmobject) or offset_in_vmobject < 0 or \
                offset_in_vmobject + size > vmobject.size():
            return Error.from_errno(Errno.EINVAL, f"[{offset_in_vmobject:#x}, +{size:#x}) is "
                                                  f"not a page-aligned part of the VMObject "
                                                  f"({vmobject.size():#x} bytes)")
        region = TRY(Region.try_create_unplaced(self._mm, vmobject, offset_in_vmobject, name,
                                                Access(prot), shared=bool(shared)))
        region.mmap = bool(mmap)
        placed = self.try_allocate_range(address, size, alignment, randomize)
        if placed.is_error():
            region.destroy()
            return placed
        MUST(self.region_tree.place_specifically(region, placed.value()))  # kept in step
        mapped = region.map(self.page_directory)
        if mapped.is_error():
            self.region_tree.remove(region)
            region.destroy()
            MUST(self.range_allocator.deallocate(placed.value()))
            return mapped
        return region

    @fallible
    def unmap_mmap_range(self, address: int, size: int):
        """munmap, then the second tree: give the unmapped part of each region back."""
        wanted = TRY(self._user_range(address, size))
        unmapped = [region.range.intersect(wanted)
                    for region in self.find_regions_intersecting(wanted)]
        TRY(super().unmap_mmap_range(address, size))
        for piece in unmapped:
            MUST(self.range_allocator.deallocate(piece))
        return None

    @fallible
    def _clone_region(self, source: Region):
        """fork: the child's allocator already has the parent's free ranges, so the region goes
        straight into the tree at the parent's address."""
        vmobject = source.vmobject
        if not source.shared:
            vmobject = TRY(vmobject.try_clone())
        else:
            vmobject.ref()
        region = Region.try_create_unplaced(self.mm, vmobject, source.offset_in_vmobject,
                                            source.name, source.access, source.cacheable,
                                            source.shared)
        vmobject.unref()
        region = TRY(region)
        region.mmap = source.mmap
        MUST(self.region_tree.place_specifically(region, source.range))
        TRY(region.map(self.page_directory))
        return region

    @fallible
    def try_clone(self, seed: int = 0):
        """ErrorOr[AddressSpaceWithRangeAllocator]: fork, as the modern one."""
        child = TRY(AddressSpaceWithRangeAllocator.try_create(self.mm, parent=self, seed=seed))
        for region in self.region_tree.regions():
            result = child._clone_region(region)
            if result.is_error():
                child.destroy()
                return result
        for vmobject in {id(r.vmobject): r.vmobject for r in self.region_tree.regions()
                         if not r.shared}.values():
            vmobject.mark_shared_pages_cow()
            for region in vmobject.regions:
                if region.page_directory is self.page_directory:
                    region.remap()
        return child


# Measurements ------------------------------------------------------------------------------------

def range_allocator_kmallocs(log) -> int:
    """How many kmalloc calls in a recorded log came from a VirtualRangeAllocator."""
    return sum(1 for record in log if record.kind.value == "kmalloc"
               and any(name.startswith("VirtualRangeAllocator.") for name in record.call_chain))


def kmalloc_costs(space_class, mm, mappings: int = 8) -> dict[str, int]:
    """kmalloc calls made for range bookkeeping by: one mmap (after `mappings - 1` others), a
    munmap of one page from the middle of a mapping (a split), and a fork of the address space.
    Counts only the allocator's calls; the Region and VMObject objects cost the same either way."""
    space = MUST(space_class.try_create(mm))
    regions = [MUST(space.allocate_region(4 * PAGE_SIZE, mmap=True, name=f"m{i}"))
               for i in range(mappings - 1)]
    costs = {}
    with mm.allocations.record() as log:
        MUST(space.allocate_region(4 * PAGE_SIZE, mmap=True, name="last"))
    costs["mmap"] = range_allocator_kmallocs(log)
    with mm.allocations.record() as log:
        MUST(space.unmap_mmap_range(regions[0].vaddr() + PAGE_SIZE, PAGE_SIZE))
    costs["munmap that splits"] = range_allocator_kmallocs(log)
    with mm.allocations.record() as log:
        child = MUST(space.try_clone())
    costs["fork"] = range_allocator_kmallocs(log)
    child.destroy()
    space.destroy()
    return costs


def two_mappings(space_class, mm, pages: int = 2):
    """An address space with two anonymous mmaps of `pages` pages, one after the other."""
    space = MUST(space_class.try_create(mm))
    first = MUST(space.allocate_region(pages * PAGE_SIZE, mmap=True, name="first"))
    second = MUST(space.allocate_region(pages * PAGE_SIZE, mmap=True, name="second"))
    return space, first, second


def overrun(space, region, extra: int = 16):
    """Write `extra` bytes past the end of `region`, as a linear buffer overflow would:
    ErrorOr[None], an error (EFAULT) when the bytes fall where nothing is mapped."""
    return write_user_memory(space, region.range.end - 8, b"\xAA" * (8 + extra))
