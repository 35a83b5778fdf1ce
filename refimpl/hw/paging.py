"""Paging formats: the geometry of a radix page table and the layout of one entry.

A `PagingFormat` says how a virtual address splits into table indices and a page offset, how wide
an entry is, where its present bit and frame number live and which flag bits exist. Encoding and
decoding entries is its job alone: the MMU, the kernel and the widgets all go through it, so the
same code runs on x86_64 and on a format small enough to print on one screen.

Flags are named by `PTEFlags`, an abstract set (PRESENT, READ_WRITE, ...). Each format places the
flags it has at its own bit positions; a flag a format lacks has mask 0 and means "no restriction"
to the MMU (a format without READ_WRITE has every present page writable).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB


def format_size(size: int) -> str:
    """`size` bytes in the largest binary unit that divides it: '64 MiB', '512 bytes'."""
    for unit, name in ((GiB, "GiB"), (MiB, "MiB"), (KiB, "KiB")):
        if size >= unit and size % unit == 0:
            return f"{size // unit} {name}"
    return f"{size} bytes"


class PTEFlags(enum.IntFlag):
    """The flag bits a page-table entry can have, named as in SerenityOS's PageTableEntry."""

    PRESENT = 1 << 0
    READ_WRITE = 1 << 1
    USER_SUPERVISOR = 1 << 2
    WRITE_THROUGH = 1 << 3
    CACHE_DISABLED = 1 << 4
    ACCESSED = 1 << 5
    DIRTY = 1 << 6
    HUGE = 1 << 7
    GLOBAL = 1 << 8
    NO_EXECUTE = 1 << 9

    @property
    def short_name(self) -> str:
        return _SHORT_NAMES[self]


_SHORT_NAMES = {
    PTEFlags.PRESENT: "P",
    PTEFlags.READ_WRITE: "RW",
    PTEFlags.USER_SUPERVISOR: "US",
    PTEFlags.WRITE_THROUGH: "PWT",
    PTEFlags.CACHE_DISABLED: "PCD",
    PTEFlags.ACCESSED: "A",
    PTEFlags.DIRTY: "D",
    PTEFlags.HUGE: "PS",
    PTEFlags.GLOBAL: "G",
    PTEFlags.NO_EXECUTE: "NX",
}


