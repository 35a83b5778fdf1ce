import matplotlib

matplotlib.use("Agg")

from refimpl.history.kernel_tree_locks import destroy_steps_unregistering_first  # noqa: E402
from refimpl.history.kernel_tree_races import destroy_program, every_region_mapped  # noqa: E402
from refimpl.kernel import explore, replay  # noqa: E402
from refimpl.viz.interleaving import interleaving_rows, plot_interleaving  # noqa: E402


def _failing_run():
    make = destroy_program(destroy_steps_unregistering_first)
    result = explore(make, check=every_region_mapped)
    return replay(make, result.failing_schedule)


def test_rows_follow_the_schedule_lane_by_lane():
    run = _failing_run()
    lanes, boxes = interleaving_rows(run)
    assert lanes == ["destroy", "allocate"]
    assert "".join("AB"[box.lane] for box in boxes) == run.schedule
    assert [box.step for box in boxes] == list(range(1, len(run.schedule) + 1))
    assert {box.kind for box in boxes} == {"step", "finished"}


def test_the_figure_has_a_lane_per_thread_a_box_per_step_and_a_legend():
    run = _failing_run()
    figure = plot_interleaving(run, "Unregistered before unmapped")
    axes = figure.axes[0]
    assert [label.get_text() for label in axes.get_yticklabels()] == \
        ["destroy", "allocate"]
    assert len(axes.collections) == len(run.trace)
    assert axes.get_title() == "Unregistered before unmapped"
    assert axes.get_xlabel().startswith("step")
    assert [text.get_text() for text in axes.get_legend().get_texts()] == ["runs", "finished"]
