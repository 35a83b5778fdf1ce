"""An interleaving as a timeline: one lane per simulated thread (in the lessons, each on its
own CPU), one box per step, the step's label inside. Lessons 07 and 08 can draw the failing
schedule `explore()` found, and the same threads under a lock, so that the reader sees where the
other CPU slipped in.

`interleaving_rows` and `trace_until` are the pure models (tests read them); `plot_interleaving`
and `trace_slider` draw them.
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


def trace_until(run: Run, step: int) -> list[tuple[int, str, str, str]]:
    """The model behind `trace_slider`: every step of `run` as (number, thread, label, when),
    `when` being "done", "now" (step `step`) or "later"."""
    if not 1 <= step <= len(run.trace):
        raise ValueError(f"step must be 1 to {len(run.trace)}, not {step}")
    return [(number, entry.thread, entry.label,
             "done" if number < step else "now" if number == step else "later")
            for number, entry in enumerate(run.trace, 1)]


def _trace_html(rows: list[tuple[int, str, str, str]]) -> str:
    from html import escape
    styles = {"done": "", "now": "background:#ffd166;font-weight:bold", "later": "color:#bbb"}
    lines = "".join(f"<tr style='{styles[when]}'><td>{number}</td><td>{escape(thread)}</td>"
                    f"<td>{escape(label)}</td></tr>" for number, thread, label, when in rows)
    number, thread, label = next(row[:3] for row in rows if row[3] == "now")
    caption = (f"<p>step {number} of {len(rows)}: <b>{escape(thread)}</b> did "
               f"<i>{escape(label)}</i></p>")
    return (f"{caption}<table><tr><th>step</th><th>CPU's thread</th><th>what it just did</th>"
            f"</tr>{lines}</table>")


def trace_slider(run: Run):
    """A slider over the steps of `run`: the steps so far, the current one highlighted."""
    import ipywidgets as widgets

    slider = widgets.IntSlider(value=1, min=1, max=len(run.trace), description="step",
                               continuous_update=True)
    table = widgets.HTML(_trace_html(trace_until(run, 1)))
    slider.observe(lambda change: setattr(table, "value",
                                          _trace_html(trace_until(run, change["new"]))), "value")
    return widgets.VBox([slider, table])
