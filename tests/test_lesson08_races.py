"""Lesson 08's programs (refimpl.history.kernel_tree_races) and the trace slider's model."""

import pytest

from refimpl.history import kernel_tree_locks as before
from refimpl.history.kernel_tree_races import (lookup_is_right, lookup_program,
                                               protected_lookup_is_right, protected_tree_program)
from refimpl.kernel import explore, replay
from refimpl.viz.interleaving import trace_slider, trace_until


def test_the_lessons_failing_schedule_replays_to_a_missed_lookup():
    make = lookup_program(before.kernel_region_from_vaddr_steps)
    found = explore(make, check=lookup_is_right)
    assert found.failing_schedule == "ABBBABB"
    assert replay(make, "ABBBABB").state.found is None


def test_a_tree_in_a_spinlock_protected_has_no_failing_interleaving():
    found = explore(protected_tree_program(), check=protected_lookup_is_right)
    assert found.failure is None and found.runs > 1


def test_the_protected_tree_cannot_be_reached_without_its_lock():
    state = protected_tree_program()().state
    with pytest.raises(AttributeError):
        state.protected.find_region_containing(0)
    assert state.protected.with_locked(lambda tree: state.protected.is_locked())
    assert not state.protected.is_locked()


def test_trace_until_marks_the_steps_before_at_and_after_the_slider():
    run = replay(lookup_program(before.kernel_region_from_vaddr_steps), "ABBBABB")
    rows = trace_until(run, 3)
    assert [when for *_, when in rows] == ["done", "done", "now"] + ["later"] * 4
    assert rows[0][1:3] == ("lookup", "lookup: found the candidate's index")
    with pytest.raises(ValueError):
        trace_until(run, 0)


def test_moving_the_slider_redraws_the_table():
    run = replay(lookup_program(before.kernel_region_from_vaddr_steps), "ABBBABB")
    slider, table = trace_slider(run).children
    first = table.value
    slider.value = 5
    assert table.value != first and "font-weight:bold'><td>5</td>" in table.value
    assert "step 5 of 7: <b>lookup</b> did <i>finished</i>" in table.value
