"""Looking at page tables the way a debugger does: every step of a walk, no side effects.

`MMU.walk` is written for speed and sets accessed/dirty bits as the hardware does. `trace_walk`
follows exactly the same rules but records each level (which table, which index, which entry,
which flags) and changes nothing, so notebooks and widgets can show a translation step by step.
A property test checks the two always agree.
"""

from __future__ import annotations

from dataclasses import dataclass

from refimpl.ak.checks import check_int
from refimpl.hw.memory import PhysicalMemory
from refimpl.hw.mmu import Access, ErrorCode
from refimpl.hw.paging import PagingFormat, PTEFlags

_LEVEL_NAMES = ("PT", "PD", "PDPT", "PML4", "PML5")


def level_name(paging_format: PagingFormat, level: int) -> str:
    """The x86 name of a level: the bottom one is always the page table (PT)."""
    from_bottom = paging_format.levels - 1 - level
    return _LEVEL_NAMES[from_bottom] if from_bottom < len(_LEVEL_NAMES) else f"L{level}"


@dataclass(frozen=True)
class WalkStep:
    """One level of a walk: the entry read at `index` of the table at `table_address`."""

    level: int
    name: str
    table_address: int
    index: int
    entry_address: int
    entry: int
    flags: PTEFlags
    frame: int

    @property
    def present(self) -> bool:
        return bool(self.flags & PTEFlags.PRESENT)


@dataclass(frozen=True)
class WalkTrace:
    """A whole walk: the steps taken and either a physical address or where it faulted."""

    vaddr: int
    access: int
    steps: tuple[WalkStep, ...]
    physical_address: int | None = None
    fault_error_code: int | None = None
    problem: str | None = None

    @property
    def faulted(self) -> bool:
        return self.physical_address is None

    def summary(self) -> str:
        if self.problem:
            return self.problem
        if not self.faulted:
            return f"{self.vaddr:#x} -> physical {self.physical_address:#x}"
        step = self.steps[-1]
        if self.fault_error_code & ErrorCode.PRESENT:
            return (f"{self.vaddr:#x}: protection violation on {Access.describe(self.access)} "
                    f"(page fault, error code {self.fault_error_code:#x})")
        return (f"{self.vaddr:#x}: {step.name} entry {step.index} is not present "
                f"(page fault, error code {self.fault_error_code:#x})")


def trace_walk(memory: PhysicalMemory, cr3: int, vaddr: int,
               access: int = Access.READ) -> WalkTrace:
    """Walk the tables under `cr3` for `vaddr` as the MMU would, recording every step."""
    fmt = memory.format
    check_int("vaddr", vaddr)
    _check_cr3(memory, cr3)
    problem = fmt.address_problem(vaddr)
    if problem is not None:
        return WalkTrace(vaddr, access, (), problem=problem)
    steps = []
    table = cr3
    writable = user = True
    executable = True
    if not fmt.has(PTEFlags.NO_EXECUTE):
        access &= ~Access.EXECUTE  # no I/D bit in the error code without NX
    for level in range(fmt.levels):
        index = fmt.index(vaddr, level)
        entry_address = table + index * fmt.entry_size
        entry = memory.read_entry(entry_address)
        flags = fmt.decode_flags(entry)
        step = WalkStep(level, level_name(fmt, level), table, index, entry_address, entry,
                        flags, fmt.decode_frame(entry))
        steps.append(step)
        if not step.present:
            return WalkTrace(vaddr, access, tuple(steps), fault_error_code=access)
        if level < fmt.levels - 1 and flags & PTEFlags.HUGE:  # large pages are not modelled
            return WalkTrace(vaddr, access, tuple(steps), fault_error_code=ErrorCode.RESERVED
                             | ErrorCode.PRESENT | access)
        if level > 0 or fmt.top_level_permissions:
            writable &= not fmt.has(PTEFlags.READ_WRITE) or bool(flags & PTEFlags.READ_WRITE)
            user &= not fmt.has(PTEFlags.USER_SUPERVISOR) or bool(flags & PTEFlags.USER_SUPERVISOR)
        executable &= not flags & PTEFlags.NO_EXECUTE
        table = step.frame << fmt.page_shift
    denied = ((0 if writable else Access.WRITE) | (0 if user else Access.USER)
              | (0 if executable else Access.EXECUTE))
    if access & denied:
        return WalkTrace(vaddr, access, tuple(steps),
                         fault_error_code=ErrorCode.PRESENT | access)
    return WalkTrace(vaddr, access, tuple(steps), physical_address=table | fmt.page_offset(vaddr))


def mapped_pages(memory: PhysicalMemory, cr3: int) -> dict[int, tuple[int, PTEFlags]]:
    """Every present leaf under `cr3`: virtual page base -> (frame, flags of the leaf entry)."""
    fmt = memory.format
    _check_cr3(memory, cr3)
    result: dict[int, tuple[int, PTEFlags]] = {}

    def visit(table_frame: int, level: int, base: int) -> None:
        entries = memory.entries(table_frame)[:fmt.entries_per_table(level)].tolist()
        present = fmt.present_mask
        for index in [i for i, entry in enumerate(entries) if entry & present]:
            entry = entries[index]
            vaddr = base | (index << fmt.level_shift(level))
            frame = fmt.decode_frame(entry)
            if level == fmt.levels - 1:
                result[_sign_extend(fmt, vaddr)] = (frame, fmt.decode_flags(entry))
            else:
                visit(frame, level + 1, vaddr)

    visit(cr3 >> fmt.page_shift, 0, 0)
    return result


def table_frames(memory: PhysicalMemory, cr3: int) -> dict[int, int]:
    """Every frame used as a paging table under `cr3`: frame -> its level (0 = top)."""
    fmt = memory.format
    _check_cr3(memory, cr3)
    frames = {cr3 >> fmt.page_shift: 0}

    def visit(frame: int, level: int) -> None:
        if level == fmt.levels - 1:
            return
        for index in range(fmt.entries_per_table(level)):
            entry = memory.entries(frame)[index]
            if entry & fmt.present_mask:
                child = fmt.decode_frame(entry)
                frames.setdefault(child, level + 1)
                visit(child, level + 1)

    visit(cr3 >> fmt.page_shift, 0)
    return frames


def _check_cr3(memory: PhysicalMemory, cr3: int) -> None:
    check_int("cr3", cr3)
    if cr3 % memory.page_size or not 0 <= cr3 < memory.size:
        raise ValueError(f"cr3 {cr3:#x} must be a page-aligned address inside RAM")


def _sign_extend(fmt: PagingFormat, vaddr: int) -> int:
    bits = fmt.virtual_address_bits
    if fmt.canonical and vaddr >> (bits - 1) & 1:
        return vaddr | ((1 << 64) - (1 << bits))
    return vaddr
