"""The MMU of one CPU: CR3, a TLB, and the page walk that fills it.

`translate(vaddr, access)` turns a virtual address into a physical one or raises `PageFault`,
the way an x86 CPU does:
- the walk starts at CR3 and reads one entry per level from physical memory;
- an entry without its present bit stops the walk: a not-present fault;
- write, user and execute rights are the AND of RW and US and the OR of NX over all levels;
  a supervisor write to a read-only page faults too (SerenityOS runs with CR0.WP set);
- the walk sets the accessed bit in every entry it used and, on a write, the dirty bit in the
  last one;
- the result goes into the TLB, and later accesses to the page use it *without* reading the
  page tables again. Changing a PTE therefore has no effect on this CPU until `invlpg` or a CR3
  load removes the cached translation: the stale-TLB bug class is real here.

An access is described by the same bits as the x86 page-fault error code, so the code of a fault
is simply `access | PRESENT` for a protection violation and `access` for a missing page. The
I/D bit (instruction fetch) is only reported by formats with NX, as the SDM says for paging
without SMEP (Vol. 3A §4.7).

PAE (a format whose top level has no permissions, `top_level_permissions=False`): the four
PDPTEs are loaded into registers when CR3 is loaded, and the walk uses those registers, not
memory (SDM Vol. 3A §4.4.1). A present PDPTE with a reserved bit set (RW, US, A, D, PS, G, NX)
makes the CR3 load raise #GP, and the CPU never writes an accessed bit into a PDPTE.

Not modelled, on purpose:
- large pages: a PS bit in an upper-level entry gives a reserved-bit page fault (error code
  RSVD | P | access) instead of a 2 MiB, 1 GiB or 4 MiB page. SerenityOS never sets PS. (PS in
  a PDE is not reserved on real hardware: there it maps a large page.)
- other reserved bits, including physical-address bits above MAXPHYADDR: not checked;
- SMEP and SMAP: supervisor accesses to user pages always succeed (SerenityOS enables both when
  the CPU has them, and disables SMAP around its own user accesses);
- paging-structure caches: only final translations are cached, so a change to an upper-level
  entry is seen on the next TLB miss even without an invlpg (real CPUs may keep using the old
  upper entries until a flush).

`translate` itself is written out for the MMU's paging format when the MMU is made
(`refimpl.hw.walker`): `print(mmu.translate_source)` shows the exact code that runs.
"""

from __future__ import annotations

from refimpl.ak.checks import check_int
from refimpl.hw.memory import PhysicalMemory
from refimpl.hw.paging import PagingFormat, PTEFlags
from refimpl.hw.walker import build_translate


class Access:
    """Kinds of memory access, encoded as x86 page-fault error-code bits (plain ints: the
    translate fast path cannot afford enum arithmetic)."""

    READ = 0
    WRITE = 1 << 1
    USER = 1 << 2
    EXECUTE = 1 << 4  # instruction fetch

    @staticmethod
    def describe(access: int) -> str:
        kind = "instruction fetch" if access & Access.EXECUTE else (
            "write" if access & Access.WRITE else "read")
        return f"{kind} by {'user' if access & Access.USER else 'supervisor'}"


class ErrorCode:
    """The other bits of the page-fault error code."""

    PRESENT = 1 << 0
    RESERVED = 1 << 3  # RSVD: a reserved bit was set in an entry (here: PS, see above)


class CPUException(Exception):
    """An exception the simulated CPU raises while executing an access."""


class PageFault(CPUException):
    """#PF: `address` is what CR2 holds, `error_code` has the x86 bits P, W, U and I."""

    def __init__(self, address: int, error_code: int) -> None:
        self.address = address
        self.error_code = error_code
        super().__init__(str(self))

    @property
    def cr2(self) -> int:
        return self.address

    def is_not_present(self) -> bool:
        return not self.error_code & ErrorCode.PRESENT

    def is_protection_violation(self) -> bool:
        return bool(self.error_code & ErrorCode.PRESENT)

    def is_write(self) -> bool:
        return bool(self.error_code & Access.WRITE)

    def is_user(self) -> bool:
        return bool(self.error_code & Access.USER)

    def is_instruction_fetch(self) -> bool:
        return bool(self.error_code & Access.EXECUTE)

    @property
    def access(self) -> int:
        return self.error_code & (Access.WRITE | Access.USER | Access.EXECUTE)

    def __str__(self) -> str:
        cause = "protection violation" if self.is_protection_violation() else "page not present"
        return (f"page fault at {self.address:#x}: {cause} on {Access.describe(self.access)} "
                f"(error code {self.error_code:#x})")


class GeneralProtectionFault(CPUException):
    """#GP: raised for a non-canonical address, which the MMU refuses before any walk."""

    def __init__(self, address: int, reason: str) -> None:
        self.address = address
        super().__init__(f"general protection fault: {reason}")


class TLB(dict):
    """The translations one CPU has cached: page number -> TLB entry.

    A TLB entry is the tuple `(frame_base, fast_denied, denied, global_bit)`:
    - `denied`: the Access bits this page refuses (WRITE, USER, EXECUTE);
    - `fast_denied`: `denied`, plus WRITE while the page's dirty bit is not yet set, so that the
      first write goes back to the page tables to set it, as the hardware does;
    - `global_bit`: non-zero for a global page, which a CR3 load does not flush.
    The MMU evicts the oldest entry when `capacity` is reached.
    """

    __slots__ = ("_capacity", "hits", "misses")  # counted on every access: slots are fastest

    def __init__(self, capacity: int = 64) -> None:
        super().__init__()
        if capacity < 1:
            raise ValueError("a TLB holds at least one entry")
        self._capacity = capacity
        self.hits = 0
        self.misses = 0

    @property
    def capacity(self) -> int:
        """How many translations fit; fixed when the TLB is made, as in hardware."""
        return self._capacity

    def invalidate(self, page_number: int) -> None:
        self.pop(page_number, None)

    def flush(self, include_global: bool = False) -> None:
        if include_global:
            self.clear()
            return
        for page_number in [n for n, entry in self.items() if not entry[3]]:
            del self[page_number]


