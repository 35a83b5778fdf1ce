"""AP boot and the TLB-flush policy, as Processor::flush_tlb and APIC::boot_aps decide them
(cdab5b20916 and 24ecf1d0218: Kernel/Arch/x86/common/Processor.cpp, Kernel/Interrupts/APIC.cpp,
Kernel/Arch/x86/x86_64/Boot/ap_setup.S)."""

import pytest

from refimpl.ak import MUST
from refimpl.hw import X86_64, Access, Machine, MiB, PageFault
from refimpl.kernel import (AP_BOOT_TRAMPOLINE, MemoryManager, PageDirectory, boot_aps,
                            create_identity_mapped_region, start_ap)
from refimpl.kernel.ap_boot import copy_trampoline
from tests.kernel_helpers import map_user_page

PAGE = 4096


def kernel(cpus=3):
    return MemoryManager(Machine(X86_64, ram_size=16 * MiB, cpu_count=cpus))


def caches(cpu, vaddr):
    return vaddr >> 12 in cpu.mmu.tlb


def test_the_trampoline_reloads_cr3_so_an_ap_keeps_no_0x8000_entry():
    mm = kernel()
    identity = MUST(create_identity_mapped_region(mm, AP_BOOT_TRAMPOLINE, PAGE))
    copy_trampoline(mm)
    ap = mm.machine.cpus[1]
    start_ap(mm, ap)
    assert ap.online and not caches(ap, AP_BOOT_TRAMPOLINE)
    assert ap.mmu.translate(AP_BOOT_TRAMPOLINE, Access.EXECUTE) == AP_BOOT_TRAMPOLINE  # mapped
    identity.destroy()


def test_before_smp_enable_a_flush_stays_on_this_cpu():
    mm = kernel()
    identity = MUST(create_identity_mapped_region(mm, AP_BOOT_TRAMPOLINE, PAGE))
    other = mm.machine.cpus[1]
    other.online = True
    other.enable_paging(mm.kernel_page_directory().cr3())
    other.mmu.translate(AP_BOOT_TRAMPOLINE, Access.EXECUTE)  # an AP that did cache 0x8000
    assert not mm.smp_enabled
    identity.destroy()
    with pytest.raises(PageFault):
        mm.machine.bsp.mmu.translate(AP_BOOT_TRAMPOLINE, Access.EXECUTE)
    assert other.mmu.translate(AP_BOOT_TRAMPOLINE, Access.EXECUTE) == AP_BOOT_TRAMPOLINE, \
        "no IPI before smp_enable(): the other CPU's entry is stale"


def test_boot_aps_unmaps_with_smp_off_then_enables_it():
    mm = kernel(cpus=4)
    enabled_during_unmap = []
    flush_tlb = mm.flush_tlb
    mm.flush_tlb = lambda *args: (enabled_during_unmap.append(mm.smp_enabled), flush_tlb(*args))
    MUST(boot_aps(mm))
    assert enabled_during_unmap and not any(enabled_during_unmap)
    assert mm.smp_enabled and all(cpu.online for cpu in mm.machine.cpus)
    for cpu in mm.machine.cpus:
        with pytest.raises(PageFault):
            cpu.mmu.translate(AP_BOOT_TRAMPOLINE, Access.EXECUTE)


def test_flush_tlb_decides_by_address_once_smp_is_enabled():
    mm = kernel()
    MUST(boot_aps(mm))
    bsp, one, two = mm.machine.cpus
    user = MUST(PageDirectory.try_create_for_userspace(mm))
    other = MUST(PageDirectory.try_create_for_userspace(mm))
    map_user_page(mm, user, 0x400000)
    # A kernel address reaches every CPU, whichever directory the caller names.
    heap = mm.kmalloc_heap.subheaps[0].base
    for cpu in (one, two):
        cpu.mmu.translate(heap, Access.READ)
    mm.flush_tlb(user, heap)
    assert not caches(one, heap) and not caches(two, heap)
    # A user address: only the CPUs running that directory (the IPI handler skips the rest).
    map_user_page(mm, other, 0x400000)
    one.mmu.load_cr3(user.cr3())
    two.mmu.load_cr3(other.cr3())
    for cpu in (one, two):
        cpu.mmu.translate(0x400000, Access.USER)
    mm.flush_tlb(user, 0x400000)
    assert not caches(one, 0x400000) and caches(two, 0x400000)
