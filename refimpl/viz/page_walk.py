"""The page-walk explorer: type an address, watch the MMU walk the tables for it.

`PageWalkModel` holds what the widget shows and is plain Python (tests drive it); the view,
`PageWalkExplorer`, only turns the model into widgets and HTML. The walk itself is
`refimpl.hw.trace_walk`: the explorer never changes the machine (no accessed bits, no TLB).
Given `own_copy=True`, it walks a copy of the RAM taken when it was made (`snapshot`), so what
it shows cannot be changed by later cells of a notebook.
"""

from __future__ import annotations

import html

import ipywidgets as widgets

from refimpl.hw import Access, PhysicalMemory, WalkTrace, level_name, trace_walk

ACCESS_KINDS = {"read": Access.READ, "write": Access.WRITE, "execute": Access.EXECUTE}


def snapshot(memory: PhysicalMemory) -> PhysicalMemory:
    """A copy of `memory`: same size and paging format, same bytes, and nothing shared."""
    copy = PhysicalMemory(memory.size, memory.format)
    chunk = 1 << 20
    for start in range(0, memory.size, chunk):
        data = memory.read(start, min(chunk, memory.size - start))
        if data != bytes(len(data)):  # untouched zero pages stay untouched in the copy
            copy.write(start, data)
    return copy


def parse_address(text: str) -> int:
    """A hexadecimal address as a learner types it: '0x2000200000', '2000_200000', 'ff'."""
    cleaned = text.strip().lower().replace("_", "")
    if cleaned.startswith("0x"):
        cleaned = cleaned[2:]
    if not cleaned:
        raise ValueError("type an address in hexadecimal, e.g. 0x347")
    try:
        return int(cleaned, 16)
    except ValueError:
        raise ValueError(f"{text.strip()!r} is not a hexadecimal address") from None


class PageWalkModel:
    """The state of one explorer: which address, which access, and the resulting walk."""

    def __init__(self, memory: PhysicalMemory, cr3: int, address: str = "0x0",
                 access: str = "read", user: bool = False) -> None:
        self.memory = memory
        self.format = memory.format
        self.cr3 = cr3
        self.address_text = address
        self.access_kind = access
        self.user = user
        self.trace: WalkTrace | None = None
        self.message = ""
        self._walk()

    def set_address(self, text: str) -> None:
        self.address_text = text
        self._walk()

    def set_access(self, kind: str, user: bool | None = None) -> None:
        if kind not in ACCESS_KINDS:
            raise ValueError(f"access is one of {', '.join(ACCESS_KINDS)}, not {kind!r}")
        self.access_kind = kind
        if user is not None:
            self.user = user
        self._walk()

    @property
    def access(self) -> int:
        return ACCESS_KINDS[self.access_kind] | (Access.USER if self.user else 0)

    def _walk(self) -> None:
        try:
            vaddr = parse_address(self.address_text)
        except ValueError as error:
            self.trace, self.message = None, str(error)
            return
        self.trace = trace_walk(self.memory, self.cr3, vaddr, self.access)
        self.message = self.trace.summary()
        if self.ok:  # the same address may fault for another access: say which one passed
            self.message += f" ({Access.describe(self.access)}: allowed)"

    @property
    def ok(self) -> bool:
        """True when the walk produced a physical address."""
        return self.trace is not None and not self.trace.problem and not self.trace.faulted

    def index_fields(self) -> list[tuple[str, str, int]]:
        """How the address splits: (field name, bit range, value) from the top level down."""
        if self.trace is None or self.trace.problem:
            return []
        fmt, vaddr = self.format, self.trace.vaddr
        fields = []
        for level in range(fmt.levels):
            low = fmt.level_shift(level)
            high = low + fmt.level_bits[level] - 1
            fields.append((level_name(fmt, level), f"{high}..{low}", fmt.index(vaddr, level)))
        fields.append(("offset", f"{fmt.page_shift - 1}..0", fmt.page_offset(vaddr)))
        return fields

    def rows(self) -> list[dict[str, str]]:
        """One row per level the walk read."""
        if self.trace is None:
            return []
        digits = 2 * self.format.entry_size
        return [{"level": step.name, "table": f"{step.table_address:#x}",
                 "index": f"{step.index:#x}", "entry_address": f"{step.entry_address:#x}",
                 "entry": f"{step.entry:0{digits}x}", "meaning": self.format.describe(step.entry)}
                for step in self.trace.steps]

    def touched_addresses(self) -> dict[int, str]:
        """Physical addresses the walk read, and the byte it ends on: address -> label."""
        if self.trace is None:
            return {}
        touched = {step.entry_address: step.name for step in self.trace.steps}
        if self.ok:
            touched[self.trace.physical_address] = "data"
        return touched


_CSS = ("<style>.pw td,.pw th{padding:2px 8px;font-family:monospace;text-align:left}"
        ".pw .ok{color:#1a7f37;font-weight:bold}.pw .bad{color:#b42318;font-weight:bold}</style>")


def render_walk(model: PageWalkModel) -> str:
    """The explorer's HTML for the model's current state."""
    parts = [_CSS, '<div class="pw">']
    fields = model.index_fields()
    if fields:
        cells = "".join(f"<td>{name}<br>bits {bits}<br><b>{value:#x}</b></td>"
                        for name, bits, value in fields)
        parts.append(f"<table><tr>{cells}</tr></table>")
    rows = model.rows()
    if rows:
        header = "".join(f"<th>{title}</th>" for title in
                         ("level", "table at", "index", "entry at", "entry", "meaning"))
        body = "".join("<tr>" + "".join(f"<td>{html.escape(row[key])}</td>" for key in
                                        ("level", "table", "index", "entry_address", "entry",
                                         "meaning")) + "</tr>" for row in rows)
        parts.append(f"<table><tr>{header}</tr>{body}</table>")
    css_class = "ok" if model.ok else "bad"
    parts.append(f'<p class="{css_class}">{html.escape(model.message)}</p></div>')
    return "".join(parts)


class PageWalkExplorer(widgets.VBox):
    """An address box, an access selector and the walk, redrawn on every change."""

    def __init__(self, memory: PhysicalMemory, cr3: int, address: str = "0x0",
                 own_copy: bool = False) -> None:
        self.model = PageWalkModel(snapshot(memory) if own_copy else memory, cr3, address)
        self.address = widgets.Text(value=address, description="address",
                                    continuous_update=False)
        self.access = widgets.ToggleButtons(options=list(ACCESS_KINDS), value="read",
                                            description="access")
        self.user = widgets.Checkbox(value=False, description="from user mode")
        self.output = widgets.HTML()
        for control in (self.address, self.access, self.user):
            control.observe(self._changed, names="value")
        super().__init__([widgets.HBox([self.address, self.user]), self.access, self.output])
        self._redraw()

    def _changed(self, _change: dict) -> None:
        self.model.set_access(self.access.value, self.user.value)
        self.model.set_address(self.address.value)
        self._redraw()

    def _redraw(self) -> None:
        self.output.value = render_walk(self.model)
