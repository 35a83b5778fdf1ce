"""Thread: what the kernel allocates for each thread of execution (Kernel/Thread), cut down to
the part memory management sees: its kernel stack.

Every thread has a kernel stack, a kernel region of `DEFAULT_KERNEL_STACK_SIZE` bytes allocated
with every page present up front (AllocationStrategy::AllocateNow: a page fault on the kernel
stack could not be handled on that same stack). It comes from the kernel's RegionTree through
`MemoryManager.allocate_kernel_region`, as in Thread::try_create, and goes back when the thread is
destroyed. No guard page separates two stacks: first fit packs kernel regions back to back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from refimpl.ak import TRY, fallible
from refimpl.kernel.anonymous_vmobject import AllocationStrategy
from refimpl.kernel.region import Access, Region

if TYPE_CHECKING:
    from refimpl.kernel.memory_manager import MemoryManager


class Thread:
    DEFAULT_KERNEL_STACK_SIZE = 65536
    """Thread::default_kernel_stack_size (Kernel/Thread.h)."""
    DEFAULT_USERSPACE_STACK_SIZE = 1024 * 1024
    """Thread::default_userspace_stack_size (Kernel/Thread.h, 1 MiB): the main thread's user
    stack that execve allocates (refimpl.kernel.process)."""

    def __init__(self, name: str, kernel_stack_region: Region) -> None:
        self.name = name
        self.kernel_stack_region = kernel_stack_region

    @staticmethod
    @fallible
    def try_create(mm: MemoryManager, name: str):
        """ErrorOr[Thread] with its kernel stack allocated and mapped."""
        stack = TRY(mm.allocate_kernel_region(Thread.DEFAULT_KERNEL_STACK_SIZE,
                                              f"Kernel stack ({name})", Access.READ | Access.WRITE,
                                              AllocationStrategy.ALLOCATE_NOW))
        return Thread(name, stack)

    def kernel_stack_base(self) -> int:
        return self.kernel_stack_region.vaddr()

    def kernel_stack_top(self) -> int:
        """Where the stack pointer starts: the end of the region, 8-byte aligned (it grows
        down)."""
        return (self.kernel_stack_region.range.end) & ~7

    def destroy(self) -> None:
        """Free the kernel stack: unmapped, then out of the kernel's RegionTree."""
        self.kernel_stack_region.destroy()

    def __repr__(self) -> str:
        return f"Thread({self.name!r}, kernel stack {self.kernel_stack_region.range})"