@dataclass(frozen=True)
class PagingFormat:
    """One classic radix page-table format.

    - `page_shift`: bits of page offset (12 for 4 KiB pages).
    - `level_bits`: index bits per level, top level (the one CR3 points at) first.
    - `entry_size`: bytes per entry (1, 2, 4 or 8).
    - `present_bit`: bit position of the present (valid) bit.
    - `frame_shift`, `frame_bits`: the frame number is `(entry >> frame_shift) & (2**frame_bits - 1)`.
      x86 keeps the physical address in place (frame_shift == page_shift); a one-byte format may
      keep a small frame number in the low bits.
    - `flag_bits`: position of every other flag the format has.
    - `canonical`: virtual addresses must be sign-extended from their top bit (x86_64). Otherwise a
      virtual address must fit in the bits the levels and the offset describe.
    - `top_level_permissions`: False when the top-level entries carry no RW/US/NX meaning (PAE's
      PDPT entries); the MMU then takes permissions from the lower levels only.
    """

    name: str
    page_shift: int
    level_bits: tuple[int, ...]
    entry_size: int
    present_bit: int
    frame_shift: int
    frame_bits: int
    flag_bits: Mapping[PTEFlags, int] = field(default_factory=dict)
    canonical: bool = False
    top_level_permissions: bool = True

    def __post_init__(self) -> None:
        self._check_types()
        object.__setattr__(self, "level_bits", tuple(self.level_bits))
        object.__setattr__(self, "flag_bits", MappingProxyType(dict(self.flag_bits)))
        self._validate()
        object.__setattr__(self, "_masks", {})  # flags -> bits, filled by mask() as it is asked
        object.__setattr__(self, "_encodable", {})  # flags -> bits, once encode() checked them

    def _check_types(self) -> None:
        """TypeError or ValueError naming the field, before any arithmetic uses it."""
        def integer(name: str, value: object, least: int) -> None:
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"PagingFormat.{name} must be an int, not "
                                f"{type(value).__name__}: {value!r}")
            if value < least:
                raise ValueError(f"PagingFormat.{name} must be at least {least}, not {value}")

        if not isinstance(self.name, str):
            raise TypeError(f"PagingFormat.name must be a str, not {type(self.name).__name__}")
        for name, least in (("page_shift", 1), ("entry_size", 1), ("present_bit", 0),
                            ("frame_shift", 0), ("frame_bits", 1)):
            integer(name, getattr(self, name), least)
        if isinstance(self.level_bits, (str, bytes)) or not hasattr(self.level_bits, "__iter__"):
            raise TypeError(f"PagingFormat.level_bits must be a sequence of ints, not "
                            f"{self.level_bits!r}")
        for bits in self.level_bits:
            integer("level_bits", bits, 1)
        if not hasattr(self.flag_bits, "items"):
            raise TypeError(f"PagingFormat.flag_bits must map PTEFlags to bit positions, not "
                            f"{self.flag_bits!r}")
        for flag, bit in self.flag_bits.items():
            if not isinstance(flag, PTEFlags):
                raise TypeError(f"PagingFormat.flag_bits keys must be PTEFlags, not {flag!r}")
            integer(f"flag_bits[{flag.name}]", bit, 0)
        for name in ("canonical", "top_level_permissions"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"PagingFormat.{name} must be a bool")

    def _validate(self) -> None:
        problems = []
        if self.virtual_address_bits > 64:
            problems.append(f"virtual addresses of {self.virtual_address_bits} bits do not fit "
                            f"in 64")
        if self.entry_size not in (1, 2, 4, 8):
            problems.append(f"entry_size must be 1, 2, 4 or 8 bytes, not {self.entry_size}")
        if self.page_shift < 1 or not self.level_bits or min(self.level_bits) < 1:
            problems.append("page_shift and every level's bits must be positive")
        elif (1 << max(self.level_bits)) * self.entry_size > self.page_size:
            problems.append("a table must fit in one page")
        if self.frame_shift > self.page_shift:
            problems.append("the frame number must sit at or below bit page_shift")
        width = self.entry_size * 8
        used = {"present bit": 1 << self.present_bit,
                "frame number": ((1 << self.frame_bits) - 1) << self.frame_shift}
        for flag, bit in self.flag_bits.items():
            if flag is PTEFlags.PRESENT:
                problems.append("PRESENT is given by present_bit, not by flag_bits")
            used[flag.name] = 1 << bit
        for name, mask in used.items():
            if mask >> width:
                problems.append(f"{name} does not fit in a {width}-bit entry")
        names = list(used)
        for i, first in enumerate(names):
            for second in names[i + 1:]:
                if used[first] & used[second]:
                    problems.append(f"{first} and {second} overlap")
        if problems:
            raise ValueError(f"PagingFormat {self.name!r}: " + "; ".join(problems))

    # Geometry ----------------------------------------------------------------------------------

    @property
    def page_size(self) -> int:
        return 1 << self.page_shift

    @property
    def levels(self) -> int:
        return len(self.level_bits)

    @property
    def virtual_address_bits(self) -> int:
        return self.page_shift + sum(self.level_bits)

    @property
    def max_physical_address(self) -> int:
        """One past the highest physical address an entry can name."""
        return 1 << (self.frame_bits + self.page_shift)

    def entries_per_table(self, level: int) -> int:
        return 1 << self.level_bits[level]

    def level_shift(self, level: int) -> int:
        """How far to shift a virtual address right to get the index at `level`."""
        return self.page_shift + sum(self.level_bits[level + 1:])

    def index(self, vaddr: int, level: int) -> int:
        return (vaddr >> self.level_shift(level)) & (self.entries_per_table(level) - 1)

    def indices(self, vaddr: int) -> tuple[int, ...]:
        return tuple(self.index(vaddr, level) for level in range(self.levels))

    def page_offset(self, vaddr: int) -> int:
        return vaddr & (self.page_size - 1)

    def span(self, level: int) -> int:
        """Bytes of virtual memory one entry at `level` covers."""
        return 1 << self.level_shift(level)

    def address_problem(self, vaddr: int) -> str | None:
        """Why `vaddr` is not a virtual address of this format, or None if it is one."""
        bits = self.virtual_address_bits
        if self.canonical:
            if not 0 <= vaddr < 1 << 64:
                return f"{vaddr:#x} is not a 64-bit address"
            upper = vaddr >> (bits - 1)
            if upper not in (0, (1 << (65 - bits)) - 1):
                return f"{vaddr:#x} is not canonical: bits 63..{bits - 1} must all equal bit {bits - 1}"
            return None
        if not 0 <= vaddr < 1 << bits:
            return f"{vaddr:#x} is outside the {bits}-bit virtual address space of {self.name}"
        return None

    # Entries -----------------------------------------------------------------------------------

    @property
    def present_mask(self) -> int:
        return 1 << self.present_bit

    @property
    def frame_mask(self) -> int:
        return (1 << self.frame_bits) - 1

    def mask(self, flags: PTEFlags) -> int:
        """The bits of `flags` in this format's entries; flags the format lacks contribute 0."""
        bits = self._masks.get(flags)
        if bits is None:
            bits = self.present_mask if flags & PTEFlags.PRESENT else 0
            for flag, bit in self.flag_bits.items():
                if flag & flags:
                    bits |= 1 << bit
            self._masks[flags] = bits
        return bits

    def has(self, flag: PTEFlags) -> bool:
        return flag is PTEFlags.PRESENT or flag in self.flag_bits

    def encode(self, frame: int, flags: PTEFlags) -> int:
        """An entry naming `frame` with `flags` (PRESENT must be among them to be present)."""
        if not 0 <= frame <= self.frame_mask:
            raise ValueError(f"frame {frame:#x} does not fit in the {self.frame_bits}-bit frame "
                             f"number of {self.name}")
        bits = self._encodable.get(flags)
        if bits is None:  # checked once per set of flags: encode is on every mapping's path
            missing = [flag.name for flag in PTEFlags if flag & flags and not self.has(flag)]
            if missing:
                raise ValueError(f"{self.name} entries have no {', '.join(missing)} bit")
            bits = self._encodable[flags] = self.mask(flags)
        return (frame << self.frame_shift) | bits

    def decode_frame(self, entry: int) -> int:
        return (entry >> self.frame_shift) & self.frame_mask

    def decode_flags(self, entry: int) -> PTEFlags:
        flags = PTEFlags(0)
        if entry & self.present_mask:
            flags |= PTEFlags.PRESENT
        for flag, bit in self.flag_bits.items():
            if entry >> bit & 1:
                flags |= flag
        return flags

    def describe(self, entry: int) -> str:
        """A one-line reading of an entry, e.g. 'frame 0x1a3 P RW US A'."""
        flags = self.decode_flags(entry)
        if not flags & PTEFlags.PRESENT:
            return "not present"
        names = [flag.short_name for flag in PTEFlags if flag & flags]
        return f"frame {self.decode_frame(entry):#x} " + " ".join(names)


