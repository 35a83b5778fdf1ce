"""What happens when user code touches memory: the CPU traps, the kernel fixes, the CPU retries.

`read_user_memory` and `write_user_memory` run an access on the current CPU with the address
space's page directory loaded (as if the process were running there). They go one page at a
time, as the CPU does: a page fault goes to `AddressSpace.handle_page_fault`; if that resolves
it (demand zero, copy-on-write) the access to that page is retried, otherwise the error is
returned (a real kernel would send the process SIGSEGV). A long access may therefore fault once
on each of its pages; the bytes of the pages before a failing one have been written, as with a
real `copy_to_user`. Pass a `collections.Counter` as `faults` to count the kinds of fault
resolved on the way (SerenityOS counts zero, CoW and inode faults per thread).
"""

from __future__ import annotations

from collections import Counter
from contextlib import contextmanager
from typing import TYPE_CHECKING, Callable, Iterator

from refimpl.ak import TRY, VERIFY, Errno, Error, check_bytes, check_int, fallible
from refimpl.hw import Access, GeneralProtectionFault, PageFault
from refimpl.kernel.address import PAGE_SIZE

if TYPE_CHECKING:
    from refimpl.kernel.address_space import AddressSpace

MAX_FAULTS_PER_PAGE = 3
"""A page needs at most one resolved fault (zero fill or CoW copy) before the retry succeeds;
a page that keeps faulting after the handler said it was fixed is a kernel bug."""


@contextmanager
def running(space: AddressSpace) -> Iterator[None]:
    """Load `space`'s page directory into the current CPU's CR3 for the body, then restore."""
    mmu = space.mm.current_cpu().mmu
    saved = mmu.cr3
    if saved != space.page_directory.cr3():
        mmu.load_cr3(space.page_directory.cr3())
    try:
        yield
    finally:
        if mmu.cr3 != saved:
            mmu.load_cr3(saved)


@fallible
def _access_page(space: AddressSpace, access: Callable[[], object], faults: Counter | None):
    """Run the access to one page, resolving its faults; ErrorOr[whatever `access` returns]."""
    for _ in range(MAX_FAULTS_PER_PAGE):
        try:
            return access()
        except PageFault as fault:
            kind = TRY(space.handle_page_fault(fault))
            if faults is not None:
                faults[kind] += 1
        except GeneralProtectionFault as fault:  # a non-canonical address
            return Error.from_errno(Errno.EFAULT, str(fault))
    VERIFY(False, f"the access still faults after {MAX_FAULTS_PER_PAGE} resolved faults")


def _check_user_buffer(vaddr: object, length: object) -> Error | None:
    check_int("vaddr", vaddr)
    check_int("length", length)
    if vaddr < 0 or length < 0 or vaddr + length > 1 << 64:
        return Error.from_errno(Errno.EFAULT, f"[{vaddr:#x}, +{length:#x}) is not an address "
                                              f"range")
    return None


def _pieces(vaddr: int, length: int) -> Iterator[tuple[int, int]]:
    """(address, length) of the part of `[vaddr, vaddr + length)` in each page."""
    while length:
        count = min(length, PAGE_SIZE - vaddr % PAGE_SIZE)
        yield vaddr, count
        vaddr += count
        length -= count


@fallible
def read_user_memory(space: AddressSpace, vaddr: int, length: int,
                     faults: Counter | None = None):
    """ErrorOr[bytes] read by user code at `vaddr`."""
    problem = _check_user_buffer(vaddr, length)
    if problem:
        return problem
    cpu = space.mm.current_cpu()
    chunks = []
    with running(space):
        for address, count in _pieces(vaddr, length):
            chunks.append(TRY(_access_page(
                space, lambda: cpu.load(address, count, Access.USER), faults)))
    return b"".join(chunks)


@fallible
def write_user_memory(space: AddressSpace, vaddr: int, data: bytes,
                      faults: Counter | None = None):
    """ErrorOr[None]: user code writes `data` at `vaddr`."""
    check_bytes("data", data)
    data = bytes(data)
    problem = _check_user_buffer(vaddr, len(data))
    if problem:
        return problem
    cpu = space.mm.current_cpu()
    with running(space):
        for address, count in _pieces(vaddr, len(data)):
            piece = data[address - vaddr:address - vaddr + count]
            TRY(_access_page(space, lambda: cpu.store(address, piece, Access.USER), faults))
    return None
