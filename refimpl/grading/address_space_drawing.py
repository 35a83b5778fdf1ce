"""Two address spaces drawn side by side, for the feedback of a check whose answer is a whole
address space (lesson 09's final project): the reference's and the learner's, at the first step
where they differ, with the differing pages highlighted.

A map is a list of `PageRow`s, one per page of the window the check watches, in address order.
The drawing is plain HTML with one inline SVG per map, so it renders in JupyterLab and in a
static page alike, and needs nothing at run time.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

ACCESS_COLOURS = {"r--": "#cfe3f7", "rw-": "#bfe6c5", "r-x": "#f3dcb0", "---": "#d9d9d9"}
OTHER_ACCESS, STRAY, DIFFERS, MARKED = "#e7d4f2", "#f5b7b1", "#ffd24d", "#6a3d9a"
ROW, TOP = 17, 58
"""Row height, and the height of the title lines above the rows."""
CHAR = {10: 6.1, 11: 6.7}
"""The width of a monospace character at font sizes 10 and 11 (a bold one is no wider)."""
STRAY_LABEL = "no region!"


@dataclass(frozen=True)
class PageRow:
    """One page of a map: its address, the region holding it (`region` = "name rw-", or "" for
    none), whether the region starts here, and what the page maps (`cell`, "" for nothing)."""

    address: str
    region: str
    access: str
    starts_region: bool
    cell: str

    @property
    def stray(self) -> bool:
        """A mapping with no region: a page table entry the kernel forgot to clear."""
        return not self.region and bool(self.cell)


@dataclass(frozen=True)
class Map:
    title: str
    lines: tuple[str, ...]
    """Short lines under the title: what the step returned, the free page count..."""
    rows: tuple[PageRow, ...]
    marked: frozenset[int] = frozenset()
    """The rows the step worked on (the syscall's range, the page written)."""


def _text(x: float, y: float, text: str, size: int = 11, weight: str = "normal",
          colour: str = "#222") -> str:
    return (f'<text x="{x}" y="{y}" font-family="monospace" font-size="{size}" '
            f'font-weight="{weight}" fill="{colour}">{html.escape(text)}</text>')


@dataclass(frozen=True)
class Columns:
    """Where the address, the region and the cell columns start, and the map's width: sized
    to the longest text of both maps, so that two maps fit side by side at 1280 px."""

    region_x: int
    region_width: int
    cell_x: int
    width: int

    @staticmethod
    def fitting(rows) -> Columns:
        def widest(texts, size):
            return int(CHAR[size] * max((len(text) for text in texts), default=0)) + 1

        region_x = 20 + widest((row.address for row in rows), 10)
        region_width = max(70, 10 + widest([STRAY_LABEL] + [row.region for row in rows], 11))
        cell_x = region_x + region_width + 6
        return Columns(region_x, region_width, cell_x,
                       cell_x + max(80, widest((row.cell for row in rows), 11)) + 4)


def _svg(drawn: Map, differing: set[int], at: Columns) -> str:
    height = TOP + ROW * len(drawn.rows) + 6
    width, region_x, region_width = max(at.width, 220), at.region_x, at.region_width
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'role="img" aria-label="{html.escape(drawn.title)}">',
             _text(2, 14, drawn.title, 13, "bold")]
    for index, line in enumerate(drawn.lines):
        parts.append(_text(2, 31 + 14 * index, line, 11, colour="#444"))
    for index, row in enumerate(drawn.rows):
        y = TOP + ROW * index
        if index in differing:
            parts.append(f'<rect x="0" y="{y}" width="{width}" height="{ROW}" fill="{DIFFERS}"/>')
        if index in drawn.marked:
            parts.append(f'<rect x="{region_x - 7}" y="{y}" width="4" height="{ROW}" '
                         f'fill="{MARKED}"/>')
        parts.append(_text(4, y + 12, row.address, 10, colour="#555"))
        if row.region:
            fill = ACCESS_COLOURS.get(row.access, OTHER_ACCESS)
            parts.append(f'<rect x="{region_x}" y="{y}" width="{region_width}" height="{ROW}" '
                         f'fill="{fill}" stroke="#888" stroke-width="0.5"/>')
            if row.starts_region:
                parts.append(f'<line x1="{region_x}" y1="{y}" x2="{region_x + region_width}" '
                             f'y2="{y}" stroke="#111" stroke-width="2"/>')
                parts.append(_text(region_x + 4, y + 12, row.region, 11, "bold"))
        elif row.stray:
            parts.append(f'<rect x="{region_x}" y="{y}" width="{region_width}" height="{ROW}" '
                         f'fill="{STRAY}"/>')
            parts.append(_text(region_x + 4, y + 12, STRAY_LABEL, 11, "bold", "#8a1c12"))
        if row.cell:
            parts.append(_text(at.cell_x, y + 12, row.cell, 11))
    parts.append("</svg>")
    return "".join(parts)


def differing_rows(left: Map, right: Map) -> set[int]:
    """The indices of the pages whose region or mapping differs between the two maps."""
    return {index for index, (one, other) in enumerate(zip(left.rows, right.rows))
            if (one.region, one.access, one.starts_region, one.cell) !=
            (other.region, other.access, other.starts_region, other.cell)}


def legend(note: str) -> str:
    swatch = ('<span style="white-space:nowrap"><span style="display:inline-block;width:12px;'
              'height:12px;background:{};border:1px solid #888;margin:0 4px -2px 10px"></span>'
              '{}</span> ')
    items = [swatch.format(colour, f"region {access}") for access, colour in
             ACCESS_COLOURS.items()]
    items += [swatch.format(STRAY, "a mapping with no region"),
              swatch.format(DIFFERS, "differs from the reference"),
              swatch.format(MARKED, "what the step worked on")]
    return (f'<div style="font-size:12px;color:#333;max-width:900px">{"".join(items)}<br>'
            f'<span style="margin-left:10px;display:inline-block">Right column: what each page '
            f'maps, as the process sees it: {html.escape(note)}; "rw" writable, "r" read-only, '
            f'"-" not present. Empty: no mapping. A thick line starts a region.</span></div>')


def side_by_side(caption: str, left: Map, right: Map, note: str) -> str:
    """HTML: `caption`, then the two maps with their differing pages highlighted, and a legend
    (`note` says what a page's cell shows)."""
    differing = differing_rows(left, right)
    columns = Columns.fitting(left.rows + right.rows)
    return (f'<div class="refimpl-two-maps" style="margin-top:6px">'
            f'<div style="font-weight:bold;margin-bottom:4px">{html.escape(caption)}</div>'
            f'<div style="display:flex;gap:24px;flex-wrap:wrap">'
            f'{_svg(left, differing, columns)}{_svg(right, differing, columns)}</div>'
            f'{legend(note)}</div>')
