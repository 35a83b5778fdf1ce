"""The refactoring diff: the code before and after a refactoring, unified or side by side.

Each lesson replays a refactoring whose *before* lives in `refimpl.history` and whose *after* is
`refimpl.kernel`, so the diff is read from our own modules (`source_pair`) rather than pasted
into the notebook, and cannot drift from the code the lesson runs. `DiffModel` is plain Python
over `difflib`; `RefactoringDiff` only turns it into controls and an HTML table with inline
styles (nothing fetched, no script).

Only what changed is shown: when both sides are Python, every function or method without a
changed line is folded into one grey line naming it ("3 unchanged lines: def dump"); lines outside
any function keep `CONTEXT` lines around each change. Long lines wrap, so the table fits the
notebook's width (1280 px screens included) and never scrolls sideways.
"""

from __future__ import annotations

import ast
import difflib
import html
import inspect
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass

import ipywidgets as widgets

MODES = ("unified", "side by side")
CONTEXT = 2  # unchanged lines kept around a change outside any function
KIND_COLOURS = {"equal": "", "changed": "#fff8c5", "added": "#e6ffec", "removed": "#ffebe9"}
ABSENT_COLOUR = "#f6f8fa"
HEADER_COLOUR = "#eaeef2"


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
class Fold:
    """Unchanged lines left out of the view: how many, and the functions they hold."""

    count: int
    functions: tuple[str, ...] = ()

    def describe(self) -> str:
        lines = "line" if self.count == 1 else "lines"
        names = f": {', '.join(self.functions)}" if self.functions else ""
        return f"⋯ {self.count} unchanged {lines}{names}"


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

    def __init__(self, pairs: Mapping[str, DiffPair], mode: str = MODES[0],
                 changed_only: bool = True, context: int | None = None) -> None:
        """`context`: None shows each changed function whole; a number shows only that many
        lines around each changed line (for a rename, where every function changes a little)."""
        if not pairs:
            raise ValueError("a diff view needs at least one pair of sources")
        if context is not None and context < 0:
            raise ValueError(f"context is None or a number of lines >= 0, not {context}")
        self.pairs = dict(pairs)
        self.selected = next(iter(self.pairs))
        self.mode = MODES[0]
        self.set_mode(mode)
        self.changed_only = changed_only
        self.context = context

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

    def shown_rows(self) -> list[DiffRow | Fold]:
        """The rows the view draws: with `changed_only`, unchanged code folded away."""
        rows = self.rows()
        if not self.changed_only or all(row_kind(row) == "equal" for row in rows):
            return list(rows)
        before, after = self._lines()
        whole = self.context is None
        left_spans = function_spans(before) if whole else []
        right_spans = function_spans(after) if whole else []
        around = CONTEXT if whole else self.context
        keep = [False] * len(rows)
        changed_left, changed_right = set(), set()  # functions with a changed line, per side
        for index, row in enumerate(rows):
            if row_kind(row) == "equal":
                continue
            left, right = _span_of(left_spans, row.left), _span_of(right_spans, row.right)
            changed_left.add(left)
            changed_right.add(right)
            if left is None and right is None:  # outside any function: a little context
                for near in range(max(0, index - around), min(len(rows), index + around + 1)):
                    keep[near] = True
        changed_left.discard(None)
        changed_right.discard(None)
        for index, row in enumerate(rows):
            if _span_of(left_spans, row.left) in changed_left or \
                    _span_of(right_spans, row.right) in changed_right:
                keep[index] = True
        return _fold(rows, keep, function_spans(before))

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


_CELL = ("padding:0 6px;white-space:pre-wrap;overflow-wrap:anywhere;vertical-align:top;"
         "line-height:1.4")
_NUMBER = "padding:0 4px;text-align:right;color:#888;user-select:none;vertical-align:top"
_FOLD = "padding:2px 6px;color:#57606a;background:#f6f8fa;font-style:italic"
_MARKS = {"equal": " ", "added": "+", "removed": "-"}


def _tint(kind: str) -> str:
    background = KIND_COLOURS.get(kind, "")
    return f";background:{background}" if background else ""


def _side_cells(line: DiffLine | None) -> str:
    if line is None:
        return (f'<td style="{_NUMBER};background:{ABSENT_COLOUR}"></td>'
                f'<td style="{_CELL};background:{ABSENT_COLOUR}"></td>')
    colour = _tint(line.kind)
    return (f'<td style="{_NUMBER}{colour}">{line.number}</td>'
            f'<td class="{line.kind}" style="{_CELL}{colour}">{html.escape(line.text)}</td>')


def _fold_row(fold: Fold, columns: int) -> str:
    return (f'<tr><td class="fold" colspan="{columns}" style="{_FOLD}">'
            f'{html.escape(fold.describe())}</td></tr>')


def _side_by_side(model: DiffModel) -> str:
    pair = model.pair()
    header = (f'<colgroup><col style="width:3.5em"><col style="width:calc(50% - 3.5em)">'
              f'<col style="width:3.5em"><col style="width:calc(50% - 3.5em)"></colgroup>'
              f'<tr><th colspan="2" style="{_CELL}">{html.escape(pair.before_label)}</th>'
              f'<th colspan="2" style="{_CELL}">{html.escape(pair.after_label)}</th></tr>')
    body = "".join(_fold_row(row, 4) if isinstance(row, Fold) else
                   f"<tr>{_side_cells(row.left)}{_side_cells(row.right)}</tr>"
                   for row in model.shown_rows())
    return header + body


