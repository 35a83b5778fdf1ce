"""The kernel's standard library: Error, ErrorOr, TRY, MUST, the panic that VERIFY raises, and
Weakable/WeakPtr."""

from refimpl.ak.checks import check_bytes, check_int
from refimpl.ak.error import VERIFY, Errno, Error, ErrorOr, KernelPanic
from refimpl.ak.try_ import MUST, TRY, fallible, fallible_returning
from refimpl.ak.weak_ptr import Weakable, WeakPtr

__all__ = ["Errno", "Error", "ErrorOr", "KernelPanic", "MUST", "TRY", "VERIFY", "WeakPtr",
           "Weakable", "check_bytes", "check_int", "fallible", "fallible_returning"]
