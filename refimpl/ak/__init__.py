"""The kernel's standard library: Error, ErrorOr, TRY, MUST and the panic that VERIFY raises."""

from refimpl.ak.checks import check_bytes, check_int
from refimpl.ak.error import VERIFY, Errno, Error, ErrorOr, KernelPanic
from refimpl.ak.try_ import MUST, TRY, fallible, fallible_returning

__all__ = ["Errno", "Error", "ErrorOr", "KernelPanic", "MUST", "TRY", "VERIFY", "check_bytes",
           "check_int", "fallible", "fallible_returning"]
