"""MemoryManager: physical pages, quickmaps and page-table entries (Kernel/Memory/MemoryManager).

Boot order: the prekernel builds the boot tables; the MemoryManager turns the rest of RAM into a
buddy-allocated PhysicalRegion, adopts the boot pages as PhysicalPages that never return to the
free list, wraps the boot tables in the kernel PageDirectory, and starts the kernel heap.

Reaching page tables: the kernel has no linear map of physical memory. To read or write a page
directory or page table it points a *quickmap* window (a fixed kernel virtual page whose PTE sits
in the static table pt1023) at that physical page and goes through the window:
- `quickmap_pd(directory, pdpt_index)`: the global PD window;
- `quickmap_pt(paddr)`: the global PT window;
- `quickmap_page(paddr)` / `unquickmap_page()`: a per-CPU window for any page, not reentrant.
The PD and PT windows have no owner and no unmap: a pointer into one is valid only until the next
quickmap of the same window on this CPU.

Kernel virtual memory is laid out at fixed addresses (`layout.py`): the kmalloc range, the
quickmap area, the AP trampoline's identity page. Unlike SerenityOS, this MemoryManager has no
kernel RegionTree (no `allocate_kernel_region*`, `kernel_region_from_vaddr` or
`unregister_kernel_region`; 24ecf1d0218: Kernel/Memory/MemoryManager.h) and handles no kernel
page faults: nothing here allocates kernel regions dynamically yet.

Errors and panics: functions that can fail for a reason a correct caller may meet (no memory)
return ErrorOr; a call no correct kernel makes (an address outside every page directory, a frame
with no PhysicalPage) is a VERIFY failure and raises KernelPanic, before any state has changed.
"""

from __future__ import annotations

from refimpl.ak import MUST, TRY, VERIFY, Errno, Error, check_int, fallible
from refimpl.hw import CPU, Machine, MiB, PTEFlags
from refimpl.kernel.address import PAGE_SIZE, PhysicalAddress, VirtualAddress
from refimpl.kernel.allocation import AllocationCounters, AllocationKind
from refimpl.kernel.anonymous_vmobject import AllocationStrategy, AnonymousVMObject
from refimpl.kernel.kmalloc import KmallocHeap
from refimpl.kernel.locking import RecursiveSpinlock
from refimpl.kernel.layout import BOOT_PD_KERNEL_PT1023, KernelLayout
from refimpl.kernel.page_directory import PageDirectory
from refimpl.kernel.page_table_entry import (PageDirectoryEntry, PageTableEntry,
                                             TableWindow)
from refimpl.kernel.physical_page import (MayReturnToFreeList, PagePurpose, PhysicalPage,
                                          ShouldZeroFill)
from refimpl.kernel.physical_region import PhysicalRegion
from refimpl.kernel.region import Access, Region
from refimpl.kernel.region_tree import RegionTree
from refimpl.kernel.prekernel import BootInfo, build_boot_page_tables
from refimpl.kernel.virtual_range import VirtualRange


