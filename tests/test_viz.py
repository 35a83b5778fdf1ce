"""The widgets' models: set a value, check what would be drawn."""

import pytest

from refimpl.hw import TINY, X86_64, Machine, MiB, PTEFlags
from refimpl.kernel import MemoryManager
from refimpl.kernel.prekernel import PageTableBuilder
from refimpl.viz import (MachineOnOneScreen, PageWalkExplorer, PageWalkModel, RamModel,
                         parse_address, render_ram, render_walk)

P, RW, US = PTEFlags.PRESENT, PTEFlags.READ_WRITE, PTEFlags.USER_SUPERVISOR


@pytest.fixture
def tiny():
    machine = Machine(TINY, ram_size=512)
    builder = PageTableBuilder(machine.memory, range(1, 6))
    builder.map(0x340, 0x0C, P | RW | US)
    builder.map(0x800, 0x10, P | RW)
    return machine, builder.root


def test_parse_address_accepts_what_learners_type():
    assert parse_address("0x2000_200000") == 0x2000200000
    assert parse_address(" FF ") == 0xFF
    with pytest.raises(ValueError, match="not a hexadecimal address"):
        parse_address("0xZZ")
    with pytest.raises(ValueError, match="type an address"):
        parse_address("  ")


def test_walk_model_rows_and_fields(tiny):
    machine, cr3 = tiny
    model = PageWalkModel(machine.memory, cr3, "0x347")
    assert model.ok and model.message == "0x347 -> physical 0xc7 (read by supervisor: allowed)"
    assert model.index_fields() == [("PD", "11..8", 3), ("PT", "7..4", 4), ("offset", "3..0", 7)]
    rows = model.rows()
    assert [row["level"] for row in rows] == ["PD", "PT"]
    assert rows[1]["entry"] == "ec" and rows[1]["meaning"] == "frame 0xc P RW US"
    assert [row["index"] for row in rows] == ["0x3", "0x4"]  # hex, as the address split
    assert model.touched_addresses() == {0x13: "PD", 0x24: "PT", 0xC7: "data"}


def test_walk_model_faults_and_bad_input(tiny):
    machine, cr3 = tiny
    model = PageWalkModel(machine.memory, cr3, "0x500")
    assert not model.ok and "PD entry 5 is not present" in model.message
    model.set_address("0x805")
    model.set_access("read", user=True)
    assert "protection violation on read by user" in model.message
    model.set_address("banana")
    assert model.trace is None and "not a hexadecimal address" in model.message
    assert model.rows() == [] and model.index_fields() == []
    model.set_address("0x1000")
    assert "outside the 12-bit" in model.message
    assert "outside the 12-bit" in render_walk(model)
    with pytest.raises(ValueError):
        model.set_access("jump")


def test_explorer_redraws_when_a_control_changes(tiny):
    machine, cr3 = tiny
    explorer = PageWalkExplorer(machine.memory, cr3, "0x347")
    assert "physical 0xc7" in explorer.output.value
    explorer.address.value = "0x805"
    explorer.user.value = True
    assert "protection violation" in explorer.output.value
    explorer.address.value = "not hex"
    assert "not a hexadecimal address" in explorer.output.value
    assert "Traceback" not in explorer.output.value


def test_machine_on_one_screen_outlines_the_walk(tiny):
    machine, cr3 = tiny
    view = MachineOnOneScreen(machine.memory, cr3, "0x347")
    assert view.grid.value.count(";outline:") == 3  # PD entry, PT entry, data byte
    view.explorer.address.value = "0x500"
    assert view.grid.value.count(";outline:") == 1  # only the missing PD entry


def test_own_copy_keeps_showing_the_machine_as_it_was(tiny):
    machine, cr3 = tiny
    view = MachineOnOneScreen(machine.memory, cr3, "0x347", own_copy=True)
    explorer = PageWalkExplorer(machine.memory, cr3, "0x347", own_copy=True)
    live = PageWalkExplorer(machine.memory, cr3, "0x347")
    for frame in range(32):
        machine.memory.write(frame * 16, bytes(16))  # wipe every table
    for widget in (view.explorer, explorer, live):
        widget.address.value = "0x348"
    assert "physical 0xc8" in view.explorer.output.value and "physical 0xc8" in \
        explorer.output.value
    assert "not present" in live.output.value
    assert view.explorer.model.memory is view.ram.memory is not machine.memory


