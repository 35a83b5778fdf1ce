"""Bad input at every public entry point of refimpl.kernel and refimpl.hw (issue 13).

Each entry point is called with its valid arguments, then once per argument with that argument
replaced by each bad value (None, a float, a string, negative, huge, misaligned). Every call
must give a clear error, either an ErrorOr error (EINVAL, EFAULT, ENOMEM, ...) or a TypeError or
ValueError whose message names the argument, and the kernel snapshot (free pages, live pages,
heap size and use, every mapping) must be what it was before the call.

Functions whose bad input is a kernel bug rather than a caller's mistake (the page-table
helpers, which SerenityOS guards with VERIFY) may panic instead, but also before changing
anything.
"""

from __future__ import annotations

import pytest

from refimpl.ak import MUST, KernelPanic
from refimpl.hw import (X86_64, GeneralProtectionFault, Machine, MiB,
                        PhysicalMemory, mapped_pages, table_frames, trace_walk)
from refimpl.kernel import (PROT_READ, AddressSpace, AnonymousVMObject,
                            MemoryManager, PageDirectory, VirtualAddress,
                            VirtualRange, VirtualRangeAllocator, create_identity_mapped_region,
                            read_user_memory, write_user_memory)
from refimpl.kernel.invariants import KernelSnapshot
from refimpl.kernel.syscalls import (MAP_ANONYMOUS, MAP_PRIVATE, sys_mmap, sys_mprotect,
                                     sys_munmap)

PAGE = 4096
KERNEL_IMAGE = 0x20_0020_0000  # mapped in every directory
WRONG_TYPES = [None, 1.5, "4096"]
BAD_INTEGERS = WRONG_TYPES + [-1, -PAGE, 2**64, 2**100]  # the default for every argument
BAD_ALIGNED = BAD_INTEGERS + [PAGE + 1]  # for arguments that must be page-aligned
BAD_BYTES = [None, 1.5, "text", 7]
ERRNOS = {1, 12, 14, 16, 17, 22, 75}  # EPERM ENOMEM EFAULT EBUSY EEXIST EINVAL EOVERFLOW


class World:
    """One kernel with an address space holding a written region, shared by a sweep."""

    def __init__(self):
        self.mm = MemoryManager(Machine(X86_64, ram_size=16 * MiB))
        self.space = MUST(AddressSpace.try_create(self.mm))
        self.region = MUST(self.space.allocate_region(4 * PAGE, mmap=True))
        MUST(write_user_memory(self.space, self.region.vaddr(), b"data"))
        self.base = int(self.region.vaddr())

    def snapshot(self):
        return KernelSnapshot.take(self.mm, (self.space,))


