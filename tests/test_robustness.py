"""Reproducers for the robustness findings K1-K14: each test failed before its fix.

The findings came from an adversarial pass over refimpl's public API; the ids are those of
`kernel_robustness_findings.md` (issue 13).
"""

import pytest

from refimpl.ak import MUST
from refimpl.hw import X86_64, Machine, MiB
from refimpl.kernel import (PROT_READ, PROT_WRITE, AddressSpace, MemoryManager,
                            read_user_memory, write_user_memory)
from refimpl.kernel.invariants import (KernelSnapshot, address_space_violations,
                                       page_table_refcount_violations,
                                       physical_page_violations)

PAGE = 4096
RW = PROT_READ | PROT_WRITE
EINVAL, EFAULT, ENOMEM = 22, 14, 12


def new_space(cpus=1):
    return MUST(AddressSpace.try_create(MemoryManager(Machine(X86_64, ram_size=16 * MiB,
                                                              cpu_count=cpus))))


def check(space):
    assert address_space_violations(space) == []
    assert page_table_refcount_violations(space.mm) == []
    assert physical_page_violations(space.mm) == []


# K1: a multi-page access faults page by page -----------------------------------------------------

def test_k1_a_write_over_many_demand_zero_pages_succeeds():
    space = new_space()
    region = MUST(space.allocate_region(16 * PAGE, mmap=True))
    MUST(write_user_memory(space, region.vaddr() + 100, b"A" * 15 * PAGE))
    assert MUST(read_user_memory(space, region.vaddr() + 100, 15 * PAGE)) == b"A" * 15 * PAGE
    check(space)


def test_k1_a_forked_child_writes_many_cow_pages_at_once():
    space = new_space()
    region = MUST(space.allocate_region(8 * PAGE, mmap=True))
    MUST(write_user_memory(space, region.vaddr(), b"p" * 8 * PAGE))
    child = MUST(space.try_clone())
    MUST(write_user_memory(child, region.vaddr(), b"c" * 8 * PAGE))
    assert MUST(read_user_memory(space, region.vaddr(), 8 * PAGE)) == b"p" * 8 * PAGE
    assert MUST(read_user_memory(child, region.vaddr(), 8 * PAGE)) == b"c" * 8 * PAGE
    check(space), check(child)


def test_k1_a_long_write_into_unmapped_memory_is_efault_not_an_exception():
    space = new_space()
    region = MUST(space.allocate_region(5 * PAGE, mmap=True))
    result = write_user_memory(space, region.vaddr(), b"x" * 7 * PAGE)
    assert result.error().code() == EFAULT
    assert MUST(read_user_memory(space, region.vaddr() + 4 * PAGE, 1)) == b"x"  # copy_to_user
    assert read_user_memory(space, 1 << 63, 8).error().code() == EFAULT  # non-canonical
