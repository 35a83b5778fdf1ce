"""Argument checks for the simulation's public entry points.

C++ callers cannot pass a string where the kernel wants a size; Python callers can. These checks
turn such a call into a TypeError that names the argument, before anything is allocated or
changed. (Values of the right type but out of range are the kernel's business: an errno, or a
VERIFY where only a kernel bug could produce them.)
"""

from __future__ import annotations


def check_int(name: str, value: object) -> None:
    """TypeError naming the argument unless `value` is an int (bool is not one here)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}: {value!r}")


def check_bytes(name: str, value: object) -> None:
    """TypeError naming the argument unless `value` is bytes-like."""
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError(f"{name} must be bytes, not {type(value).__name__}: {value!r}")