_X86_FLAGS = {
    PTEFlags.READ_WRITE: 1,
    PTEFlags.USER_SUPERVISOR: 2,
    PTEFlags.WRITE_THROUGH: 3,
    PTEFlags.CACHE_DISABLED: 4,
    PTEFlags.ACCESSED: 5,
    PTEFlags.DIRTY: 6,
    PTEFlags.HUGE: 7,
    PTEFlags.GLOBAL: 8,
}

X86_64 = PagingFormat(
    name="x86_64",
    page_shift=12,
    level_bits=(9, 9, 9, 9),
    entry_size=8,
    present_bit=0,
    frame_shift=12,
    frame_bits=40,
    flag_bits={**_X86_FLAGS, PTEFlags.NO_EXECUTE: 63},
    canonical=True,
)
"""4-level paging: PML4, PDPT, PD, PT of 512 eight-byte entries; 48-bit canonical addresses."""

I686_PAE = PagingFormat(
    name="i686-pae",
    page_shift=12,
    level_bits=(2, 9, 9),
    entry_size=8,
    present_bit=0,
    frame_shift=12,
    frame_bits=40,
    flag_bits={**_X86_FLAGS, PTEFlags.NO_EXECUTE: 63},
    top_level_permissions=False,
)
"""PAE: a 4-entry PDPT, then PD and PT of 512 eight-byte entries; what SerenityOS ran on i686."""

I386 = PagingFormat(
    name="i386",
    page_shift=12,
    level_bits=(10, 10),
    entry_size=4,
    present_bit=0,
    frame_shift=12,
    frame_bits=20,
    flag_bits=_X86_FLAGS,
)
"""Classic 32-bit paging: a page directory and page tables of 1024 four-byte entries, no NX."""

TINY = PagingFormat(
    name="tiny",
    page_shift=4,
    level_bits=(4, 4),
    entry_size=1,
    present_bit=7,
    frame_shift=0,
    frame_bits=5,
    flag_bits={PTEFlags.READ_WRITE: 6, PTEFlags.USER_SUPERVISOR: 5},
)
"""A teaching format: 16-byte pages, two levels of 16 one-byte entries, 12-bit virtual addresses,
up to 32 frames (512 bytes) of RAM. Entry bits: 7 present, 6 writable, 5 user, 4..0 frame."""
