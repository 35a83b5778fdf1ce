"""The stepper over a program's run (lesson 09): the cursor, what it lists, what it counts, and
a view that redraws when the slider moves."""

from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from refimpl.viz.trace_stepper import TraceStepper, TraceStepperModel  # noqa: E402


def _outcomes():
    return [SimpleNamespace(text="mmap heap, 4 pages rw-", faults={}, resident=3, cow_shared=0,
                            free_pages=100, layout=["heap ...."]),
            SimpleNamespace(text="write 2 pages of heap", faults={"demand zero": 2}, resident=5,
                            cow_shared=0, free_pages=98, layout=["heap ##.."]),
            SimpleNamespace(text="fork", faults={}, resident={"parent": 5, "child": 5},
                            cow_shared=4, free_pages=95, layout=["heap cc.."]),
            SimpleNamespace(text="exit", faults={}, resident={}, cow_shared=0, free_pages=100,
                            layout=[])]


def _plot(layout, title):
    figure, axes = plt.subplots()
    axes.set_title(title)
    axes.text(0, 0, layout[0])
    return figure


def test_the_model_lists_the_steps_done_and_counts_the_current_one():
    model = TraceStepperModel(_outcomes())
    assert model.lines() == ["1. mmap heap, 4 pages rw-"]
    assert dict(model.counters())["faults during this step"] == "none"
    model.set_step(2)
    assert model.lines()[-1] == "2. write 2 pages of heap"
    assert dict(model.counters()) == {"faults during this step": "2 demand zero",
                                      "resident pages": 5, "pages shared copy-on-write": 0,
                                      "free physical pages": 98}
    assert model.title().startswith("After step 2 of 4")
    model.set_step(3)
    assert dict(model.counters())["resident pages"] == "parent 5, child 5"


def test_the_model_refuses_a_step_outside_the_run_and_keeps_its_cursor():
    model = TraceStepperModel(_outcomes())
    model.set_step(3)
    assert dict(model.counters())["pages shared copy-on-write"] == 4
    for bad in (0, 5, "2", 2.0):
        with pytest.raises(ValueError):
            model.set_step(bad)
    assert model.step == 3
    with pytest.raises(ValueError):
        TraceStepperModel([])


def test_moving_the_slider_redraws_the_text_and_the_map():
    drawn = []
    stepper = TraceStepper(_outcomes(), lambda layout, title: drawn.append(layout) or
                           _plot(layout, title))
    before = stepper.text.value
    stepper.slider.value = 3
    assert stepper.text.value != before and "After step 3 of 4: fork" in stepper.text.value
    assert drawn == [["heap ...."], ["heap cc.."]]
    stepper.slider.value = 4  # the process has exited: a sentence, not an empty map
    assert drawn == [["heap ...."], ["heap cc.."]]
    assert "the process has exited" in stepper.model.no_map()


def _events(*spec):
    from refimpl.viz.call_chain import ChainEvent
    return [ChainEvent(kind, depth, name, "", "") for kind, depth, name in spec]


def test_calls_are_paired_with_their_returns_in_call_order():
    from refimpl.viz.call_chain import calls_and_returns
    events = _events(("call", 0, "a"), ("call", 1, "b"), ("return", 1, "b"), ("call", 1, "c"),
                     ("return", 1, "c"), ("return", 0, "a"), ("call", 0, "d"))
    pairs = calls_and_returns(events)
    assert [(call.function, returned and returned.function) for call, returned in pairs] == \
        [("a", "a"), ("b", "b"), ("c", "c"), ("d", None)]
    assert [call.function for call, _ in calls_and_returns(events, lambda e: e.depth == 1)] == \
        ["b", "c"]


def test_the_lesson_s_fault_chain_ends_with_a_writable_pte_after_the_copy():
    from refimpl.ak import MUST
    from refimpl.hw import X86_64, Machine, MiB
    from refimpl.kernel import MemoryManager
    from refimpl.kernel.address_space import PROT_READ, PROT_WRITE
    from refimpl.kernel.process import Process, ProgramImage
    from refimpl.viz.address_space_map import page_fault_call_chain
    from refimpl.viz.call_chain import calls_and_returns
    mm = MemoryManager(Machine(X86_64, ram_size=16 * MiB))
    parent = MUST(Process.try_exec(mm, ProgramImage.example(), seed=9))
    heap = MUST(parent.mmap(4 * 4096, PROT_READ | PROT_WRITE, name="heap"))
    MUST(parent.write(heap, b"x" * 4096))
    child = MUST(parent.fork(seed=10))
    pairs = calls_and_returns(page_fault_call_chain(child, heap),
                              lambda call: call.depth <= 2 or not call.function.startswith("CPU."))
    names = [call.function for call, _ in pairs]
    assert names.index("Region.handle_fault") < names.index("AnonymousVMObject.handle_cow_fault") \
        < names.index("Region.remap_vmobject_page")
    cow = pairs[names.index("AnonymousVMObject.handle_cow_fault")]
    assert "read-only" in cow[0].probe and "writable" in pairs[names.index(
        "Region.remap_vmobject_page")][1].probe
