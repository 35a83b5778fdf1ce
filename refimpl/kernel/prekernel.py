"""The prekernel: builds the boot page tables and turns paging on for the bootstrap CPU.

It runs before paging is enabled, so it is the one piece of software that writes page tables
straight into physical memory. Everything after it (the MemoryManager) edits tables only through
virtual addresses. The tables it builds are pages of the kernel image (see `layout.py`):

- the top levels: PML4 entry 0 -> PDPT (x86_64; on PAE, CR3 points at the PDPT itself), the
  PDPT entry of the kernel's GiB -> the kernel PD, and PDPT entry 0 -> `boot_pd0`, an empty PD
  for the first GiB (SerenityOS's prekernel identity-maps low memory there; this one does not);
- `boot_pd_kernel_pt0`: maps the kernel image at `kernel_load_base`;
- `boot_pd_kernel_pt1023`: the page table of the last 2 MiB, empty but for itself being part of
  the image, so the kernel can edit the quickmap PTEs it holds.

No identity mapping of low memory is made: the only one the kernel ever needs is the AP boot
trampoline's, which the AP boot code creates and removes itself (lesson 04).
"""

from __future__ import annotations

from dataclasses import dataclass

from refimpl.hw import Machine, PTEFlags
from refimpl.kernel.address import PAGE_SIZE, PhysicalAddress
from refimpl.kernel.layout import (BOOT_PD0, BOOT_PD_KERNEL, BOOT_PD_KERNEL_PT0,
                                   BOOT_PD_KERNEL_PT1023, BOOT_PDPT, BOOT_PML4T, KERNEL_TEXT,
                                   KernelLayout)

# The kernel text the simulation executes, by offset in the KERNEL_TEXT page. The bytes only
# stand for code: CPUs "execute" them by fetching them through the MMU.
APIC_AP_START = 0x000
"""The AP boot trampoline, copied to physical 0x8000 by the AP boot code."""
APIC_AP_START_CODE = b"\xfa\xfc" + b"apic_ap_start: real mode -> load cr3 -> paging -> far jmp"
INIT_AP = 0x800
"""Where an AP continues in the kernel once paging is on."""
INIT_AP_CODE = b"\xf3\x90" + b"init_ap: this AP is online"

P, RW, US, G = (PTEFlags.PRESENT, PTEFlags.READ_WRITE, PTEFlags.USER_SUPERVISOR,
                PTEFlags.GLOBAL)


@dataclass(frozen=True)
class BootInfo:
    """What the prekernel hands to the kernel: where its boot tables are."""

    cr3: PhysicalAddress
    pml4t: PhysicalAddress | None
    pdpt: PhysicalAddress
    pd0: PhysicalAddress
    pd_kernel: PhysicalAddress
    pd_kernel_pt0: PhysicalAddress
    pd_kernel_pt1023: PhysicalAddress

    @property
    def boot_page_tables(self) -> tuple[PhysicalAddress, PhysicalAddress]:
        return self.pd_kernel_pt0, self.pd_kernel_pt1023


def build_boot_page_tables(machine: Machine, layout: KernelLayout) -> BootInfo:
    memory, fmt = machine.memory, machine.format
    paddr = layout.image_paddr

    def set_entry(table: int, index: int, target: int, flags: PTEFlags) -> None:
        memory.write_entry(table + index * fmt.entry_size, fmt.encode(target // PAGE_SIZE, flags))

    pdpt_flags = P | RW | US if fmt.levels > 3 else P  # PAE PDPT entries have no RW/US bits
    if fmt.levels == 4:
        set_entry(paddr(BOOT_PML4T), 0, paddr(BOOT_PDPT), P | RW | US)
        cr3, pml4t = paddr(BOOT_PML4T), paddr(BOOT_PML4T)
    else:
        cr3, pml4t = paddr(BOOT_PDPT), None
    set_entry(paddr(BOOT_PDPT), 0, paddr(BOOT_PD0), pdpt_flags)
    set_entry(paddr(BOOT_PDPT), layout.kernel_pdpt_index, paddr(BOOT_PD_KERNEL), pdpt_flags)
    set_entry(paddr(BOOT_PD_KERNEL), layout.pd_index(layout.kernel_load_base),
              paddr(BOOT_PD_KERNEL_PT0), P | RW)
    set_entry(paddr(BOOT_PD_KERNEL), layout.pd_index(layout.kernel_pt1024_base),
              paddr(BOOT_PD_KERNEL_PT1023), P | RW)
    for page in range(layout.kernel_image_pages):
        set_entry(paddr(BOOT_PD_KERNEL_PT0), layout.pt_index(layout.image_vaddr(page)),
                  paddr(page), P | RW | G)
    text = paddr(KERNEL_TEXT)
    memory.write(text + APIC_AP_START, APIC_AP_START_CODE)
    memory.write(text + INIT_AP, INIT_AP_CODE)
    machine.bsp.enable_paging(cr3)
    return BootInfo(cr3, pml4t, paddr(BOOT_PDPT), paddr(BOOT_PD0), paddr(BOOT_PD_KERNEL),
                    paddr(BOOT_PD_KERNEL_PT0), paddr(BOOT_PD_KERNEL_PT1023))


class PageTableBuilder:
    """Builds page tables for any PagingFormat straight into RAM, as a boot loader does before
    paging is on. Tables come from `free_frames` in order; `root` is the value for CR3.

    Used for hand-made machines (lesson 00, exercises), where no kernel runs.
    """

    def __init__(self, memory, free_frames) -> None:
        self.memory = memory
        self.format = memory.format
        self._free_frames = iter(free_frames)
        self.root = self._new_table()

    def _new_table(self) -> int:
        try:
            frame = next(self._free_frames)
        except StopIteration:
            raise ValueError("PageTableBuilder ran out of frames for page tables") from None
        self.memory.write(frame * self.format.page_size, bytes(self.format.page_size))
        return frame * self.format.page_size

    def map(self, vaddr: int, frame: int, flags: PTEFlags,
            table_flags: PTEFlags = PTEFlags(0)) -> None:
        """Map the page holding `vaddr` to `frame`; missing tables are created with
        PRESENT and whichever of RW and US the format has, plus `table_flags` (PAE's PDPTEs
        get PRESENT only: their other bits are reserved)."""
        fmt = self.format
        problem = fmt.address_problem(vaddr)
        if problem:
            raise ValueError(problem)
        if not table_flags:
            table_flags = PTEFlags.PRESENT
            for flag in (PTEFlags.READ_WRITE, PTEFlags.USER_SUPERVISOR):
                if fmt.has(flag):
                    table_flags |= flag
        table = self.root
        for level in range(fmt.levels - 1):
            address = table + fmt.index(vaddr, level) * fmt.entry_size
            entry = self.memory.read_entry(address)
            if not entry & fmt.present_mask:
                upper = table_flags if level or fmt.top_level_permissions else PTEFlags.PRESENT
                entry = fmt.encode(self._new_table() // fmt.page_size, upper)
                self.memory.write_entry(address, entry)
            table = fmt.decode_frame(entry) * fmt.page_size
        last = table + fmt.index(vaddr, fmt.levels - 1) * fmt.entry_size
        self.memory.write_entry(last, fmt.encode(frame, flags))