def _unified_row(line: DiffLine, before: bool) -> str:
    """One line of the unified view: its number on its own side, a mark, the text."""
    kind = "removed" if before and line.kind != "equal" else (
        "added" if line.kind != "equal" else "equal")
    colour = _tint(kind)
    old, new = (line.number, "") if kind == "removed" else (
        ("", line.number) if kind == "added" else (line.number, ""))
    return (f'<tr><td style="{_NUMBER}{colour}">{old}</td><td style="{_NUMBER}{colour}">{new}'
            f'</td><td class="{kind}" style="{_CELL}{colour}">{_MARKS[kind]} '
            f'{html.escape(line.text)}</td></tr>')


def _unified(model: DiffModel) -> str:
    """The shown rows as a unified diff: in each run of changed rows, the removed lines first,
    then the added ones; an unchanged row once, with both its line numbers."""
    pair = model.pair()
    parts = [f'<colgroup><col style="width:3.5em"><col style="width:3.5em"><col></colgroup>'
             f'<tr><td colspan="3" class="header" style="{_CELL};background:'
             f'{HEADER_COLOUR}">--- {html.escape(pair.before_label)}<br>'
             f'+++ {html.escape(pair.after_label)}</td></tr>']
    removed: list[str] = []
    added: list[str] = []

    def flush() -> None:
        parts.extend(removed + added)
        removed.clear()
        added.clear()

    for row in model.shown_rows():
        if isinstance(row, Fold):
            flush()
            parts.append(_fold_row(row, 3))
        elif row_kind(row) == "equal":
            flush()
            parts.append(f'<tr><td style="{_NUMBER}">{row.left.number}</td><td style="'
                         f'{_NUMBER}">{row.right.number}</td><td class="equal" style="{_CELL}">'
                         f'  {html.escape(row.left.text)}</td></tr>')
        else:
            if row.left:
                removed.append(_unified_row(row.left, before=True))
            if row.right:
                added.append(_unified_row(row.right, before=False))
    flush()
    return "".join(parts)


def render_diff(model: DiffModel) -> str:
    """The diff's HTML: a summary line, then the table of the current mode, as wide as the
    notebook and no wider (long lines wrap)."""
    stats = model.stats()
    summary = (f"lines added: {stats.added}, removed: {stats.removed}"
               if stats.added or stats.removed else "no differences")
    table = _unified(model) if model.mode == "unified" else _side_by_side(model)
    return (f'<div style="font-family:monospace;font-size:12px;max-width:100%"><p>{summary}</p>'
            f'<table style="border-collapse:collapse;table-layout:fixed;width:100%">{table}'
            f'</table></div>')


class RefactoringDiff(widgets.VBox):
    """A pair chooser (hidden when there is one pair), a mode toggle, a switch for the
    unchanged code, and the diff."""

    def __init__(self, pairs: Mapping[str, DiffPair], mode: str = MODES[0],
                 changed_only: bool = True, context: int | None = None) -> None:
        self.model = DiffModel(pairs, mode, changed_only, context)
        self.chooser = widgets.Dropdown(options=self.model.names(), value=self.model.selected,
                                        description="code")
        if len(self.model.pairs) == 1:
            self.chooser.layout.display = "none"
        self.mode = widgets.ToggleButtons(options=list(MODES), value=self.model.mode,
                                          style={"button_width": "8em"})
        self.whole = widgets.Checkbox(value=not changed_only, description="unchanged code too",
                                      indent=False, layout=widgets.Layout(width="auto"))
        self.output = widgets.HTML(layout=widgets.Layout(width="100%"))
        for control in (self.chooser, self.mode, self.whole):
            control.observe(self._changed, names="value")
        controls = widgets.HBox([self.chooser, self.mode, self.whole],
                                layout=widgets.Layout(flex_flow="row wrap", align_items="center"))
        super().__init__([controls, self.output],
                         layout=widgets.Layout(width="100%"))
        self._redraw()

    def _changed(self, _change: dict) -> None:
        self.model.select(self.chooser.value)
        self.model.set_mode(self.mode.value)
        self.model.changed_only = not self.whole.value
        self._redraw()

    def _redraw(self) -> None:
        self.output.value = render_diff(self.model)


def row_kind(row: DiffRow) -> str:
    return (row.left or row.right).kind


Span = tuple[int, int, str]  # first and last line (1-based), the function's name


def function_spans(lines: list[str]) -> list[Span]:
    """The top-level functions and the methods of top-level classes in `lines` (decorators
    included); [] when the text is not Python."""
    try:
        tree = ast.parse("\n".join(lines))
    except SyntaxError:
        return []
    spans = []
    nodes = list(tree.body)
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            nodes.extend(node.body)
    for node in nodes:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            spans.append((first, node.end_lineno or node.lineno, node.name))
    return spans


def _span_of(spans: list[Span], line: DiffLine | None) -> Span | None:
    if line is None:
        return None
    for span in spans:
        if span[0] <= line.number <= span[1]:
            return span
    return None


def _fold(rows: list[DiffRow], keep: list[bool], left_spans: list[Span]) -> list[DiffRow | Fold]:
    """`rows` with each run of rows not kept replaced by one Fold naming the functions that
    start in it."""
    shown: list[DiffRow | Fold] = []
    run: list[DiffRow] = []

    def flush() -> None:
        if run:
            starts = {row.left.number for row in run if row.left}
            shown.append(Fold(len(run), tuple(f"def {name}" for first, _, name in left_spans
                                              if first in starts)))
            run.clear()

    for row, kept in zip(rows, keep):
        if kept:
            flush()
            shown.append(row)
        else:
            run.append(row)
    flush()
    return shown
