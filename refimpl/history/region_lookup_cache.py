"""Before 4fa3c1bf2dd (2022-01-15): a one-entry cache in front of `find_region_from_range`.

munmap, mprotect, madvise and set_mmap_name all start by asking for "the region that is exactly
this range". For two years a one-entry cache remembered the last answer:

- 8d9dd1b04bb (2020-01-19) added it when a process's regions were a Vector searched front to
  back: "hit over 70% of the time" on `g++ Process.cpp`, "~3% off the runtime". The entry held a
  raw `Region*`, cleared when that region was deallocated.
- exec did not deallocate the old regions one by one: it moved the whole Vector away and let it
  die at the end of `do_exec`. The cache kept pointing into it. 79576f92808 (2020-02-24) cleared
  the cache on exec: "the new executable was able to manipulate it using a number of
  use-after-free code paths".
- 30a8991dbf2, the same day, made Region weakable and the entry a `WeakPtr<Region>`: a
  destroyed region now reads as null.
- f1b5def8fd4 (2021-02-08) moved the cache with the regions into `Space` (later AddressSpace);
  2c93123daf6 (2021-04-07) put the regions in a red-black tree: lookup became O(log n).
- 4fa3c1bf2dd removed the cache: "no evidence that it remains valuable"
  (`refimpl.history.region_lookup_cost` measures it).

Three address spaces replay this, each the modern `AddressSpace` with lookup and removal
changed, so that a diff against `refimpl.kernel.address_space.AddressSpace` is the refactoring:

- `AddressSpaceWithRawCache` (January 2020): the lookup walks every region in order (the Vector)
  and the cache holds what a `Region*` holds, the object's kernel-heap address. `exec` replaces
  every region without clearing it.
- `AddressSpaceClearingCacheOnExec` (79576f92808): the same, and exec clears the cache.
- `AddressSpaceWithWeakCache` (30a8991dbf2 with 2c93123daf6's tree: the code 4fa3c1bf2dd
  removed). Its exec still does not clear the cache, to show that the WeakPtr alone is enough.

The use-after-free is real: a raw pointer is followed with `object_at`, which finds whatever
object of the address space lives at that kernel-heap address *now*. kmalloc hands a freed
Region's chunks to the next allocation that fits, so after exec the new program's first mmap
puts its own Region exactly where the cached pointer points (`prepare_stale_cache`).

The Vector kept regions in creation order; `region_tree.regions()` is in address order. The
lookup walks it the same way, one region after another, which is all the lesson needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from refimpl.ak import MUST, KernelPanic, WeakPtr
from refimpl.hw import X86_64, Machine, MiB
from refimpl.kernel.address import PAGE_SIZE, page_round_up
from refimpl.kernel.address_space import PROT_EXEC, PROT_READ, PROT_WRITE, AddressSpace
from refimpl.kernel.anonymous_vmobject import AnonymousVMObject
from refimpl.kernel.memory_manager import MemoryManager
from refimpl.kernel.region import Region
from refimpl.kernel.syscalls import MAP_ANONYMOUS, MAP_PRIVATE, sys_mmap
from refimpl.kernel.virtual_range import VirtualRange


@dataclass
class RegionLookupCache:
    """`Process::m_region_lookup_cache` of January 2020: a range and a raw `Region*` (the
    Region's kernel-heap address; 0 is nullptr)."""

    range: VirtualRange | None = None
    region: int = 0


@dataclass
class WeakRegionLookupCache:
    """The same entry after 30a8991dbf2: the pointer is a `WeakPtr<Region>`."""

    range: VirtualRange | None = None
    region: WeakPtr = field(default_factory=WeakPtr)


def object_at(space: AddressSpace, address: int) -> Region | AnonymousVMObject:
    """What a raw pointer to `address` reaches now: the live Region or VMObject of `space` whose
    kernel-heap chunk starts there. Nothing checks that it is the object the pointer was taken
    from. If no object of this address space lives there, the memory is free (or another
    process's): the simulation stops, as a kernel address sanitizer would."""
    for region in space.region_tree.regions():
        if region.object_address() == address:
            return region
        if region.vmobject.object_address() == address:
            return region.vmobject
    raise KernelPanic(f"use-after-free: a stale pointer to {address:#x}, where no object of "
                      f"this address space lives any more")


Program = list[tuple[str, int, int]]
"""What exec loads: (name, size, prot) for each region."""


class AddressSpaceWithRawCache(AddressSpace):
    """January 2020 (8d9dd1b04bb): a linear lookup with a one-entry raw-pointer cache."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.region_lookup_cache = RegionLookupCache()

    def find_region_from_range(self, wanted: VirtualRange) -> Region | None:
        """The region that is exactly `wanted`, its size rounded up to pages."""
        cache = self.region_lookup_cache
        if cache.range == wanted and cache.region:
            return object_at(self, cache.region)  # *cache.region, whatever lives there now
        size = page_round_up(wanted.size)
        for region in self.region_tree.regions():
            if region.vaddr() == wanted.base and region.size() == size:
                cache.range, cache.region = wanted, region.object_address()
                return region
        return None

    def take_region(self, region: Region) -> bool:
        if self.region_lookup_cache.region == region.object_address():
            self.region_lookup_cache.region = 0
        return self.region_tree.remove(region)

    def exec(self, program: Program) -> None:
        """Replace every region by the new program's, as `Process::do_exec` did: the old regions
        leave all at once (`old_regions = move(m_regions)`, not through take_region), the new
        ones are created, and the old Region objects die when exec returns. SerenityOS switched
        to a fresh page directory; here the old mappings are removed from the one we keep."""
        old_regions = self.region_tree.regions()
        for region in old_regions:
            self.region_tree.remove(region)
            region.unmap()
        for name, size, prot in program:
            MUST(self.allocate_region(size, name=name, prot=prot))
        for region in old_regions:
            region.destroy()


class AddressSpaceClearingCacheOnExec(AddressSpaceWithRawCache):
    """79576f92808 (2020-02-24): exec empties the cache."""

    def exec(self, program: Program) -> None:
        super().exec(program)
        self.region_lookup_cache = RegionLookupCache()


class AddressSpaceWithWeakCache(AddressSpaceWithRawCache):
    """30a8991dbf2 (WeakPtr) on the tree of 2c93123daf6: the code 4fa3c1bf2dd removed. Its exec
    is the January one, which does not clear the cache."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.region_lookup_cache = WeakRegionLookupCache()

    def find_region_from_range(self, wanted: VirtualRange) -> Region | None:
        """The region that is exactly `wanted`, its size rounded up to pages."""
        cache = self.region_lookup_cache
        if cache.range == wanted and cache.region:
            return cache.region.unsafe_ptr()
        region = self.region_tree.find_region_containing(wanted.base)
        if region is None or region.range.base != wanted.base or \
                region.size() != page_round_up(wanted.size):
            return None
        cache.range, cache.region = wanted, region.make_weak_ptr()
        return region

    def take_region(self, region: Region) -> bool:
        """Take `region` out of the tree, leaving it to the caller; False if it was not in it.
        Every removal goes through here, as in SerenityOS."""
        if self.region_lookup_cache.region.unsafe_ptr() is region:
            self.region_lookup_cache.region = WeakPtr()
        return self.region_tree.remove(region)


# The scenario of the lesson ---------------------------------------------------------------------

SHELL: Program = [("text", 4 * PAGE_SIZE, PROT_READ | PROT_EXEC),
                  ("data", 2 * PAGE_SIZE, PROT_READ | PROT_WRITE)]
"""The program that runs first."""
NEW_PROGRAM: Program = [("text", 8 * PAGE_SIZE, PROT_READ | PROT_EXEC),
                        ("data", 4 * PAGE_SIZE, PROT_READ | PROT_WRITE)]
"""The program it execs, bigger, so that its regions cover different ranges."""
NEW_PROGRAM_STARTUP = ["LibC Allocators", "LibC BigAllocators", "malloc: ChunkedBlock(8)"]
"""The one-page mmaps the new program's malloc makes first (names from LibC's malloc.cpp)."""
BUFFER_SIZE = 2 * PAGE_SIZE


@dataclass
class StaleCacheStage:
    """After exec: `stale_range` is what the old program's last lookup asked for, `victim` the
    (destroyed) region it found, `newcomer` the new program's latest mmap."""

    mm: MemoryManager
    space: AddressSpaceWithRawCache
    stale_range: VirtualRange
    victim: Region
    newcomer: Region


def prepare_stale_cache(space_class: type[AddressSpaceWithRawCache]) -> StaleCacheStage:
    """The old program mmaps a buffer and mprotects it (its last lookup, so the cache holds
    it); it execs the new program; the new program's malloc maps its first pages. kmalloc
    hands each new VMObject and Region the lowest free chunks: the old program's, in the order
    they were allocated, so the third mmap's Region lands where the buffer's Region was."""
    mm = MemoryManager(Machine(X86_64, ram_size=16 * MiB, cpu_count=1))
    space = MUST(space_class.try_create(mm))
    space.exec(SHELL)
    prot = PROT_READ | PROT_WRITE
    address = MUST(sys_mmap(space, 0, BUFFER_SIZE, prot, MAP_ANONYMOUS | MAP_PRIVATE))
    MUST(space.mprotect(address, BUFFER_SIZE, PROT_READ))
    victim = space.find_region_containing(address)
    space.exec(NEW_PROGRAM)
    for name in NEW_PROGRAM_STARTUP:
        newcomer = MUST(space.allocate_region(PAGE_SIZE, name=name, prot=prot, mmap=True))
    return StaleCacheStage(mm, space, VirtualRange(address, BUFFER_SIZE), victim, newcomer)
