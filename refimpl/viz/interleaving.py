"""An interleaving as a timeline: one lane per simulated thread (in the lessons, each on its
own CPU), one box per step, the step's label inside. Lessons 07 and 08 can draw the failing
schedule `explore()` found, and the same threads under a lock, so that the reader sees where the
other CPU slipped in.

`interleaving_rows` is the pure model (tests read it); `plot_interleaving` draws it.
"""

from __future__ import annotations

from typing import NamedTuple

from refimpl.kernel.scheduler import Run


class TimelineBox(NamedTuple):
    step: int  # 1-based, as Run.format_trace numbers them
    lane: int
    label: str
    kind: str  # "step", "waiting" (blocked on a lock), "finished" or "panic"


def interleaving_rows(run: Run) -> tuple[list[str], list[TimelineBox]]:
    """The lanes (thread names, in the order they first run) and one box per step."""
    lanes: list[str] = []
    boxes = []
    for number, step in enumerate(run.trace, 1):
        if step.thread not in lanes:
            lanes.append(step.thread)
        if step.label.startswith("panic"):
            kind = "panic"
        elif step.label.startswith("waiting for"):
            kind = "waiting"
        elif step.label == "finished":
            kind = "finished"
        else:
            kind = "step"
        boxes.append(TimelineBox(number, lanes.index(step.thread), step.label, kind))
    return lanes, boxes


_COLOURS = {"step": "#8ecae6", "waiting": "#ffd166", "finished": "#d9d9d9", "panic": "#e76f51"}
_NAMES = {"step": "runs", "waiting": "waits for a lock", "finished": "finished",
          "panic": "kernel panic"}


def plot_interleaving(run: Run, title: str, wrap: int = 16):
    """A matplotlib Figure of `run`: time (steps) across, one lane per thread."""
    import textwrap

    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    lanes, boxes = interleaving_rows(run)
    figure, axes = plt.subplots(figsize=(min(12, 1.2 + 1.25 * len(boxes)), 1.2 + 1.1 * len(lanes)))
    for box in boxes:
        axes.broken_barh([(box.step - 0.48, 0.96)], (box.lane - 0.4, 0.8),
                         facecolors=_COLOURS[box.kind], edgecolors="#333")
        axes.text(box.step, box.lane, textwrap.fill(box.label, wrap), ha="center", va="center",
                  fontsize=7)
    axes.set_yticks(range(len(lanes)), lanes)
    axes.set_ylim(len(lanes) - 0.5, -0.5)
    axes.set_xticks(range(1, len(boxes) + 1))
    axes.set_xlim(0.4, len(boxes) + 0.6)
    axes.set_xlabel(f"step (schedule {run.schedule!r})")
    axes.set_title(title)
    kinds = [kind for kind in _COLOURS if any(box.kind == kind for box in boxes)]
    axes.legend(handles=[Patch(facecolor=_COLOURS[kind], edgecolor="#333", label=_NAMES[kind])
                         for kind in kinds], loc="upper left", bbox_to_anchor=(1.0, 1.0),
                fontsize=8)
    figure.tight_layout()
    return figure
