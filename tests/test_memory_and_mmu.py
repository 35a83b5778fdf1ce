import os
import traceback

import pytest
from hypothesis import given
from hypothesis import strategies as st

from refimpl.hw import (I386, I686_PAE, TINY, X86_64, Access, GeneralProtectionFault, GiB,
                        Machine, MiB, PageFault, PhysicalAddressError, PhysicalMemory, PTEFlags,
                        trace_walk)

P, RW, US, NX, G = (PTEFlags.PRESENT, PTEFlags.READ_WRITE, PTEFlags.USER_SUPERVISOR,
                    PTEFlags.NO_EXECUTE, PTEFlags.GLOBAL)


class TinyTables:
    """A TINY machine with a page directory at frame 1, built by hand."""

    def __init__(self):
        self.machine = Machine(TINY, ram_size=512)
        self.memory = self.machine.memory
        self.next_frame = 2
        self.cpu = self.machine.bsp
        self.cpu.enable_paging(16)

    def map(self, vaddr, frame, flags):
        pd_index, pt_index = TINY.indices(vaddr)
        pde = self.memory.read_entry(16 + pd_index)
        if not pde & TINY.present_mask:
            pde = TINY.encode(self.next_frame, P | RW | US)
            self.next_frame += 1
            self.memory.write_entry(16 + pd_index, pde)
        table = TINY.decode_frame(pde) * 16
        self.memory.write_entry(table + pt_index, TINY.encode(frame, flags))