# name -> (call(world, **arguments), valid arguments, bad values per argument, may panic)
ENTRY_POINTS = {
    "AddressSpace.allocate_region": (
        lambda w, size, address, alignment, prot: w.space.allocate_region(
            size, address=address, alignment=alignment, prot=prot),
        dict(size=PAGE, address=None, alignment=PAGE, prot=PROT_READ),
        {"address": BAD_ALIGNED[1:], "alignment": BAD_ALIGNED}, False),  # None: anywhere
    "AddressSpace.unmap_mmap_range": (
        lambda w, address, size: w.space.unmap_mmap_range(address, size),
        dict(address=0x20_0000_0000, size=PAGE), {}, False),
    "AddressSpace.mprotect": (
        lambda w, address, size, prot: w.space.mprotect(address, size, prot),
        dict(address=0x20_0000_0000, size=PAGE, prot=PROT_READ), {}, False),
    "AddressSpace.try_clone": (lambda w, seed: w.space.try_clone(seed=seed), dict(seed=0),
                               {"seed": [None, 1.5, "x"]}, False),
    "AddressSpace.find_region_containing": (
        lambda w, address: w.space.find_region_containing(address), dict(address=0),
        {"address": WRONG_TYPES}, False),  # any int is a question with an answer
    "AnonymousVMObject.try_create_with_size": (
        lambda w, size: AnonymousVMObject.try_create_with_size(w.mm, size), dict(size=PAGE),
        {"size": BAD_ALIGNED}, False),
    "create_identity_mapped_region": (
        lambda w, paddr, size: create_identity_mapped_region(w.mm, paddr, size),
        dict(paddr=0x8000, size=PAGE), {"paddr": BAD_ALIGNED, "size": BAD_ALIGNED}, False),
    "read_user_memory": (lambda w, vaddr, length: read_user_memory(w.space, vaddr, length),
                         dict(vaddr=0x20_0000_0000, length=8), {}, False),
    "write_user_memory": (lambda w, vaddr, data: write_user_memory(w.space, vaddr, data),
                          dict(vaddr=0x20_0000_0000, data=b"x"),
                          {"data": BAD_BYTES}, False),
    "sys_mmap": (lambda w, address, size, prot, flags: sys_mmap(w.space, address, size, prot,
                                                                 flags),
                 dict(address=0, size=PAGE, prot=PROT_READ, flags=MAP_PRIVATE | MAP_ANONYMOUS),
                 {"address": BAD_ALIGNED}, False),
    "sys_munmap": (lambda w, address, size: sys_munmap(w.space, address, size),
                   dict(address=0x20_0000_0000, size=PAGE), {}, False),
    "sys_mprotect": (lambda w, address, size, prot: sys_mprotect(w.space, address, size, prot),
                     dict(address=0x20_0000_0000, size=PAGE, prot=PROT_READ), {}, False),
    "MemoryManager.kmalloc": (lambda w, size: w.mm.kmalloc(size), dict(size=64),
                              {"size": [None, 1.5, "64", -1, 2**64, 2**100]}, False),
    "MemoryManager.get_physical_page_entry": (
        lambda w, paddr: w.mm.get_physical_page_entry(paddr), dict(paddr=0x20_0000), {}, True),
    # (the page-table helpers below VERIFY their addresses: a wrong value is a kernel bug)
    "MemoryManager.pte": (lambda w, vaddr: w.mm.pte(w.space.page_directory, vaddr),
                          dict(vaddr=0x40_0000), {"vaddr": BAD_INTEGERS}, True),
    "MemoryManager.ensure_pte": (lambda w, vaddr: w.mm.ensure_pte(w.space.page_directory, vaddr),
                                 dict(vaddr=0x40_0000), {"vaddr": BAD_INTEGERS}, True),
    "PageDirectory.try_create_for_userspace": (
        lambda w, mm: PageDirectory.try_create_for_userspace(mm), dict(mm=None),
        {"mm": [None, 1.5, "mm"]}, False),
    "VirtualAddress": (lambda w, value: VirtualAddress(value), dict(value=0),
                       {"value": [None, 1.5, "0", -1]}, False),
    "VirtualRange": (lambda w, base, size: VirtualRange(base, size), dict(base=0, size=PAGE),
                     {"base": WRONG_TYPES + [-1, 2**64 + PAGE],
                      "size": WRONG_TYPES + [-1, 2**64 + PAGE]},
                     False),
    "VirtualRange.expand_to_page_boundaries": (
        lambda w, address, size: VirtualRange.expand_to_page_boundaries(address, size),
        dict(address=0, size=PAGE),
        {"address": WRONG_TYPES + [-1, 2**64], "size": WRONG_TYPES + [-1, 2**64 + 1]}, False),
    "VirtualRangeAllocator.initialize_with_range": (
        lambda w, base, size: VirtualRangeAllocator(w.mm).initialize_with_range(base, size),
        dict(base=0x10_0000, size=16 * PAGE), {"base": BAD_ALIGNED, "size": BAD_ALIGNED},
        False),
    "Machine": (lambda w, ram_size, cpu_count, tlb_capacity: Machine(X86_64, ram_size, cpu_count,
                                                                      tlb_capacity),
                dict(ram_size=MiB, cpu_count=1, tlb_capacity=4),
                {"ram_size": BAD_ALIGNED, "cpu_count": BAD_INTEGERS + [0, 65],
                 "tlb_capacity": WRONG_TYPES + [0, -1]}, False),
    "PhysicalMemory": (lambda w, size: PhysicalMemory(size, X86_64), dict(size=MiB),
                       {"size": BAD_ALIGNED}, False),
    "PhysicalMemory.read": (lambda w, paddr, length: w.mm.machine.memory.read(paddr, length),
                            dict(paddr=0, length=8), {"paddr": BAD_INTEGERS}, False),
    "PhysicalMemory.write": (lambda w, paddr, data: w.mm.machine.memory.write(paddr, data),
                             dict(paddr=0, data=b"x"), {"data": BAD_BYTES}, False),
    "PhysicalMemory.read_entry": (lambda w, paddr: w.mm.machine.memory.read_entry(paddr),
                                  dict(paddr=0), {"paddr": BAD_INTEGERS + [1]}, False),
    "PhysicalMemory.entries": (lambda w, frame: w.mm.machine.memory.entries(frame),
                               dict(frame=0), {}, False),
    "MMU.translate": (lambda w, vaddr: w.mm.machine.bsp.mmu.translate(vaddr),
                      dict(vaddr=KERNEL_IMAGE), {"vaddr": WRONG_TYPES + [-1, 2**64]}, False),
    "MMU.load_cr3": (lambda w, paddr: w.mm.machine.bsp.mmu.load_cr3(paddr),
                     dict(paddr=None), {"paddr": [None, 1.5, "0", -PAGE, 2**64, PAGE + 1]},
                     False),
    "MMU.invlpg": (lambda w, vaddr: w.mm.machine.bsp.mmu.invlpg(vaddr), dict(vaddr=0),
                   {"vaddr": [None, 1.5, "0"]}, False),
    "CPU.load": (lambda w, vaddr, length: w.mm.machine.bsp.load(vaddr, length),
                 dict(vaddr=KERNEL_IMAGE, length=8),
                 {"vaddr": WRONG_TYPES, "length": WRONG_TYPES + [-1]}, False),
    "CPU.store": (lambda w, vaddr, data: w.mm.machine.bsp.store(vaddr, data),
                  dict(vaddr=0x40_0000, data=b"x"), {"data": BAD_BYTES}, False),
    "trace_walk": (lambda w, vaddr: trace_walk(w.mm.machine.memory, w.mm.machine.bsp.mmu.cr3,
                                               vaddr), dict(vaddr=0), {"vaddr": WRONG_TYPES},
                   False),
    "mapped_pages": (lambda w, cr3: mapped_pages(w.mm.machine.memory, cr3),
                     dict(cr3=None), {"cr3": [None, 1.5, "0", -PAGE, 2**64, PAGE + 1]}, False),
    "table_frames": (lambda w, cr3: table_frames(w.mm.machine.memory, cr3),
                     dict(cr3=None), {"cr3": [None, 1.5, "0", -PAGE, 2**64, PAGE + 1]}, False),
}

