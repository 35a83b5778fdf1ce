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
ROW, TOP, CHAR = 17, 58, 6.7
"""Row height, the height of the title lines, the width of a character at font size 11."""
REGION_X, REGION_WIDTH, CELL_X = 96, 150, 252


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


def _svg(drawn: Map, differing: set[int], width: int) -> str:
    height = TOP + ROW * len(drawn.rows) + 6
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
            parts.append(f'<rect x="{REGION_X - 7}" y="{y}" width="4" height="{ROW}" '
                         f'fill="{MARKED}"/>')
        parts.append(_text(4, y + 12, row.address, 10, colour="#555"))
        if row.region:
            fill = ACCESS_COLOURS.get(row.access, OTHER_ACCESS)
            parts.append(f'<rect x="{REGION_X}" y="{y}" width="{REGION_WIDTH}" height="{ROW}" '
                         f'fill="{fill}" stroke="#888" stroke-width="0.5"/>')
            if row.starts_region:
                parts.append(f'<line x1="{REGION_X}" y1="{y}" x2="{REGION_X + REGION_WIDTH}" '
                             f'y2="{y}" stroke="#111" stroke-width="2"/>')
                parts.append(_text(REGION_X + 4, y + 12, row.region, 11, "bold"))
        elif row.stray:
            parts.append(f'<rect x="{REGION_X}" y="{y}" width="{REGION_WIDTH}" height="{ROW}" '
                         f'fill="{STRAY}"/>')
            parts.append(_text(REGION_X + 4, y + 12, "no region!", 11, "bold", "#8a1c12"))
        if row.cell:
            parts.append(_text(CELL_X, y + 12, row.cell, 11))
    parts.append("</svg>")
    return "".join(parts)


def differing_rows(left: Map, right: Map) -> set[int]:
    """The indices of the pages whose region or mapping differs between the two maps."""
    return {index for index, (one, other) in enumerate(zip(left.rows, right.rows))
            if (one.region, one.access, one.starts_region, one.cell) !=
            (other.region, other.access, other.starts_region, other.cell)}


def legend(note: str) -> str:
    swatch = ('<span style="display:inline-block;width:12px;height:12px;background:{};'
              'border:1px solid #888;margin:0 4px -2px 10px"></span>{}')
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
    longest = max((len(row.cell) for row in left.rows + right.rows), default=0)
    width = int(CELL_X + CHAR * max(longest, 12)) + 8
    return (f'<div class="refimpl-two-maps" style="margin-top:6px">'
            f'<div style="font-weight:bold;margin-bottom:4px">{html.escape(caption)}</div>'
            f'<div style="display:flex;gap:24px;flex-wrap:wrap">'
            f'{_svg(left, differing, width)}{_svg(right, differing, width)}</div>'
            f'{legend(note)}</div>')
