"""Before e852a69a069 and 07f3d09c552 (2022-04-03): find a range, do other work, then register.

From 02a95a196f0 to that day, allocating virtual memory took two calls to the RegionTree:
`try_allocate_anywhere` (or `_specific`, `_randomized`) returned a range, and the region was
inserted later, by other code, after the Region had been constructed, named and (user side)
mapped. e852a69a069 (kernel side) and 07f3d09c552 (user side) replaced the pair with one call,
`place_anywhere(region, ...)` or `place_specifically(region, range)`, which finds and inserts
under the tree's lock; e89c9ed2cac then made the finders private. The modern code is
`refimpl.kernel.region_tree.RegionTree` and `refimpl.kernel.address_space.AddressSpace`.

- `RegionTreeBeforePlace`: the tree with the API of e8f543c3908, the finders public and a bare
  `insert`. SerenityOS's intrusive tree checked nothing on insert; this one VERIFYs that the
  range is still free, so a lost race shows as a panic instead of two overlapping regions.
- `MemoryManagerBeforePlace`: kernel side at e8f543c3908. `allocate_kernel_region` takes the
  kernel page directory's lock, finds a range, and keeps the lock while it builds the Region
  (kmalloc), registers it (the constructor called `register_kernel_region`, under s_mm_lock) and
  maps it. e852a69a069: "To reduce the number of things we do while locking the region tree, we
  also require callers to provide a constructed Region." `allocations_under(mm, function)`
  counts the allocations made inside the locked step, before and after.
- `find_then_insert_steps` / `place_steps`: the hazard the place API rules out, on a model where
  nothing holds one lock across "find" and "insert". In April 2022 no such failure was observed:
  the kernel allocators held the kernel page directory's lock across both, and every memory
  syscall held the big process lock. It is the hazard, not a reproduced failure.
- `AddressSpaceBeforePlace` and the three `sys_mmap_*`: user side. Before 07f3d09c552, sys$mmap
  chose the range (randomized for MAP_RANDOMIZED, else the hint, falling back to anywhere), then
  `allocate_region_with_vmobject(range, ...)` built the Region, mapped it, and `add_region`
  registered it. 07f3d09c552 passed only a MAP_FIXED address and no randomization: ASLR for
  mmap was lost, and a hint was ignored, until 858b196c595 (ASLR, 18:46 the same day).
- `AddressSpaceAt07f3d09c552`: once placement comes first, a failing `map()` must also take the
  region out of the tree. 07f3d09c552 did not: `TRY(region->map(...))` returned, the Region was
  freed, and the tree kept a dangling pointer to it, until 4edae21bd13 (2022-08-15; a1a1462a223
  two days later made it a scope guard).
"""

from __future__ import annotations

from refimpl.ak import MUST, TRY, VERIFY, Errno, Error, fallible
from refimpl.hw import X86_64, Machine, MiB
from refimpl.kernel.address import PAGE_SIZE, page_round_up
from refimpl.kernel.address_space import AddressSpace
from refimpl.kernel.anonymous_vmobject import AllocationStrategy, AnonymousVMObject
from refimpl.kernel.locking import Spinlock
from refimpl.kernel.memory_manager import MemoryManager
from refimpl.kernel.region import Access, Region
from refimpl.kernel.region_tree import RegionTree
from refimpl.kernel.scheduler import Program, SimThread

MAP_FIXED, MAP_RANDOMIZED = 0x10, 0x100
"""Kernel/API/POSIX/sys/mman.h at 07f3d09c552."""


class RegionTreeBeforePlace(RegionTree):
    """RegionTree as at e8f543c3908: ask for a range, insert the region later."""

    def try_allocate_anywhere(self, size: int, alignment: int = PAGE_SIZE):
        return self._allocate_range_anywhere(size, alignment)

    def try_allocate_specific(self, base: int, size: int):
        return self._allocate_range_specific(base, size)

    def try_allocate_randomized(self, size: int, alignment: int = PAGE_SIZE):
        return self._allocate_range_randomized(size, alignment)

    def insert(self, region: Region) -> None:
        """`regions().insert(region.vaddr(), region)`: the region already has its range."""
        placed, region.range = region.range, None
        self._insert(region, placed)


