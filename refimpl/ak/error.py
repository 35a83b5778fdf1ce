"""AK::Error and AK::ErrorOr<T>: how the kernel reports failure since November 2021.

An `Error` is either an errno code (`Error.from_errno(Errno.ENOMEM)`) or a string literal
(`Error.from_string_literal("...")`). An `ErrorOr[T]` holds a value of type T or an Error.

The codes stay positive everywhere inside the kernel; only a syscall boundary would negate them
(the old KResult stored them negated, which lesson 02 shows was an invitation to bugs).

One addition to SerenityOS's Error: an optional `detail` sentence. The kernel's Error carries
only the code; a learner who gets `EINVAL` from a simulation deserves to know which argument was
wrong. `detail` is shown in the repr and ignored by equality, so `Error.from_errno(EINVAL)` still
equals any other EINVAL.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


class KernelPanic(Exception):
    """A broken invariant: the simulated kernel stops here, as SerenityOS's VERIFY would."""


def VERIFY(condition: object, message: str = "VERIFY failed") -> None:
    """Panic unless `condition` holds. For bugs in the kernel, never for bad input."""
    if not condition:
        raise KernelPanic(message)


class Errno(enum.IntEnum):
    """The errno codes the memory-management code uses, with Linux's numbering."""

    EPERM = 1
    ENOENT = 2
    ESRCH = 3
    EINTR = 4
    EIO = 5
    ENOEXEC = 8
    EAGAIN = 11
    ENOMEM = 12
    EACCES = 13
    EFAULT = 14
    EBUSY = 16
    EEXIST = 17
    EINVAL = 22
    ENOSPC = 28
    ERANGE = 34
    ENOSYS = 38
    EOVERFLOW = 75

    @property
    def message(self) -> str:
        return _STRERROR[self]


_STRERROR = {
    Errno.EPERM: "Operation not permitted",
    Errno.ENOENT: "No such file or directory",
    Errno.ESRCH: "No such process",
    Errno.EINTR: "Interrupted system call",
    Errno.EIO: "I/O error",
    Errno.ENOEXEC: "Exec format error",
    Errno.EAGAIN: "Resource temporarily unavailable",
    Errno.ENOMEM: "Out of memory",
    Errno.EACCES: "Permission denied",
    Errno.EFAULT: "Bad address",
    Errno.EBUSY: "Device or resource busy",
    Errno.EEXIST: "File exists",
    Errno.EINVAL: "Invalid argument",
    Errno.ENOSPC: "No space left on device",
    Errno.ERANGE: "Numerical result out of range",
    Errno.ENOSYS: "Function not implemented",
    Errno.EOVERFLOW: "Value too large for defined data type",
}


@dataclass(frozen=True)
class Error:
    """An errno code or a string literal, never both (as in AK/Error.h)."""

    _code: Errno | None = None
    _string_literal: str | None = None
    detail: str | None = field(default=None, compare=False)

    @staticmethod
    def from_errno(code: Errno, detail: str | None = None) -> Error:
        if not isinstance(code, Errno):
            raise TypeError(f"Error.from_errno wants an Errno, got {code!r}")
        return Error(_code=code, detail=detail)

    @staticmethod
    def from_string_literal(literal: str) -> Error:
        if not isinstance(literal, str):
            raise TypeError(f"Error.from_string_literal wants a str, got {literal!r}")
        return Error(_string_literal=literal)

    def is_errno(self) -> bool:
        return self._code is not None

    def code(self) -> int:
        """The errno, or 0 when this error is a string literal (as in AK)."""
        return int(self._code) if self._code is not None else 0

    def string_literal(self) -> str:
        return self._string_literal or ""

    def __repr__(self) -> str:
        if self._code is not None:
            text = f"{self._code.name}: {self._code.message}"
        else:
            text = repr(self._string_literal)
        if self.detail:
            text += f" ({self.detail})"
        return f"Error({text})"

    __str__ = __repr__


class ErrorOr(Generic[T]):
    """A value of type T or an Error. Success of an `ErrorOr[None]` is `ErrorOr(None)`.

    Build one with `ErrorOr(value)` or `ErrorOr.from_error(error)`; a function decorated with
    `@fallible` (see `refimpl.ak.try_`) builds it for you from what it returns.
    """

    __slots__ = ("_value", "_error")
    error_type = Error

    def __init__(self, value: T = None) -> None:  # type: ignore[assignment]
        if isinstance(value, (Error, ErrorOr)):
            raise TypeError("ErrorOr(value) got an Error; use ErrorOr.from_error(error)")
        self._value = value
        self._error: Error | None = None

    @classmethod
    def from_error(cls, error: Error) -> ErrorOr[T]:
        if not isinstance(error, Error):
            raise TypeError(f"ErrorOr.from_error wants an Error, got {error!r}")
        result: ErrorOr[T] = cls.__new__(cls)
        result._value = None
        result._error = error
        return result

    def is_error(self) -> bool:
        return self._error is not None

    def value(self) -> T:
        if self._error is not None:
            raise KernelPanic(f"ErrorOr.value() called on an error: {self._error!r}")
        return self._value

    def error(self) -> Error:
        if self._error is None:
            raise KernelPanic("ErrorOr.error() called on a value")
        return self._error

    def release_value(self) -> T:
        """Take the value out (in C++ this moves; here it only reads)."""
        return self.value()

    def release_error(self) -> Error:
        return self.error()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ErrorOr):
            return NotImplemented
        return (self._error, self._value) == (other._error, other._value)

    def __repr__(self) -> str:
        if self._error is not None:
            return f"ErrorOr({self._error!r})"
        return f"ErrorOr(value={self._value!r})"
