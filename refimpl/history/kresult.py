"""Before 79fa9765ca8 (2021-11-08): the kernel's own error types, KResult and KResultOr<T>.

- `KResult` is one integer: 0 for success (`KSuccess`), otherwise an errno stored *negated*:
  `KResult(ENOMEM).error() == -12`. Comparing it with a positive errno code is always false.
- `KResultOr[T]` holds a T or a KResult. TRY worked with it through two shims,
  `release_error()` and `release_value()` (b4d8e166d85).
- User space, meanwhile, had AK::Error with positive codes: two vocabularies for one idea, and
  every function in between had to know which sign it was holding.

The syscalls below are `refimpl.kernel.syscalls` written the old way; the difference between
the two files is the refactoring. The rest of this simulated kernel already speaks ErrorOr, so
`KResultOr.from_error` also accepts an AK Error and converts it, a seam the real 2021 kernel did
not need (everything returned KResultOr then).
"""

from __future__ import annotations

from typing import Generic, TypeVar

from refimpl.ak import TRY, VERIFY, Errno, Error, KernelPanic, fallible_returning
from refimpl.kernel.address_space import AddressSpace
from refimpl.kernel.syscalls import MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, MAP_SHARED

T = TypeVar("T")


class KResult:
    """Success, or a negated errno."""

    def __init__(self, errno: int) -> None:
        VERIFY(errno >= 0, f"KResult is made from a positive errno, not {errno}")
        self._error = -int(errno)

    def error(self) -> int:
        """The negated errno (0 on success)."""
        return self._error

    def is_success(self) -> bool:
        return self._error == 0

    def is_error(self) -> bool:
        return self._error != 0

    def __eq__(self, other: object) -> bool:
        return isinstance(other, KResult) and other._error == self._error

    def __repr__(self) -> str:
        if self._error == 0:
            return "KSuccess"
        return f"KResult({self._error}: {Errno(-self._error).name})"


KSuccess = KResult(0)


class KResultOr(Generic[T]):
    """A T or a KResult, as the kernel's KResultOr<T>."""

    error_type = KResult

    def __init__(self, value: T) -> None:
        self._value = value
        self._result = KSuccess

    @classmethod
    def from_error(cls, error: KResult | Error) -> KResultOr[T]:
        if isinstance(error, Error):  # the seam to this simulation's ErrorOr-speaking kernel
            error = KResult(error.code())
        VERIFY(error.is_error(), "KResultOr made from KSuccess")
        result: KResultOr[T] = cls.__new__(cls)
        result._value, result._result = None, error
        return result

    def is_error(self) -> bool:
        return self._result.is_error()

    def error(self) -> KResult:
        return self._result

    def value(self) -> T:
        if self.is_error():
            raise KernelPanic(f"KResultOr.value() called on an error: {self._result!r}")
        return self._value

    release_value = value  # the shims TRY uses

    def release_error(self) -> KResult:
        return self.error()

    def __repr__(self) -> str:
        return f"KResultOr({self._result!r})" if self.is_error() else \
            f"KResultOr(value={self._value!r})"


kresult_fallible = fallible_returning(KResultOr)


@kresult_fallible
def sys_mmap(space: AddressSpace, address: int, size: int, prot: int, flags: int):
    """KResultOr[int]: the address of a new anonymous mapping (at `address` with MAP_FIXED)."""
    if size == 0:
        return KResult(Errno.EINVAL)
    if not flags & MAP_ANONYMOUS:
        return KResult(Errno.EINVAL)
    if bool(flags & MAP_SHARED) == bool(flags & MAP_PRIVATE):
        return KResult(Errno.EINVAL)
    region = TRY(space.allocate_region(size, address=address if flags & MAP_FIXED else None,
                                       prot=prot, name="mmap", mmap=True))
    return int(region.vaddr())


@kresult_fallible
def sys_munmap(space: AddressSpace, address: int, size: int):
    """KResultOr[int]: 0 once no page of the range is mapped."""
    TRY(space.unmap_mmap_range(address, size))
    return 0


@kresult_fallible
def sys_mprotect(space: AddressSpace, address: int, size: int, prot: int):
    """KResultOr[int]: 0 once every page of the range has the access `prot`."""
    TRY(space.mprotect(address, size, prot))
    return 0


def syscall_return_value(result: KResultOr[int]) -> int:
    """What the syscall puts in the return register: the value, or the (already negative)
    error. Negating it here, as one does with a positive errno, would report success."""
    if result.is_error():
        return result.error().error()
    return result.value()
