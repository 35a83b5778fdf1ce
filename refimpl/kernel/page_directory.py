"""PageDirectory: the top of one address space's page tables (Kernel/Memory/PageDirectory).

On x86_64 CR3 points at the PML4 page, whose entry 0 points at the PDPT (`directory_table`),
whose entries point at one page directory (PD) per GiB (`directory_pages`). A user directory gets
its own PD for every GiB below the kernel's, allocated eagerly, and *shares* the kernel's PD page,
so kernel mappings appear in every address space. Page tables are created lazily by ensure_pte().

The directory owns one reference on each page it holds (PML4, PDPT, PDs, the shared kernel PD);
page tables are owned by their PDEs, not by the directory. Teardown therefore requires that every
page table is already gone, which is true once every region has been unmapped; `destroy()`
checks it instead of leaking silently.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from refimpl.ak import TRY, VERIFY, KernelPanic, fallible
from refimpl.hw import PTEFlags
from refimpl.kernel.address import PAGE_SIZE, PhysicalAddress, VirtualAddress
from refimpl.kernel.physical_page import PagePurpose, PhysicalPage

if TYPE_CHECKING:
    from refimpl.kernel.memory_manager import MemoryManager
    from refimpl.kernel.prekernel import BootInfo


class PageDirectory:
    OBJECT_SIZE = 4160
    """Bytes the C++ object takes on the kernel heap (mostly `RefPtr m_directory_pages[512]`)."""

    def __init__(self, mm: MemoryManager, object_address: VirtualAddress, is_kernel: bool) -> None:
        self._mm = mm
        self._object_address = object_address
        self._is_kernel = is_kernel
        self.pml4t: PhysicalPage | None = None
        self.directory_table: PhysicalPage | None = None
        self.directory_pages: dict[int, PhysicalPage] = {}
        self._destroyed = False

    # Construction --------------------------------------------------------------------------------

    @classmethod
    def must_create_kernel_page_directory(cls, mm: MemoryManager, boot: BootInfo) -> PageDirectory:
        """Wrap the prekernel's tables; they live in the image and are never freed."""
        directory = cls(mm, VirtualAddress(0), is_kernel=True)
        if boot.pml4t is not None:
            directory.pml4t = mm.get_physical_page_entry(boot.pml4t)
        directory.directory_table = mm.get_physical_page_entry(boot.pdpt)
        directory.directory_pages[0] = mm.get_physical_page_entry(boot.pd0)
        directory.directory_pages[mm.layout.kernel_pdpt_index] = (
            mm.get_physical_page_entry(boot.pd_kernel))
        mm.page_directories_by_cr3[directory.cr3()] = directory
        return directory

    @classmethod
    @fallible
    def try_create_for_userspace(cls, mm: MemoryManager):
        """A new user address space's directory: ErrorOr[PageDirectory]. On failure every page
        and the object itself are released again."""
        if not hasattr(mm, "kernel_page_directory"):
            raise TypeError(f"mm must be a MemoryManager, not {type(mm).__name__}: {mm!r}")
        directory = cls(mm, TRY(mm.kmalloc(cls.OBJECT_SIZE)), is_kernel=False)
        result = directory._allocate_user_tables()
        if result.is_error():
            directory._drop_references()
            return result
        directory._write_upper_entries()
        mm.page_directories_by_cr3[directory.cr3()] = directory
        return directory

    @fallible
    def _allocate_user_tables(self):
        mm = self._mm
        if mm.format.levels == 4:
            self.pml4t = TRY(mm.allocate_physical_page(purpose=PagePurpose.PAGE_DIRECTORY))
        self.directory_table = TRY(mm.allocate_physical_page(purpose=PagePurpose.PAGE_DIRECTORY))
        for pdpt_index in range(mm.layout.kernel_pdpt_index):
            self.directory_pages[pdpt_index] = TRY(
                mm.allocate_physical_page(purpose=PagePurpose.PAGE_DIRECTORY))
        kernel_index = mm.layout.kernel_pdpt_index
        kernel_pd = mm.kernel_page_directory().directory_pages[kernel_index]
        kernel_pd.ref()
        self.directory_pages[kernel_index] = kernel_pd
        return None

    def _write_upper_entries(self) -> None:
        """Point the PDPT at every PD, and PML4 entry 0 at the PDPT, through quickmap_page."""
        mm, fmt = self._mm, self._mm.format
        cpu = mm.current_cpu()
        # PAE's PDPT entries have only the present bit; x86_64's carry RW and US too.
        flags = PTEFlags.PRESENT | (PTEFlags.READ_WRITE | PTEFlags.USER_SUPERVISOR
                                    if fmt.levels == 4 else PTEFlags(0))
        window = mm.quickmap_page(self.directory_table.paddr())
        for pdpt_index, page in self.directory_pages.items():
            cpu.store_entry(window + pdpt_index * fmt.entry_size,
                            fmt.encode(page.paddr() // PAGE_SIZE, flags))
        mm.unquickmap_page()
        if self.pml4t is not None:
            window = mm.quickmap_page(self.pml4t.paddr())
            cpu.store_entry(window, fmt.encode(self.directory_table.paddr() // PAGE_SIZE, flags))
            mm.unquickmap_page()

    # Accessors -----------------------------------------------------------------------------------

    def cr3(self) -> PhysicalAddress:
        VERIFY(self.directory_table is not None, "cr3() of a destroyed PageDirectory")
        top = self.pml4t if self.pml4t is not None else self.directory_table
        return top.paddr()

    def is_kernel(self) -> bool:
        return self._is_kernel

    def directory_page(self, pdpt_index: int) -> PhysicalPage | None:
        return self.directory_pages.get(pdpt_index)

    def owned_pages(self) -> list[PhysicalPage]:
        """Every page this directory holds a reference on."""
        tops = [page for page in (self.pml4t, self.directory_table) if page is not None]
        return tops + list(self.directory_pages.values())

    @staticmethod
    def find_by_cr3(mm: MemoryManager, cr3: int) -> PageDirectory | None:
        return mm.page_directories_by_cr3.get(cr3)

    @staticmethod
    def find_current(mm: MemoryManager) -> PageDirectory | None:
        return PageDirectory.find_by_cr3(mm, mm.current_cpu().mmu.cr3)

    def page_table_addresses(self) -> dict[int, PhysicalAddress]:
        """Every page table of the user part: pdpt_index * 512 + pd_index -> its address.
        An inspection (for destroy's sanity check, the checks, the figures), so it reads the PD
        pages in RAM as a debugger would, not through the quickmap window: no kernel decision
        depends on it, and a process has 128 PD pages, nearly all empty."""
        mm = self._mm
        present = mm.format.present_mask
        tables = {}
        for pdpt_index in range(mm.layout.kernel_pdpt_index):
            page = self.directory_pages.get(pdpt_index)
            if page is None:
                continue
            entries = mm.machine.memory.entries(page.paddr() // PAGE_SIZE)
            if not any(entries):  # one pass in C
                continue
            for pd_index, raw in enumerate(entries):
                if raw & present:
                    tables[pdpt_index * 512 + pd_index] = PhysicalAddress(
                        mm.format.decode_frame(raw) * PAGE_SIZE)
        return tables

    # Teardown ------------------------------------------------------------------------------------

    def destroy(self) -> None:
        """Give back every page and the object. The address space must be unmapped already."""
        VERIFY(not self._is_kernel, "the kernel page directory is never destroyed")
        VERIFY(not self._destroyed, f"{self!r} destroyed twice")
        running = [cpu.id for cpu in self._mm.machine.cpus if cpu.mmu.cr3 == self.cr3()]
        VERIFY(not running, f"{self!r} is still loaded in CR3 of CPU {running}")
        leftover = self.page_table_addresses()
        if leftover:
            raise KernelPanic(f"destroying {self!r} with {len(leftover)} page table(s) still "
                              f"mapped: unmap every region first")
        del self._mm.page_directories_by_cr3[self.cr3()]
        self._drop_references()

    def _drop_references(self) -> None:
        """What the C++ destructor does: drop the RefPtrs and free the object."""
        for page in self.owned_pages():
            page.unref()
        self.pml4t = self.directory_table = None
        self.directory_pages = {}
        self._mm.kfree(self._object_address)
        self._destroyed = True

    def __repr__(self) -> str:
        if self.directory_table is None:
            return "PageDirectory(destroyed)"
        kind = "kernel" if self._is_kernel else "user"
        return f"PageDirectory({kind}, cr3={self.cr3()!r})"
