"""The refactoring diff: the code before and after a refactoring, side by side or unified.

Each lesson replays a refactoring whose *before* lives in `refimpl.history` and whose *after* is
`refimpl.kernel`, so the diff is read from our own modules (`source_pair`) rather than pasted
into the notebook, and cannot drift from the code the lesson runs. `DiffModel` is plain Python
over `difflib`; `RefactoringDiff` only turns it into controls and an HTML table with inline
styles (nothing fetched, no script).
"""

from __future__ import annotations

import difflib
import html
import inspect
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass

import ipywidgets as widgets

MODES = ("side by side", "unified")
KIND_COLOURS = {"equal": "", "changed": "#fff8c5", "added": "#e6ffec", "removed": "#ffebe9"}
ABSENT_COLOUR = "#f6f8fa"
_UNIFIED_KINDS = {"+": "added", "-": "removed", "@": "hunk"}
_UNIFIED_COLOURS = {**KIND_COLOURS, "hunk": "#ddf4ff", "header": "#eaeef2"}


@dataclass(frozen=True)
class DiffPair:
    """Two versions of one piece of code, with the labels the diff shows above them."""

    before: str
    after: str
    before_label: str = "before"
    after_label: str = "after"


@dataclass(frozen=True)
class DiffLine:
    number: int  # 1-based, in its own version
    text: str
    kind: str  # "equal", "changed", "added" or "removed"


@dataclass(frozen=True)
class DiffRow:
    """One row of the side-by-side view; a side is None where that version has no line."""

    left: DiffLine | None
    right: DiffLine | None


@dataclass(frozen=True)
class DiffStats:
    added: int
    removed: int


def _label(thing: object) -> str:
    """'package.module:Qualified.name' (entry-point notation), or the module's name."""
    if inspect.ismodule(thing):
        return thing.__name__
    return f"{thing.__module__}:{thing.__qualname__}"


def source_pair(before: object, after: object) -> DiffPair:
    """The dedented sources of two functions, classes or modules, labelled by where they live."""
    return DiffPair(textwrap.dedent(inspect.getsource(before)),
                    textwrap.dedent(inspect.getsource(after)), _label(before), _label(after))


def text_pair(before_text: str, after_text: str,
              labels: tuple[str, str] = ("before", "after")) -> DiffPair:
    """A pair of texts that are not importable objects (e.g. a file after a rename)."""
    return DiffPair(before_text, after_text, *labels)


def _block_rows(tag: str, left: list[tuple[int, str]],
                right: list[tuple[int, str]]) -> list[DiffRow]:
    """Rows for one difflib opcode: lines of both sides pair up ('equal', or 'changed' in a
    replaced block), then the longer side's extra lines are 'removed' or 'added'."""
    paired = "equal" if tag == "equal" else "changed"
    rows = []
    for index in range(max(len(left), len(right))):
        kind = paired if index < min(len(left), len(right)) else (
            "removed" if index < len(left) else "added")
        rows.append(DiffRow(DiffLine(*left[index], kind) if index < len(left) else None,
                            DiffLine(*right[index], kind) if index < len(right) else None))
    return rows


class DiffModel:
    """Named pairs, the one selected, and how it is shown."""

    def __init__(self, pairs: Mapping[str, DiffPair], mode: str = MODES[0]) -> None:
        if not pairs:
            raise ValueError("a diff view needs at least one pair of sources")
        self.pairs = dict(pairs)
        self.selected = next(iter(self.pairs))
        self.mode = MODES[0]
        self.set_mode(mode)

    def names(self) -> list[str]:
        return list(self.pairs)

    def select(self, name: str) -> None:
        if name not in self.pairs:
            raise ValueError(f"no pair named {name!r}; there are {', '.join(self.pairs)}")
        self.selected = name

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"mode is one of {', '.join(MODES)}, not {mode!r}")
        self.mode = mode

    def pair(self) -> DiffPair:
        return self.pairs[self.selected]

    def _lines(self) -> tuple[list[str], list[str]]:
        pair = self.pair()
        return pair.before.splitlines(), pair.after.splitlines()

    def rows(self) -> list[DiffRow]:
        """The side-by-side rows of the selected pair, top to bottom."""
        before, after = self._lines()
        # The matcher difflib.unified_diff uses (autojunk included), so both modes agree.
        matcher = difflib.SequenceMatcher(None, before, after)
        rows = []
        for tag, i1, i2, j1, j2 in matcher.get_opcodes():
            left = [(i + 1, before[i]) for i in range(i1, i2)]
            right = [(j + 1, after[j]) for j in range(j1, j2)]
            rows.extend(_block_rows(tag, left, right))
        return rows

    def stats(self) -> DiffStats:
        """Lines added and removed, counted as a unified diff does (a changed line is both)."""
        rows = self.rows()
        return DiffStats(sum(row.right is not None and row.right.kind != "equal" for row in rows),
                         sum(row.left is not None and row.left.kind != "equal" for row in rows))

    def unified(self) -> str:
        """The selected pair as a unified diff ('' when the two are the same)."""
        before, after = self._lines()
        pair = self.pair()
        return "\n".join(difflib.unified_diff(before, after, pair.before_label, pair.after_label,
                                              lineterm=""))


