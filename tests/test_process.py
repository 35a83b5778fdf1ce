"""Process: exec builds SerenityOS's layout (f0f97e1db02: Kernel/Syscalls/execve.cpp), faults
are counted by kind, fork shares pages copy-on-write, exit returns every page, and bad input
leaves no trace."""

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refimpl.ak import MUST
from refimpl.hw import X86_64, Machine, MiB
from refimpl.kernel import PROT_EXEC, PROT_READ, PROT_WRITE, MemoryManager
from refimpl.kernel.anonymous_vmobject import COW_FAULT, COW_FAULT_LAST_HOLDER, ZERO_FAULT
from refimpl.kernel.invariants import (KernelSnapshot, address_space_violations,
                                       page_table_refcount_violations, physical_page_violations)
from refimpl.kernel.process import (LOAD_RANGE_SIZE, LOAD_RANGE_START, Process,
                                    ProgramFileVMObject, ProgramImage, Segment,
                                    create_signal_trampoline)
from tests.kernel_helpers import sweep_allocation_failures

PAGE = 4096
RW, RX = PROT_READ | PROT_WRITE, PROT_READ | PROT_EXEC
EPERM, ESRCH, ENOEXEC, EFAULT, EINVAL = 1, 3, 8, 14, 22


def booted() -> MemoryManager:
    """A kernel whose signal trampoline exists (SerenityOS makes it at boot)."""
    mm = MemoryManager(Machine(X86_64, ram_size=16 * MiB, cpu_count=2))
    MUST(create_signal_trampoline(mm))
    return mm


def check(mm, *processes):
    for process in processes:
        assert address_space_violations(process.space) == []
    assert page_table_refcount_violations(mm) == []
    assert physical_page_violations(mm) == []


def layout_of(process):
    return [(region.name, int(region.vaddr()), region.size(), region.access.describe())
            for region in process.space.region_tree.regions()]


def test_exec_builds_the_regions_serenityos_execve_builds():
    mm = booted()
    process = MUST(Process.try_exec(mm, ProgramImage.example(), seed=0))
    base = process.load_base
    assert LOAD_RANGE_START <= base < LOAD_RANGE_START + LOAD_RANGE_SIZE
    assert base % PAGE == 0 and process.entry == base + 0x10
    regions = {region.name: region for region in process.space.region_tree.regions()}
    assert sorted(regions) == sorted([
        "/bin/hello", "/bin/hello (data-rw)", "/bin/hello (master-tls)",
        "Stack (Main thread)", "Signal trampoline", "Thread-specific"])
    text, rodata = sorted((region for region in process.space.region_tree.regions()
                           if region.name == "/bin/hello"), key=lambda region: region.vaddr())
    assert (int(text.vaddr()), text.size(), text.access.describe()) == (base, 2 * PAGE, "r-x")
    assert (int(rodata.vaddr()), rodata.access.describe()) == (base + 2 * PAGE, "r--")
    assert text.shared and rodata.shared and text.vmobject is rodata.vmobject
    assert isinstance(text.vmobject, ProgramFileVMObject)
    data = regions["/bin/hello (data-rw)"]
    assert (int(data.vaddr()), data.size(), data.access.describe()) == \
        (base + 3 * PAGE, 3 * PAGE, "rw-")
    stack = regions["Stack (Main thread)"]
    assert stack.size() == 1 * MiB and stack.stack and stack.access.describe() == "rw-"
    trampoline = regions["Signal trampoline"]
    assert trampoline.size() == PAGE and trampoline.shared
    assert trampoline.access.describe() == "r-x"
    assert trampoline.vmobject is MUST(create_signal_trampoline(mm)).vmobject
    assert regions["/bin/hello (master-tls)"].size() == PAGE
    assert regions["Thread-specific"].size() == PAGE
    assert not any(region.mmap for region in regions.values())  # munmap may not touch them
    assert stack.range.base <= process.stack_pointer < stack.range.end
    assert process.stack_pointer % 16 == 0
    check(mm, process)


def test_exec_copies_the_data_and_maps_the_file():
    mm = booted()
    process = MUST(Process.try_exec(mm, ProgramImage.example(), seed=0))
    assert MUST(process.read(process.address_of("rodata"), 16)) == b"Hello, friends!\n"
    assert MUST(process.read(process.address_of("data"), 10)) == b"counter=0\0"
    assert MUST(process.read(process.address_of("data") + PAGE, 4)) == bytes(4)  # .bss
    # the data page, the stack's top page, the thread-specific page: three demand-zero faults
    assert process.faults == {ZERO_FAULT: 3}
    thread_specific = process.address_of("thread-specific")
    self_pointer = MUST(process.read(thread_specific + 64, 8))
    assert int.from_bytes(self_pointer, "little") == thread_specific + 64


