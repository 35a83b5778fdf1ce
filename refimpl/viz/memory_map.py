"""The physical-memory map: every frame of RAM, coloured by who owns it, with reference counts.

`PhysicalMemoryMapModel` reads only the kernel's Python-side metadata: the PhysicalPageEntry
array (`mm.physical_page_entries`) and the buddy zones' free lists. It allocates nothing and
quickmaps nothing, so looking at the map cannot change what it shows. Each frame is one of:
- a live PhysicalPage, labelled by its `purpose` (instrumentation no kernel decision reads);
- reserved: below `layout.first_usable_paddr` and not a live page (low memory, prekernel);
- free: inside a free block of a buddy zone;
- leaked: inside a zone, not free, yet no PhysicalPage holds it (a page marked never to return
  to the free list lost its last reference): a state a correct kernel never shows;
- unusable: the tail of RAM shorter than a 1 MiB zone, which no allocator hands out.

The model holds a *window* of at most `MAX_WINDOW_FRAMES` frames (all of a 16 MiB machine);
selecting a frame outside it moves the window there. The grid draws 64 frames per row and one
SVG rect per run of same-coloured frames in a row, so its HTML stays small. Rows with nothing to
look at (only free, reserved or unusable frames, none selected) are folded: each run of them is
one thin line saying what it holds ("frames 0x240..0xeff: 3264 free"), so a freshly booted
machine is a few rows of kernel pages, not a screen of empty grid.
Reference counts: a window of at most `ZOOM_FRAMES` frames is drawn 32 per row in cells big
enough to print each live page's count; a larger one marks pages with more than one reference
by a dot, and the details line gives the count of the selected frame.
"""

from __future__ import annotations

import html
from collections import Counter
from dataclasses import dataclass

import ipywidgets as widgets

from refimpl.kernel.address import PAGE_SIZE
from refimpl.kernel.memory_manager import MemoryManager
from refimpl.kernel.physical_page import MayReturnToFreeList, PagePurpose
from refimpl.viz.page_walk import parse_address

RESERVED, UNUSABLE, FREE, LEAKED = "reserved", "unusable", "free", "leaked"
# Okabe-Ito colours (told apart with any colour vision): page directories and page tables,
# the two a learner compares most, get the two that differ most, vermillion and blue.
COLOURS = {
    RESERVED: "#c8c8c8", UNUSABLE: "#8d8d8d", FREE: "#f4f4f4", LEAKED: "#000000",
    PagePurpose.KERNEL_IMAGE.value: "#cc79a7", PagePurpose.PAGE_DIRECTORY.value: "#d55e00",
    PagePurpose.PAGE_TABLE.value: "#0072b2", PagePurpose.KERNEL_HEAP.value: "#009e73",
    PagePurpose.USER.value: "#f0e442", PagePurpose.SHARED_ZERO.value: "#56b4e9",
    PagePurpose.KERNEL.value: "#e69f00",
}
DARK = {LEAKED, PagePurpose.KERNEL_IMAGE.value, PagePurpose.PAGE_DIRECTORY.value,
        PagePurpose.PAGE_TABLE.value, PagePurpose.KERNEL_HEAP.value}
"""Labels whose colour needs white text on it."""
DULL = {RESERVED, UNUSABLE, FREE}
"""States with nothing to look at: whole rows of them are folded into one line."""
STATE_DETAILS = {
    RESERVED: "low memory or prekernel, below the first usable address: no allocator owns it",
    UNUSABLE: "the tail of RAM shorter than a 1 MiB zone: no allocator hands it out",
    FREE: "in a free block of the buddy allocator",
    LEAKED: "taken from the buddy allocator, yet no PhysicalPage holds it",
}
COLUMNS, ZOOM_COLUMNS = 64, 32
MAX_WINDOW_FRAMES = 4096
ZOOM_FRAMES = 256
HINT = "type a frame number (0x20b) or a physical address (P0x20b000)"


@dataclass(frozen=True)
class FrameCell:
    """One frame as drawn. `ref_count` is None unless a live PhysicalPage holds the frame."""

    frame: int
    paddr: int
    label: str
    ref_count: int | None
    colour: str
    never_returns: bool = False  # a live page that never goes back to the free list


