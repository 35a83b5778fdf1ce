"""Step through a program's run: a slider over the outcomes of `run_trace`; the address-space
map, the counters and the list of what ran follow it.

`TraceStepperModel` is the pure model (tests drive it): the outcomes and a cursor. The view,
`TraceStepper`, only draws the outcome under the cursor; moving the slider runs nothing, since
every outcome was recorded when the program ran.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import ipywidgets as widgets
from IPython.display import HTML, display

from refimpl.viz.tables import table_html


class TraceStepperModel:
    """The outcomes of a run and a cursor: the number of steps done, 1 to the last."""

    def __init__(self, outcomes: Sequence) -> None:
        if not outcomes:
            raise ValueError("the run has no steps to show")
        self.outcomes = list(outcomes)
        self.step = 1

    def set_step(self, step: int) -> None:
        if not isinstance(step, int) or not 1 <= step <= len(self.outcomes):
            raise ValueError(f"step is 1 to {len(self.outcomes)}, not {step!r}")
        self.step = step

    @property
    def current(self):
        return self.outcomes[self.step - 1]

    def lines(self) -> list[str]:
        """The steps done so far, one line each, the last one being the current step."""
        return [f"{number}. {outcome.text}"
                for number, outcome in enumerate(self.outcomes[:self.step], 1)]

    def counters(self) -> list[tuple[str, object]]:
        """What the counters say after the current step."""
        outcome = self.current
        faults = ", ".join(f"{count} {kind}" for kind, count in sorted(outcome.faults.items())
                           if count) or "none"
        resident = outcome.resident
        if isinstance(resident, dict):  # per process: "parent 11, child 12"
            resident = ", ".join(f"{name} {count}" for name, count in resident.items()) or "none"
        return [("faults during this step", faults),
                ("resident pages", resident),
                ("pages shared copy-on-write", outcome.cow_shared),
                ("free physical pages", outcome.free_pages)]

    def no_map(self) -> str:
        """What stands in for the map when the step's process has no address space left."""
        return f"No map after step {self.step}: the process has exited, its address space is gone."

    def title(self) -> str:
        return f"After step {self.step} of {len(self.outcomes)}: {self.current.text}"


class TraceStepper(widgets.VBox):
    """A slider over the steps; `plot(layout, title)` draws the map of the current step."""

    def __init__(self, outcomes: Sequence, plot) -> None:
        import matplotlib.pyplot as plt

        self.model, self._plot, self._plt = TraceStepperModel(outcomes), plot, plt
        self.slider = widgets.IntSlider(value=1, min=1, max=len(self.model.outcomes),
                                        description="after step",
                                        layout=widgets.Layout(width="600px"))
        self.figure_view = widgets.Output()
        self.text = widgets.HTML()
        self.slider.observe(lambda change: self._update(), names="value")
        self._update()
        super().__init__([self.slider, self.text, self.figure_view])

    def _update(self) -> None:
        self.model.set_step(self.slider.value)
        counters = table_html(["after this step", "value"], self.model.counters(), code=False)
        done = "<br>".join(html.escape(line) for line in self.model.lines())
        self.text.value = (f"<b>{html.escape(self.model.title())}</b>{counters}"
                           f'<details><summary>the steps so far</summary>{done}</details>')
        self.figure_view.clear_output(wait=True)
        with self.figure_view:
            if not self.model.current.layout:  # the process has exited: nothing to draw
                display(HTML(f"<p><i>{html.escape(self.model.no_map())}</i></p>"))
                return
            figure = self._plot(self.model.current.layout, self.model.title())
            display(figure)
            self._plt.close(figure)