def test_a_write_only_segment_is_named_as_serenityos_names_it():
    image = ProgramImage("/bin/w", (Segment("text", 0, PAGE, RX), Segment("out", PAGE, PAGE,
                                                                          PROT_WRITE | PROT_EXEC)))
    process = MUST(Process.try_exec(booted(), image))
    region = process.region_named("out")
    assert region.name == "/bin/w (data-w)"
    assert region.access.describe() == "-w-"  # a writable segment is never executable


def test_text_is_never_written():
    mm = booted()
    process = MUST(Process.try_exec(mm, ProgramImage.example(), seed=0))
    text = process.address_of("text")
    assert process.write(text, b"x").error().code() == EFAULT
    assert process.mprotect(text, PAGE, RW).error().code() == EPERM
    assert process.munmap(text, PAGE).error().code() == EPERM
    assert MUST(process.read(text, 4)) == b"\x55\x48\x89\xe5"


def test_the_same_seed_gives_the_same_layout_and_others_differ():
    mm = booted()
    first = MUST(Process.try_exec(mm, ProgramImage.example(), seed=7))
    again = MUST(Process.try_exec(mm, ProgramImage.example(), seed=7))
    assert layout_of(first) == layout_of(again)
    bases = {MUST(Process.try_exec(mm, ProgramImage.example(), seed=seed)).load_base
             for seed in range(4)}
    assert len(bases) == 4


def test_processes_running_one_image_share_its_file_until_the_last_exits():
    mm = booted()
    free = mm.free_physical_pages()
    first = MUST(Process.try_exec(mm, ProgramImage.example(), seed=1))
    second = MUST(Process.try_exec(mm, ProgramImage.example(), seed=2))
    file_first = first.region_named("text").vmobject
    assert second.region_named("text").vmobject is file_first
    assert (first.pid, second.pid) == (1, 2)
    first.exit()
    assert MUST(second.read(second.address_of("rodata"), 5)) == b"Hello"
    second.exit()
    assert file_first.ref_count() == 0
    assert mm.free_physical_pages() == free
    third = MUST(Process.try_exec(mm, ProgramImage.example(), seed=3))
    assert third.region_named("text").vmobject is not file_first  # loaded again


def test_exit_returns_every_page_and_every_byte_of_kernel_heap():
    mm = booted()
    before = KernelSnapshot.take(mm)
    process = MUST(Process.try_exec(mm, ProgramImage.example(), seed=0))
    heap = MUST(process.mmap(4 * PAGE, RW, name="heap"))
    MUST(process.write(heap, bytes(range(256)) * 40))
    child = MUST(process.fork(seed=1))
    MUST(child.write(heap, b"child"))
    child.exit()
    process.exit()
    assert before.differences(KernelSnapshot.take(mm)) == []
    assert process.read(heap, 1).error().code() == ESRCH
    with pytest.raises(ValueError, match="already exited"):
        process.exit()


def test_fork_breaks_copy_on_write_one_page_at_a_time():
    mm = booted()
    parent = MUST(Process.try_exec(mm, ProgramImage.example(), seed=0))
    data = parent.address_of("data")
    MUST(parent.write(data, b"P" * 3 * PAGE))  # all three pages resident
    parent.faults.clear()
    child = MUST(parent.fork(seed=1))
    region = parent.region_named("data")
    assert region.vmobject.cow_map == {0, 1, 2}
    free = mm.free_physical_pages()
    MUST(parent.write(data, b"p"))  # page 0: the parent copies
    assert parent.faults == {COW_FAULT: 1} and mm.free_physical_pages() == free - 1
    MUST(child.write(data, b"c"))  # page 0: the child is the last holder of the old page
    assert child.faults == {COW_FAULT_LAST_HOLDER: 1}
    assert mm.free_physical_pages() == free - 1
    MUST(child.write(data + PAGE, b"c"))  # page 1: now the child copies
    MUST(parent.write(data + PAGE, b"p"))  # and the parent keeps the old one
    assert parent.faults == {COW_FAULT: 1, COW_FAULT_LAST_HOLDER: 1}
    assert child.faults == {COW_FAULT_LAST_HOLDER: 1, COW_FAULT: 1}
    assert mm.free_physical_pages() == free - 2
    assert region.vmobject.cow_map == {2}  # page 2 is still shared
    assert MUST(parent.read(data, 1)) + MUST(child.read(data, 1)) == b"pc"
    assert MUST(parent.read(data + 2 * PAGE, 1)) == MUST(child.read(data + 2 * PAGE, 1)) == b"P"
    check(mm, parent, child)


