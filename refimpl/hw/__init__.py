"""Simulated hardware: paging formats, physical memory, MMU with TLB, CPUs. No kernel policy."""

from refimpl.hw.inspect import (WalkStep, WalkTrace, level_name, mapped_pages, table_frames,
                                trace_walk)
from refimpl.hw.machine import CPU, Machine
from refimpl.hw.memory import PhysicalAddressError, PhysicalMemory
from refimpl.hw.mmu import (MMU, TLB, Access, CPUException, ErrorCode, GeneralProtectionFault,
                            PageFault)
from refimpl.hw.paging import (I386, I686_PAE, TINY, X86_64, GiB, KiB, MiB, PagingFormat,
                               PTEFlags, format_size)

__all__ = [
    "Access", "CPU", "CPUException", "ErrorCode", "GeneralProtectionFault", "GiB", "I386",
    "I686_PAE", "KiB", "MMU", "Machine", "MiB", "PTEFlags", "PageFault", "PagingFormat",
    "PhysicalAddressError", "PhysicalMemory", "TINY", "TLB", "WalkStep", "WalkTrace", "X86_64",
    "format_size", "level_name", "mapped_pages", "table_frames", "trace_walk",
]
