"""A small machine's whole RAM on one screen, one row per frame, coloured by role.

Roles come from walking the tables under CR3 (`refimpl.hw.table_frames` and `mapped_pages`):
the top-level table, the other tables, frames mapped as data, and frames nobody maps. Combined
with the page-walk explorer, the bytes a walk reads are outlined in the grid. Runs of unused
frames that hold only zeros are folded into one row, so the grid shows what the walk can reach.

`snapshot(memory)` copies a RAM: a view given the copy keeps showing the machine as it was,
whatever later cells of a notebook do to the original.
"""

from __future__ import annotations

import html

import ipywidgets as widgets

from refimpl.hw import PhysicalMemory, level_name, mapped_pages, table_frames
from refimpl.viz.page_walk import PageWalkExplorer, snapshot

# The memory map's colours for the same things: page directory (top level) vermillion, page
# tables blue; mapped pages a light yellow, so the bytes on them stay readable.
ROLE_COLOURS = {"top-level table": "#f3b48a", "page table": "#9cc9ec", "mapped page": "#f7f0a0",
                "unused": "#f4f4f4"}
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

    def shown_rows(self) -> list[tuple[int, str, bytes] | tuple[int, int]]:
        """`rows()` with each run of two or more unused all-zero frames replaced by
        (first frame, last frame)."""
        shown: list = []
        run: list[int] = []
        for row in self.rows() + [(-1, "end", b"x")]:
            frame, role, data = row
            if role == "unused" and not any(data):
                run.append(frame)
                continue
            if len(run) >= 2:
                shown.append((run[0], run[-1]))
            else:
                shown.extend((frame_, "unused", bytes(self.memory.page_size)) for frame_ in run)
            run = []
            if frame >= 0:
                shown.append(row)
        return shown

    def legend(self) -> dict[str, str]:
        """Role -> colour, for the roles this RAM has."""
        found = {role if role in ROLE_COLOURS else "page table" for _, role, _ in self.rows()}
        return {role: colour for role, colour in ROLE_COLOURS.items() if role in found}


def render_ram(model: RamModel, highlight: dict[int, str] | None = None) -> str:
    """HTML grid of every byte; bytes at `highlight` addresses are outlined and titled."""
    highlight = highlight or {}
    size = model.memory.page_size
    legend = "".join(f'<span style="margin-right:12px;white-space:nowrap"><span style="display:'
                     f'inline-block;width:12px;height:12px;background:{colour};border:1px solid '
                     f'#999;margin-right:4px;vertical-align:middle"></span>{html.escape(role)}'
                     f'</span>' for role, colour in model.legend().items())
    lines = [f'<div style="font-size:12px;margin:4px 0"><b>legend</b>: {legend}<span>'
             f'<span style="outline:2px solid #b42318;padding:0 3px;margin-right:4px">00</span>'
             f'a byte the walk reads</span></div>',
             '<table style="border-collapse:collapse;font-family:monospace;font-size:12px">',
             '<tr><th style="text-align:left;padding-right:6px">frame</th>'
             f'<th colspan="{size}" style="text-align:left">bytes at offset 0x0..{size - 1:#x}'
             '</th><th style="text-align:left">role</th></tr>']
    for row in model.shown_rows():
        if len(row) == 2:
            first, last = row
            lines.append(f'<tr><td colspan="{size + 2}" style="color:#555;font-style:italic;'
                         f'padding:1px 3px">⋯ frames {first:#04x}..{last:#04x}: unused, all zero'
                         f'</td></tr>')
            continue
        frame, role, data = row
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
    """The page-walk explorer above the whole RAM; the walk's reads are outlined in the RAM.
    With `own_copy`, both read a copy of the RAM taken now (later changes do not show)."""

    def __init__(self, memory: PhysicalMemory, cr3: int, address: str = "0x0",
                 own_copy: bool = False) -> None:
        if own_copy:
            memory = snapshot(memory)
        self.ram = RamModel(memory, cr3)
        self.explorer = PageWalkExplorer(memory, cr3, address)
        self.grid = widgets.HTML()
        self.explorer.output.observe(lambda _change: self._redraw(), names="value")
        super().__init__([self.explorer, self.grid])
        self._redraw()

    def _redraw(self) -> None:
        self.grid.value = render_ram(self.ram, self.explorer.model.touched_addresses())
