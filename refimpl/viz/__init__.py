"""Widgets for the notebooks: thin views over kernel and hardware state.

Each view has a plain-Python model that holds what it draws (tests drive the models); the
ipywidgets classes only turn a model into controls and HTML. Nothing here changes the machine.
Imported by notebooks only, never by `refimpl.hw` or `refimpl.kernel`.
"""

from refimpl.viz.page_walk import PageWalkExplorer, PageWalkModel, parse_address, render_walk
from refimpl.viz.ram_view import MachineOnOneScreen, RamModel, render_ram

__all__ = ["MachineOnOneScreen", "PageWalkExplorer", "PageWalkModel", "RamModel",
           "parse_address", "render_ram", "render_walk"]
