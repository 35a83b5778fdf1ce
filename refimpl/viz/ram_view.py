"""A small machine's whole RAM on one screen, one row per frame, coloured by role.

Roles come from walking the tables under CR3 (`refimpl.hw.table_frames` and `mapped_pages`):
the top-level table, the other tables, frames mapped as data, and frames nobody maps. Combined
with the page-walk explorer, the bytes a walk reads are outlined in the grid.
"""

from __future__ import annotations

import html

import ipywidgets as widgets

from refimpl.hw import PhysicalMemory, level_name, mapped_pages, table_frames
from refimpl.viz.page_walk import PageWalkExplorer

ROLE_COLOURS = {"top-level table": "#f4a261", "page table": "#e9c46a", "mapped page": "#8ecae6",
                "unused": "#f1f1f1"}
MAX_FRAMES, MAX_PAGE_SIZE = 64, 64


class RamModel:
    """Per frame: its role and its bytes. Only for memories that fit on one screen."""

    def __init__(self, memory: PhysicalMemory, cr3: int) -> None:
        if memory.frame_count > MAX_FRAMES or memory.page_size > MAX_PAGE_SIZE:
            raise ValueError(f"RAM view shows at most {MAX_FRAMES} frames of {MAX_PAGE_SIZE} "
                             f"bytes; this memory has {memory.frame_count} of {memory.page_size}")
        self.memory = memory
        self.cr3 = cr3

    def roles(self) -> dict[int, str]:
        fmt = self.memory.format
        roles = {frame: "mapped page" for frame, _ in mapped_pages(self.memory, self.cr3).values()}
        for frame, level in table_frames(self.memory, self.cr3).items():
            roles[frame] = "top-level table" if level == 0 else (
                f"{level_name(fmt, level)} (page table)" if level < fmt.levels - 1 else
                "page table")
        return roles

    def rows(self) -> list[tuple[int, str, bytes]]:
        roles = self.roles()
        size = self.memory.page_size
        return [(frame, roles.get(frame, "unused"), self.memory.read(frame * size, size))
                for frame in range(self.memory.frame_count)]


def render_ram(model: RamModel, highlight: dict[int, str] | None = None) -> str:
    """HTML grid of every byte; bytes at `highlight` addresses are outlined and titled."""
    highlight = highlight or {}
    size = model.memory.page_size
    lines = ['<table style="border-collapse:collapse;font-family:monospace;font-size:12px">']
    for frame, role, data in model.rows():
        colour = ROLE_COLOURS.get(role, ROLE_COLOURS["page table"])
        cells = []
        for offset, byte in enumerate(data):
            address = frame * size + offset
            style = f"background:{colour};padding:1px 3px"
            title = ""
            if address in highlight:
                style += ";outline:2px solid #b42318;font-weight:bold"
                title = f' title="{html.escape(highlight[address])}"'
            cells.append(f'<td style="{style}"{title}>{byte:02x}</td>')
        lines.append(f'<tr><td style="padding-right:6px">{frame:#04x}</td>{"".join(cells)}'
                     f'<td style="padding-left:6px">{html.escape(role)}</td></tr>')
    lines.append("</table>")
    return "".join(lines)


class MachineOnOneScreen(widgets.VBox):
    """The page-walk explorer above the whole RAM; the walk's reads are outlined in the RAM."""

    def __init__(self, memory: PhysicalMemory, cr3: int, address: str = "0x0") -> None:
        self.ram = RamModel(memory, cr3)
        self.explorer = PageWalkExplorer(memory, cr3, address)
        self.grid = widgets.HTML()
        self.explorer.output.observe(lambda _change: self._redraw(), names="value")
        super().__init__([self.explorer, self.grid])
        self._redraw()

    def _redraw(self) -> None:
        self.grid.value = render_ram(self.ram, self.explorer.model.touched_addresses())
