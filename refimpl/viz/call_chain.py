"""The call-chain stepper: watch a call nest, and unwind, one event at a time.

`record_call_chain` runs an action under `sys.setprofile` and records every call and return of
the functions you name, with a *probe*, a sentence about the machine state at that moment (for
lesson 03: which page directory the quickmap PD window shows). `CallChainModel` holds the
events and a position; `CallChainStepper` is a slider over it. Recording changes nothing in the
kernel: the probe reads state the way a debugger does.
"""

from __future__ import annotations

import html
import sys
from dataclasses import dataclass
from typing import Callable, Iterable

import ipywidgets as widgets

from refimpl.hw import trace_walk
from refimpl.kernel.memory_manager import MemoryManager

MAX_TEXT = 90


@dataclass(frozen=True)
class ChainEvent:
    kind: str  # "call" or "return"
    depth: int
    function: str
    detail: str  # the arguments of a call, the value of a return
    probe: str


def _qualname(frame) -> str:
    code = frame.f_code
    qualname = getattr(code, "co_qualname", None)  # Python 3.11+
    if qualname is None:
        owner = frame.f_locals.get("self")
        qualname = f"{type(owner).__name__}.{code.co_name}" if owner is not None else code.co_name
    return qualname


def _short(value: object) -> str:
    text = f"{value:#x}" if type(value) is int else repr(value)
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT - 1] + "…"


def _arguments(frame) -> str:
    code = frame.f_code
    names = code.co_varnames[:code.co_argcount]
    return ", ".join(f"{name}={_short(frame.f_locals[name])}" for name in names
                     if name not in ("self", "cls"))


def record_call_chain(action: Callable[[], object], functions: Iterable[str],
                      probe: Callable[[], str] = lambda: ""):
    """Run `action()`, recording calls and returns of the functions whose qualified name (e.g.
    "MemoryManager.ensure_pte") is in `functions`. Returns (action's result, events)."""
    wanted = set(functions)
    bare_names = {name.rsplit(".", 1)[-1] for name in wanted}  # a cheap first filter
    events: list[ChainEvent] = []
    depth = 0

    def profiler(frame, event, value):
        nonlocal depth
        if event not in ("call", "return") or frame.f_code.co_name not in bare_names:
            return
        name = _qualname(frame)
        if name not in wanted:
            return
        if event == "call":
            events.append(ChainEvent("call", depth, name, _arguments(frame), probe()))
            depth += 1
        else:
            depth -= 1
            events.append(ChainEvent("return", depth, name, _short(value), probe()))

    previous = sys.getprofile()
    sys.setprofile(profiler)
    try:
        result = action()
    finally:
        sys.setprofile(previous)
    return result, events


def calls_and_returns(events: list[ChainEvent], keep: Callable[[ChainEvent], bool] = lambda _: True
                      ) -> list[tuple[ChainEvent, ChainEvent | None]]:
    """Each recorded call with its return (None if it raised out of the recording), in call
    order, for a table of the chain; `keep(call)` picks the calls to list."""
    pairs: list[list] = []
    open_calls: list[int] = []
    for event in events:
        if event.kind == "call":
            open_calls.append(len(pairs))
            pairs.append([event, None])
        elif open_calls:
            pairs[open_calls.pop()][1] = event
    return [(call, returned) for call, returned in pairs if keep(call)]


def quickmap_pd_probe(mm: MemoryManager) -> Callable[[], str]:
    """A probe naming the page directory the quickmap PD window shows right now."""
    def probe() -> str:
        walk = trace_walk(mm.machine.memory, mm.kernel_page_directory().cr3(),
                          mm.layout.kernel_quickmap_pd)
        if walk.faulted:
            return "PD window: unmapped"
        frame_base = walk.physical_address
        for directory in mm.page_directories_by_cr3.values():
            for pdpt_index, page in directory.directory_pages.items():
                if page.paddr() == frame_base:
                    owner = "kernel" if directory.is_kernel() else "user"
                    return f"PD window shows the {owner} PD for PDPT index {pdpt_index}"
        return f"PD window shows P{frame_base:#x}"
    return probe


class CallChainModel:
    """The events of one recording and the step being looked at."""

    def __init__(self, events: list[ChainEvent]) -> None:
        if not events:
            raise ValueError("there is nothing to step through: no event was recorded")
        self.events = events
        self.step = 0

    def set_step(self, step: int) -> None:
        if not 0 <= step < len(self.events):
            raise ValueError(f"step {step} is outside 0..{len(self.events) - 1}")
        self.step = step

    def stack(self) -> list[ChainEvent]:
        """The calls still open at the current step, outermost first (including a call made at
        this very step; a return at this step has closed its call)."""
        open_calls: list[ChainEvent] = []
        for event in self.events[:self.step + 1]:
            if event.kind == "call":
                open_calls.append(event)
            else:
                open_calls.pop()
        return open_calls

    def current(self) -> ChainEvent:
        return self.events[self.step]

    def headline(self) -> str:
        event = self.current()
        verb = "calls" if event.kind == "call" else "returns from"
        return f"step {self.step}/{len(self.events) - 1}: {verb} {event.function}"


def render_call_chain(model: CallChainModel) -> str:
    event = model.current()
    stack = [html.escape("  " * call.depth + f"{call.function}({call.detail})")
             for call in model.stack()]
    if event.kind == "return":
        stack.append(html.escape("  " * event.depth + f"<- {event.function} returned"))
    return (f"<b>{html.escape(model.headline())}</b>"
            f"<div style='color:#555'>{html.escape(event.detail)}</div>"
            f"<pre style='margin:4px 0'>{chr(10).join(stack)}</pre>"
            f"<div style='color:#8a4b08'>{html.escape(event.probe)}</div>")


class CallChainStepper(widgets.VBox):
    """A slider over the recorded events; the HTML below shows the stack at that step."""

    def __init__(self, events: list[ChainEvent]) -> None:
        self.model = CallChainModel(events)
        self.slider = widgets.IntSlider(value=0, min=0, max=len(events) - 1, description="step",
                                        continuous_update=True,
                                        layout=widgets.Layout(width="95%"))
        self.output = widgets.HTML()
        self.slider.observe(self._changed, names="value")
        super().__init__([self.slider, self.output])
        self._redraw()

    def _changed(self, change: dict) -> None:
        self.model.set_step(change["new"])
        self._redraw()

    def _redraw(self) -> None:
        self.output.value = render_call_chain(self.model)
