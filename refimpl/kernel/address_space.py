"""AddressSpace: one process's memory (Kernel/Memory/AddressSpace).

It owns a user PageDirectory and a RegionTree over the user range, and offers what the mmap
family of syscalls needs: allocate regions, unmap part of them (munmap), change their access
(mprotect), copy them copy-on-write (fork), and resolve page faults.

Failure leaves no trace, everywhere (DESIGN rule 2). SerenityOS's munmap and mprotect take the
old region out, unmap it, and map new pieces; if a later step fails, there is no rollback (its
code says TODO). Here every operation first allocates everything it may need (new Region
objects, cloned VMObjects, page tables), and only then commits, in steps that cannot fail.

Not modelled: the AddressSpace's own lock (`m_lock`). Lookups, placement and removal here run
under no lock of the address space; the concurrency lessons add the locks they are about.

`find_regions_intersecting` is the RegionTree's, which is correct; SerenityOS's version misses
regions in two cases (reference §14.2), so its munmap can leave mappings behind.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from refimpl.ak import MUST, TRY, VERIFY, Errno, Error, check_int, fallible
from refimpl.hw import PageFault
from refimpl.hw.paging import MiB
from refimpl.kernel.address import PAGE_SIZE, VirtualAddress, is_page_aligned, page_round_up
from refimpl.kernel.anonymous_vmobject import AllocationStrategy, AnonymousVMObject
from refimpl.kernel.locking import RecursiveSpinlock
from refimpl.kernel.region import Access, Region
from refimpl.kernel.region_tree import RegionTree
from refimpl.kernel.virtual_range import ADDRESS_LIMIT, VirtualRange

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
        """Unmap and free every region, then the directory: every page goes back. A directory
        still loaded on a CPU is a kernel bug, checked before anything is torn down."""
        directory = self.page_directory
        loaded = [cpu.id for cpu in self._mm.machine.cpus if cpu.mmu.cr3 == directory.cr3()]
        VERIFY(not loaded, f"destroying {self!r} while its directory is loaded on CPU {loaded}")
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
                        shared: bool = False, replace: bool = False,
                        strategy: AllocationStrategy = AllocationStrategy.NONE):
        """ErrorOr[Region]: a new anonymous region, placed (anywhere, randomized, or at
        `address`) and mapped; `shared` regions stay shared across fork. With `replace`
        (MAP_FIXED), whatever was mapped at `address` is unmapped first. Every argument is
        checked before anything is allocated."""
        if not isinstance(strategy, AllocationStrategy):
            raise TypeError(f"strategy must be an AllocationStrategy, not {strategy!r}")
        problem = self._check_region_request(size, address, alignment, prot, name)
        if problem:
            return problem
        vmobject = TRY(AnonymousVMObject.try_create_with_size(self._mm, page_round_up(size),
                                                              strategy))
        result = self.allocate_region_with_vmobject(
            size, vmobject, 0, address=address, alignment=alignment, name=name, prot=prot,
            shared=shared, randomize=randomize, mmap=mmap, replace=replace)
        vmobject.unref()  # the region holds its own reference, if it was made
        return result

    @fallible
    def allocate_region_with_vmobject(self, size: int, vmobject: AnonymousVMObject,
                                      offset_in_vmobject: int, *, address: int | None = None,
                                      alignment: int = PAGE_SIZE, name: str = "",
                                      prot: int = PROT_READ | PROT_WRITE, shared: bool = False,
                                      randomize: bool = False, mmap: bool = False,
                                      replace: bool = False):
        """ErrorOr[Region] mapping `vmobject` from `offset_in_vmobject` (page-aligned) on. With
        `replace`, see `_place_replacing`."""
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
        with self._lock:
            if address is None:
                placed = self.region_tree.place_anywhere(region, size, alignment, bool(randomize))
            elif replace:
                return self._place_replacing(region, VirtualRange(VirtualAddress(address), size))
            else:
                placed = self.region_tree.place_specifically(
                    region, VirtualRange(VirtualAddress(address), size))
            return self._map_placed_region(region, placed)

    def _check_region_request(self, size: int, address: int | None, alignment: int, prot: int,
                              name: str) -> Error | None:
        """Why a region cannot be made (EINVAL, or ENOMEM for more than the user range), or
        None; a wrong type is a TypeError naming the argument. Nothing has been allocated yet:
        a VirtualAddress, a VirtualRange or a VMObject built later must not be what refuses."""
        check_int("size", size)
        check_int("alignment", alignment)
        check_int("prot", prot)
        if address is not None:
            check_int("address", address)
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, not {type(name).__name__}")
        if prot & ~(PROT_READ | PROT_WRITE | PROT_EXEC) or prot < 0:
            return Error.from_errno(Errno.EINVAL, f"prot {prot:#x} has unknown bits")
        if alignment < PAGE_SIZE or alignment & (alignment - 1):
            return Error.from_errno(Errno.EINVAL, f"alignment {alignment:#x} is not a power of "
                                                  f"two of at least a page")
        if size <= 0:
            return Error.from_errno(Errno.EINVAL, f"size {size:#x} is not positive")
        if size > self.region_tree.total_range.size:
            return Error.from_errno(Errno.ENOMEM, f"size {size:#x} is more than the user range")
        if address is not None and (address < 0 or not is_page_aligned(address)
                                    or address + page_round_up(size) > ADDRESS_LIMIT):
            return Error.from_errno(Errno.EINVAL, f"address {address:#x} is negative, "
                                                  f"misaligned or ends past 2**64")
        return None

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
    def _place_replacing(self, region: Region, wanted: VirtualRange):
        """MAP_FIXED: put `region` at `wanted`, unmapping what was there (ErrorOr[Region]).

        SerenityOS calls `unmap_mmap_range` first and then allocates (f0f97e1db02:
        Kernel/Syscalls/mmap.cpp#L194-L196), so a failure after the unmap loses the old
        mapping. Here everything that can fail comes first: the split pieces of the regions
        cut at the edges, and every page table `wanted` needs. Then the old regions leave the
        tree, the new one is mapped over their PTEs (no allocation: the tables exist), and
        only then are the old regions freed.
        """
        if not self.region_tree.total_range.contains(wanted):
            region.destroy()
            return Error.from_errno(Errno.ENOMEM, f"{wanted} is outside "
                                                  f"{self.region_tree.total_range}")
        replaced = self.find_regions_intersecting(wanted)
        not_mmap = [old for old in replaced if not old.mmap]
        if not_mmap:
            region.destroy()
            return Error.from_errno(Errno.EPERM, f"{not_mmap[0]!r} was not created by mmap")
        plans = self._plan_splits(replaced, wanted, new_access=None)
        if plans.is_error():
            region.destroy()
            return plans
        plans = plans.value()
        tables = self._ensure_page_tables(wanted)
        if tables.is_error():
            _destroy_planned_pieces(plans)
            region.destroy()
            return tables
        for old, pieces in plans:
            if pieces is None:
                self.take_region(old)
            else:
                self._replace_region(old, pieces, release_hole=False)
        MUST(self.region_tree.place_specifically(region, wanted))
        MUST(region.map(self.page_directory))  # overwrites the old PTEs, then flushes
        for old, pieces in plans:
            if pieces is None:
                old.page_directory = None  # its PTEs now belong to `region`
                old.destroy()
        return region

    @fallible
    def _ensure_page_tables(self, wanted: VirtualRange):
        """Create every missing page table of `wanted`, all or none: ErrorOr[None]."""
        mm, directory = self._mm, self.page_directory
        span = 512 * PAGE_SIZE
        created = []
        for vaddr in range(wanted.base - wanted.base % span, wanted.end, span):
            if mm.pte(directory, vaddr) is not None:
                continue
            result = mm.ensure_pte(directory, vaddr)
            if result.is_error():
                for table in created:
                    mm.release_pte(directory, table, is_last_pte=True)  # empty: freed
                return result
            created.append(vaddr)
        return None

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
        if not isinstance(wanted, VirtualRange):
            check_int("address", wanted)
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
            region.value().mmap, region.value().stack = source.mmap, source.stack
            created.append((region.value(), piece))
        return created

    def _replace_region(self, source: Region, pieces: list[tuple[Region, VirtualRange]],
                        release_hole: bool = True) -> None:
        """Put `pieces` where `source` was and retire it. Cannot fail: the pieces' PTEs are the
        source's (same pages), so only the pages no piece covers are released (unless
        `release_hole` is False: a MAP_FIXED region is about to be mapped over them), and
        pieces whose access differs are remapped over existing page tables. The pieces go in
        through place_specifically, the only way into the tree; they cannot fail to fit where
        `source` just was, under the lock."""
        directory = source.page_directory
        with self._lock:
            self.take_region(source)
            for region, piece in pieces:
                MUST(self.region_tree.place_specifically(region, piece))
                region.page_directory = directory
        for page_index in range(source.page_count()):
            vaddr = source.vaddr_from_page_index(page_index)
            if release_hole and not any(piece.contains(vaddr) for _, piece in pieces):
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
        check_int("address", address)
        check_int("size", size)
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
        The checks are sys$mprotect's, in its order (f0f97e1db02:
        Kernel/Syscalls/mmap.cpp#L244-L376): EFAULT outside user memory; a range that is
        exactly one region takes a shorter path, as there (EPERM unless mmap'ed, then
        `validate_mmap_prot`); otherwise, for each region, EPERM unless mmap'ed and
        `validate_mmap_prot`, then ENOMEM unless the range is wholly mapped, EINVAL if nothing
        is. Unknown prot bits are EINVAL here (SerenityOS ignores them)."""
        check_int("address", address)
        check_int("size", size)
        check_int("prot", prot)
        wanted = TRY(self._user_range(address, size))
        if prot < 0 or prot & ~(PROT_READ | PROT_WRITE | PROT_EXEC):
            return Error.from_errno(Errno.EINVAL, f"prot {prot:#x} has unknown bits")
        access = Access(prot)
        whole_region = self.find_region_from_range(wanted)
        if whole_region is not None:
            if not whole_region.mmap:
                return Error.from_errno(Errno.EPERM, f"{whole_region!r} was not created by mmap")
            TRY(validate_mmap_prot(prot, whole_region.stack, map_anonymous=True))
            if whole_region.access != access:
                whole_region.access = access
                whole_region.remap()
            return None
        regions = self.find_regions_intersecting(wanted)
        if not regions:
            return Error.from_errno(Errno.EINVAL, f"no region in {wanted}")
        for region in regions:
            if not region.mmap:
                return Error.from_errno(Errno.EPERM, f"{region!r} was not created by mmap")
            TRY(validate_mmap_prot(prot, region.stack, map_anonymous=True))
        covered = sum(region.range.intersect(wanted).size for region in regions)
        if covered != wanted.size:
            return Error.from_errno(Errno.ENOMEM, f"{wanted} is not entirely mapped")
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
                _destroy_planned_pieces(plans)
                return pieces
            plans.append((region, pieces.value()))
        return plans

    # fork ----------------------------------------------------------------------------------------

    @fallible
    def try_clone(self, seed: int = 0):
        """ErrorOr[AddressSpace]: a copy for a forked child. Private regions share their pages
        copy-on-write; shared regions share their VMObject."""
        check_int("seed", seed)
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
        region.mmap, region.stack = source.mmap, source.stack
        placed = self.region_tree.place_specifically(region, source.range)
        return self._map_placed_region(region, placed)

    # Page faults ---------------------------------------------------------------------------------

    @fallible
    def handle_page_fault(self, fault: PageFault):
        """Resolve a fault in this address space (demand zero, CoW) or explain why not:
        ErrorOr[str], the kind of fault resolved (see Region.handle_fault)."""
        region = self.find_region_containing(fault.address)
        if region is None:
            return Error.from_errno(Errno.EFAULT, f"{fault}, and no region is mapped there")
        return region.handle_fault(fault)

    def __repr__(self) -> str:
        return (f"AddressSpace({len(self.region_tree)} regions, "
                f"user range {self.region_tree.total_range})")


