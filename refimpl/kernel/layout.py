"""Where things live: the fixed virtual and physical layout of the kernel (reference §1.2, §1.5).

SerenityOS puts the whole kernel in one GiB, `kernel_mapping_base`, so it needs exactly one page
directory (PD), which every process shares. The last 2 MiB of that GiB are mapped by a page table
that is a static array in the kernel image (`boot_pd_kernel_pt1023`): the kernel can edit those
PTEs at an ordinary virtual address, and uses a few of them as *quickmap* windows through which it
reaches every other page directory, page table or page.

Numbers are SerenityOS's of January 2022 for x86_64; the kernel heap's expansion range and the
size of the simulated kernel image are this simulation's choices, named as such.
"""

from __future__ import annotations

from dataclasses import dataclass

from refimpl.hw import I686_PAE, X86_64, MiB, PagingFormat
from refimpl.kernel.address import PAGE_SIZE, PhysicalAddress, VirtualAddress

_KERNEL_MAPPING_BASES = {X86_64.name: 0x20_0000_0000, I686_PAE.name: 0xC000_0000}

# Pages of the simulated kernel image, in order, at physical KERNEL_LOAD_PADDR; the initial
# kmalloc pool follows them.
(BOOT_PML4T, BOOT_PDPT, BOOT_PD0, BOOT_PD_KERNEL, BOOT_PD_KERNEL_PT0, BOOT_PD_KERNEL_PT1023,
 KERNEL_TEXT) = range(7)
IMAGE_STATIC_PAGES = 7


@dataclass(frozen=True)
class KernelLayout:
    """The kernel's fixed addresses for one paging format."""

    format: PagingFormat
    kernel_mapping_base: int
    initial_kmalloc_pages: int

    @staticmethod
    def for_format(paging_format: PagingFormat, initial_kmalloc_pages: int = 4) -> KernelLayout:
        base = _KERNEL_MAPPING_BASES.get(paging_format.name)
        if base is None:
            raise ValueError(
                f"the simulated kernel runs on {', '.join(_KERNEL_MAPPING_BASES)}, not on "
                f"{paging_format.name}: it needs 4 KiB pages and a page directory per GiB "
                f"(the hardware itself works with any PagingFormat)")
        if initial_kmalloc_pages < 1:
            raise ValueError("the kernel heap starts with at least one page")
        return KernelLayout(paging_format, base, initial_kmalloc_pages)

    # Splitting a virtual address the way MemoryManager does (PML4 index is always 0). ----------

    @staticmethod
    def pdpt_index(vaddr: int) -> int:
        return (vaddr >> 30) & 0x1FF

    @staticmethod
    def pd_index(vaddr: int) -> int:
        return (vaddr >> 21) & 0x1FF

    @staticmethod
    def pt_index(vaddr: int) -> int:
        return (vaddr >> 12) & 0x1FF

    @property
    def kernel_pdpt_index(self) -> int:
        return self.pdpt_index(self.kernel_mapping_base)

    # Virtual layout ------------------------------------------------------------------------------

    @property
    def user_range_base(self) -> VirtualAddress:
        return VirtualAddress(0x10000)

    @property
    def user_range_ceiling(self) -> VirtualAddress:
        return VirtualAddress(self.kernel_mapping_base - 32 * MiB)

    def is_user_address(self, vaddr: int) -> bool:
        return vaddr < self.user_range_ceiling

    @property
    def kernel_load_base(self) -> VirtualAddress:
        """Where the kernel image is mapped: 2 MiB into the kernel's GiB."""
        return VirtualAddress(self.kernel_mapping_base + 2 * MiB)

    @property
    def kernel_pd_end(self) -> VirtualAddress:
        return VirtualAddress(self.kernel_mapping_base + 0x3100_0000)

    @property
    def kernel_pt1024_base(self) -> VirtualAddress:
        """The last 2 MiB of the kernel GiB, mapped by the static page table pt1023."""
        return VirtualAddress(self.kernel_mapping_base + 0x3FE0_0000)

    @property
    def kernel_quickmap_pt(self) -> VirtualAddress:
        return VirtualAddress(self.kernel_pt1024_base + 0x6000)

    @property
    def kernel_quickmap_pd(self) -> VirtualAddress:
        return VirtualAddress(self.kernel_pt1024_base + 0x7000)

    def kernel_quickmap_per_cpu(self, cpu_id: int) -> VirtualAddress:
        return VirtualAddress(self.kernel_pt1024_base + 0x8000 + cpu_id * PAGE_SIZE)

    @property
    def kmalloc_range_base(self) -> VirtualAddress:
        """Start of the range the kernel heap grows into (this simulation's choice: 32 MiB
        into the kernel GiB; SerenityOS reserves its 64 MiB range from the kernel allocator)."""
        return VirtualAddress(self.kernel_mapping_base + 32 * MiB)

    @property
    def kmalloc_range_size(self) -> int:
        return 64 * MiB

    # The kernel image ----------------------------------------------------------------------------

    @property
    def kernel_load_paddr(self) -> PhysicalAddress:
        return PhysicalAddress(2 * MiB)

    @property
    def kernel_image_pages(self) -> int:
        return IMAGE_STATIC_PAGES + self.initial_kmalloc_pages

    def image_paddr(self, page: int) -> PhysicalAddress:
        return PhysicalAddress(self.kernel_load_paddr + page * PAGE_SIZE)

    def image_vaddr(self, page: int) -> VirtualAddress:
        return VirtualAddress(self.kernel_load_base + page * PAGE_SIZE)

    @property
    def kernel_text(self) -> VirtualAddress:
        """The page of kernel code the simulation needs: the AP trampoline and init_ap."""
        return self.image_vaddr(KERNEL_TEXT)

    @property
    def initial_kmalloc_base(self) -> VirtualAddress:
        return self.image_vaddr(IMAGE_STATIC_PAGES)

    @property
    def first_usable_paddr(self) -> PhysicalAddress:
        """Physical memory below this is reserved: low 1 MiB, prekernel, kernel image."""
        return self.image_paddr(self.kernel_image_pages)
