"""Step through a run: a slider moves a cursor along the timeline of `plot_interleaving`; the
steps after the cursor fade, and the text under the figure says what has happened so far.

`StepperModel` is the pure model (tests drive it); `InterleavingStepper` is the ipywidgets view.
"""

from __future__ import annotations

import html

import ipywidgets as widgets
from IPython.display import display

from refimpl.kernel.scheduler import Run
from refimpl.viz.interleaving import plot_interleaving


class StepperModel:
    """A run and a cursor: the number of steps done, from 1 to the length of the run."""

    def __init__(self, run: Run) -> None:
        if not run.trace:
            raise ValueError("the run has no steps to show")
        self.run = run
        self.step = 1

    def set_step(self, step: int) -> None:
        if not 1 <= step <= len(self.run.trace):
            raise ValueError(f"step is 1 to {len(self.run.trace)}, not {step}")
        self.step = step

    def lines(self) -> list[str]:
        """The steps done so far, one line each: number, thread, label."""
        return [f"{number}. {step.thread}: {step.label}"
                for number, step in enumerate(self.run.trace[:self.step], 1)]


def plot_upto(model: StepperModel, title: str):
    """The whole timeline, the steps after the cursor faded behind a dashed line."""
    figure = plot_interleaving(model.run, title)
    axes = figure.axes[0]
    last = len(model.run.trace)
    if model.step < last:
        axes.axvspan(model.step + 0.5, last + 0.6, color="white", alpha=0.75, zorder=3)
    axes.axvline(model.step + 0.5, color="#333", linestyle="--", zorder=4)
    return figure


class InterleavingStepper(widgets.VBox):
    """A slider over the steps of `run`; the figure and the list of steps follow it."""

    def __init__(self, run: Run, title: str) -> None:
        import matplotlib.pyplot as plt

        self.model, self._plt, self.title = StepperModel(run), plt, title
        self.slider = widgets.IntSlider(value=self.model.step, min=1, max=len(run.trace),
                                        description="after step")
        self.figure_view = widgets.Output()
        self.text = widgets.HTML()
        self.slider.observe(lambda change: self._update(), names="value")
        self._update()
        super().__init__([self.slider, self.figure_view, self.text])

    def _update(self) -> None:
        self.model.set_step(self.slider.value)
        self.figure_view.clear_output(wait=True)
        with self.figure_view:
            figure = plot_upto(self.model, self.title)
            display(figure)
            self._plt.close(figure)
        self.text.value = "<br>".join(html.escape(line) for line in self.model.lines())
