"""The checks of lesson 04: bringing up other CPUs."""

from __future__ import annotations

from refimpl.ak import MUST, Errno
from refimpl.grading.checks.common import (call, expect_error, expect_value, fresh_kernel, passed,
                                           snapshot_values)
from refimpl.grading.exercises import CheckFailed, exercise
from refimpl.grading.transcript import record
from refimpl.hw import Access, PageFault, PTEFlags
from refimpl.kernel import (AP_BOOT_TRAMPOLINE, AllocationKind, MemoryManager, PagePurpose,
                            Region, VirtualRange, create_identity_mapped_region, start_ap)
from refimpl.kernel.ap_boot import copy_trampoline
from refimpl.kernel.address import PAGE_SIZE
from refimpl.kernel.invariants import (KernelSnapshot, page_table_refcount_violations,
                                       physical_page_violations)

@exercise("04-identity-map", "Identity-map the AP trampoline", 3, "identity_map",
          forbids=("refimpl.kernel.ap_boot.create_identity_mapped_region",
                   "refimpl.kernel.create_identity_mapped_region"))
def check_identity_map(identity_map, hidden=False):
    for paddr in (AP_BOOT_TRAMPOLINE, 0x9000) if not hidden else (0x8000, 0xA000, 0x7000):
        mm = fresh_kernel()
        case = f"identity_map(mm, {paddr:#x}, 4096)"
        region = expect_value(call(identity_map, mm, paddr, PAGE_SIZE, case=case), case)
        mmu = mm.machine.bsp.mmu
        try:
            got = mmu.translate(paddr + 0x40, Access.EXECUTE)
        except PageFault as fault:
            raise CheckFailed(f"{case}: fetching {paddr + 0x40:#x} faults: {fault}") from None
        if got != paddr + 0x40:
            raise CheckFailed(f"{case}: {paddr + 0x40:#x} translates to {got:#x}, not itself")
        try:
            mmu.translate(paddr, Access.USER)
            raise CheckFailed(f"{case}: user mode can read the trampoline; it must be "
                              f"supervisor-only")
        except PageFault:
            pass
        if not isinstance(region, Region) or region.range != VirtualRange(paddr, PAGE_SIZE):
            raise CheckFailed(f"{case}: return the Region covering [{paddr:#x}, +0x1000), got "
                              f"{region!r}")
        record(case, got, type(region).__name__, [region.range.base, region.range.size],
               mm.free_physical_pages(), page_table_refcount_violations(mm))
    return passed(2 if not hidden else 3, "trampoline pages")


def _warm_up_aps(cpu_count: int) -> tuple[MemoryManager, Region]:
    """APs started through the trampoline, the identity mapping still in place. Each AP's
    trampoline reloaded CR3, so only the BSP (which wrote the trampoline) caches 0x8000."""
    mm = fresh_kernel(cpus=cpu_count)
    region = MUST(create_identity_mapped_region(mm, AP_BOOT_TRAMPOLINE, PAGE_SIZE))
    copy_trampoline(mm)
    for cpu in mm.machine.aps:
        start_ap(mm, cpu)
    return mm, region


@exercise("04-unmap-everywhere", "Take the identity mapping down", 2,
          "remove_identity_mapping")
def check_unmap_everywhere(remove_identity_mapping, hidden=False):
    for cpu_count in (2, 4) if not hidden else (3, 5, 8):
        mm, region = _warm_up_aps(cpu_count)
        free = mm.free_physical_pages()
        case = f"remove_identity_mapping on {cpu_count} CPUs"
        call(remove_identity_mapping, mm, region, case=case)
        for cpu in mm.machine.cpus:
            try:
                cpu.mmu.translate(AP_BOOT_TRAMPOLINE, Access.EXECUTE)
            except PageFault:
                continue
            stale = AP_BOOT_TRAMPOLINE >> 12 in cpu.mmu.tlb
            raise CheckFailed(f"{case}: CPU {cpu.id} still translates 0x8000"
                              + (" through a stale TLB entry: flush this CPU's TLB after "
                                 "clearing the PTE" if stale else ""))
        if mm.free_physical_pages() != free + 1:
            raise CheckFailed(f"{case}: the page table for 0x8000 was not given back (free "
                              f"pages {mm.free_physical_pages()}, expected {free + 1})")
        problems = page_table_refcount_violations(mm) + physical_page_violations(mm)
        if problems:
            raise CheckFailed(f"{case}: {problems[0]}")
        record(case, mm.free_physical_pages(), _translations_after_remapping(mm))
    return passed(2 if not hidden else 3, "machines")


def _translations_after_remapping(mm: MemoryManager) -> list:
    """Map 0x8000 again, to a fresh page, and note where each CPU's reads of it go. A CPU
    whose TLB was flushed walks the new tables to the fresh page; a stale entry would still
    lead to the trampoline. Which page is fresh depends on what the removal gave back, so
    this is evidence of the flush that only a real removal produces (not "no stale entry", a
    False anyone could write)."""
    page = MUST(mm.allocate_physical_page(purpose=PagePurpose.USER))
    pte = MUST(mm.ensure_pte(mm.kernel_page_directory(), AP_BOOT_TRAMPOLINE))
    pte.set_raw(mm.format.encode(page.paddr() // PAGE_SIZE, PTEFlags.PRESENT))
    translations = []
    for cpu in mm.machine.cpus:
        try:
            translations.append(cpu.mmu.translate(AP_BOOT_TRAMPOLINE, Access.READ))
        except PageFault:
            translations.append(None)
    return translations


@exercise("04-boot-aps", "Boot the APs and clean up", 3, "boot_all_aps")
def check_boot_aps(boot_all_aps, hidden=False):
    for cpu_count in (2, 4) if not hidden else (3, 6):
        mm = fresh_kernel(cpus=cpu_count)
        before = KernelSnapshot.take(mm)
        case = f"boot_all_aps on {cpu_count} CPUs"
        expect_value(call(boot_all_aps, mm, case=case), case)
        offline = [cpu.id for cpu in mm.machine.cpus if not cpu.online]
        if offline:
            raise CheckFailed(f"{case}: CPU(s) {offline} did not come online")
        for cpu in mm.machine.cpus:
            try:
                cpu.mmu.translate(AP_BOOT_TRAMPOLINE, Access.EXECUTE)
                raise CheckFailed(f"{case}: 0x8000 still translates on CPU {cpu.id}")
            except PageFault:
                pass
        differences = KernelSnapshot.take(mm).differences(before)
        if differences:
            raise CheckFailed(f"{case}: booting left {', '.join(differences)} changed")
        record(case, [cpu.online for cpu in mm.machine.cpus],
               snapshot_values(KernelSnapshot.take(mm)))
    mm = fresh_kernel(cpus=2)
    mm.allocations.fail_nth(AllocationKind.KMALLOC, 1)
    result = call(boot_all_aps, mm, case="boot_all_aps with kmalloc failing")
    expect_error(result, Errno.ENOMEM, "boot_all_aps with kmalloc failing")
    if any(cpu.online for cpu in mm.machine.aps):
        raise CheckFailed("boot_all_aps with kmalloc failing: an AP came online anyway")
    record("boot_all_aps with kmalloc failing", result.error().code(),
           [cpu.online for cpu in mm.machine.cpus], snapshot_values(KernelSnapshot.take(mm)))
    return passed(3, "boots, one of them out of memory")
