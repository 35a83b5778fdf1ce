"""Before 79fa9765ca8 (2021-11-08): the kernel's own error types, KResult and KResultOr<T>.

As in 79fa9765ca8^:Kernel/API/KResult.h:
- `KResult` is one integer: 0 for success (`KSuccess`), otherwise an errno stored *negated*:
  `KResult(ENOMEM).error() == -12`, the value the syscall return register wants.
- Comparing a KResult with a positive errno code works: `operator==(ErrnoCode)` negates the code
  before comparing, so `KResult(ENOMEM) == ENOMEM` is true. The class hides its sign; only the
  raw integer from `.error()` is negative, and code that reads that integer must know it.
- `KResultOr[T]` holds a T or a KResult. AK's TRY macro (b4d8e166d85, 2021-09-05) unwraps
  anything with `release_error()` and `release_value()`; KResultOr got `release_error()` in
  fd44336ef8d and KResult got both (release_value returning nothing) in e1af24eac86, the same day.
- `AK::Error`/`ErrorOr` were added two days before the kernel switched (c4edb9f6c2c,
  2021-11-06), "to eventually replace AK::Result, KResult and KResultOr<T> with something that
  works (and makes sense) in both kernel and userspace". The switch was for one pattern
  everywhere, not to fix a sign bug.

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
        """Equal to the same KResult, or to a positive errno code it holds (operator==(ErrnoCode)
        negates the code first: `is_error() && m_error == -error`)."""
        if isinstance(other, KResult):
            return other._error == self._error
        if isinstance(other, int) and not isinstance(other, bool):
            return self.is_error() and self._error == -other
        return NotImplemented

    def release_error(self) -> KResult:
        """e1af24eac86: makes a KResult usable with TRY."""
        return self

    def release_value(self) -> None:
        """e1af24eac86: 'returns void, since there is no value inside a KResult'."""
        return None

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

    release_value = value

    def release_error(self) -> KResult:
        """fd44336ef8d: so TRY can unwrap a KResultOr."""
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
    error, as the real dispatcher did (`regs.set_return_reg(result.error().error())`)."""
    if result.is_error():
        return result.error().error()
    return result.value()
