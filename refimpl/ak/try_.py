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
- `@fallible` catches that exception *only when TRY was called directly in the decorated
  function's own body* and returns `ErrorOr.from_error(error)`. A TRY written in a helper that is
  not itself `@fallible` would, in C++, fail to compile; here it panics with a message naming the
  helper, instead of silently returning from a function two frames up.
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
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            try:
                result = function(*args, **kwargs)
            except _TryPropagation as propagation:
                _verify_raised_by_own_try(function, propagation)
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


def _verify_raised_by_own_try(function: Callable, propagation: _TryPropagation) -> None:
    """Panic unless the TRY that raised sits directly in `function`'s body."""
    frames = []
    traceback = propagation.__traceback__
    while traceback is not None:
        frames.append(traceback.tb_frame.f_code)
        traceback = traceback.tb_next
    # frames: [wrapper, function, TRY] when TRY was written in function itself.
    if frames[1:] == [function.__code__, TRY.__code__]:
        return
    helper = frames[-2].co_name if len(frames) >= 2 else "?"
    raise KernelPanic(
        f"TRY() used in {helper}(), which is not @fallible: it cannot return an error to "
        f"{function.__qualname__}(); mark {helper}() @fallible and TRY its result"
    ) from None
