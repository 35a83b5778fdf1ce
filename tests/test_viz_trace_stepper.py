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
            SimpleNamespace(text="fork", faults={}, resident=10, cow_shared=4, free_pages=95,
                            layout=["heap cc.."])]


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
    assert model.title().startswith("After step 2 of 3")


def test_the_model_refuses_a_step_outside_the_run_and_keeps_its_cursor():
    model = TraceStepperModel(_outcomes())
    model.set_step(3)
    for bad in (0, 4, "2", 2.0):
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
    assert stepper.text.value != before and "After step 3 of 3: fork" in stepper.text.value
    assert drawn == [["heap ...."], ["heap cc.."]]