class MemoryManagerBeforePlace(MemoryManager):
    """MemoryManager at e8f543c3908: find under the kernel page directory's lock, then build,
    register and map with the lock still held."""

    region_tree_class = RegionTreeBeforePlace

    def __init__(self, machine, initial_kmalloc_pages: int = 4) -> None:
        super().__init__(machine, initial_kmalloc_pages)
        self.kernel_page_directory_lock = Spinlock("kernel PageDirectory::m_lock")

    @fallible
    def allocate_kernel_region(self, size: int, name: str,
                               access: Access = Access.READ | Access.WRITE,
                               strategy: AllocationStrategy = AllocationStrategy.NONE,
                               cacheable: bool = True):
        """ErrorOr[Region]: the VMObject first, then everything else under the PD lock."""
        if size <= 0 or size % PAGE_SIZE:
            return Error.from_errno(Errno.EINVAL, f"kernel region size {size:#x} is not a "
                                                  f"positive multiple of the page size")
        vmobject = TRY(AnonymousVMObject.try_create_with_size(self, size, strategy))
        with self.kernel_page_directory_lock:
            placed = self.region_tree.try_allocate_anywhere(size)
            result = placed if placed.is_error() else self.allocate_kernel_region_with_range(
                placed.value(), vmobject, name, access, cacheable)
        vmobject.unref()
        return result

    @fallible
    def allocate_kernel_region_with_range(self, placed, vmobject: AnonymousVMObject, name: str,
                                          access: Access, cacheable: bool = True):
        """ErrorOr[Region] at `placed`: construct (and so register), then map."""
        region = TRY(Region.try_create_unplaced(self, vmobject, 0, name, access, cacheable))
        region.range = placed
        self.register_kernel_region(region)  # Region::Region called it
        mapped = region.map(self.kernel_page_directory())
        if mapped.is_error():
            region.destroy()  # ~Region unregisters it
            return mapped
        return region

    def register_kernel_region(self, region: Region) -> None:
        with self.mm_lock:
            self.region_tree.insert(region)


def allocations_under(mm: MemoryManager, locked_function: str, size: int = PAGE_SIZE) -> list:
    """The allocations one `allocate_kernel_region(size)` makes inside `locked_function` (a
    qualified name: the step that runs with the lock covering the tree held)."""
    with mm.allocations.record() as log:
        MUST(mm.allocate_kernel_region(size, "buffer"))
    return [record for record in log if locked_function in record.call_chain]


# The hazard, on a model with no lock across the two steps -----------------------------------------

def find_then_insert_steps(tree: RegionTreeBeforePlace, region: Region, size: int):
    """A simulated thread allocating the old way: find, let another CPU run, insert."""
    region.range = MUST(tree.try_allocate_anywhere(size))
    yield f"{region.name} found {region.range}"
    tree.insert(region)
    yield f"{region.name} inserted"


def place_steps(tree: RegionTree, region: Region, size: int):
    """The same allocation with one place_anywhere (the tree's lock held across both)."""
    error = yield from tree.place_anywhere_steps(region, size)
    VERIFY(error is None, f"placing {region.name!r}: {error}")
    yield f"{region.name} placed at {region.range}"


def two_allocating_threads(space_class: type[AddressSpace], steps, size: int = PAGE_SIZE):
    """A `make_program` for explore()/replay(): a fresh kernel (16 MiB, one CPU) and address
    space of `space_class`, and threads "first" and "second" each running `steps(tree, region, size)` with a new
    unplaced region. The state handed to the check is the address space."""
    def make() -> Program:
        mm = MemoryManager(Machine(X86_64, ram_size=16 * MiB))
        space = MUST(space_class.try_create(mm))
        threads = []
        for name in ("first", "second"):
            vmobject = MUST(AnonymousVMObject.try_create_with_size(mm, size))
            region = MUST(Region.try_create_unplaced(mm, vmobject, 0, name, Access.READ))
            vmobject.unref()
            threads.append(SimThread(name, steps, space.region_tree, region, size))
        return Program(threads, state=space)
    return make


# The user side before 07f3d09c552, and sys$mmap at three commits -------------------------------

