"""The memory syscalls a process makes: mmap, munmap, mprotect (Kernel/Syscalls/mmap.cpp).

Each returns ErrorOr like the rest of the kernel, with positive errno codes. Only one place
turns an Error into what user space sees, `syscall_return_value`: the value, or minus the errno
(the x86_64 convention SerenityOS follows). Before 79fa9765ca8 the kernel's KResult stored the
errno already negated, so every function along the way had to know which sign it held
(lesson 02, `refimpl.history.kresult`).

Only anonymous mappings are modelled; there are no files to map.
"""

from __future__ import annotations

from refimpl.ak import TRY, Errno, Error, ErrorOr, check_int, fallible
from refimpl.kernel.address import is_page_aligned, page_round_up
from refimpl.kernel.address_space import (PROT_EXEC, PROT_READ, PROT_WRITE, AddressSpace,
                                          validate_mmap_prot)

# The values of Kernel/API/POSIX/sys/mman.h at f0f97e1db02.
MAP_SHARED, MAP_PRIVATE, MAP_FIXED, MAP_ANONYMOUS = 0x01, 0x02, 0x10, 0x20
MAP_STACK, MAP_NORESERVE, MAP_RANDOMIZED, MAP_PURGEABLE = 0x40, 0x80, 0x100, 0x200
MAP_FIXED_NOREPLACE = 0x400
KNOWN_FLAGS = (MAP_SHARED | MAP_PRIVATE | MAP_FIXED | MAP_ANONYMOUS | MAP_STACK | MAP_NORESERVE
               | MAP_RANDOMIZED | MAP_PURGEABLE | MAP_FIXED_NOREPLACE)


@fallible
def sys_mmap(space: AddressSpace, address: int, size: int, prot: int, flags: int,
             name: str = "mmap"):
    """ErrorOr[int]: the address of a new anonymous mapping, its region called `name` (the
    `name` of SerenityOS's mmap parameters; it leaves the region unnamed without one).

    As sys$mmap (f0f97e1db02: Kernel/Syscalls/mmap.cpp#L127-L245): MAP_FIXED replaces what was
    mapped in the range, MAP_FIXED_NOREPLACE fails with EEXIST instead, and without either an
    address is ignored (not even a hint). MAP_SHARED memory stays shared across fork.
    Differences: unknown prot and flag bits are EINVAL (SerenityOS ignores them); there are
    no files, so mappings must be anonymous; MAP_NORESERVE changes nothing (commit
    accounting is not modelled) and MAP_PURGEABLE is EINVAL (purgeable memory is not).
    """
    problem = _check_mmap_arguments(space, address, size, prot, flags)
    if problem:
        return problem
    fixed = flags & (MAP_FIXED | MAP_FIXED_NOREPLACE)
    region = TRY(space.allocate_region(
        size, address=address if fixed else None, prot=prot, name=name, mmap=True,
        shared=bool(flags & MAP_SHARED), randomize=bool(flags & MAP_RANDOMIZED),
        replace=bool(flags & MAP_FIXED)))
    region.stack = bool(flags & MAP_STACK)
    return int(region.vaddr())


def _check_mmap_arguments(space: AddressSpace, address: int, size: int, prot: int,
                          flags: int) -> Error | None:
    """sys$mmap's checks, in its order, before anything is allocated."""
    for name, value in (("address", address), ("size", size), ("prot", prot),
                        ("flags", flags)):
        check_int(name, value)
    if prot < 0 or prot & ~(PROT_READ | PROT_WRITE | PROT_EXEC):
        return Error.from_errno(Errno.EINVAL, f"prot {prot:#x} has unknown bits")
    if flags < 0 or flags & ~KNOWN_FLAGS:
        return Error.from_errno(Errno.EINVAL, f"flags {flags:#x} has unknown bits")
    ceiling = space.mm.layout.user_range_ceiling
    if address < 0 or size < 0 or address + page_round_up(size) > ceiling:
        return Error.from_errno(Errno.EFAULT, f"[{address:#x}, +{size:#x}) is not user memory")
    if size == 0:
        return Error.from_errno(Errno.EINVAL, "mmap of zero bytes")
    if not is_page_aligned(address):
        return Error.from_errno(Errno.EINVAL, f"address {address:#x} is not page-aligned")
    map_shared, map_private = flags & MAP_SHARED, flags & MAP_PRIVATE
    map_anonymous, map_stack = bool(flags & MAP_ANONYMOUS), bool(flags & MAP_STACK)
    if bool(map_shared) == bool(map_private):
        return Error.from_errno(Errno.EINVAL, "exactly one of MAP_SHARED and MAP_PRIVATE")
    if flags & (MAP_FIXED | MAP_FIXED_NOREPLACE) and flags & MAP_RANDOMIZED:
        return Error.from_errno(Errno.EINVAL, "a fixed mapping cannot be randomized")
    problem = validate_mmap_prot(prot, map_stack, map_anonymous)
    if problem.is_error():
        return problem.error()
    if map_stack and (not map_private or not map_anonymous):
        return Error.from_errno(Errno.EINVAL, "MAP_STACK must be private and anonymous")
    if not map_anonymous:
        return Error.from_errno(Errno.EINVAL, "only anonymous mappings exist here")
    if flags & MAP_PURGEABLE:
        return Error.from_errno(Errno.EINVAL, "purgeable memory is not modelled")
    return None


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