CASES = [(name, argument, value)
         for name, (_, valid, bad, _) in ENTRY_POINTS.items()
         for argument in valid
         for value in bad.get(argument, BAD_INTEGERS)]


def _is_clear_error(outcome, argument, may_panic):
    if isinstance(outcome, (TypeError, ValueError)):
        return argument in str(outcome)
    if isinstance(outcome, KernelPanic):
        return may_panic
    if isinstance(outcome, GeneralProtectionFault):
        return True  # the CPU refusing a non-canonical address
    if hasattr(outcome, "is_error"):
        return outcome.is_error() and outcome.error().code() in ERRNOS
    return False


@pytest.fixture(scope="module")
def world():
    return World()


@pytest.mark.parametrize("name, argument, value", CASES,
                         ids=[f"{n}-{a}-{v!r}" for n, a, v in CASES])
def test_bad_input_is_a_clear_error_and_changes_nothing(world, name, argument, value):
    call, valid, _, may_panic = ENTRY_POINTS[name]
    arguments = {**valid, argument: value}
    before = world.snapshot()
    try:
        outcome = call(world, **arguments)
    except (TypeError, ValueError, KernelPanic, GeneralProtectionFault) as error:
        outcome = error
    assert _is_clear_error(outcome, argument, may_panic), f"{name}({arguments}): {outcome!r}"
    assert before.differences(world.snapshot()) == []
