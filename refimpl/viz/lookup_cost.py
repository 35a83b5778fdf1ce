"""The region lookup cache's cost and benefit at one size, chosen with a slider (lesson 05).

`LookupCostModel` holds the rows of `refimpl.history.region_lookup_cost.measure_lookup_costs`
and the one selected; `render_lookup_cost` draws it as a table with a bar per variant, all rows
on one scale (inline styles only); `LookupCostExplorer` is the slider and the HTML.
"""

from __future__ import annotations

import html

import ipywidgets as widgets

from refimpl.history.region_lookup_cost import VARIANTS, saving, variant_name

_COLOURS = {"list": "#d62728", "tree": "#1f77b4"}


class LookupCostModel:
    """Measured rows, one per program size, and which one is shown."""

    def __init__(self, rows: list[dict]) -> None:
        if not rows:
            raise ValueError("the explorer needs at least one measured row")
        self.rows = rows
        self.index = 0

    def select(self, index: int) -> None:
        if not 0 <= index < len(self.rows):
            raise ValueError(f"index is between 0 and {len(self.rows) - 1}, not {index}")
        self.index = index

    def row(self) -> dict:
        return self.rows[self.index]

    def widest(self) -> float:
        """The largest cost over all rows: bars share one scale as the slider moves."""
        return max(row[variant_name(*variant)] for row in self.rows for variant in VARIANTS)

    def bars(self) -> list[tuple[str, float]]:
        """(variant, comparisons per lookup), in the order of VARIANTS."""
        row = self.row()
        return [(variant_name(*variant), row[variant_name(*variant)]) for variant in VARIANTS]

    def summary(self) -> str:
        row = self.row()
        return (f"{row['regions']:.0f} regions on average, {row['lookups']} lookups, "
                f"cache hit rate {100 * row['hit rate']:.0f}%: the cache saves "
                f"{saving(row, 'list'):.1f} comparisons per lookup over the list, "
                f"{saving(row, 'tree'):.1f} over the tree")


def render_lookup_cost(model: LookupCostModel) -> str:
    widest = model.widest() or 1
    rows = []
    for name, value in model.bars():
        colour = _COLOURS[name.split()[0]]
        width = max(1, round(400 * value / widest))
        rows.append(f'<tr><td style="padding:2px 8px">{html.escape(name)}</td>'
                    f'<td style="padding:2px 8px;text-align:right">{value:.1f}</td>'
                    f'<td><div class="bar" style="width:{width}px;height:12px;'
                    f'background:{colour}"></div></td></tr>')
    return (f'<div style="font-size:13px"><p>{html.escape(model.summary())}</p>'
            f'<table style="border-collapse:collapse"><tr><th style="text-align:left;'
            f'padding:2px 8px">lookup</th><th style="padding:2px 8px">comparisons per lookup'
            f'</th><th></th></tr>{"".join(rows)}</table></div>')


class LookupCostExplorer(widgets.VBox):
    """A slider over the program sizes and the costs at the chosen one."""

    def __init__(self, rows: list[dict], index: int = 0) -> None:
        self.model = LookupCostModel(rows)
        self.model.select(index)
        self.slider = widgets.SelectionSlider(
            options=[(f"{row['blocks']} heap blocks", i) for i, row in enumerate(rows)],
            value=index, description="program", continuous_update=False,
            layout=widgets.Layout(width="500px"), style={"description_width": "initial"})
        self.output = widgets.HTML()
        self.slider.observe(self._changed, names="value")
        super().__init__([self.slider, self.output])
        self._redraw()

    def _changed(self, _change: dict) -> None:
        self.model.select(self.slider.value)
        self._redraw()

    def _redraw(self) -> None:
        self.output.value = render_lookup_cost(self.model)