class AddressSpaceBeforePlace(AddressSpace):
    """AddressSpace at 07f3d09c552^: `try_allocate_range`, then `allocate_region_with_range`."""

    @classmethod
    @fallible
    def try_create(cls, mm, parent=None, seed: int = 0):
        """ErrorOr[AddressSpaceBeforePlace]: the modern one with the tree of the day."""
        modern = TRY(AddressSpace.try_create(mm, parent, seed))
        return cls(mm, modern.page_directory,
                   RegionTreeBeforePlace(modern.region_tree.total_range, seed),
                   modern._object_address)

    def try_allocate_range(self, address: int | None, size: int, alignment: int = PAGE_SIZE):
        """ErrorOr[VirtualRange]: anywhere if `address` is None, else exactly there."""
        size = page_round_up(size)
        if address is None:
            return self.region_tree.try_allocate_anywhere(size, alignment)
        return self.region_tree.try_allocate_specific(address - address % PAGE_SIZE, size)

    @fallible
    def allocate_region_with_range(self, placed, vmobject: AnonymousVMObject, name: str,
                                   prot: int):
        """ErrorOr[Region]: build the Region at `placed`, map it, and only then register it
        (`add_region`). Between the find and here, nothing reserves `placed`."""
        region = TRY(Region.try_create_unplaced(self.mm, vmobject, 0, name, Access(prot & 7)))
        region.mmap = True
        region.range = placed
        mapped = region.map(self.page_directory)
        if mapped.is_error():
            region.range = None
            region.destroy()
            return mapped
        self.region_tree.insert(region)
        return region


@fallible
def sys_mmap_before_place(space: AddressSpaceBeforePlace, address: int, size: int, prot: int,
                          flags: int):
    """sys$mmap at 07f3d09c552^ (anonymous, private): choose the range, then allocate."""
    if flags & MAP_FIXED and flags & MAP_RANDOMIZED:
        return Error.from_errno(Errno.EINVAL, "MAP_FIXED and MAP_RANDOMIZED together")
    size = page_round_up(size)
    if flags & MAP_RANDOMIZED:
        placed = space.region_tree.try_allocate_randomized(size)
    else:
        placed = space.try_allocate_range(address or None, size)
        if placed.is_error() and address and not flags & MAP_FIXED:
            placed = space.try_allocate_range(None, size)  # the address was only a hint
    placed = TRY(placed)
    vmobject = TRY(AnonymousVMObject.try_create_with_size(space.mm, size))
    region = space.allocate_region_with_range(placed, vmobject, "mmap", prot)
    vmobject.unref()
    return int(TRY(region).vaddr())


@fallible
def sys_mmap_at_07f3d09c552(space: AddressSpace, address: int, size: int, prot: int,
                            flags: int):
    """sys$mmap at 07f3d09c552: one call, but only a MAP_FIXED address is passed on, and
    nothing asks for randomization."""
    if flags & MAP_FIXED and flags & MAP_RANDOMIZED:
        return Error.from_errno(Errno.EINVAL, "MAP_FIXED and MAP_RANDOMIZED together")
    requested = address if flags & MAP_FIXED else None  # a hint is dropped
    region = TRY(space.allocate_region(size, address=requested, prot=prot, name="mmap",
                                       mmap=True))
    return int(region.vaddr())


@fallible
def sys_mmap_at_858b196c595(space: AddressSpace, address: int, size: int, prot: int,
                            flags: int):
    """sys$mmap after 858b196c595: MAP_RANDOMIZED reaches place_anywhere again."""
    if flags & MAP_FIXED and flags & MAP_RANDOMIZED:
        return Error.from_errno(Errno.EINVAL, "MAP_FIXED and MAP_RANDOMIZED together")
    requested = address if flags & MAP_FIXED else None
    region = TRY(space.allocate_region(size, address=requested, prot=prot, name="mmap",
                                       mmap=True, randomize=bool(flags & MAP_RANDOMIZED)))
    return int(region.vaddr())


class AddressSpaceAt07f3d09c552(AddressSpace):
    """The modern AddressSpace, except that a failed `map()` frees the region without taking
    it out of the tree (07f3d09c552 to 4edae21bd13)."""

    @fallible
    def _map_placed_region(self, region: Region, placed):
        if placed.is_error():
            region.destroy()
            return placed
        mapped = region.map(self.page_directory)
        if mapped.is_error():
            region.destroy()  # TRY(region->map(...)): the OwnPtr frees it; the tree still holds it
            return mapped
        return region
