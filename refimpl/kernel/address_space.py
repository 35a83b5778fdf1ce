"""AddressSpace: one process's memory (Kernel/Memory/AddressSpace).

It owns a user PageDirectory and a RegionTree over the user range, and offers what the mmap
family of syscalls needs: allocate regions, unmap part of them (munmap), change their access
(mprotect), copy them copy-on-write (fork), and resolve page faults.

Failure leaves no trace, everywhere (DESIGN rule 2). SerenityOS's munmap and mprotect take the
old region out, unmap it, and map new pieces; if a later step fails, there is no rollback (its
code says TODO). Here every operation first allocates everything it may need (new Region
objects, cloned VMObjects, page tables), and only then commits, in steps that cannot fail.

`find_regions_intersecting` is the RegionTree's, which is correct; SerenityOS's version misses
regions in two cases (reference §14.2), so its munmap can leave mappings behind.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from refimpl.ak import MUST, TRY, VERIFY, Errno, Error, fallible
from refimpl.hw import PageFault
from refimpl.hw.paging import MiB
from refimpl.kernel.address import PAGE_SIZE, VirtualAddress, is_page_aligned, page_round_up
from refimpl.kernel.anonymous_vmobject import AllocationStrategy, AnonymousVMObject
from refimpl.kernel.locking import RecursiveSpinlock
from refimpl.kernel.region import Access, Region
from refimpl.kernel.region_tree import RegionTree
from refimpl.kernel.virtual_range import VirtualRange

if TYPE_CHECKING:
    from refimpl.kernel.memory_manager import MemoryManager
    from refimpl.kernel.page_directory import PageDirectory

PROT_NONE, PROT_READ, PROT_WRITE, PROT_EXEC = 0, 1, 2, 4


class AddressSpace:
    OBJECT_SIZE = 128

    def __init__(self, mm: MemoryManager, page_directory: PageDirectory, region_tree: RegionTree,
                 object_address: VirtualAddress) -> None:
        self._mm = mm
        self.page_directory = page_directory
        self.region_tree = region_tree
        self._object_address = object_address
        self._lock = RecursiveSpinlock("AddressSpace::m_lock")

    def get_lock(self) -> RecursiveSpinlock:
        """m_lock. Taken, as at f0f97e1db02, where regions are placed (with a VMObject, or split
        pieces), taken out, looked up or all removed; the lookups and removals also take the
        tree's lock inside it. Plain code never waits for it: a simulated thread that needs it
        while another holds it uses `yield from space.get_lock().acquire()`."""
        return self._lock

    @classmethod
    @fallible
    def try_create(cls, mm: MemoryManager, parent: AddressSpace | None = None, seed: int = 0):
        """ErrorOr[AddressSpace] (of the class it is called on). The user range starts at a
        random MiB offset (one of 32, as in SerenityOS; `seed` makes it reproducible), or where
        the parent's does (fork)."""
        layout = mm.layout
        if parent is not None:
            total_range = parent.region_tree.total_range
        else:
            base = layout.user_range_base + random.Random(seed).randrange(32) * MiB
            total_range = VirtualRange(VirtualAddress(base), layout.user_range_ceiling - base)
        address = TRY(mm.kmalloc(AddressSpace.OBJECT_SIZE))
        directory = mm.page_directory_class.try_create_for_userspace(mm)
        if directory.is_error():
            mm.kfree(address)
            return directory
        return cls(mm, directory.value(), RegionTree(total_range, seed), address)

    @property
    def mm(self) -> MemoryManager:
        """The MemoryManager this address space lives in (C++ code uses the global `MM`)."""
        return self._mm

    def destroy(self) -> None:
        """Unmap and free every region, then the directory: every page goes back."""
        self.remove_all_regions()
        self.page_directory.destroy()
        self._mm.kfree(self._object_address)

    def remove_all_regions(self) -> None:
        with self._lock:
            for region in self.region_tree.regions():
                self.take_region(region)
                region.destroy()

    # Allocating regions ------------------------------------------------------------------------

    @fallible
    def allocate_region(self, size: int, *, address: int | None = None,
                        alignment: int = PAGE_SIZE, name: str = "", prot: int = PROT_READ |
                        PROT_WRITE, randomize: bool = False, mmap: bool = False,
                        strategy: AllocationStrategy = AllocationStrategy.NONE):
        """ErrorOr[Region]: a new anonymous region, placed (anywhere, randomized, or at
        `address`) and mapped."""
        problem = _check_placement_request(address, size)
        if problem:
            return problem
        vmobject = TRY(AnonymousVMObject.try_create_with_size(self._mm, page_round_up(size),
                                                              strategy))
        result = self.allocate_region_with_vmobject(
            size, vmobject, 0, address=address, alignment=alignment, name=name, prot=prot,
            randomize=randomize, mmap=mmap)
        vmobject.unref()  # the region holds its own reference, if it was made
        return result

    @fallible
    def allocate_region_with_vmobject(self, size: int, vmobject: AnonymousVMObject,
                                      offset_in_vmobject: int, *, address: int | None = None,
                                      alignment: int = PAGE_SIZE, name: str = "",
                                      prot: int = PROT_READ | PROT_WRITE, shared: bool = False,
                                      randomize: bool = False, mmap: bool = False):
        """ErrorOr[Region] mapping `vmobject` from `offset_in_vmobject` on."""
        problem = _check_placement_request(address, size)
        if problem:
            return problem
        size = page_round_up(size)
        if offset_in_vmobject < 0 or offset_in_vmobject + size > vmobject.size():
            return Error.from_errno(Errno.EINVAL, f"[{offset_in_vmobject:#x}, +{size:#x}) is "
                                                  f"outside the VMObject ({vmobject.size():#x})")
        region = TRY(Region.try_create_unplaced(
            self._mm, vmobject, offset_in_vmobject - offset_in_vmobject % PAGE_SIZE, name,
            Access(prot & 7), shared=shared))
        region.mmap = mmap
        with self._lock:
            if address is None:
                placed = self.region_tree.place_anywhere(region, size, alignment, randomize)
            else:
                placed = self.region_tree.place_specifically(
                    region, VirtualRange(VirtualAddress(address), size))
            return self._map_placed_region(region, placed)

    @fallible
    def _map_placed_region(self, region: Region, placed):
        """Map a region that `placed` (an ErrorOr) says was placed; undo everything if not."""
        if placed.is_error():
            region.destroy()
            return placed
        mapped = region.map(self.page_directory)
        if mapped.is_error():
            self.take_region(region)
            region.destroy()
            return mapped
        return region

    @fallible
    def deallocate_region(self, region: Region):
        """Unmap `region` and free it."""
        if not self.take_region(region):
            return Error.from_errno(Errno.ENOENT, f"{region!r} is not in this address space")
        region.destroy()
        return None

    def take_region(self, region: Region) -> bool:
        """Take `region` out of the tree, leaving it to the caller; False if it was not in it.
        Every removal goes through here, as in SerenityOS."""
        with self._lock:
            return self.region_tree.remove(region)  # under the tree's lock too

    # Finding regions -----------------------------------------------------------------------------

    def find_region_from_range(self, wanted: VirtualRange) -> Region | None:
        """The region that is exactly `wanted`, its size rounded up to pages."""
        with self._lock, self.region_tree.get_lock():
            region = self.region_tree.find_region_containing(wanted.base)
        if region is None or region.range.base != wanted.base or \
                region.size() != page_round_up(wanted.size):
            return None
        return region

    def find_region_containing(self, wanted: int | VirtualRange) -> Region | None:
        with self._lock, self.region_tree.get_lock():
            return self.region_tree.find_region_containing(wanted)

    def find_regions_intersecting(self, wanted: VirtualRange) -> list[Region]:
        with self._lock, self.region_tree.get_lock():
            return self.region_tree.find_regions_intersecting(wanted)

    # The same for simulated threads (refimpl.kernel.scheduler): they yield where another CPU may
    # run, and wait for a held lock instead of spinning.

    def allocate_region_steps(self, size: int, name: str):
        """allocate_region in a simulated thread: `region = yield from ...` (read-write,
        placed anywhere; a KernelPanic if it fails)."""
        vmobject = MUST(AnonymousVMObject.try_create_with_size(self._mm, page_round_up(size)))
        region = MUST(Region.try_create_unplaced(self._mm, vmobject, 0, name,
                                                 Access.READ | Access.WRITE))
        vmobject.unref()
        yield from self._lock.acquire()
        try:
            error = yield from self.region_tree.place_anywhere_steps(region, page_round_up(size))
            VERIFY(error is None, f"placing {name!r}: {error}")
            MUST(region.map(self.page_directory))
        finally:
            self._lock.unlock()
        yield f"{name} placed at {region.range} and mapped"
        return region

    def find_region_containing_steps(self, address: int):
        """find_region_containing in a simulated thread: `region = yield from ...`."""
        tree_lock = self.region_tree.get_lock()
        yield from self._lock.acquire()
        try:
            yield from tree_lock.acquire()
            try:
                return (yield from self.region_tree.find_region_containing_steps(address))
            finally:
                tree_lock.unlock()
        finally:
            self._lock.unlock()

    # Splitting, munmap and mprotect --------------------------------------------------------------

    @fallible
    def try_split_region_around_range(self, source: Region, hole: VirtualRange,
                                      new_access: Access | None = None):
        """ErrorOr[list[(Region, VirtualRange)]]: unplaced regions for what is left of
        `source` around `hole` (and, if `new_access` is given, one for `hole` itself with that
        access), on the same VMObject at the matching offsets. Nothing is placed or mapped yet:
        `_replace_region` commits them."""
        pieces = [(piece, source.access) for piece in source.range.carve(hole)]
        if new_access is not None:
            pieces.append((hole, new_access))
        created: list[tuple[Region, VirtualRange]] = []
        for piece, access in pieces:
            offset = source.offset_in_vmobject + (piece.base - source.range.base)
            region = Region.try_create_unplaced(self._mm, source.vmobject, offset, source.name,
                                                access, source.cacheable, source.shared)
            if region.is_error():
                for made, _ in created:
                    made.destroy()
                return region
            region.value().mmap = source.mmap
            created.append((region.value(), piece))
        return created

    def _replace_region(self, source: Region, pieces: list[tuple[Region, VirtualRange]]) -> None:
        """Put `pieces` where `source` was and retire it. Cannot fail: the pieces' PTEs are the
        source's (same pages), so only the pages no piece covers are released, and pieces
        whose access differs are remapped over existing page tables. The pieces go in through
        place_specifically, the only way into the tree; they cannot fail to fit where `source`
        just was, under the lock."""
        directory = source.page_directory
        with self._lock:
            self.take_region(source)
            for region, piece in pieces:
                MUST(self.region_tree.place_specifically(region, piece))
                region.page_directory = directory
        for page_index in range(source.page_count()):
            vaddr = source.vaddr_from_page_index(page_index)
            if not any(piece.contains(vaddr) for _, piece in pieces):
                self._mm.release_pte(directory, vaddr, is_last_pte=True)
        self._mm.flush_tlb(directory, source.vaddr(), source.page_count())
        for region, _ in pieces:
            if region.access != source.access:
                region.remap()
        source.page_directory = None  # its PTEs now belong to the pieces, or are gone
        source.destroy()

    @fallible
    def _user_range(self, address: int, size: int):
        """ErrorOr[VirtualRange]: the pages of `[address, address + size)`, if they are user
        memory."""
        if size <= 0:
            return Error.from_errno(Errno.EINVAL, f"size {size:#x} is not positive")
        wanted = TRY(VirtualRange.expand_to_page_boundaries(address, size))
        layout = self._mm.layout
        if wanted.base < layout.user_range_base or wanted.end > layout.user_range_ceiling:
            return Error.from_errno(Errno.EFAULT, f"{wanted} is not user memory")
        return wanted

    @fallible
    def unmap_mmap_range(self, address: int, size: int):
        """munmap: remove every mmap'ed page in the range, splitting regions that straddle it.
        A range that is exactly one region takes a shorter path, as in SerenityOS."""
        wanted = TRY(self._user_range(address, size))
        whole_region = self.find_region_from_range(wanted)
        if whole_region is not None:
            if not whole_region.mmap:
                return Error.from_errno(Errno.EPERM, f"{whole_region!r} was not created by mmap")
            return self.deallocate_region(whole_region)
        regions = self.find_regions_intersecting(wanted)
        for region in regions:
            if not region.mmap:
                return Error.from_errno(Errno.EPERM, f"{region!r} was not created by mmap")
        plans = TRY(self._plan_splits(regions, wanted, new_access=None))
        for region, pieces in plans:
            if pieces is None:
                self.take_region(region)
                region.destroy()
            else:
                self._replace_region(region, pieces)
        return None

    @fallible
    def mprotect(self, address: int, size: int, prot: int):
        """Give the pages of the range the access `prot`, splitting regions at its edges.
        A range that is exactly one region takes a shorter path, as in SerenityOS."""
        wanted = TRY(self._user_range(address, size))
        if prot & PROT_WRITE and prot & PROT_EXEC:
            return Error.from_errno(Errno.EINVAL, "memory may not be writable and executable "
                                                  "at once (W^X)")
        access = Access(prot & 7)
        whole_region = self.find_region_from_range(wanted)
        if whole_region is not None:
            if not whole_region.mmap:
                return Error.from_errno(Errno.EPERM, f"{whole_region!r} was not created by mmap")
            if whole_region.access != access:
                whole_region.access = access
                whole_region.remap()
            return None
        regions = self.find_regions_intersecting(wanted)
        if not regions:
            return Error.from_errno(Errno.EINVAL, f"no region in {wanted}")
        covered = sum(region.range.intersect(wanted).size for region in regions)
        if covered != wanted.size:
            return Error.from_errno(Errno.ENOMEM, f"{wanted} is not entirely mapped")
        for region in regions:
            if not region.mmap:
                return Error.from_errno(Errno.EPERM, f"{region!r} was not created by mmap")
        changing = [region for region in regions if region.access != access]
        plans = TRY(self._plan_splits(changing, wanted, new_access=access))
        for region, pieces in plans:
            if pieces is None:
                region.access = access
                region.remap()
            else:
                self._replace_region(region, pieces)
        return None

    @fallible
    def _plan_splits(self, regions: list[Region], wanted: VirtualRange,
                     new_access: Access | None):
        """ErrorOr[list[(region, pieces or None)]]: None for a region `wanted` covers
        whole; else its split pieces, all created before anything changes."""
        plans = []
        for region in regions:
            if wanted.contains(region.range):
                plans.append((region, None))
                continue
            pieces = self.try_split_region_around_range(
                region, region.range.intersect(wanted), new_access)
            if pieces.is_error():
                for _, made in plans:
                    for piece, _ in made or ():
                        piece.destroy()
                return pieces
            plans.append((region, pieces.value()))
        return plans

    # fork ----------------------------------------------------------------------------------------

    @fallible
    def try_clone(self, seed: int = 0):
        """ErrorOr[AddressSpace]: a copy for a forked child. Private regions share their pages
        copy-on-write; shared regions share their VMObject."""
        child = TRY(AddressSpace.try_create(self._mm, parent=self, seed=seed))
        for region in self.region_tree.regions():
            result = child._clone_region(region)
            if result.is_error():
                child.destroy()
                return result
        # Everything is allocated: now the parent's private pages become copy-on-write too.
        cloned = {id(region.vmobject): region.vmobject for region in self.region_tree.regions()
                  if not region.shared}
        for vmobject in cloned.values():
            vmobject.mark_shared_pages_cow()
            for region in vmobject.regions:
                if region.page_directory is self.page_directory:
                    region.remap()
        return child

    @fallible
    def _clone_region(self, source: Region):
        vmobject = source.vmobject
        if not source.shared:
            vmobject = TRY(vmobject.try_clone())
        else:
            vmobject.ref()
        region = Region.try_create_unplaced(self._mm, vmobject, source.offset_in_vmobject,
                                            source.name, source.access, source.cacheable,
                                            source.shared)
        vmobject.unref()
        region = TRY(region)
        region.mmap = source.mmap
        placed = self.region_tree.place_specifically(region, source.range)
        return self._map_placed_region(region, placed)

    # Page faults ---------------------------------------------------------------------------------

    @fallible
    def handle_page_fault(self, fault: PageFault):
        """Resolve a fault in this address space (demand zero, CoW) or explain why not."""
        region = self.find_region_containing(fault.address)
        if region is None:
            return Error.from_errno(Errno.EFAULT, f"{fault}, and no region is mapped there")
        return region.handle_fault(fault)

    def __repr__(self) -> str:
        return (f"AddressSpace({len(self.region_tree)} regions, "
                f"user range {self.region_tree.total_range})")


def _check_placement_request(address: int | None, size: int) -> Error | None:
    if size <= 0:
        return Error.from_errno(Errno.EINVAL, f"size {size:#x} is not positive")
    if address is not None and not is_page_aligned(address):
        return Error.from_errno(Errno.EINVAL, f"address {address:#x} is not page-aligned")
    return None