@fallible
def validate_mmap_prot(prot: int, map_stack: bool, map_anonymous: bool):
    """ErrorOr[None]: SerenityOS's rules for the access of a mapping, used by mmap and
    mprotect alike (f0f97e1db02: Kernel/Syscalls/mmap.cpp#L72-L104): anonymous memory and
    stacks are never executable, and nothing is writable and executable at once (W^X).

    Not modelled: the MS_WXALLOWED mount flag of the executable (it lifts W^X), and the
    checks against a region's "has been writable/executable" history, which only matter
    for memory that can become executable; with anonymous memory only, none can."""
    if map_anonymous and prot & PROT_EXEC:
        return Error.from_errno(Errno.EINVAL, "anonymous memory may not be executable")
    if map_stack and prot & PROT_EXEC:
        return Error.from_errno(Errno.EINVAL, "a stack may not be executable")
    if prot & PROT_WRITE and prot & PROT_EXEC:
        return Error.from_errno(Errno.EINVAL, "memory may not be writable and executable "
                                              "at once (W^X)")
    return None


def _destroy_planned_pieces(plans: list) -> None:
    """Free the unplaced pieces `_plan_splits` made, when a later step failed."""
    for _, pieces in plans:
        for piece, _ in pieces or ():
            piece.destroy()