@dataclass(frozen=True)
class Folded:
    """Consecutive grid rows with nothing to look at, drawn as one line."""

    first: int
    last: int
    counts: dict[str, int]

    def extended(self, row: list[FrameCell]) -> Folded:
        counts = Counter(self.counts) + Counter(cell.label for cell in row)
        return Folded(self.first, row[-1].frame, dict(counts))

    def describe(self) -> str:
        what = ", ".join(f"{count} {label}" for label, count in self.counts.items())
        return f"frames {self.first:#x}..{self.last:#x}: {what}"


def parse_frame(text: str) -> int:
    """A frame as a learner types it: a frame number ('4451', '0x1163') or a physical address
    in the kernel's log notation ('P0x1163000'), which names the frame holding it."""
    cleaned = text.strip().replace("_", "")
    if cleaned[:1] in ("p", "P"):
        return parse_address(cleaned[1:]) // PAGE_SIZE
    if cleaned[:1] in ("v", "V"):
        raise ValueError(f"{text.strip()!r} is a virtual address; this map shows physical frames")
    try:
        return int(cleaned, 0)
    except ValueError:
        raise ValueError(f"{text.strip()!r} is neither a frame number (4451, 0x1163) nor a "
                         f"physical address (P0x1163000)") from None


def _paint(labels: list[str], first: int, start: int, stop: int, label: str) -> None:
    """Set `labels` (frames first, first+1, ...) to `label` over frames [start, stop)."""
    start, stop = max(start, first), min(stop, first + len(labels))
    if start < stop:
        labels[start - first:stop - first] = [label] * (stop - start)


