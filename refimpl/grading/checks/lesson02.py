"""The checks of lesson 02: errors."""

from __future__ import annotations

from refimpl.ak import MUST, Errno, Error, ErrorOr
from refimpl.grading.checks.common import (call, expect_error, expect_value, fresh_kernel, passed,
                                           snapshot_values)
from refimpl.grading.exercises import CheckFailed, exercise
from refimpl.grading.transcript import record
from refimpl.history.kresult import KResult
from refimpl.kernel import AddressSpace, AllocationKind, Region
from refimpl.kernel.address import PAGE_SIZE
from refimpl.kernel.invariants import KernelSnapshot

ERRNOS = [Errno.EPERM, Errno.ENOENT, Errno.ENOMEM, Errno.EFAULT, Errno.EEXIST, Errno.EINVAL,
          Errno.EOVERFLOW, Errno.EBUSY]


@exercise("02-kresult-to-error", "Turn a KResult into an Error", 1, "error_from_kresult")
def check_kresult_to_error(error_from_kresult, hidden=False):
    for errno in ERRNOS:
        got = call(error_from_kresult, KResult(errno), case=f"KResult({errno.name})")
        if not isinstance(got, Error) or got != Error.from_errno(errno):
            raise CheckFailed(f"KResult({errno.name}) holds {-errno}: expected "
                              f"Error.from_errno({errno.name}), got {got!r}")
        record(errno.name, type(got).__name__, got.code())
    return passed(len(ERRNOS), "errnos")


@exercise("02-try", "Propagate errors with TRY", 3, "allocate_read_only")
def check_try(allocate_read_only, hidden=False):
    space = MUST(AddressSpace.try_create(fresh_kernel()))
    region = expect_value(call(allocate_read_only, space, 3 * PAGE_SIZE,
                                case="allocate_read_only(space, 3 pages)"), "3 pages")
    if region.access != Region.Access.READ or region.size() != 3 * PAGE_SIZE:
        raise CheckFailed(f"expected a 3-page read-only region, got {region!r}")
    record("3 pages", type(region).__name__, region.access, [region.vaddr(), region.size()],
           snapshot_values(KernelSnapshot.take(space.mm, (space,))))
    zero = call(allocate_read_only, space, 0, case="allocate_read_only(space, 0)")
    expect_error(zero, Errno.EINVAL, "size 0")
    record("size 0", zero.error().code(),
           snapshot_values(KernelSnapshot.take(space.mm, (space,))))
    failures = range(1, 4) if not hidden else range(1, 6)
    for n in failures:
        kernel = fresh_kernel()
        space = MUST(AddressSpace.try_create(kernel))
        before = KernelSnapshot.take(kernel, (space,))
        kernel.allocations.fail_nth(AllocationKind.KMALLOC, n)
        result = call(allocate_read_only, space, PAGE_SIZE, case=f"kmalloc #{n} failing")
        if kernel.allocations.is_armed(AllocationKind.KMALLOC):
            break
        expect_error(result, Errno.ENOMEM, f"kmalloc #{n} failing")
        record(f"kmalloc #{n} failing", result.error().code(),
               snapshot_values(KernelSnapshot.take(kernel, (space,))))
        if KernelSnapshot.take(kernel, (space,)).differences(before):
            raise CheckFailed(f"kmalloc #{n} failing: the address space changed although the "
                              f"call failed")
    return passed(2 + len(failures), "calls, failing ones included")




@exercise("02-return-value", "Hand a result to user space", 1, "syscall_return_value")
def check_return_value(syscall_return_value, hidden=False):
    cases = [ErrorOr(0), ErrorOr(0x2000_0000)] + [ErrorOr.from_error(Error.from_errno(e))
                                                  for e in ERRNOS]
    for result in cases:
        wanted = -result.error().code() if result.is_error() else result.value()
        got = call(syscall_return_value, result, case=repr(result))
        if got != wanted:
            raise CheckFailed(f"{result!r}: user space must see {wanted}, you return {got}")
        record(repr(result), got)
    return passed(len(cases), "results")
