"""Before 24ecf1d0218 (2022-01-10): PageDirectory kept its page tables in a HashMap.

`PageDirectory::m_page_tables` mapped each 2 MiB-aligned virtual address to the PhysicalPage of
the page table covering it, and held the only reference to it. ensure_pte() inserted a new table
into that map, and HashMap::set() grows its bucket storage with kmalloc(). If kmalloc has to
expand the kernel heap, expansion maps the new heap pages through `MM.pte()` on the kernel's
directory, which points the *one* quickmap PD window at the kernel's PD. Back in the outer
ensure_pte(), the PDE reference it still holds now reads the kernel PD, and the PTE pointer it
returns lies in whatever page table the kernel PDE at that index names (or, if that kernel PDE
is empty, in physical frame 0): the caller writes a user mapping where it does not belong.

As in SerenityOS at that date, the page tables of the whole kmalloc range are created up front
(f49649645ca, 2021-12-26), so expansion calls `pte()`, not `ensure_pte()`, and allocates no page
table; `pte()` still quickmaps the kernel PD, which is all the bug needs. Left out: kmalloc's
slab layer (a 120-byte request goes to the 128-byte slabheap, whose new 64 KiB block comes from
kmalloc_aligned() and so from the same subheaps and the same expansion), and ensure_pte's
`did_purge` re-quickmap (the simulation has no purgeable memory to purge).

Compare `MemoryManagerWithPageTableMap.ensure_pte` and `release_pte` with
`refimpl.kernel.memory_manager.MemoryManager`: the difference is the refactoring.
"""

from __future__ import annotations

from refimpl.ak import MUST, TRY, VERIFY, fallible
from refimpl.hw import X86_64, Access, Machine, MiB, PageFault
from refimpl.kernel.address import PAGE_SIZE, VirtualAddress
from refimpl.kernel.address_space import AddressSpace
from refimpl.kernel.allocation import AllocationKind
from refimpl.kernel.anonymous_vmobject import AllocationStrategy, AnonymousVMObject
from refimpl.kernel.kmalloc import CHUNK_SIZE
from refimpl.kernel.memory_manager import MemoryManager, ShouldZeroFill
from refimpl.kernel.page_directory import PageDirectory
from refimpl.kernel.physical_page import PagePurpose, PhysicalPage
from refimpl.kernel.region import Region
from refimpl.kernel.virtual_range import VirtualRange

PAGE_TABLE_SPAN = 2 * 1024 * 1024


class HashMap:
    """AK::HashMap as far as ensure_pte() can feel it (AK/HashTable.h at that date): its buckets
    live on the kernel heap, and a `set()` that would make them 60% full first rehashes into a
    table twice the size (at least 4 buckets, plus one end marker), allocated with kmalloc()."""

    BUCKET_SIZE = 24  # used, deleted, end flags, then the 16-byte (key, RefPtr) entry
    LOAD_FACTOR_IN_PERCENT = 60

    def __init__(self, mm: MemoryManager) -> None:
        self._mm = mm
        self._entries: dict[int, PhysicalPage] = {}
        self._capacity = 0
        self._buckets = 0  # kernel-heap address of the bucket storage

    def should_grow(self) -> bool:
        return (len(self._entries) + 1) * 100 >= self._capacity * self.LOAD_FACTOR_IN_PERCENT

    def set(self, key: int, value: PhysicalPage) -> None:
        if self.should_grow():
            self.try_rehash(self._capacity * 2)
        self._entries[key] = value

    def try_rehash(self, new_capacity: int) -> None:
        new_capacity = max(new_capacity, 4)
        buckets = MUST(self._mm.kmalloc((new_capacity + 1) * self.BUCKET_SIZE))  # may expand
        self._mm.kfree(self._buckets)
        self._buckets, self._capacity = buckets, new_capacity

    def take(self, key: int) -> PhysicalPage:
        return self._entries.pop(key)

    def __contains__(self, key: int) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)