class PhysicalMemoryMapModel:
    """What the map shows: a window of frames read at the last `refresh()`, and a selection."""

    def __init__(self, mm: MemoryManager, first_frame: int = 0,
                 frame_count: int | None = None) -> None:
        self.mm = mm
        self.total_frames = len(mm.physical_page_entries)
        if frame_count is None:
            frame_count = min(MAX_WINDOW_FRAMES, self.total_frames - first_frame)
        if not 0 < frame_count <= MAX_WINDOW_FRAMES:
            raise ValueError(f"the map shows 1..{MAX_WINDOW_FRAMES} frames, not {frame_count}")
        if not 0 <= first_frame <= self.total_frames - frame_count:
            raise ValueError(f"frames {first_frame:#x}..+{frame_count:#x} are not all in RAM "
                             f"({self.total_frames:#x} frames)")
        self.first_frame = first_frame
        self.frame_count = frame_count
        self.selected: int | None = None
        self.message = ""
        self._cells: list[FrameCell] = []
        self.refresh()

    def refresh(self) -> None:
        """Read the kernel's state of the window's frames again."""
        mm, first = self.mm, self.first_frame
        labels = [UNUSABLE] * self.frame_count
        for zone in mm.user_physical_region.zones:
            _paint(labels, first, zone.base_page, zone.base_page + zone.page_count, LEAKED)
            for index, order in zone.free_blocks():
                block = zone.base_page + index
                _paint(labels, first, block, block + (1 << order), FREE)
        _paint(labels, first, 0, mm.layout.first_usable_paddr // PAGE_SIZE, RESERVED)
        self._cells = [self._cell(first + offset, label) for offset, label in enumerate(labels)]

    def _cell(self, frame: int, state: str) -> FrameCell:
        page = self.mm.physical_page_entries[frame]
        if page is None:
            return FrameCell(frame, frame * PAGE_SIZE, state, None, COLOURS[state])
        label = page.purpose.value
        return FrameCell(frame, frame * PAGE_SIZE, label, page.ref_count(), COLOURS[label],
                         page.may_return_to_freelist is MayReturnToFreeList.NO)

    def frames(self) -> list[FrameCell]:
        """The window's frames, in order, as of the last refresh."""
        return list(self._cells)

    def counts(self) -> dict[str, int]:
        """Frames of the window per label, in legend order (labels with no frame left out)."""
        found = Counter(cell.label for cell in self._cells)
        return {label: found[label] for label in COLOURS if label in found}

    def select(self, frame: int) -> None:
        """Select `frame`, moving the window to it if it lies outside."""
        if not 0 <= frame < self.total_frames:
            raise ValueError(f"frame {frame:#x} is outside RAM "
                             f"(frames 0x0..{self.total_frames - 1:#x})")
        if not self.first_frame <= frame < self.first_frame + self.frame_count:
            self.first_frame = min(frame - frame % self.frame_count,
                                   self.total_frames - self.frame_count)
            self.refresh()
        self.selected, self.message = frame, ""

    def set_selected_text(self, text: str) -> None:
        """Select what a learner typed; bad input leaves a message and no selection."""
        self.selected, self.message = None, ""
        if not text.strip():
            return
        try:
            self.select(parse_frame(text))
        except ValueError as error:
            self.message = str(error) + self._address_hint(text)

    def _address_hint(self, text: str) -> str:
        """A number too big for a frame may be a physical address typed without its 'P'."""
        try:
            value = int(text.strip(), 0)
        except ValueError:
            return ""
        if self.total_frames <= value < self.total_frames * PAGE_SIZE:
            return f"; for the physical address, type P{value:#x}"
        return ""

    def grid_rows(self, columns: int) -> list[list[FrameCell] | Folded]:
        """The rows the grid draws, `columns` frames each: runs of dull rows folded."""
        rows: list[list[FrameCell] | Folded] = []
        for start in range(0, len(self._cells), columns):
            row = self._cells[start:start + columns]
            dull = all(cell.label in DULL for cell in row) and not any(
                cell.frame == self.selected for cell in row)
            if not dull:
                rows.append(row)
            elif rows and isinstance(rows[-1], Folded):
                rows[-1] = rows[-1].extended(row)
            else:
                rows.append(Folded(row[0].frame, row[-1].frame,
                                   dict(Counter(cell.label for cell in row))))
        return rows

    def selected_cell(self) -> FrameCell | None:
        if self.selected is None:
            return None
        return self._cells[self.selected - self.first_frame]

    def details(self) -> str:
        """One line about the selected frame ('' when none is selected)."""
        cell = self.selected_cell()
        if cell is None:
            return ""
        where = f"frame {cell.frame:#x} at P{cell.paddr:#x}"
        if cell.ref_count is None:
            return f"{where}: {cell.label} ({STATE_DETAILS[cell.label]})"
        references = "reference" if cell.ref_count == 1 else "references"
        text = f"{where}: {cell.label}, {cell.ref_count} {references}"
        return text + ("; never returns to the free list" if cell.never_returns else "")


def _runs(cells: list[FrameCell]) -> list[tuple[int, int, FrameCell]]:
    """Consecutive cells of one label, as (offset of the first, length, first cell)."""
    runs: list[tuple[int, int, FrameCell]] = []
    for offset, cell in enumerate(cells):
        if runs and runs[-1][2].label == cell.label:
            start, length, first = runs[-1]
            runs[-1] = (start, length + 1, first)
        else:
            runs.append((offset, 1, cell))
    return runs


def _row_svg(cells: list[FrameCell], y: int, size: int, zoomed: bool) -> list[str]:
    parts = []
    for offset, length, first in _runs(cells):
        last = cells[offset + length - 1].frame
        title = html.escape(f"frames {first.frame:#x}..{last:#x}: {first.label}")
        parts.append(f'<rect x="{offset * size}" y="{y}" width="{length * size}" '
                     f'height="{size}" fill="{first.colour}"><title>{title}</title></rect>')
    for offset, cell in enumerate(cells):
        if cell.ref_count is None:
            continue
        x = offset * size + size // 2
        ink = "#fff" if cell.label in DARK else "#222"
        if zoomed:
            parts.append(f'<text x="{x}" y="{y + size - 6}" text-anchor="middle" fill="{ink}">'
                         f'{cell.ref_count}</text>')
        elif cell.ref_count > 1:
            parts.append(f'<circle cx="{x}" cy="{y + size // 2}" r="2" fill="{ink}"><title>'
                         f'frame {cell.frame:#x}: {cell.ref_count} references</title></circle>')
    return parts


FOLD_HEIGHT = 16


def _geometry(model: PhysicalMemoryMapModel) -> tuple[int, int]:
    """(frames per row, cell size in pixels): a small window gets cells big enough to print
    reference counts in."""
    return (ZOOM_COLUMNS, 20) if model.frame_count <= ZOOM_FRAMES else (COLUMNS, 12)


def _grid_svg(model: PhysicalMemoryMapModel) -> str:
    columns, size = _geometry(model)
    zoomed = columns == ZOOM_COLUMNS
    width = columns * size
    parts, y = [], 0
    for row in model.grid_rows(columns):
        if isinstance(row, Folded):
            parts.append(f'<text class="folded" x="4" y="{y + FOLD_HEIGHT - 3}" fill="#555" '
                         f'font-size="11">'
                         f'⋯ {html.escape(row.describe())}</text>')
            y += FOLD_HEIGHT
            continue
        parts.append(f'<text x="-4" y="{y + size - 2}" text-anchor="end">{row[0].frame:#x}</text>')
        parts.extend(_row_svg(row, y, size, zoomed))
        parts.append(f'<rect x="0" y="{y}" width="{len(row) * size}" height="{size}" '
                     f'fill="url(#pmm-grid-{size})"/>')
        selected = model.selected_cell()
        if selected is not None and row[0].frame <= selected.frame <= row[-1].frame:
            parts.append(f'<rect class="selected" x="{(selected.frame - row[0].frame) * size}" '
                         f'y="{y}" width="{size}" height="{size}" fill="none" '
                         f'stroke="#b42318" stroke-width="2"/>')
        y += size
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width + 50}" height="{y}" '
            f'style="font-family:monospace;font-size:{10 if zoomed else 9}px">'
            f'<defs><pattern id="pmm-grid-{size}" width="{size}" height="{size}" '
            f'patternUnits="userSpaceOnUse"><path d="M{size} 0V{size}H0" fill="none" '
            f'stroke="#fff"/></pattern></defs><g transform="translate(50,0)">'
            f'{"".join(parts)}</g></svg>')