def test_mmap_munmap_mprotect_go_through_the_syscalls():
    mm = booted()
    process = MUST(Process.try_exec(mm, ProgramImage.example(), seed=0))
    heap = MUST(process.mmap(6 * PAGE, RW, name="heap"))
    assert process.address_of("heap") == heap
    assert process.region_named("heap").size() == 6 * PAGE
    MUST(process.munmap(heap + 2 * PAGE, PAGE))
    MUST(process.mprotect(heap + 4 * PAGE, PAGE, PROT_READ))
    pieces = [(int(region.vaddr()) - heap, region.size() // PAGE, region.access.describe())
              for region in process.space.region_tree.regions() if region.name == "heap"]
    assert pieces == [(0, 2, "rw-"), (3 * PAGE, 1, "rw-"), (4 * PAGE, 1, "r--"),
                      (5 * PAGE, 1, "rw-")]
    assert process.write(heap + 2 * PAGE, b"x").error().code() == EFAULT
    assert process.mmap(PAGE, RX).error().code() == EINVAL  # anonymous memory is never X
    check(mm, process)


BAD_IMAGES = {
    "no segment": (ProgramImage("/bin/empty", ()), ENOEXEC),
    "empty segment": (ProgramImage("/bin/x", (Segment("text", 0, 0, RX),)), ENOEXEC),
    "unknown prot": (ProgramImage("/bin/x", (Segment("text", 0, PAGE, 8),)), EINVAL),
    "data outside": (ProgramImage("/bin/x", (Segment("text", 0, 4, RX, b"12345"),)), ENOEXEC),
    "misaligned": (ProgramImage("/bin/x", (Segment("text", 100, PAGE, RX),)), EINVAL),
    "overlap": (ProgramImage("/bin/x", (Segment("text", 0, 2 * PAGE, RX),
                                        Segment("data", PAGE, PAGE, RW))), ENOEXEC),
    "too large": (ProgramImage("/bin/x", (Segment("text", LOAD_RANGE_SIZE, PAGE, RX),)),
                  ENOEXEC),
}


@pytest.mark.parametrize("case", sorted(BAD_IMAGES))
def test_a_bad_image_is_refused_and_leaves_no_trace(case):
    image, errno = BAD_IMAGES[case]
    mm = booted()
    before = KernelSnapshot.take(mm)
    result = Process.try_exec(mm, image)
    assert result.is_error() and result.error().code() == errno
    assert before.differences(KernelSnapshot.take(mm)) == []
    assert MUST(Process.try_exec(mm, ProgramImage.example())).pid == 1  # no pid was used


def test_wrong_types_are_type_errors_naming_the_argument():
    with pytest.raises(TypeError, match="size"):
        Segment("text", 0, "4096", RX)
    with pytest.raises(TypeError, match="segments"):
        ProgramImage("/bin/x", [Segment("text", 0, PAGE, RX)])
    with pytest.raises(TypeError, match="image"):
        Process.try_exec(booted(), "/bin/hello")


def test_exec_failing_on_any_allocation_leaves_no_trace():
    def setup():
        mm = booted()
        return mm, lambda: Process.try_exec(mm, ProgramImage.example(), seed=3)

    exercised = sweep_allocation_failures(setup)
    assert all(count > 0 for count in exercised.values())


@settings(max_examples=20)
@given(seed=st.integers(0, 2**32), tls=st.integers(0, 3 * PAGE),
       pages=st.lists(st.integers(1, 3), min_size=1, max_size=4))
def test_any_exec_lays_out_disjoint_user_regions_and_exit_frees_them(seed, tls, pages):
    mm = booted()
    segments, offset = [], 0
    for index, count in enumerate(pages):
        prot = RW if index == len(pages) - 1 else RX
        segments.append(Segment(f"s{index}", offset, count * PAGE, prot, b"%d" % index))
        offset += count * PAGE
    image = ProgramImage("/bin/prop", tuple(segments), tls_size=tls)
    before = KernelSnapshot.take(mm)
    process = MUST(Process.try_exec(mm, image, seed=seed))
    regions = process.space.region_tree.regions()
    assert all(region.is_user() for region in regions)
    assert all(a.range.end <= b.range.base for a, b in itertools.pairwise(regions))
    for segment in segments:
        address = process.address_of(segment.name)
        assert address == process.load_base + segment.offset
        assert MUST(process.read(address, len(segment.data))) == segment.data
    check(mm, process)
    process.exit()
    assert before.differences(KernelSnapshot.take(mm)) == []
