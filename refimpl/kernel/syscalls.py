"""The memory syscalls a process makes: mmap, munmap, mprotect (Kernel/Syscalls/mmap.cpp).

Each returns ErrorOr like the rest of the kernel, with positive errno codes. Only one place
turns an Error into what user space sees, `syscall_return_value`: the value, or minus the errno
(the x86_64 convention SerenityOS follows). Before 79fa9765ca8 the kernel's KResult stored the
errno already negated, so every function along the way had to know which sign it held
(lesson 02, `refimpl.history.kresult`).

Only anonymous mappings are modelled; there are no files to map.
"""

from __future__ import annotations

from refimpl.ak import TRY, Errno, Error, ErrorOr, fallible
from refimpl.kernel.address_space import AddressSpace

MAP_SHARED, MAP_PRIVATE, MAP_FIXED, MAP_ANONYMOUS = 0x01, 0x02, 0x10, 0x20


@fallible
def sys_mmap(space: AddressSpace, address: int, size: int, prot: int, flags: int):
    """ErrorOr[int]: the address of a new anonymous mapping (at `address` with MAP_FIXED)."""
    if size == 0:
        return Error.from_errno(Errno.EINVAL, "mmap of zero bytes")
    if not flags & MAP_ANONYMOUS:
        return Error.from_errno(Errno.EINVAL, "only anonymous mappings exist here")
    if bool(flags & MAP_SHARED) == bool(flags & MAP_PRIVATE):
        return Error.from_errno(Errno.EINVAL, "exactly one of MAP_SHARED and MAP_PRIVATE")
    region = TRY(space.allocate_region(size, address=address if flags & MAP_FIXED else None,
                                       prot=prot, name="mmap", mmap=True))
    return int(region.vaddr())


@fallible
def sys_munmap(space: AddressSpace, address: int, size: int):
    """ErrorOr[int]: 0 once no page of the range is mapped."""
    TRY(space.unmap_mmap_range(address, size))
    return 0


@fallible
def sys_mprotect(space: AddressSpace, address: int, size: int, prot: int):
    """ErrorOr[int]: 0 once every page of the range has the access `prot`."""
    TRY(space.mprotect(address, size, prot))
    return 0


def syscall_return_value(result: ErrorOr[int]) -> int:
    """What the syscall puts in the return register: the value, or -errno on error."""
    if result.is_error():
        return -result.error().code()
    return result.value()