class PageDirectoryWithPageTables(PageDirectory):
    """PageDirectory with its `m_page_tables` map."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.m_page_tables = HashMap(self._mm)


class MemoryManagerWithPageTableMap(MemoryManager):
    page_directory_class = PageDirectoryWithPageTables

    """The kernel before 24ecf1d0218. Its heap is the modern one, which already expands as the
    real code did then: `enable_expansion` creates the kmalloc range's page tables at boot
    (through this class's ensure_pte, so the kernel's `m_page_tables` owns them; the boot page
    tables are not in it), and `try_expand` maps new heap pages with `MM.pte()`."""

    @fallible
    def ensure_pte(self, directory: PageDirectoryWithPageTables, vaddr: int):
        """The PTE for `vaddr`, creating its page table if needed: ErrorOr[PageTableEntry].

        A new page table is owned by `directory.m_page_tables`, which holds its one reference
        until release_pte() takes it out. Inserting into the map may kmalloc, and kmalloc may
        expand the heap and retarget the PD window under our feet.
        """
        self._verify_reachable(directory, vaddr)
        layout = self.layout
        pde = self.quickmap_pd(directory, layout.pdpt_index(vaddr))[layout.pd_index(vaddr)]
        if not pde.is_present():
            page_table = TRY(self.allocate_physical_page(ShouldZeroFill.YES,
                                                         PagePurpose.PAGE_TABLE))
            pde.set_page_table_base(page_table.paddr())
            pde.set_user_allowed(True)
            pde.set_present(True)
            pde.set_writable(True)
            pde.set_global(directory is self.kernel_page_directory())
            # The map keeps the page table alive. Growing it may kmalloc, and kmalloc may
            # expand the heap, which calls pte() (MM.pte in C++) and moves the PD window...
            directory.m_page_tables.set(vaddr & ~(PAGE_TABLE_SPAN - 1), page_table)
        # ...so this may read the PDE of another page directory.
        return self.quickmap_pt(pde.page_table_base())[layout.pt_index(vaddr)]

    def release_pte(self, directory: PageDirectoryWithPageTables, vaddr: int,
                    is_last_pte: bool) -> None:
        """Clear the PTE for `vaddr`. On the last PTE of a run (or the table's last slot), free
        the page table if it is now empty: clear the PDE, then take the table out of
        m_page_tables, which drops the last reference. The caller flushes the TLB."""
        self._verify_reachable(directory, vaddr)
        layout = self.layout
        pde = self.quickmap_pd(directory, layout.pdpt_index(vaddr))[layout.pd_index(vaddr)]
        if not pde.is_present():
            return
        page_table = self.quickmap_pt(pde.page_table_base())
        pt_index = layout.pt_index(vaddr)
        page_table[pt_index].clear()
        if not (is_last_pte or pt_index == 511):
            return
        if any(page_table.raw_entries()):
            return
        pde.clear()
        key = vaddr & ~(PAGE_TABLE_SPAN - 1)
        VERIFY(key in directory.m_page_tables, f"no page table for {key:#x} in m_page_tables")
        directory.m_page_tables.take(key).unref()  # the map held the last reference


REENTRANCY_TARGET = 0x200_2000
"""A user address with PD index 16, the first of the kmalloc range in the kernel PD, and PT
index 2: the stray PTE lands in the kernel heap's page table, where the next heap expansion's
third page is mapped. At a PD index whose kernel PDE is empty (48, just past the kmalloc
range), the stray PTE lands in physical frame 0 instead."""


def fill_kernel_heap(mm: MemoryManager) -> None:
    """Allocate every free chunk of the kernel heap, so the next kmalloc has to expand it."""
    for _ in range(mm.kmalloc_heap.free_bytes() // CHUNK_SIZE):
        MUST(mm.kmalloc(CHUNK_SIZE))


def prepare_reentrancy(kernel: type[MemoryManager], target: int = REENTRANCY_TARGET):
    """A kernel of class `kernel`, an address space with a one-page region placed at `target`
    (not mapped yet), and a full kernel heap: mapping the region is the first thing that needs
    a page table, and the first kmalloc since the heap filled up. Returns (mm, space, region)."""
    mm = kernel(Machine(X86_64, ram_size=32 * MiB))
    space = MUST(AddressSpace.try_create(mm))
    vmobject = MUST(AnonymousVMObject.try_create_with_size(mm, PAGE_SIZE,
                                                           AllocationStrategy.ALLOCATE_NOW))
    region = MUST(Region.try_create_unplaced(mm, vmobject, 0, "victim",
                                             Region.Access.READ | Region.Access.WRITE))
    vmobject.unref()
    MUST(space.region_tree.place_specifically(
        region, VirtualRange(VirtualAddress(target), PAGE_SIZE)))
    fill_kernel_heap(mm)
    return mm, space, region


def hash_map_heap_cost(kernel: type[MemoryManager], page_tables: int) -> list[tuple[int, int, int]]:
    """Give one user directory `page_tables` page tables, one by one, in a kernel of class
    `kernel`. Returns, after each, (page tables, kmalloc calls so far, bytes asked of kmalloc
    by the latest call, 0 if none yet): the heap traffic ensure_pte() causes."""
    mm = kernel(Machine(X86_64, ram_size=32 * MiB))
    directory = MUST(kernel.page_directory_class.try_create_for_userspace(mm))
    rows, calls, latest = [], 0, 0
    for index in range(page_tables):
        with mm.allocations.record() as log:
            MUST(mm.ensure_pte(directory, (index + 1) * PAGE_TABLE_SPAN))
        for record in log:
            if record.kind is AllocationKind.KMALLOC:
                calls, latest = calls + 1, record.size
        rows.append((index + 1, calls, latest))
    return rows


EMPTY_KERNEL_PDE_TARGET = 48 * PAGE_TABLE_SPAN + 2 * PAGE_SIZE
"""A user address at PD index 48, whose kernel PDE is empty (the kmalloc range ends at 47)."""


def frame_entries(mm: MemoryManager, paddr: int) -> list[int]:
    """The 64-bit entries of physical page `paddr`, read as a debugger reads RAM."""
    data = mm.machine.memory.read(paddr, PAGE_SIZE)
    return [int.from_bytes(data[i:i + 8], "little") for i in range(0, PAGE_SIZE, 8)]


def user_mode_translation(mm: MemoryManager, directory: PageDirectory, vaddr: int):
    """What a user-mode read of `vaddr` reaches under `directory`: the physical address, or
    the PageFault it raises (on the BSP; its CR3 is restored afterwards)."""
    mmu = mm.machine.bsp.mmu
    saved = mmu.cr3
    mmu.load_cr3(directory.cr3())
    try:
        return mmu.translate(vaddr, Access.USER)
    except PageFault as fault:
        return fault
    finally:
        mmu.load_cr3(saved)
