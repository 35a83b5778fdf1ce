"""Bringing up the application processors (Kernel/Interrupts/APIC.cpp, boot_aps/do_boot_aps).

An AP starts in real mode at the physical address the STARTUP IPI names: vector 0x08, i.e.
0x8000. The kernel copies its trampoline (`apic_ap_start`) there, together with the values the AP
needs: the kernel's CR3 and where to continue. The AP reads them, enables paging with that CR3,
and is *still executing at 0x8000* when paging comes on, so for that moment virtual 0x8000 must
map physical 0x8000: an identity mapping. Then it far-jumps to the kernel's high-half mapping
of the same page and, first thing, reloads CR3 ("flush the TLB" in
Kernel/Arch/x86/x86_64/Boot/ap_setup.S), which drops its 0x8000 translation, and continues into
the kernel (`init_ap`). The simulation has no high-half alias of low memory: after the reload
its AP goes straight to `init_ap`.

This is the only identity mapping the kernel needs, so since cdab5b20916 the AP boot code makes
it itself: a region over the physical page at 0x8000, given the range [0x8000, +4 KiB) directly
(no allocator owns low memory), mapped in the kernel page directory, and unmapped once all APs
are up. That unmap flushes the BSP's TLB only: SMP (and with it every TLB-shootdown IPI) is
enabled after the APs are booted, on purpose (APIC::boot_aps). No AP needs the IPI, because its
trampoline already reloaded CR3. Lesson 04 contrasts this with the generic identity-mapping API
and per-directory allocator it replaced (refimpl.history.identity_mapping).
"""

from __future__ import annotations

from refimpl.ak import TRY, KernelPanic, fallible
from refimpl.hw import CPU, Access, PageFault
from refimpl.kernel.address import PAGE_SIZE, VirtualAddress
from refimpl.kernel.anonymous_vmobject import AnonymousVMObject
from refimpl.kernel.memory_manager import MemoryManager
from refimpl.kernel.prekernel import APIC_AP_START, APIC_AP_START_CODE, INIT_AP
from refimpl.kernel.region import Access as RegionAccess
from refimpl.kernel.region import Region
from refimpl.kernel.virtual_range import VirtualRange

AP_BOOT_TRAMPOLINE = 0x8000
# Where the trampoline keeps its variables, as offsets into its page.
CR3_VARIABLE = 0x100
ENTRY_VARIABLE = 0x108
AFTER_PAGING_ON = 0x40
"""Offset of the trampoline instructions that run right after paging is turned on."""


@fallible
def create_identity_mapped_region(mm: MemoryManager, paddr: int, size: int):
    """ErrorOr[Region] mapping `[paddr, paddr + size)` at the same virtual addresses in the
    kernel page directory. It is in no RegionTree: nothing else may ever be placed there."""
    vmobject = TRY(AnonymousVMObject.try_create_for_physical_range(mm, paddr, size))
    region = Region.try_create_unplaced(mm, vmobject, 0, "AP boot identity mapping",
                                        RegionAccess.READ | RegionAccess.WRITE |
                                        RegionAccess.EXECUTE)
    vmobject.unref()
    region = TRY(region)
    region.range = VirtualRange(VirtualAddress(paddr), size)
    mapped = region.map(mm.kernel_page_directory())
    if mapped.is_error():
        region.destroy()
        return mapped
    return region


def start_ap(mm: MemoryManager, cpu: CPU, trampoline: int = AP_BOOT_TRAMPOLINE) -> None:
    """What one AP does after INIT and STARTUP: run the trampoline at `trampoline`, turn paging
    on, leave the identity page, reload CR3 and jump into the kernel. Raises PageFault if a
    fetch does not translate."""
    machine = mm.machine
    previous, machine.current_cpu = machine.current_cpu, cpu
    try:
        cpu.paging_enabled = False  # INIT resets the AP: real mode, physical addresses
        cpu.load(trampoline, len(APIC_AP_START_CODE), Access.EXECUTE)
        cr3 = int.from_bytes(cpu.load(trampoline + CR3_VARIABLE, 8), "little")
        entry = int.from_bytes(cpu.load(trampoline + ENTRY_VARIABLE, 8), "little")
        cpu.enable_paging(cr3)
        cpu.load(trampoline + AFTER_PAGING_ON, 8, Access.EXECUTE)  # still running at 0x8000
        cpu.mmu.load_cr3(cpu.mmu.cr3)  # after the far jump: "flush the TLB" (0x8000 goes)
        cpu.load(entry, 8, Access.EXECUTE)  # init_ap
        cpu.online = True
    finally:
        machine.current_cpu = previous


def copy_trampoline(mm: MemoryManager) -> None:
    """Copy `apic_ap_start` from the kernel text to 0x8000, with the kernel's CR3 and the
    address of `init_ap` in its variables. 0x8000 must be mapped (identity) already."""
    layout, bsp = mm.layout, mm.current_cpu()
    code = bsp.load(layout.kernel_text + APIC_AP_START, len(APIC_AP_START_CODE))
    bsp.store(AP_BOOT_TRAMPOLINE, code)
    bsp.store(AP_BOOT_TRAMPOLINE + CR3_VARIABLE,
              mm.kernel_page_directory().cr3().to_bytes(8, "little"))
    bsp.store(AP_BOOT_TRAMPOLINE + ENTRY_VARIABLE,
              (layout.kernel_text + INIT_AP).to_bytes(8, "little"))


def smp_enable(mm: MemoryManager) -> None:
    """Processor::smp_enable: from now on `flush_tlb` may send TLB-shootdown IPIs."""
    mm.smp_enabled = True


@fallible
def boot_aps(mm: MemoryManager):
    """APIC::boot_aps: map the trampoline page, fill it in, start each AP, unmap the page (a
    flush of the BSP only: SMP is not enabled yet), then enable SMP."""
    aps = [cpu for cpu in mm.machine.aps if not cpu.online]
    if not aps:
        return None
    identity = TRY(create_identity_mapped_region(mm, AP_BOOT_TRAMPOLINE, PAGE_SIZE))
    copy_trampoline(mm)
    try:
        for cpu in aps:
            start_ap(mm, cpu)
    except PageFault as fault:
        identity.destroy()
        raise KernelPanic(f"AP {cpu.id} did not come online: {fault}") from None
    identity.destroy()  # each AP's trampoline reloaded CR3: only the BSP can still hold 0x8000
    smp_enable(mm)
    return None