def _legend(model: PhysicalMemoryMapModel) -> str:
    items = [f'<span class="legend" style="margin-right:12px;white-space:nowrap"><span style="'
             f'display:inline-block;width:12px;height:12px;background:{COLOURS[label]};border:'
             f'1px solid #999;margin-right:4px;vertical-align:middle"></span>'
             f'{html.escape(label)}: {count}</span>' for label, count in model.counts().items()]
    if model.frame_count > ZOOM_FRAMES:
        items.append('<span style="white-space:nowrap">● more than one reference</span>')
    return (f'<div style="font-size:12px;margin:4px 0"><b>legend</b> (frames per kind): '
            f'{"".join(items)}</div>')


def render_memory_map(model: PhysicalMemoryMapModel) -> str:
    """The map's HTML: caption, grid, legend with counts, and the details or message line."""
    first, count = model.first_frame, model.frame_count
    caption = (f"frames {first:#x}..{first + count - 1:#x} of {model.total_frames:#x} "
               f"({count * PAGE_SIZE // 1024} KiB), {_geometry(model)[0]} per row; rows of "
               f"only free, reserved or unusable frames are folded into one line")
    if model.message:
        line = f'<p style="color:#b42318;font-weight:bold">{html.escape(model.message)}</p>'
    else:
        line = f"<p>{html.escape(model.details() or HINT)}</p>"
    return (f'<div style="font-family:monospace"><div style="font-size:12px;color:#555">'
            f"{caption}</div>{_legend(model)}{_grid_svg(model)}{line}</div>")


class PhysicalMemoryMap(widgets.VBox):
    """A frame box, a refresh button, and the map; the selected frame is outlined in red."""

    def __init__(self, mm: MemoryManager, first_frame: int = 0, frame_count: int | None = None,
                 selected: str = "") -> None:
        self.model = PhysicalMemoryMapModel(mm, first_frame, frame_count)
        self.model.set_selected_text(selected)
        self.selection = widgets.Text(value=selected, description="frame", placeholder="P0x20b000",
                                      continuous_update=False)
        self.refresh_button = widgets.Button(description="refresh", icon="refresh")
        self.output = widgets.HTML()
        self.selection.observe(self._selected, names="value")
        self.refresh_button.on_click(self._refresh)
        super().__init__([widgets.HBox([self.selection, self.refresh_button]), self.output])
        self._redraw()

    def _selected(self, change: dict) -> None:
        self.model.set_selected_text(change["new"])
        self._redraw()

    def _refresh(self, _button: widgets.Button) -> None:
        self.model.refresh()
        self._redraw()

    def _redraw(self) -> None:
        self.output.value = render_memory_map(self.model)
