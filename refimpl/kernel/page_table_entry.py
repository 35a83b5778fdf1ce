"""Pointers to paging entries, as kernel code holds them: a virtual address and nothing more.

In C++, `MM.ensure_pte()` returns a `PageTableEntry*` into a quickmap window. Here a
`PageTableEntry` is that pointer: it remembers only the virtual address of the entry, and every
read or write goes through the CPU executing the kernel at that moment, i.e. through its MMU and
TLB. If the window has been pointed at another page since the pointer was made, the pointer now
reads and writes *that* page. This is exactly how the ensure_pte() reentrancy bug of lesson 03
corrupts a kernel page table.

`TableWindow` is the array a quickmap returns (`quickmap_pd(...)[pd_index]`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Generic, TypeVar

from refimpl.hw import PTEFlags
from refimpl.kernel.address import PAGE_SIZE, PhysicalAddress, VirtualAddress

if TYPE_CHECKING:
    from refimpl.kernel.memory_manager import MemoryManager


class _PagingEntry:
    """The bit accessors shared by page-directory and page-table entries."""

    __slots__ = ("_mm", "address")

    def __init__(self, mm: MemoryManager, address: int) -> None:
        self._mm = mm
        self.address = VirtualAddress(address)

    def raw(self) -> int:
        return self._mm.current_cpu().load_entry(self.address)

    def set_raw(self, value: int) -> None:
        self._mm.current_cpu().store_entry(self.address, value)

    def clear(self) -> None:
        self.set_raw(0)

    def _get(self, flag: PTEFlags) -> bool:
        return bool(self.raw() & self._mm.format.mask(flag))

    def _set(self, flag: PTEFlags, value: bool) -> None:
        mask = self._mm.format.mask(flag)
        raw = self.raw()
        self.set_raw(raw | mask if value else raw & ~mask)

    def _base(self) -> PhysicalAddress:
        fmt = self._mm.format
        return PhysicalAddress(fmt.decode_frame(self.raw()) * PAGE_SIZE)

    def _set_base(self, paddr: int) -> None:
        fmt = self._mm.format
        raw = self.raw()
        frame_bits = fmt.frame_mask << fmt.frame_shift
        self.set_raw((raw & ~frame_bits) | fmt.encode(paddr // PAGE_SIZE, PTEFlags(0)))

    def is_present(self) -> bool:
        return self._get(PTEFlags.PRESENT)

    def set_present(self, value: bool) -> None:
        self._set(PTEFlags.PRESENT, value)

    def is_writable(self) -> bool:
        return self._get(PTEFlags.READ_WRITE)

    def set_writable(self, value: bool) -> None:
        self._set(PTEFlags.READ_WRITE, value)

    def is_user_allowed(self) -> bool:
        return self._get(PTEFlags.USER_SUPERVISOR)

    def set_user_allowed(self, value: bool) -> None:
        self._set(PTEFlags.USER_SUPERVISOR, value)

    def is_global(self) -> bool:
        return self._get(PTEFlags.GLOBAL)

    def set_global(self, value: bool) -> None:
        self._set(PTEFlags.GLOBAL, value)

    def describe(self) -> str:
        return self._mm.format.describe(self.raw())

    def __repr__(self) -> str:
        return f"{type(self).__name__}(at {self.address!r}: {self.describe()})"


class PageDirectoryEntry(_PagingEntry):
    """An entry of a PD (or of a PDPT/PML4): it points at the next table down."""

    __slots__ = ()

    def page_table_base(self) -> PhysicalAddress:
        return self._base()

    def set_page_table_base(self, paddr: int) -> None:
        self._set_base(paddr)


class PageTableEntry(_PagingEntry):
    """An entry of a page table: it maps one 4 KiB page."""

    __slots__ = ()

    def physical_page_base(self) -> PhysicalAddress:
        return self._base()

    def set_physical_page_base(self, paddr: int) -> None:
        self._set_base(paddr)

    def is_cache_disabled(self) -> bool:
        return self._get(PTEFlags.CACHE_DISABLED)

    def set_cache_disabled(self, value: bool) -> None:
        self._set(PTEFlags.CACHE_DISABLED, value)

    def is_execute_disabled(self) -> bool:
        return self._get(PTEFlags.NO_EXECUTE)

    def set_execute_disabled(self, value: bool) -> None:
        if self._mm.format.has(PTEFlags.NO_EXECUTE):
            self._set(PTEFlags.NO_EXECUTE, value)


Entry = TypeVar("Entry", PageDirectoryEntry, PageTableEntry)


class TableWindow(Generic[Entry]):
    """A table seen through a quickmap window: `window[i]` points at entry i."""

    __slots__ = ("_mm", "base", "_entry_class")

    def __init__(self, mm: MemoryManager, base: VirtualAddress, entry_class: type[Entry]) -> None:
        self._mm = mm
        self.base = base
        self._entry_class = entry_class

    def __getitem__(self, index: int) -> Entry:
        if not 0 <= index < 512:
            raise IndexError(f"table index {index} is outside 0..511")
        return self._entry_class(self._mm, self.base + index * self._mm.format.entry_size)

    def __repr__(self) -> str:
        return f"TableWindow({self._entry_class.__name__} array at {self.base!r})"

    def raw_entries(self) -> list[int]:
        """All 512 entries, read with one access of the whole window."""
        data = self._mm.current_cpu().load(self.base, PAGE_SIZE)
        return memoryview(data).cast("Q").tolist()