def test_ram_model_roles(tiny):
    machine, cr3 = tiny
    roles = RamModel(machine.memory, cr3).roles()
    assert roles[cr3 // 16] == "top-level table"
    assert roles[0x0C] == "mapped page" and roles[0x10] == "mapped page"
    assert sorted(frame for frame, role in roles.items() if role == "page table") == [2, 3]
    model = RamModel(machine.memory, cr3)
    html = render_ram(model, {0xC7: "data"})
    # runs of unused zero frames fold into one row each (a run of one stays a frame)
    assert [row[:2] if len(row) == 3 else row for row in model.shown_rows()] == [
        (0, "unused"), (1, "top-level table"), (2, "page table"), (3, "page table"), (4, 0xB),
        (0xC, "mapped page"), (0xD, 0xF), (0x10, "mapped page"), (0x11, 0x1F)]
    assert html.count("<tr>") == 1 + 9 and 'title="data"' in html
    assert list(model.legend()) == ["top-level table", "page table", "mapped page", "unused"]


def test_ram_view_refuses_big_machines():
    with pytest.raises(ValueError, match="at most 64 frames"):
        RamModel(Machine(X86_64, ram_size=4 * MiB).memory, 0)


def test_explorer_on_the_kernel():
    mm = MemoryManager(Machine(X86_64, ram_size=16 * MiB))
    model = PageWalkModel(mm.machine.memory, mm.kernel_page_directory().cr3(),
                          hex(mm.layout.kernel_load_base))
    assert model.ok
    assert [value for _, _, value in model.index_fields()] == [0, 128, 1, 0, 0]
    model.set_address("0x800000000000")
    assert "not canonical" in model.message


def _recorded_chain():
    from refimpl.viz import quickmap_pd_probe, record_call_chain
    from refimpl.ak import MUST
    from refimpl.kernel import PageDirectory
    mm = MemoryManager(Machine(X86_64, ram_size=16 * MiB))
    directory = MUST(PageDirectory.try_create_for_userspace(mm))
    return record_call_chain(lambda: mm.ensure_pte(directory, 0x40_0000),
                             ["MemoryManager.ensure_pte", "MemoryManager.quickmap_pd",
                              "MemoryManager.allocate_physical_page"],
                             probe=quickmap_pd_probe(mm))


def test_record_call_chain_nests_calls_and_returns():
    result, events = _recorded_chain()
    assert not result.is_error()
    assert [(e.kind, e.depth, e.function.split(".")[-1]) for e in events] == [
        ("call", 0, "ensure_pte"), ("call", 1, "quickmap_pd"), ("return", 1, "quickmap_pd"),
        ("call", 1, "allocate_physical_page"), ("return", 1, "allocate_physical_page"),
        ("return", 0, "ensure_pte")]
    assert "vaddr=0x400000" in events[0].detail
    assert events[2].probe == "PD window shows the user PD for PDPT index 0"


def test_call_chain_model_and_stepper():
    from refimpl.viz import CallChainModel, CallChainStepper
    _, events = _recorded_chain()
    model = CallChainModel(events)
    model.set_step(3)
    assert [call.function.split(".")[-1] for call in model.stack()] == [
        "ensure_pte", "allocate_physical_page"]
    assert model.headline() == "step 3/5: calls MemoryManager.allocate_physical_page"
    with pytest.raises(ValueError, match="outside 0..5"):
        model.set_step(6)
    with pytest.raises(ValueError, match="nothing to step"):
        CallChainModel([])
    stepper = CallChainStepper(events)
    first = stepper.output.value
    stepper.slider.value = 5
    assert stepper.output.value != first and "returns from MemoryManager.ensure_pte" in \
        stepper.output.value
