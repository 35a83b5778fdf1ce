"""Figures for the lessons (matplotlib): what a picture says better than a table.

Each function returns a `LessonFigure`, a matplotlib `Figure` built without pyplot (no global
state) that draws itself as a PNG when it is a cell's last value. Axes are labelled, each figure has a
title, and a legend wherever there is more than one kind of thing drawn.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import io
from datetime import date

import matplotlib.dates as mdates
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from refimpl.hw import PagingFormat, WalkTrace, level_name

FIELD_COLOURS = ("#d55e00", "#e69f00", "#009e73", "#0072b2", "#cc79a7", "#56b4e9")
"""One colour per index field, top level first (Okabe-Ito); the offset is grey."""
OFFSET_COLOUR = "#bbbbbb"


class LessonFigure(Figure):
    """A Figure that IPython shows as a PNG, whatever matplotlib backend is (not) active."""

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", dpi=100)
        return buffer.getvalue()


def _hex_axis(axis) -> None:
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{int(value):#x}"))


def address_split_figure(fmt: PagingFormat, vaddr: int) -> LessonFigure:
    """The bits of `vaddr` cut into the format's table indices and the page offset, each field
    labelled with its value in hex."""
    figure = LessonFigure(figsize=(9, 2.4), layout="constrained")
    axes = figure.add_subplot()
    fields = [(level_name(fmt, level), fmt.level_shift(level), fmt.level_bits[level],
               fmt.index(vaddr, level), FIELD_COLOURS[level % len(FIELD_COLOURS)])
              for level in range(fmt.levels)]
    fields.append(("offset", 0, fmt.page_shift, fmt.page_offset(vaddr), OFFSET_COLOUR))
    for name, low, width, value, colour in fields:
        axes.barh(0, width, left=low, color=colour, edgecolor="black",
                  label=f"{name}: bits {low + width - 1}..{low}")
        axes.text(low + width / 2, 0, f"{name}\n{value:#x}", ha="center", va="center",
                  fontsize=9, color="white" if colour in FIELD_COLOURS[:4:3] else "black")
    top = fmt.virtual_address_bits
    axes.set_xlim(top, 0)  # bit 0 on the right, as an address is written
    axes.set_xticks([top] + [low for _, low, *_ in fields])
    axes.set_yticks([])
    axes.set_xlabel("bit of the virtual address (field boundaries)")
    axes.set_title(f"{fmt.name}: virtual address {vaddr:#x} = table indices + page offset")
    figure.legend(loc="outside lower center", ncol=len(fields), fontsize=8, frameon=False)
    return figure


def page_walk_figure(trace: WalkTrace) -> LessonFigure:
    """Where in physical memory each step of a walk reads: CR3's table, one entry per level,
    then the byte itself (or the level where the walk stopped)."""
    figure = LessonFigure(figsize=(9, 3.2), layout="constrained")
    axes = figure.add_subplot()
    steps = [(f"{step.name}[{step.index:#x}]", step.entry_address) for step in trace.steps]
    axes.plot(range(len(steps)), [address for _, address in steps], "o-", color="#0072b2",
              label="page-table entry read")
    for x, (name, address) in enumerate(steps):
        axes.annotate(f"{name} at {address:#x}", (x, address), textcoords="offset points",
                      xytext=(6, 6), fontsize=9)
    labels = [name for name, _ in steps]
    if trace.physical_address is not None:
        x = len(steps)
        axes.plot([x - 1, x], [steps[-1][1], trace.physical_address], "--", color="#555555")
        axes.plot([x], [trace.physical_address], "s", color="#d55e00", markersize=9,
                  label="the byte addressed")
        axes.annotate(f"data at {trace.physical_address:#x}", (x, trace.physical_address),
                      textcoords="offset points", xytext=(6, -12), fontsize=9)
        labels.append("data")
    axes.set_xticks(range(len(labels)), labels)
    axes.set_xlim(-0.3, len(labels) - 0.3)
    # ticks where the tables start (and at the data): the frames the walk visits
    axes.set_yticks(sorted({step.table_address for step in trace.steps} |
                           ({trace.physical_address} if trace.physical_address is not None
                            else set())))
    _hex_axis(axes.yaxis)
    axes.set_xlabel("step of the walk")
    axes.set_ylabel("physical address read")
    axes.set_title(f"the MMU's walk for {trace.vaddr:#x}: {trace.summary()}")
    axes.legend(loc="upper left", fontsize=8)
    return figure


def ranges_figure(window: tuple[int, int], free: Sequence[tuple[int, int]],
                  allocated: Mapping[str, tuple[int, int]], title: str,
                  page_size: int = 0x1000) -> LessonFigure:
    """A window of an address space as one bar of pages: the free ranges and the allocated
    ones (named). Ranges are (base, size); each page boundary in the window is a tick."""
    figure = LessonFigure(figsize=(9, 2.2), layout="constrained")
    axes = figure.add_subplot()
    base, size = window
    axes.broken_barh(list(free), (0, 1), color="#009e73", edgecolor="white", label="free")
    for index, (name, (start, length)) in enumerate(allocated.items()):
        axes.broken_barh([(start, length)], (0, 1), color=FIELD_COLOURS[(index + 3) % 6],
                         edgecolor="white", label=f"allocated: {name}")
    axes.set_xlim(base, base + size)
    step = page_size * max(1, size // page_size // 16)
    axes.set_xticks(range(base, base + size + 1, step))
    axes.set_yticks([])
    _hex_axis(axes.xaxis)
    axes.set_xlabel("virtual address")
    axes.set_title(title)
    figure.legend(loc="outside lower center", ncol=1 + len(allocated), fontsize=8,
                  frameon=False)
    return figure


def timeline_figure(events: Sequence[tuple[date, str, str, str]], title: str) -> LessonFigure:
    """Commits on a time axis: (date, short hash, what it did, kind); one colour per kind."""
    figure = LessonFigure(figsize=(9, 1.2 + 0.4 * len(events)), layout="constrained")
    axes = figure.add_subplot()
    kinds = list(dict.fromkeys(kind for *_, kind in events))
    for row, (day, commit, what, kind) in enumerate(events):
        colour = FIELD_COLOURS[kinds.index(kind) % len(FIELD_COLOURS)]
        axes.plot([day], [row], "o", color=colour, markersize=8,
                  label=kind if kind not in axes.get_legend_handles_labels()[1] else None)
        axes.annotate(f"{day:%Y-%m-%d}  {commit}  {what}", (day, row), textcoords="offset points",
                      xytext=(8, -3), fontsize=9)
    first, last = min(e[0] for e in events), max(e[0] for e in events)
    # room on the right for the labels, but the time axis itself stops at the last commit
    axes.set_xlim(first - (last - first) * 0.03, last + (last - first) * 1.4)
    axes.set_xticks([date(year, 1, 1) for year in range(first.year + 1, last.year + 1)])
    axes.spines["bottom"].set_bounds(mdates.date2num(first), mdates.date2num(last))
    axes.xaxis.set_major_formatter(mdates.DateFormatter("%Y"))
    for side in ("top", "right", "left"):
        axes.spines[side].set_visible(False)
    axes.set_ylim(len(events) - 0.5, -0.5)
    axes.set_yticks([])
    axes.set_xlabel("date")
    axes.set_title(title)
    figure.legend(loc="outside lower center", ncol=len(kinds), fontsize=8, frameon=False)
    return figure