class MemoryManager:
    page_directory_class = PageDirectory
    """The PageDirectory type of this kernel (lesson 03's "before" kernel uses a subclass)."""
    region_tree_class = RegionTree
    """The kernel RegionTree's type (lesson 07's "before" kernel uses one with the old API)."""

    def __init__(self, machine: Machine, initial_kmalloc_pages: int = 4) -> None:
        self.machine = machine
        self.format = machine.format
        self.layout = layout = KernelLayout.for_format(machine.format, initial_kmalloc_pages)
        first_usable = layout.first_usable_paddr // PAGE_SIZE
        if machine.memory.frame_count < first_usable + 256:
            raise ValueError(f"the kernel needs at least {(first_usable + 256) * PAGE_SIZE:#x} "
                             f"bytes of RAM (image, low memory and one 1 MiB zone)")
        VERIFY(len(machine.cpus) <= 64, "the quickmap area has room for 64 CPUs")
        self.allocations = AllocationCounters()
        self.physical_page_entries: list[PhysicalPage | None] = [None] * machine.memory.frame_count
        self.user_physical_region = PhysicalRegion(
            first_usable, machine.memory.frame_count - first_usable)
        cpu_count = len(machine.cpus)
        self._last_quickmap_pd: list[int | None] = [None] * cpu_count
        self._last_quickmap_pt: list[int | None] = [None] * cpu_count
        self._quickmap_in_use = [False] * cpu_count
        self.page_directories_by_cr3: dict[int, PageDirectory] = {}

        self.boot_info = boot = build_boot_page_tables(machine, layout)
        self._adopt_kernel_image(boot)
        self._kernel_page_directory = self.page_directory_class.must_create_kernel_page_directory(
            self, boot)
        self.mm_lock = RecursiveSpinlock("s_mm_lock")
        self.region_tree = self.region_tree_class(kernel_virtual_range(layout))
        self._reserve_kernel_ranges()
        self.kmalloc_heap = KmallocHeap(self)
        MUST(self.kmalloc_heap.enable_expansion())
        self.shared_zero_page = MUST(self.allocate_physical_page(
            ShouldZeroFill.YES, PagePurpose.SHARED_ZERO))
        self.shared_zero_page.may_return_to_freelist = MayReturnToFreeList.NO
        self.process_globals = None
        """What refimpl.kernel.process keeps per kernel (the signal trampoline, the programs'
        file VMObjects, the next pid): globals in C++, made on the first exec."""

    def _adopt_kernel_image(self, boot: BootInfo) -> None:
        """Make PhysicalPages of the image pages; none ever returns to the free list.

        A difference from SerenityOS, kept so that every frame the kernel uses has a
        PhysicalPage the memory-map widget can show: there, only the four boot directories
        are adopted (PML4, PDPT, PD0 and the kernel PD: 24ecf1d0218:
        Kernel/Memory/PageDirectory.cpp#L136-L149). The boot page tables and the rest of the
        image have no live PhysicalPage (their PhysicalPageEntries stay zeroed), and nothing
        ever releases them: the kernel never unmaps a whole boot page table. Here each boot
        page table holds one reference, that of the PDE pointing at it, so the refcount
        invariant ("one reference per present PDE") holds for them too."""
        directories = {boot.pml4t, boot.pdpt, boot.pd0, boot.pd_kernel}
        for page in range(self.layout.kernel_image_pages):
            paddr = self.layout.image_paddr(page)
            if paddr in boot.boot_page_tables:
                purpose = PagePurpose.PAGE_TABLE
            elif paddr in directories:
                purpose = PagePurpose.PAGE_DIRECTORY
            else:
                purpose = PagePurpose.KERNEL_IMAGE
            PhysicalPage.create(self, paddr, MayReturnToFreeList.NO, purpose)

    # Who is running, and the kernel's own directory ----------------------------------------------

    def current_cpu(self) -> CPU:
        return self.machine.current_cpu

    def kernel_page_directory(self) -> PageDirectory:
        return self._kernel_page_directory

    # Physical pages --------------------------------------------------------------------------------

    def get_physical_page_entry(self, paddr: int) -> PhysicalPage:
        """The live PhysicalPage of the frame holding `paddr` (C++: `.allocated.physical_page`
        of its PhysicalPageEntry)."""
        check_int("paddr", paddr)
        index = paddr // PAGE_SIZE
        VERIFY(0 <= index < len(self.physical_page_entries),
               f"get_physical_page_entry: P{paddr:#x} is outside RAM")
        page = self.physical_page_entries[index]
        VERIFY(page is not None, f"get_physical_page_entry: frame P{paddr:#x} has no live "
                                 f"PhysicalPage")
        return page

    @staticmethod
    def get_physical_address(page: PhysicalPage) -> PhysicalAddress:
        return page.paddr()

    @fallible
    def allocate_physical_page(self, should_zero_fill: ShouldZeroFill = ShouldZeroFill.YES,
                               purpose: PagePurpose = PagePurpose.KERNEL):
        """One page with one reference, owned by the caller: ErrorOr[PhysicalPage]."""
        if self.allocations.note(AllocationKind.PHYSICAL_PAGE, PAGE_SIZE):
            return Error.from_errno(Errno.ENOMEM, "injected physical page allocation failure")
        page_index = self.user_physical_region.take_free_page()
        if page_index is None:
            return Error.from_errno(Errno.ENOMEM, "no free physical pages")
        page = PhysicalPage.create(self, page_index * PAGE_SIZE, MayReturnToFreeList.YES, purpose)
        if should_zero_fill is ShouldZeroFill.YES:
            window = self.quickmap_page(page.paddr())
            self.current_cpu().store(window, bytes(PAGE_SIZE))
            self.unquickmap_page()
        return page

    def deallocate_physical_page(self, paddr: int) -> None:
        """Called by PhysicalPage.free_this() once the page's entry no longer holds it."""
        self.user_physical_region.return_page(paddr // PAGE_SIZE)

    def free_physical_pages(self) -> int:
        return self.user_physical_region.free_pages()

    def live_physical_pages(self) -> list[PhysicalPage]:
        return [page for page in self.physical_page_entries if page is not None]

    # Quickmaps -------------------------------------------------------------------------------------

    def _pt1023_entry(self, slot: VirtualAddress) -> PageTableEntry:
        """The PTE of a quickmap slot, in the static page table that is part of the image."""
        table = self.layout.image_vaddr(BOOT_PD_KERNEL_PT1023)
        return PageTableEntry(self, table + self.layout.pt_index(slot) * self.format.entry_size)

    def _point_slot_at(self, slot: VirtualAddress, paddr: int) -> PageTableEntry:
        pte = self._pt1023_entry(slot)
        pte.set_raw(self.format.encode(paddr // PAGE_SIZE, PTEFlags.PRESENT | PTEFlags.READ_WRITE))
        return pte

    def _quickmap_shared_slot(self, slot: VirtualAddress, paddr: int,
                              last_mapped: list[int | None]) -> VirtualAddress:
        """Point a global window at `paddr`. Flush this CPU's TLB entry if the PTE changes, or if
        this CPU last saw another page there (other CPUs' edits to the slot are not broadcast)."""
        cpu = self.current_cpu()
        pte = self._pt1023_entry(slot)
        if not pte.is_present() or pte.physical_page_base() != paddr:
            self._point_slot_at(slot, paddr)
            cpu.mmu.invlpg(slot)
        elif last_mapped[cpu.id] != paddr:
            cpu.mmu.invlpg(slot)
        last_mapped[cpu.id] = paddr
        return slot

    def quickmap_pd(self, directory: PageDirectory, pdpt_index: int
                    ) -> TableWindow[PageDirectoryEntry]:
        page = directory.directory_page(pdpt_index)
        VERIFY(page is not None, f"quickmap_pd: {directory!r} has no page directory for "
                                 f"PDPT index {pdpt_index}")
        slot = self._quickmap_shared_slot(self.layout.kernel_quickmap_pd, page.paddr(),
                                          self._last_quickmap_pd)
        return TableWindow(self, slot, PageDirectoryEntry)

    def quickmap_pt(self, paddr: int) -> TableWindow[PageTableEntry]:
        slot = self._quickmap_shared_slot(self.layout.kernel_quickmap_pt, paddr,
                                          self._last_quickmap_pt)
        return TableWindow(self, slot, PageTableEntry)

    def quickmap_page(self, paddr: int) -> VirtualAddress:
        """This CPU's private window onto `paddr`. Not reentrant: unquickmap_page() first."""
        cpu = self.current_cpu()
        VERIFY(not self._quickmap_in_use[cpu.id],
               f"quickmap_page on CPU {cpu.id} while its window is in use (it would deadlock)")
        self._quickmap_in_use[cpu.id] = True
        slot = self.layout.kernel_quickmap_per_cpu(cpu.id)
        self._point_slot_at(slot, paddr)
        cpu.mmu.invlpg(slot)
        return slot

    def unquickmap_page(self) -> None:
        cpu = self.current_cpu()
        VERIFY(self._quickmap_in_use[cpu.id], "unquickmap_page without quickmap_page")
        slot = self.layout.kernel_quickmap_per_cpu(cpu.id)
        self._pt1023_entry(slot).clear()
        cpu.mmu.invlpg(slot)
        self._quickmap_in_use[cpu.id] = False

    # Page-table entries ----------------------------------------------------------------------------

    def _verify_reachable(self, directory: PageDirectory, vaddr: int) -> None:
        check_int("vaddr", vaddr)
        problem = self.format.address_problem(vaddr)
        VERIFY(problem is None, f"not a virtual address: {problem}")
        VERIFY(directory.directory_page(self.layout.pdpt_index(vaddr)) is not None
               and vaddr < 1 << 39,
               f"V{vaddr:#x} lies outside every page directory of {directory!r}")

    def pte(self, directory: PageDirectory, vaddr: int) -> PageTableEntry | None:
        """The PTE mapping `vaddr`, or None when no page table covers it. Allocates nothing."""
        self._verify_reachable(directory, vaddr)
        layout = self.layout
        pde = self.quickmap_pd(directory, layout.pdpt_index(vaddr))[layout.pd_index(vaddr)]
        if not pde.is_present():
            return None
        return self.quickmap_pt(pde.page_table_base())[layout.pt_index(vaddr)]

    @fallible
    def ensure_pte(self, directory: PageDirectory, vaddr: int):
        """The PTE for `vaddr`, creating its page table if needed: ErrorOr[PageTableEntry].

        A new page table is owned by the PDE that points at it: it keeps the one reference
        allocate_physical_page() gave it, and release_pte() drops that reference. Nothing here
        touches the kernel heap, so no nested call can retarget the PD window under our feet.
        """
        self._verify_reachable(directory, vaddr)
        # A kernel address through a user directory would put a user-allowed, non-global page
        # table into the kernel PD, which every directory shares.
        VERIFY(directory is self._kernel_page_directory or self.layout.is_user_address(vaddr),
               f"ensure_pte: V{vaddr:#x} is a kernel address; use the kernel page directory, "
               f"not {directory!r}")
        layout = self.layout
        pde = self.quickmap_pd(directory, layout.pdpt_index(vaddr))[layout.pd_index(vaddr)]
        if pde.is_present():
            return self.quickmap_pt(pde.page_table_base())[layout.pt_index(vaddr)]
        page_table = TRY(self.allocate_physical_page(ShouldZeroFill.YES, PagePurpose.PAGE_TABLE))
        pde.set_page_table_base(page_table.paddr())
        pde.set_user_allowed(True)
        pde.set_present(True)
        pde.set_writable(True)
        pde.set_global(directory is self._kernel_page_directory)
        # The PDE now owns the reference `page_table` came with: nothing to unref here.
        return self.quickmap_pt(pde.page_table_base())[layout.pt_index(vaddr)]

    def release_pte(self, directory: PageDirectory, vaddr: int, is_last_pte: bool) -> None:
        """Clear the PTE for `vaddr`. On the last PTE of a run (or the table's last slot), free
        the page table if it is now empty: unref it first (reading its base from the PDE), then
        clear the PDE. The caller flushes the TLB."""
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
        self.get_physical_page_entry(pde.page_table_base()).unref()
        pde.clear()

    # TLB -------------------------------------------------------------------------------------------

    smp_enabled = False
    """Processor::s_smp_enabled: set once by `smp_enable()` (refimpl.kernel.ap_boot) after the
    APs are up. Until then no TLB-flush IPI is sent."""

    def flush_tlb_local(self, vaddr: int, page_count: int = 1) -> None:
        """`invlpg` each page on the current CPU only."""
        mmu = self.current_cpu().mmu
        for page in range(page_count):
            mmu.invlpg(vaddr + page * PAGE_SIZE)

    def flush_tlb(self, directory: PageDirectory, vaddr: int, page_count: int = 1) -> None:
        """Processor::flush_tlb: decide by the *address*, not by the directory.

        Once SMP is enabled, a kernel address (mapped in every address space) or a user address
        of a process with threads on other CPUs is broadcast to every CPU (a TLB-shootdown IPI);
        otherwise only this CPU is flushed. Before `smp_enable()` nothing is broadcast, so an
        AP keeps whatever it cached. The simulation has no processes: "threads on other CPUs"
        is read as "another CPU has this directory in CR3"."""
        is_user = self.layout.is_user_address(vaddr)
        current = self.current_cpu()
        others = [cpu for cpu in self.machine.cpus if cpu is not current and cpu.online]
        if self.smp_enabled and (not is_user or any(cpu.mmu.cr3 == directory.cr3()
                                                    for cpu in others)):
            for cpu in others:  # the IPI handler: a user flush for another CR3 is skipped
                if not is_user or cpu.mmu.cr3 == directory.cr3():
                    for page in range(page_count):
                        cpu.mmu.invlpg(vaddr + page * PAGE_SIZE)
        self.flush_tlb_local(vaddr, page_count)

    # The kernel heap -------------------------------------------------------------------------------

    def kmalloc(self, size: int):
        """ErrorOr[VirtualAddress]: see refimpl.kernel.kmalloc."""
        return self.kmalloc_heap.kmalloc(size)

    def kfree(self, address: int) -> None:
        self.kmalloc_heap.kfree(address)

    # The kernel's regions (e8f543c3908, e852a69a069, f0f97e1db02, 0a83c035469) ----------------------
    #
    # Kernel regions live in one RegionTree over the kernel's virtual range, which is the only
    # record of what is free there. Each is owned by whoever allocated it (a thread's kernel stack,
    # a buffer) and leaves the tree when destroyed. `s_mm_lock` is modelled only where these
    # functions take it.

    def _reserve_kernel_ranges(self) -> None:
        """Unbacked regions, never freed, so that nothing else is placed where the kernel image
        (the whole 2 MiB page directory entry around it, as SerenityOS) and the kmalloc range
        are. SerenityOS places its kmalloc range anywhere (64 MiB, 1 MiB aligned); this
        simulation's heap grows at a fixed address (`KernelLayout.kmalloc_range_base`), so it is
        reserved there. The PhysicalPageEntry array is Python here and needs no range."""
        layout = self.layout
        start = layout.kernel_load_base & ~(2 * MiB - 1)
        end = (layout.image_vaddr(layout.kernel_image_pages) & ~(2 * MiB - 1)) + 2 * MiB
        for name, base, size in (("kernel image", start, end - start),
                                 ("kmalloc", layout.kmalloc_range_base, layout.kmalloc_range_size)):
            MUST(self.region_tree.place_specifically(Region.create_unbacked(self, name),
                                                     VirtualRange(VirtualAddress(base), size)))

    @fallible
    def allocate_kernel_region(self, size: int, name: str,
                               access: Access = Access.READ | Access.WRITE,
                               strategy: AllocationStrategy = AllocationStrategy.NONE,
                               cacheable: bool = True):
        """ErrorOr[Region]: `size` bytes of new anonymous kernel memory, placed and mapped."""
        if size <= 0 or size % PAGE_SIZE:
            return Error.from_errno(Errno.EINVAL, f"kernel region size {size:#x} is not a "
                                                  f"positive multiple of the page size")
        vmobject = TRY(AnonymousVMObject.try_create_with_size(self, size, strategy))
        result = self.allocate_kernel_region_with_vmobject(vmobject, size, name, access, cacheable)
        vmobject.unref()  # the region holds its own reference, if it was made
        return result

    @fallible
    def allocate_kernel_region_with_vmobject(self, vmobject: AnonymousVMObject, size: int,
                                             name: str, access: Access = Access.READ |
                                             Access.WRITE, cacheable: bool = True):
        """ErrorOr[Region] mapping the first `size` bytes of `vmobject`: an unplaced Region,
        then one place_anywhere, then map (e852a69a069). If mapping fails the region is
        destroyed, and destroying a kernel region takes it out of the tree, as ~Region did.
        (A user region had no such path: AddressSpace left it in its tree until 4edae21bd13.)"""
        if size <= 0 or size % PAGE_SIZE or size > vmobject.size():
            return Error.from_errno(Errno.EINVAL, f"kernel region size {size:#x} does not fit "
                                                  f"the VMObject ({vmobject.size():#x} bytes)")
        region = TRY(Region.try_create_unplaced(self, vmobject, 0, name, access, cacheable))
        placed = self.region_tree.place_anywhere(region, size)
        if placed.is_error():
            region.destroy()
            return placed
        mapped = region.map(self.kernel_page_directory())
        if mapped.is_error():
            region.destroy()
            return mapped
        return region

    def kernel_region_from_vaddr(self, vaddr: int) -> Region | None:
        """The kernel region holding `vaddr`, or None; under s_mm_lock and, since f0f97e1db02,
        the tree's lock, so that no insert on another CPU is half done while it looks."""
        if self.layout.is_user_address(vaddr):
            return None
        with self.mm_lock, self.region_tree.get_lock():
            return self.region_tree.find_region_containing(vaddr)

    def unregister_kernel_region(self, region: Region) -> None:
        """Take a kernel region out of the tree (from Region.destroy, after its unmap). A region
        that was never placed in it (the AP boot identity mapping) is simply not found."""
        VERIFY(region.is_kernel(), f"{region!r} is not a kernel region")
        with self.mm_lock:
            self.region_tree.remove(region)  # under the tree's lock too (f0f97e1db02)

    # ... and the same for simulated threads (refimpl.kernel.scheduler): they yield where another
    # CPU may run, and wait for a held lock instead of spinning.

    def allocate_kernel_region_steps(self, size: int, name: str,
                                     access: Access = Access.READ | Access.WRITE,
                                     strategy: AllocationStrategy = AllocationStrategy.NONE):
        """allocate_kernel_region in a simulated thread: `region = yield from ...` (a KernelPanic
        if it fails: the tests that use it have memory to spare)."""
        vmobject = MUST(AnonymousVMObject.try_create_with_size(self, size, strategy))
        region = MUST(Region.try_create_unplaced(self, vmobject, 0, name, access))
        vmobject.unref()
        error = yield from self.region_tree.place_anywhere_steps(region, size)
        VERIFY(error is None, f"placing {name!r}: {error}")
        yield f"{name} placed at {region.range}"
        MUST(region.map(self.kernel_page_directory()))
        yield f"{name} mapped"
        return region

    def kernel_region_from_vaddr_steps(self, vaddr: int):
        """kernel_region_from_vaddr in a simulated thread: `region = yield from ...`."""
        tree_lock = self.region_tree.get_lock()
        yield from self.mm_lock.acquire()
        try:
            yield from tree_lock.acquire()
            try:
                return (yield from self.region_tree.find_region_containing_steps(vaddr))
            finally:
                tree_lock.unlock()
        finally:
            self.mm_lock.unlock()

    def unregister_kernel_region_steps(self, region: Region):
        """unregister_kernel_region in a simulated thread."""
        tree_lock = self.region_tree.get_lock()
        yield from self.mm_lock.acquire()
        try:
            yield from tree_lock.acquire()
            try:
                yield from self.region_tree.remove_steps(region)
            finally:
                tree_lock.unlock()
        finally:
            self.mm_lock.unlock()


def kernel_virtual_range(layout: KernelLayout) -> VirtualRange:
    """What the kernel's RegionTree covers: its GiB from 2 MiB in (the first 2 MiB map the
    prekernel) up to KERNEL_PD_END (MemoryManager.cpp's kernel_virtual_range, e8f543c3908)."""
    base = layout.kernel_mapping_base + 2 * MiB
    return VirtualRange(VirtualAddress(base), layout.kernel_pd_end - base)
