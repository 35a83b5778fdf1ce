"""Physical memory: RAM as an array of page frames, backed lazily by the host.

RAM is one private anonymous memory mapping of the host (`mmap`). The host's kernel gives it
real memory one host page at a time, on first write, so a simulated machine with 4 GiB of RAM
costs the host only what the simulation has written. Writing zeros to memory that is still zero
is skipped, so zero-filling fresh pages does not back them either.

Only two kinds of code touch this object directly: the MMU's page walker (hardware) and the boot
loader that builds the first page tables before paging is on. Kernel code reaches memory through
a CPU, that is, through virtual addresses and the MMU.
"""

from __future__ import annotations

import mmap
import sys

from refimpl.ak.checks import check_bytes, check_int
from refimpl.hw.paging import PagingFormat

_ENTRY_TYPECODES = {1: "B", 2: "H", 4: "I", 8: "Q"}


class PhysicalAddressError(ValueError):
    """A physical access outside RAM or misaligned for its width."""


class PhysicalMemory:
    """`size` bytes of RAM in frames of `paging_format.page_size` bytes."""

    def __init__(self, size: int, paging_format: PagingFormat) -> None:
        if sys.byteorder != "little":
            raise RuntimeError("the simulated RAM stores entries in the host's byte order, "
                               "which must be little-endian like x86")
        page_size = paging_format.page_size
        check_int("size", size)
        if size <= 0 or size % page_size:
            raise ValueError(f"RAM size {size:#x} must be a positive multiple of the page size "
                             f"{page_size:#x}")
        if size > paging_format.max_physical_address:
            raise ValueError(f"RAM size {size:#x} is more than {paging_format.name} entries "
                             f"can address ({paging_format.max_physical_address:#x})")
        self.size = size
        self.format = paging_format
        self.page_size = page_size
        self.frame_count = size // page_size
        flags = getattr(mmap, "MAP_PRIVATE", 0) | getattr(mmap, "MAP_ANONYMOUS", 0)
        self._ram = mmap.mmap(-1, size, flags=flags) if flags else mmap.mmap(-1, size)
        self.entry_array = memoryview(self._ram).cast(_ENTRY_TYPECODES[paging_format.entry_size])
        """All of RAM as an array of page-table entries: entry i is at physical address
        i * entry_size. For the MMU's walker and debuggers."""
        self._zero_page = bytes(page_size)

    def _check(self, paddr: int, length: int) -> None:
        check_int("paddr", paddr)
        check_int("length", length)
        if length < 0 or paddr < 0 or paddr + length > self.size:
            raise PhysicalAddressError(
                f"physical access [{paddr:#x}, {paddr + length:#x}) is outside RAM "
                f"[0, {self.size:#x}) (paddr={paddr:#x}, length={length:#x})")

    def read(self, paddr: int, length: int) -> bytes:
        self._check(paddr, length)
        return self._ram[paddr:paddr + length]

    def write(self, paddr: int, data: bytes) -> None:
        check_bytes("data", data)
        length = len(data)
        self._check(paddr, length)
        if length <= self.page_size and data == self._zero_page[:length] and \
                self._ram[paddr:paddr + length] == data:
            return  # zeros over zeros: leave untouched host memory untouched
        self._ram[paddr:paddr + length] = data

    def _entry_index(self, paddr: int) -> int:
        size = self.format.entry_size
        self._check(paddr, size)
        if paddr % size:
            raise PhysicalAddressError(f"entry address paddr={paddr:#x} is not {size}-byte "
                                       f"aligned")
        return paddr // size

    def read_entry(self, paddr: int) -> int:
        """The page-table entry at `paddr`, as an unsigned integer."""
        return self.entry_array[self._entry_index(paddr)]

    def write_entry(self, paddr: int, value: int) -> None:
        index = self._entry_index(paddr)
        if not 0 <= value < 1 << (8 * self.format.entry_size):
            raise ValueError(f"{value:#x} does not fit in a {self.format.entry_size}-byte entry")
        self.entry_array[index] = value

    def entries(self, frame: int) -> memoryview:
        """Frame `frame` as a memoryview of entries."""
        check_int("frame", frame)
        if not 0 <= frame < self.frame_count:
            raise PhysicalAddressError(f"frame {frame:#x} is outside RAM")
        per_frame = self.page_size // self.format.entry_size
        return self.entry_array[frame * per_frame:(frame + 1) * per_frame]