_CELL = "padding:0 6px;white-space:pre;vertical-align:top"
_NUMBER = "padding:0 6px;text-align:right;color:#888;user-select:none"


def _side_cells(line: DiffLine | None) -> str:
    if line is None:
        return (f'<td style="{_NUMBER};background:{ABSENT_COLOUR}"></td>'
                f'<td style="{_CELL};background:{ABSENT_COLOUR}"></td>')
    background = KIND_COLOURS[line.kind]
    colour = f";background:{background}" if background else ""
    return (f'<td style="{_NUMBER}{colour}">{line.number}</td>'
            f'<td class="{line.kind}" style="{_CELL}{colour}">{html.escape(line.text)}</td>')


def _side_by_side(model: DiffModel) -> str:
    pair = model.pair()
    header = (f'<tr><th colspan="2" style="{_CELL}">{html.escape(pair.before_label)}</th>'
              f'<th colspan="2" style="{_CELL}">{html.escape(pair.after_label)}</th></tr>')
    body = "".join(f"<tr>{_side_cells(row.left)}{_side_cells(row.right)}</tr>"
                   for row in model.rows())
    return header + body


def _unified(model: DiffModel) -> str:
    """One row per line of the unified diff; its first two lines are the file headers."""
    rows = []
    for number, line in enumerate(model.unified().splitlines()):
        kind = "header" if number < 2 else _UNIFIED_KINDS.get(line[:1], "equal")
        background = _UNIFIED_COLOURS[kind]
        colour = f";background:{background}" if background else ""
        rows.append(f'<tr><td class="{kind}" style="{_CELL}{colour}">{html.escape(line)}</td></tr>')
    return "".join(rows)


def render_diff(model: DiffModel) -> str:
    """The diff's HTML: a summary line, then the table of the current mode."""
    stats = model.stats()
    summary = (f"lines added: {stats.added}, removed: {stats.removed}"
               if stats.added or stats.removed else "no differences")
    table = _unified(model) if model.mode == "unified" else _side_by_side(model)
    return (f'<div style="font-family:monospace;font-size:12px;overflow-x:auto"><p>{summary}</p>'
            f'<table style="border-collapse:collapse">{table}</table></div>')


class RefactoringDiff(widgets.VBox):
    """A pair chooser (hidden when there is one pair), a mode toggle and the diff."""

    def __init__(self, pairs: Mapping[str, DiffPair], mode: str = MODES[0]) -> None:
        self.model = DiffModel(pairs, mode)
        self.chooser = widgets.Dropdown(options=self.model.names(), value=self.model.selected,
                                        description="code")
        if len(self.model.pairs) == 1:
            self.chooser.layout.display = "none"
        self.mode = widgets.ToggleButtons(options=list(MODES), value=self.model.mode)
        self.output = widgets.HTML()
        for control in (self.chooser, self.mode):
            control.observe(self._changed, names="value")
        super().__init__([widgets.HBox([self.chooser, self.mode]), self.output])
        self._redraw()

    def _changed(self, _change: dict) -> None:
        self.model.select(self.chooser.value)
        self.model.set_mode(self.mode.value)
        self._redraw()

    def _redraw(self) -> None:
        self.output.value = render_diff(self.model)