class MMU:
    """Address translation for one CPU over `memory`, in `memory.format`."""

    def __init__(self, memory: PhysicalMemory, tlb_capacity: int = 64) -> None:
        fmt: PagingFormat = memory.format
        self.memory = memory
        self.format = fmt
        self.tlb = TLB(tlb_capacity)
        self._cr3 = 0
        self._page_shift = fmt.page_shift
        present, accessed = fmt.present_mask, fmt.mask(PTEFlags.ACCESSED)
        read_write, user = fmt.mask(PTEFlags.READ_WRITE), fmt.mask(PTEFlags.USER_SUPERVISOR)
        no_execute = fmt.mask(PTEFlags.NO_EXECUTE)
        self._present, self._accessed = present, accessed
        self._entry_bits = fmt.entry_size.bit_length() - 1
        self._cr3_index = 0  # CR3 as an index into memory.entry_array
        self.pdptes = [0] * fmt.entries_per_table(0)
        """PAE's PDPTE registers, loaded from memory by load_cr3 (unused by other formats)."""
        self._page_size_bit = fmt.mask(PTEFlags.HUGE)
        # The accesses refused, given the AND of all levels' P, A, RW and US bits and the OR of
        # their NX bits. Values with P or A missing are absent: those walks go level by level.
        # A format without RW, US or NX restricts nothing with that bit.
        denied_by_bits = {
            present | accessed | rights | nx:
                (Access.WRITE if read_write and not rights & read_write else 0)
                | (Access.USER if user and not rights & user else 0)
                | (Access.EXECUTE if nx else 0)
            for rights in {0, read_write, user, read_write | user} for nx in {0, no_execute}}
        self.translate, self.translate_source = build_translate(self, denied_by_bits)
        """translate(vaddr, access=Access.READ) -> physical address; raises PageFault or
        GeneralProtectionFault. Generated for this format: see refimpl.hw.walker."""

    # CR3 and TLB maintenance --------------------------------------------------------------------

    @property
    def cr3(self) -> int:
        return self._cr3

    def load_cr3(self, paddr: int) -> None:
        """Point the MMU at a new top-level table; drop every non-global TLB entry. With PAE,
        load the PDPTE registers too, or raise #GP (nothing changes) if one is malformed."""
        check_int("paddr", paddr)
        if paddr % self.format.page_size or not 0 <= paddr < self.memory.size:
            raise ValueError(f"paddr {paddr:#x}, the CR3 value, must be a page-aligned address "
                             f"inside RAM")
        if not self.format.top_level_permissions:
            self._load_pdptes(paddr)
        self._cr3 = paddr
        self._cr3_index = paddr >> self._entry_bits
        self.tlb.flush(include_global=False)

    def invlpg(self, vaddr: int) -> None:
        """Drop the cached translation of the page holding `vaddr`, global or not."""
        check_int("vaddr", vaddr)
        self.tlb.invalidate(vaddr >> self._page_shift)

    def _load_pdptes(self, paddr: int) -> None:
        fmt = self.format
        reserved = fmt.mask(~(PTEFlags.PRESENT | PTEFlags.WRITE_THROUGH |
                              PTEFlags.CACHE_DISABLED))
        table = self.memory.entries(paddr >> self._page_shift)[:len(self.pdptes)]
        for index, entry in enumerate(table):
            if entry & self._present and entry & reserved:
                raise GeneralProtectionFault(paddr, f"PDPTE {index} ({entry:#x}) has reserved "
                                                    f"bits set: {fmt.describe(entry & reserved)}")
        self.pdptes[:] = table

    # What the generated translate falls back on ------------------------------------------------

    def _walk_level_by_level(self, vaddr: int, access: int) -> None:
        """Raise the fault of the first missing level (not present, or reserved-bit for a
        large page), or set the accessed bits. PAE's PDPTEs come from their registers and
        get no accessed bit."""
        fmt = self.format
        frame = self._cr3 >> self._page_shift
        if not fmt.has(PTEFlags.NO_EXECUTE):
            access &= ~Access.EXECUTE  # no I/D bit without NX
        for level in range(fmt.levels):
            index = fmt.index(vaddr, level)
            registers = level == 0 and not fmt.top_level_permissions
            entry = self.pdptes[index] if registers else self.memory.entries(frame)[index]
            if not entry & self._present:
                raise PageFault(vaddr, access)
            if level < fmt.levels - 1 and entry & self._page_size_bit:
                raise PageFault(vaddr, ErrorCode.RESERVED | ErrorCode.PRESENT | access)
            if not entry & self._accessed and not registers:
                self.memory.write_entry(frame * fmt.page_size + index * fmt.entry_size,
                                        entry | self._accessed)
            frame = fmt.decode_frame(entry)

    def _refuse_address(self, vaddr: int) -> None:
        check_int("vaddr", vaddr)
        problem = self.format.address_problem(vaddr)
        if problem is not None:
            if self.format.canonical:
                raise GeneralProtectionFault(vaddr, problem)
            raise ValueError(problem)
