"""A machine: RAM and N CPUs, each with its own MMU (CR3 and TLB).

CPU 0 is the bootstrap processor (BSP); the others are application processors (APs) that sit
idle until the kernel starts them. Every CPU powers on with paging off: its accesses are physical
until `enable_paging` loads CR3. `Machine.current_cpu` is the CPU executing kernel code right
now; the kernel's scheduler changes it when it runs a thread on another CPU.

Code running on a CPU reads and writes memory with `load`/`store`: every access is translated by
that CPU's MMU, so it can fault, and it uses (possibly stale) TLB entries.
"""

from __future__ import annotations

from dataclasses import dataclass

from refimpl.ak.checks import check_bytes, check_int
from refimpl.hw.memory import PhysicalMemory
from refimpl.hw.mmu import MMU, Access
from refimpl.hw.paging import X86_64, MiB, PagingFormat, format_size


MAX_CPUS = 64  # as SerenityOS's Processor array (and the quickmap area has room for 64)


@dataclass(eq=False)
class CPU:
    """One processor: an id and an MMU. `online` is False for an AP not yet started."""

    id: int
    mmu: MMU
    online: bool = False
    paging_enabled: bool = False

    def enable_paging(self, cr3: int) -> None:
        """Load CR3 and set CR0.PG: from now on every access goes through the MMU."""
        self.mmu.load_cr3(cr3)
        self.paging_enabled = True

    @property
    def memory(self) -> PhysicalMemory:
        return self.mmu.memory

    def physical_address(self, vaddr: int, access: int) -> int:
        """Where an access lands: through the MMU, or `vaddr` itself while paging is off."""
        return self.mmu.translate(vaddr, access) if self.paging_enabled else vaddr

    def load(self, vaddr: int, length: int, access: int = Access.READ) -> bytes:
        check_int("vaddr", vaddr)
        check_int("length", length)
        if length < 0:
            raise ValueError(f"length must not be negative, not {length}")
        chunks = []
        page_size = self.memory.page_size
        while length:
            count = min(length, page_size - vaddr % page_size)
            chunks.append(self.memory.read(self.physical_address(vaddr, access), count))
            vaddr += count
            length -= count
        return b"".join(chunks)

    def store(self, vaddr: int, data: bytes, access: int = Access.WRITE) -> None:
        page_size = self.memory.page_size
        check_int("vaddr", vaddr)
        check_bytes("data", data)
        data = bytes(data)
        while data:
            count = min(len(data), page_size - vaddr % page_size)
            self.memory.write(self.physical_address(vaddr, access | Access.WRITE), data[:count])
            vaddr += count
            data = data[count:]

    def load_entry(self, vaddr: int) -> int:
        """Read one page-table-entry-sized, aligned word at `vaddr`."""
        return self.memory.read_entry(self.physical_address(vaddr, Access.READ))

    def store_entry(self, vaddr: int, value: int) -> None:
        self.memory.write_entry(self.physical_address(vaddr, Access.WRITE), value)


class Machine:
    """RAM of `ram_size` bytes in `paging_format`, and `cpu_count` CPUs (CPU 0 boots)."""

    def __init__(self, paging_format: PagingFormat = X86_64, ram_size: int = 64 * MiB,
                 cpu_count: int = 1, tlb_capacity: int = 64) -> None:
        for name, value in (("ram_size", ram_size), ("cpu_count", cpu_count),
                            ("tlb_capacity", tlb_capacity)):
            check_int(name, value)
        if not 1 <= cpu_count <= MAX_CPUS:
            raise ValueError(f"cpu_count must be between 1 and {MAX_CPUS}, not {cpu_count}")
        if tlb_capacity < 1:
            raise ValueError(f"tlb_capacity must be at least 1, not {tlb_capacity}")
        self.format = paging_format
        try:
            self.memory = PhysicalMemory(ram_size, paging_format)
        except ValueError as error:
            raise ValueError(f"ram_size: {error}") from None
        self.cpus = [CPU(i, MMU(self.memory, tlb_capacity)) for i in range(cpu_count)]
        self.cpus[0].online = True
        self.current_cpu = self.cpus[0]

    @property
    def bsp(self) -> CPU:
        return self.cpus[0]

    @property
    def aps(self) -> list[CPU]:
        return self.cpus[1:]

    def __repr__(self) -> str:
        return (f"Machine({self.format.name}, {format_size(self.memory.size)} of RAM, "
                f"{len(self.cpus)} CPU{'s' if len(self.cpus) > 1 else ''})")
