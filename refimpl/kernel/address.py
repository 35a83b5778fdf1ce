"""PhysicalAddress and VirtualAddress: integers that say which address space they belong to.

Both are `int` subclasses, so arithmetic and comparisons work as on numbers, and their repr is
SerenityOS's log notation: `P0x200000` for physical, `V0x2000200000` for virtual. Arithmetic on
them returns a plain int; `offset()` keeps the type.
"""

from __future__ import annotations

PAGE_SIZE = 4096
PAGE_MASK = PAGE_SIZE - 1


def page_round_down(value: int) -> int:
    return value & ~PAGE_MASK


def page_round_up(value: int) -> int:
    """`value` rounded up to a page boundary (no overflow check: callers check their ranges)."""
    return (value + PAGE_MASK) & ~PAGE_MASK


def is_page_aligned(value: int) -> bool:
    return value & PAGE_MASK == 0


class _Address(int):
    __slots__ = ()
    _prefix = "?"

    def __new__(cls, value: int = 0):
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"an address (value) must be an int, not {type(value).__name__}: "
                            f"{value!r}")
        if value < 0:
            raise ValueError(f"an address cannot be negative: value={value:#x}")
        return super().__new__(cls, value)

    def get(self) -> int:
        return int(self)

    def offset(self, amount: int):
        return type(self)(int(self) + amount)

    def page_base(self):
        return type(self)(page_round_down(int(self)))

    def offset_in_page(self) -> int:
        return int(self) & PAGE_MASK

    def is_page_aligned(self) -> bool:
        return is_page_aligned(int(self))

    def __repr__(self) -> str:
        return f"{self._prefix}{int(self):#x}"

    __str__ = __repr__


class PhysicalAddress(_Address):
    __slots__ = ()
    _prefix = "P"


class VirtualAddress(_Address):
    __slots__ = ()
    _prefix = "V"
