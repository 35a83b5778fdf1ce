"""TRY and MUST: propagating an Error out of the function that received it.

In C++, `TRY(expr)` is a statement expression: if `expr` holds an error, the *enclosing* function
returns that error at once; otherwise the whole expression is the value. Python has no statement
expressions, so the same control flow is built from an exception and a decorator:

    @fallible
    def ensure_pte(self, page_directory, vaddr):
        page_table = TRY(self.allocate_physical_page(ShouldZeroFill.YES))
        ...
        return pte                      # becomes ErrorOr(pte)

- `TRY(result)` returns the value of an `ErrorOr`, or raises a private `_TryPropagation` that
  carries the error. It derives from BaseException so that no `except Exception` on the way can
  swallow it.
- `@fallible` catches that exception and returns `ErrorOr.from_error(error)`. TRY only raises
  it when it was called directly in the body of a `@fallible` function. Anywhere else (a helper
  that is not itself `@fallible`, a notebook cell, a generator) there is no function for it to
  return from: in C++ that fails to compile; here TRY panics with a message naming the function
  it was written in, instead of returning from a function two frames up or escaping as a
  private exception. `@fallible` refuses generator functions for the same reason: their body
  runs after the wrapper has returned.
- Whatever a fallible function returns is wrapped: an `Error` becomes an error result, an
  `ErrorOr` passes through unchanged, anything else (None included) is the success value.

`MUST(result)` is for calls that cannot fail unless the kernel is broken (boot-time setup): it
returns the value, or raises `KernelPanic` naming the error.

Like the C++ macro, TRY needs only `is_error()`, `release_error()` and `release_value()`: that is
how it worked with KResultOr before ErrorOr existed (lesson 02). `fallible_returning(T)` makes
the decorator for functions that return a result type T other than ErrorOr.
"""

from __future__ import annotations

import functools
import inspect
import sys
from typing import Callable, TypeVar

from refimpl.ak.error import Error, ErrorOr, KernelPanic

T = TypeVar("T")
F = TypeVar("F", bound=Callable)


class _TryPropagation(BaseException):
    """Raised by TRY, caught by the nearest @fallible frame. Never seen by user code."""

    def __init__(self, error: Error) -> None:
        super().__init__(error)
        self.error = error


def TRY(result: ErrorOr[T]) -> T:
    """The value of `result`, or return its error from the enclosing @fallible function."""
    if not hasattr(result, "release_error"):
        raise TypeError(f"TRY() wants an ErrorOr, got {type(result).__name__}: {result!r}")
    if result.is_error():
        _verify_called_in_fallible_body(sys._getframe(1))
        raise _TryPropagation(result.release_error())
    return result.release_value()


def MUST(result: ErrorOr[T]) -> T:
    """The value of `result`; a kernel panic if it holds an error."""
    if not hasattr(result, "release_error"):
        raise TypeError(f"MUST() wants an ErrorOr, got {type(result).__name__}: {result!r}")
    if result.is_error():
        raise KernelPanic(f"MUST failed: {result.release_error()!r}")
    return result.release_value()


def fallible_returning(result_type: type) -> Callable[[F], F]:
    """The @fallible decorator for functions returning `result_type`, which must offer
    `from_error(error)` and take a value in its constructor, as ErrorOr does."""

    def decorator(function: F) -> F:
        if inspect.isgeneratorfunction(function) or inspect.iscoroutinefunction(function):
            raise TypeError(f"@fallible cannot wrap {function.__qualname__}(): it is a generator "
                            f"or coroutine, whose body runs after the wrapper returned")

        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            try:
                result = function(*args, **kwargs)
            except _TryPropagation as propagation:
                return result_type.from_error(propagation.error)
            if isinstance(result, result_type):
                return result
            if isinstance(result, result_type.error_type):
                return result_type.from_error(result)
            return result_type(result)

        return wrapper  # type: ignore[return-value]

    return decorator


fallible = fallible_returning(ErrorOr)
fallible.__doc__ = "Mark a function as returning ErrorOr, so that TRY can return from it."


def _wrapper_code():
    """The code object every @fallible wrapper runs (they are all made by one `def`)."""
    return fallible(lambda: None).__code__


_FALLIBLE_WRAPPER_CODE = _wrapper_code()


def _verify_called_in_fallible_body(frame) -> None:
    """Panic unless `frame` (the one that called TRY) was called by a @fallible wrapper."""
    caller = frame.f_back
    if caller is not None and caller.f_code is _FALLIBLE_WRAPPER_CODE:
        return
    name = frame.f_code.co_name
    where = "a notebook cell or module" if name == "<module>" else f"{name}()"
    raise KernelPanic(
        f"TRY() used in {where}, which is not @fallible: there is no function for it to return "
        f"the error from; mark {where} @fallible (and TRY its result where it is called), or "
        f"use MUST() where an error is a bug"
    ) from None
