"""An MMU's translate function, written out for its paging format.

A hardware page walker is wired for one format: it does not look up how many levels there are or
where the frame number sits, it just does it. This module does the same in Python: from a
`PagingFormat` it writes the source of a `translate(vaddr, access)` function with the levels
unrolled and the format's masks and shifts as literal numbers, and compiles it. The result is
as fast as a minimal walk allows (see benchmarks/bench_translation.py) while keeping every rule
of `mmu.py`: TLB hits and misses, rights folded over the levels, accessed and dirty bits, faults.

Read what runs for a format with `print(mmu.translate_source)`; tracebacks show its lines too.
"""

from __future__ import annotations

import linecache
from types import CodeType
from typing import TYPE_CHECKING, Callable

from refimpl.hw.paging import PagingFormat, PTEFlags

INSTRUCTION_FETCH = 1 << 4  # Access.EXECUTE of refimpl.hw.mmu, which imports this module

if TYPE_CHECKING:
    from refimpl.hw.mmu import MMU


def _shift(expression: str, amount: int) -> str:
    """`expression` shifted left by `amount` (right if negative), written as simply as can be."""
    if amount > 0:
        return f"({expression} << {amount})"
    if amount < 0:
        return f"({expression} >> {-amount})"
    return expression


def translate_source(fmt: PagingFormat, capacity: int) -> str:
    """The Python source of `translate` for `fmt` and a TLB of `capacity` entries."""
    present, accessed = fmt.present_mask, fmt.mask(PTEFlags.ACCESSED)
    rights_bits = fmt.mask(PTEFlags.READ_WRITE | PTEFlags.USER_SUPERVISOR)
    no_execute, dirty = fmt.mask(PTEFlags.NO_EXECUTE), fmt.mask(PTEFlags.DIRTY)
    global_bit, page_size_bit = fmt.mask(PTEFlags.GLOBAL), fmt.mask(PTEFlags.HUGE)
    # Without NX there is no I/D bit in the error code either (SDM Vol. 3A §4.7).
    fault_access = "access" if no_execute else f"(access & {~INSTRUCTION_FETCH & 0xFF:#x})"
    field = fmt.frame_mask << fmt.frame_shift
    entry_bits = fmt.entry_size.bit_length() - 1
    page_number = f"vaddr >> {fmt.page_shift}"
    plain_bits = fmt.virtual_address_bits - 1 if fmt.canonical else fmt.virtual_address_bits
    lines = [
        "def translate(vaddr, access=0):",
        f'    """The physical address of `vaddr` in the {fmt.name} format (generated, see',
        '    refimpl.hw.walker); raises PageFault or GeneralProtectionFault."""',
        "    try:  # costs nothing in Python 3.11 unless it raises",
        f"        cached = tlb.get({page_number})",
        "    except TypeError:  # vaddr is not an int: say so by name",
        "        mmu._refuse_address(vaddr)",
        "    if cached is not None:",
        "        if not access & cached[1]:",
        "            tlb.hits += 1",
        f"            return cached[0] | (vaddr & {fmt.page_size - 1:#x})",
        f"        del tlb[{page_number}]",
        "        if access & cached[2]:  # the cached rights refuse it: fault without a walk",
        "            tlb.hits += 1",
        f"            raise PageFault(vaddr, PRESENT | {fault_access})",
        "        # else: the first write to a clean page walks again to set the dirty bit",
        "    tlb.misses += 1",
        f"    if vaddr >> {plain_bits}:  # also true for negative numbers",
        "        mmu._refuse_address(vaddr)",
        "    try:",
    ]
    leaf = fmt.levels - 1
    # PS in an upper entry is collected with NX (or alone, without NX), and with it no key of
    # denied_by_bits matches: such walks go level by level, which refuses large pages.
    upper = "no_execute" if no_execute else "upper"
    for level in range(fmt.levels):
        where = (f"(vaddr >> {fmt.level_shift(level)}) & {fmt.entries_per_table(level) - 1:#x}")
        if level == 0 and not fmt.top_level_permissions:
            # PAE: the PDPTEs were loaded into registers by the last CR3 load
            lines.append(f"        entry = pdptes[{where}]  # {fmt.levels} level(s) left")
        else:
            if level == 0:
                table = "mmu._cr3_index"
            else:
                table = _shift(f"(entry & {field:#x})",
                               fmt.page_shift - fmt.frame_shift - entry_bits)
            lines.append(f"        index = {table} + ({where})  # {fmt.levels - level} level(s) "
                         f"left")
            lines.append("        entry = entries[index]")
        if level == 0:
            ignored = 0 if fmt.top_level_permissions else rights_bits | accessed
            lines.append(f"        rights = entry | {ignored:#x}" if ignored else
                         "        rights = entry")
        else:
            lines.append("        rights &= entry")
        if level < leaf and (no_execute or page_size_bit):
            lines.append(f"        {upper} {'=' if level == 0 else '|='} entry  # NX, PS")
    checked = f"(rights & {present | accessed | rights_bits:#x})"
    if no_execute:
        checked = (f"{checked} | (no_execute & {no_execute | page_size_bit:#x}) "
                   f"| (entry & {no_execute:#x})")
    elif page_size_bit:
        checked = f"{checked} | (upper & {page_size_bit:#x})"
    lines += [
        f"        denied = denied_by_bits[{checked}]",
        "    except (KeyError, IndexError):  # a level is missing, not yet marked accessed or a",
        "        # large page, or a not-present entry named a frame beyond RAM: walk again, one",
        "        mmu._walk_level_by_level(vaddr, access)  # level at a time: faults, or sets A",
        "        tlb.misses -= 1  # the retry counts this miss again",
        "        return translate(vaddr, access)",
        "    if access & denied:",
        f"        raise PageFault(vaddr, PRESENT | {fault_access})",
        "    fast_denied = denied",
    ]
    if dirty:
        lines += [
            f"    if not entry & {dirty:#x}:",
            "        if access & WRITE:",
            f"            entries[index] = entry | {dirty:#x}",
            "        else:",
            "            fast_denied |= WRITE  # the first write must come back to set D",
        ]
    frame_base = _shift(f"(entry & {field:#x})", fmt.page_shift - fmt.frame_shift)
    lines += [
        f"    if len(tlb) >= {capacity}:",
        "        del tlb[next(iter(tlb))]  # evict the oldest",
        f"    frame_base = {frame_base}",
        f"    tlb[{page_number}] = (frame_base, fast_denied, denied, entry & {global_bit:#x})",
        f"    return frame_base | (vaddr & {fmt.page_size - 1:#x})",
    ]
    # Wrapped in a factory so that the names it uses are closure variables, which Python reads
    # as fast as local ones (globals would cost a dictionary lookup each).
    body = "\n".join("    " + line for line in lines)
    return (f"def make_translate(tlb, entries, pdptes, mmu, denied_by_bits, PageFault, PRESENT,"
            f" WRITE):\n"
            f"{body}\n    return translate\n")


_COMPILED: dict[str, CodeType] = {}


def build_translate(mmu: MMU, denied_by_bits: dict[int, int]) -> tuple[Callable, str]:
    """Compile `translate` for `mmu`'s format; returns (function, its source)."""
    from refimpl.hw.mmu import Access, ErrorCode, PageFault
    source = translate_source(mmu.format, mmu.tlb.capacity)
    filename = f"<translate for {mmu.format.name}, generated by refimpl.hw.walker>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    code = _COMPILED.get(source)
    if code is None:  # every CPU of every machine of a format has the same source
        code = _COMPILED[source] = compile(source, filename, "exec")
    namespace: dict = {}
    exec(code, namespace)
    translate = namespace["make_translate"](mmu.tlb, mmu.memory.entry_array, mmu.pdptes, mmu,
                                            denied_by_bits, PageFault, ErrorCode.PRESENT,
                                            Access.WRITE)
    return translate, source
