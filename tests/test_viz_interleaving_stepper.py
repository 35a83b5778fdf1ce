"""The stepper over lesson 07's failing schedule: the cursor, the lines, the faded future."""

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

from refimpl.history.atomic_place import AddressSpaceBeforePlace, find_then_insert_steps  # noqa: E402
from refimpl.kernel import explore, replay  # noqa: E402
from refimpl.kernel.invariants import address_space_violations  # noqa: E402
from refimpl.viz.interleaving_stepper import InterleavingStepper, StepperModel, plot_upto  # noqa: E402
from tests.test_history_atomic_place import _allocating_threads  # noqa: E402


def _failing_run():
    make = _allocating_threads(AddressSpaceBeforePlace, find_then_insert_steps)
    result = explore(make, check=lambda space: not address_space_violations(space))
    return replay(make, result.failing_schedule)


def test_the_model_lists_the_steps_up_to_the_cursor_and_refuses_others():
    model = StepperModel(_failing_run())
    assert len(model.lines()) == 1
    model.set_step(2)
    assert [line.split(": ")[0] for line in model.lines()] == ["1. first", "2. second"]
    assert "found" in model.lines()[1]
    for bad in (0, len(model.run.trace) + 1):
        with pytest.raises(ValueError):
            model.set_step(bad)
    assert model.step == 2


def test_the_figure_fades_the_steps_after_the_cursor_only():
    model = StepperModel(_failing_run())
    model.set_step(1)
    faded = plot_upto(model, "t").axes[0]
    model.set_step(len(model.run.trace))
    whole = plot_upto(model, "t").axes[0]
    assert len(faded.patches) == len(whole.patches) + 1  # one veil over the future


def test_moving_the_slider_changes_the_text():
    stepper = InterleavingStepper(_failing_run(), "t")
    before = stepper.text.value
    stepper.slider.value = 5
    assert stepper.text.value != before and stepper.text.value.count("<br>") == 4
