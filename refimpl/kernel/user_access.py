"""What happens when user code touches memory: the CPU traps, the kernel fixes, the CPU retries.

`read_user_memory` and `write_user_memory` run an access on the current CPU with the address
space's page directory loaded (as if the process were running there). A page fault goes to
`AddressSpace.handle_page_fault`; if that resolves it (demand zero, copy-on-write) the access is
retried, otherwise the error is returned (a real kernel would send the process SIGSEGV).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Callable, Iterator

from refimpl.ak import TRY, fallible
from refimpl.hw import Access, PageFault

if TYPE_CHECKING:
    from refimpl.kernel.address_space import AddressSpace

MAX_FAULTS_PER_ACCESS = 4


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
def _with_fault_handling(space: AddressSpace, access: Callable[[], object]):
    """Run `access` as the process; the fault handler too runs with its directory loaded."""
    with running(space):
        for _ in range(MAX_FAULTS_PER_ACCESS):
            try:
                return access()
            except PageFault as fault:
                TRY(space.handle_page_fault(fault))
        return access()


@fallible
def read_user_memory(space: AddressSpace, vaddr: int, length: int):
    """ErrorOr[bytes] read by user code at `vaddr`."""
    cpu = space.mm.current_cpu()
    return _with_fault_handling(space, lambda: cpu.load(vaddr, length, Access.USER))


@fallible
def write_user_memory(space: AddressSpace, vaddr: int, data: bytes):
    """ErrorOr[None]: user code writes `data` at `vaddr`."""
    cpu = space.mm.current_cpu()
    TRY(_with_fault_handling(space, lambda: cpu.store(vaddr, data, Access.USER)))
    return None