def build_x86_64(mappings, ram=4 * MiB, tlb_capacity=64):
    """An x86_64 machine whose tables are written by hand: vaddr -> (frame, flags)."""
    machine = Machine(X86_64, ram_size=ram, tlb_capacity=tlb_capacity)
    memory = machine.memory
    frames = iter(range(1, 64))
    root = next(frames) * 4096
    tables = {}
    for vaddr, (frame, flags) in mappings.items():
        table = root
        for level in range(3):
            key = (level, vaddr >> X86_64.level_shift(level))
            if key not in tables:
                tables[key] = next(frames) * 4096
                memory.write_entry(table + X86_64.index(vaddr, level) * 8,
                                   X86_64.encode(tables[key] // 4096, P | RW | US))
            table = tables[key]
        memory.write_entry(table + X86_64.index(vaddr, 3) * 8, X86_64.encode(frame, flags))
    machine.bsp.enable_paging(root)
    return machine


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux's /proc")
def test_ram_is_backed_lazily():
    before = resident_bytes()
    memory = PhysicalMemory(4 * GiB, X86_64)
    assert memory.read(3 * GiB, 16) == bytes(16)
    memory.write(3 * GiB + 4094, b"abcd")
    memory.write(2 * GiB, bytes(4096))  # zeros over zeros leave the page untouched
    assert memory.read(3 * GiB + 4094, 4) == b"abcd"
    assert resident_bytes() - before < 64 * MiB


def test_physical_bad_input():
    memory = PhysicalMemory(1 * MiB, X86_64)
    with pytest.raises(PhysicalAddressError, match="outside RAM"):
        memory.read(1 * MiB - 2, 4)
    with pytest.raises(PhysicalAddressError, match="aligned"):
        memory.read_entry(0x1004)
    with pytest.raises(ValueError, match="multiple of the page size"):
        PhysicalMemory(1000, X86_64)
    with pytest.raises(ValueError, match="does not fit"):
        memory.write_entry(0x1000, 1 << 64)


def test_tiny_translation_and_permissions():
    tiny = TinyTables()
    tiny.map(0x340, 5, P | US)
    mmu = tiny.cpu.mmu
    assert mmu.translate(0x347, Access.USER) == 5 * 16 + 7
    with pytest.raises(PageFault) as fault:
        mmu.translate(0x347, Access.USER | Access.WRITE)
    assert fault.value.cr2 == 0x347 and fault.value.error_code == 0b111
    with pytest.raises(PageFault) as fault:
        mmu.translate(0x357)
    assert fault.value.is_not_present() and fault.value.error_code == 0


def test_x86_64_user_supervisor_and_nx():
    machine = build_x86_64({0x400000: (100, P | US), 0x401000: (101, P | RW),
                            0x402000: (102, P | RW | US | NX)})
    mmu = machine.bsp.mmu
    assert mmu.translate(0x400010, Access.USER) == 100 * 4096 + 0x10
    with pytest.raises(PageFault) as fault:
        mmu.translate(0x401000, Access.USER)
    assert fault.value.error_code == 0b101
    assert mmu.translate(0x401000, Access.WRITE) == 101 * 4096
    with pytest.raises(PageFault) as fault:
        mmu.translate(0x402000, Access.USER | Access.EXECUTE)
    assert fault.value.is_instruction_fetch() and fault.value.error_code == 0b10101
    with pytest.raises(PageFault):  # CR0.WP: supervisor writes honour RW too
        mmu.translate(0x400000, Access.WRITE)


def test_accessed_and_dirty_bits_are_set_like_hardware():
    machine = build_x86_64({0x400000: (100, P | RW | US)})
    trace = trace_walk(machine.memory, machine.bsp.mmu.cr3, 0x400000)
    leaf = trace.steps[-1].entry_address
    machine.bsp.mmu.translate(0x400000, Access.READ)
    flags = X86_64.decode_flags(machine.memory.read_entry(leaf))
    assert flags & PTEFlags.ACCESSED and not flags & PTEFlags.DIRTY
    assert all(X86_64.decode_flags(machine.memory.read_entry(step.entry_address))
               & PTEFlags.ACCESSED for step in trace.steps)
    machine.bsp.mmu.translate(0x400000, Access.WRITE)  # TLB hit, but the page is clean
    assert X86_64.decode_flags(machine.memory.read_entry(leaf)) & PTEFlags.DIRTY


def test_stale_tlb_entry_is_used_until_invlpg():
    machine = build_x86_64({0x400000: (100, P | RW)})
    mmu, memory = machine.bsp.mmu, machine.memory
    leaf = trace_walk(memory, mmu.cr3, 0x400000).steps[-1].entry_address
    assert mmu.translate(0x400000) == 100 * 4096
    memory.write_entry(leaf, X86_64.encode(200, P | RW))
    assert mmu.translate(0x400000) == 100 * 4096, "the TLB still holds the old frame"
    mmu.invlpg(0x400000)
    assert mmu.translate(0x400000) == 200 * 4096
    memory.write_entry(leaf, 0)
    assert mmu.translate(0x400000) == 200 * 4096, "an unmapped page stays reachable"
    mmu.load_cr3(mmu.cr3)
    with pytest.raises(PageFault):
        mmu.translate(0x400000)


def test_cr3_load_keeps_global_entries_and_counts_hits():
    machine = build_x86_64({0x400000: (100, P | RW | G), 0x401000: (101, P | RW)})
    mmu = machine.bsp.mmu
    mmu.translate(0x400000)
    mmu.translate(0x401000)
    assert (mmu.tlb.hits, mmu.tlb.misses) == (0, 2)
    mmu.translate(0x400008)
    assert mmu.tlb.hits == 1
    mmu.load_cr3(mmu.cr3)
    assert set(mmu.tlb) == {0x400}
    mmu.invlpg(0x400000)
    assert not mmu.tlb


def test_cached_read_only_entry_faults_then_is_dropped():
    machine = build_x86_64({0x400000: (100, P)})
    mmu, memory = machine.bsp.mmu, machine.memory
    leaf = trace_walk(memory, mmu.cr3, 0x400000).steps[-1].entry_address
    mmu.translate(0x400000)
    memory.write_entry(leaf, X86_64.encode(100, P | RW))
    with pytest.raises(PageFault):  # a spurious fault: the TLB still says read-only
        mmu.translate(0x400000, Access.WRITE)
    assert mmu.translate(0x400000, Access.WRITE) == 100 * 4096


def test_tlb_capacity_evicts_oldest():
    machine = build_x86_64({0x400000 + i * 4096: (100 + i, P | RW) for i in range(5)},
                           tlb_capacity=4)
    mmu = machine.bsp.mmu
    for i in range(5):
        mmu.translate(0x400000 + i * 4096)
    assert len(mmu.tlb) == 4 and 0x400 not in mmu.tlb


def test_non_canonical_and_out_of_range_addresses():
    machine = build_x86_64({})
    with pytest.raises(GeneralProtectionFault, match="not canonical"):
        machine.bsp.mmu.translate(0x0000_8000_0000_0000)
    with pytest.raises(PageFault):
        machine.bsp.mmu.translate(0xFFFF_8000_0000_0000)
    with pytest.raises(ValueError, match="12-bit"):
        TinyTables().cpu.mmu.translate(0x1000)
    with pytest.raises(ValueError, match="page-aligned"):
        machine.bsp.mmu.load_cr3(0x1234)


def test_cpu_load_store_cross_pages_and_fault():
    machine = build_x86_64({0x400000: (100, P | RW), 0x401000: (300, P | RW)})
    cpu = machine.bsp
    cpu.store(0x400FFE, b"wxyz")
    assert machine.memory.read(100 * 4096 + 4094, 2) == b"wx"
    assert machine.memory.read(300 * 4096, 2) == b"yz"
    assert cpu.load(0x400FFE, 4) == b"wxyz"
    with pytest.raises(PageFault):
        cpu.load(0x402000, 1)


@given(st.dictionaries(st.integers(0, 255).map(lambda page: page << 4),
                       st.tuples(st.integers(2, 31), st.sampled_from(
                           [P, P | RW, P | US, P | RW | US])), max_size=12),
       st.integers(0, 0xFFF), st.sampled_from([0, 2, 4, 6]))
def test_trace_walk_agrees_with_the_mmu(mappings, vaddr, access):
    tiny = TinyTables()
    tiny.next_frame = 20  # page tables live in frames 20..31, data frames below
    for page, (frame, flags) in mappings.items():
        tiny.map(page, frame, flags)
    trace = trace_walk(tiny.memory, 16, vaddr, access)
    try:
        paddr = tiny.cpu.mmu.translate(vaddr, access)
    except PageFault as fault:
        assert trace.faulted and trace.fault_error_code == fault.error_code
    else:
        assert trace.physical_address == paddr


@pytest.mark.parametrize("fmt", [X86_64, I686_PAE, I386], ids=lambda f: f.name)
def test_the_generated_translate_agrees_with_trace_walk(fmt):
    from refimpl.kernel.prekernel import PageTableBuilder
    flag_sets = [P, P | RW, P | US, P | RW | US]
    if fmt.has(NX):
        flag_sets += [P | RW | US | NX, P | US | NX]

    @given(st.lists(st.tuples(st.integers(0, 63), st.integers(64, 255),
                              st.sampled_from(flag_sets)), max_size=20),
           st.lists(st.tuples(st.integers(0, 70), st.integers(0, 4095),
                              st.sampled_from([0, 2, 4, 6, 16, 20])), max_size=25))
    def check(mappings, accesses):
        machine = Machine(fmt, ram_size=1 * MiB)
        builder = PageTableBuilder(machine.memory, range(1, 60))
        base = 0x4000_0000
        for page, frame, flags in mappings:
            builder.map(base + page * 0x20_0000 // 8, frame, flags)
        mmu = machine.bsp.mmu
        mmu.load_cr3(builder.root)
        for page, offset, access in accesses:  # twice each: a miss, then a hit or a re-walk
            vaddr = base + page * 0x20_0000 // 8 + offset
            for _ in range(2):
                trace = trace_walk(machine.memory, builder.root, vaddr, access)
                try:
                    paddr = mmu.translate(vaddr, access)
                except PageFault as fault:
                    assert trace.faulted and trace.fault_error_code == fault.error_code
                else:
                    assert paddr == trace.physical_address

    check()


def test_the_generated_translate_can_be_read():
    mmu = Machine(X86_64, ram_size=1 * MiB).bsp.mmu
    source = mmu.translate_source
    assert source.count("entry = entries[index]") == 4 and "0xffffffffff000" in source
    with pytest.raises(PageFault) as fault:
        mmu.translate(0x1000)
    frames = traceback.extract_tb(fault.tb)
    assert any("translate for x86_64" in frame.filename for frame in frames)
    assert any("raise PageFault" in (frame.line or "") for frame in frames), "its lines show"


# A7: the MMU against the SDM where the kernel never goes ------------------------------------------

def _built(fmt, mappings, table_flags=PTEFlags(0)):
    from refimpl.kernel.prekernel import PageTableBuilder
    machine = Machine(fmt, ram_size=4 * MiB)
    builder = PageTableBuilder(machine.memory, range(1, 60))
    for vaddr, frame, flags in mappings:
        builder.map(vaddr, frame, flags, table_flags)
    machine.bsp.enable_paging(builder.root)
    return machine, builder.root


def test_pae_pdptes_get_no_accessed_bit_and_come_from_their_registers():
    machine, pdpt = _built(I686_PAE, [(0x4000_0000, 100, P | RW)])
    memory, mmu = machine.memory, machine.bsp.mmu
    before = memory.read_entry(pdpt + 8)
    assert mmu.translate(0x4000_0123) == 100 * 4096 + 0x123
    assert memory.read_entry(pdpt + 8) == before, "the CPU never writes a PDPTE"
    memory.write_entry(pdpt + 8, 0)  # not seen until CR3 is loaded again
    mmu.invlpg(0x4000_0000)
    assert mmu.translate(0x4000_0123) == 100 * 4096 + 0x123
    mmu.load_cr3(pdpt)
    with pytest.raises(PageFault):
        mmu.translate(0x4000_0123)


@pytest.mark.parametrize("bits", [PTEFlags.ACCESSED, PTEFlags.READ_WRITE,
                                  PTEFlags.USER_SUPERVISOR, NX, PTEFlags.HUGE])
def test_a_pae_pdpte_with_a_reserved_bit_makes_the_cr3_load_raise_gp(bits):
    machine, pdpt = _built(I686_PAE, [(0x4000_0000, 100, P | RW)])
    memory, mmu = machine.memory, machine.bsp.mmu
    memory.write_entry(pdpt + 8, memory.read_entry(pdpt + 8) | I686_PAE.mask(bits))
    other = 59 * 4096
    with pytest.raises(GeneralProtectionFault, match="reserved"):
        mmu.load_cr3(pdpt)
    assert mmu.cr3 == pdpt and mmu.translate(0x4000_0000) == 100 * 4096
    mmu.load_cr3(other)  # an empty PDPT is fine


@pytest.mark.parametrize("fmt, vaddr, level", [(X86_64, 0x4000_0000, 2), (X86_64, 0x4000_0000, 1),
                                               (X86_64, 0x4000_0000, 0), (I386, 0x40_0000, 0),
                                               (I686_PAE, 0x4000_0000, 1)])
def test_a_large_page_is_refused_with_a_reserved_bit_fault_never_walked(fmt, vaddr, level):
    from refimpl.hw import ErrorCode
    machine, root = _built(fmt, [(vaddr, 100, P | RW)])
    memory = machine.memory
    table = root
    for _ in range(level):
        table = fmt.decode_frame(memory.read_entry(table + fmt.index(vaddr, _) *
                                                   fmt.entry_size)) * 4096
    address = table + fmt.index(vaddr, level) * fmt.entry_size
    memory.write_entry(address, memory.read_entry(address) | fmt.mask(PTEFlags.HUGE))
    for _ in range(2):
        with pytest.raises(PageFault) as fault:
            machine.bsp.mmu.translate(vaddr + 0x56789 % fmt.span(level))
        assert fault.value.error_code == ErrorCode.RESERVED | ErrorCode.PRESENT
    assert trace_walk(memory, root, vaddr).fault_error_code == \
        ErrorCode.RESERVED | ErrorCode.PRESENT


def test_the_instruction_fetch_bit_is_only_reported_with_nx():
    for fmt, code in ((X86_64, 0x10), (I686_PAE, 0x10), (I386, 0)):
        machine, root = _built(fmt, [(0x40_0000, 100, P | RW)])
        with pytest.raises(PageFault) as fault:
            machine.bsp.mmu.translate(0x80_0000, Access.EXECUTE)
        assert fault.value.error_code == code, fmt.name
        assert trace_walk(machine.memory, root, 0x80_0000, Access.EXECUTE).fault_error_code \
            == code
