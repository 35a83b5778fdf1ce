"""Widgets for the notebooks: thin views over kernel and hardware state.

Each view has a plain-Python model that holds what it draws (tests drive the models); the
ipywidgets classes only turn a model into controls and HTML. Nothing here changes the machine.
Figures (matplotlib) are in `figures`. Imported by notebooks only, never by `refimpl.hw` or
`refimpl.kernel`.
"""

from refimpl.viz.call_chain import (CallChainModel, CallChainStepper, ChainEvent,
                                    quickmap_pd_probe, record_call_chain, render_call_chain)
from refimpl.viz.check_yourself import reveal, verdict
from refimpl.viz.diff_view import (DiffModel, DiffPair, Fold, RefactoringDiff, render_diff,
                                   source_pair, text_pair)
from refimpl.viz.figures import (address_split_figure, page_walk_figure, ranges_figure,
                                 timeline_figure)
from refimpl.viz.lookup_cost import LookupCostExplorer, LookupCostModel, render_lookup_cost
from refimpl.viz.memory_map import (PhysicalMemoryMap, PhysicalMemoryMapModel, parse_frame,
                                    render_memory_map)
from refimpl.viz.page_walk import (PageWalkExplorer, PageWalkModel, parse_address, render_walk,
                                   snapshot)
from refimpl.viz.tables import table, table_html
from refimpl.viz.ram_view import MachineOnOneScreen, RamModel, render_ram

__all__ = [
    "CallChainModel", "CallChainStepper", "ChainEvent", "DiffModel", "DiffPair", "Fold",
    "LookupCostExplorer", "LookupCostModel", "MachineOnOneScreen", "PageWalkExplorer",
    "PageWalkModel", "PhysicalMemoryMap", "PhysicalMemoryMapModel", "RamModel", "RefactoringDiff",
    "address_split_figure", "page_walk_figure", "parse_address", "parse_frame",
    "quickmap_pd_probe", "ranges_figure", "record_call_chain", "render_call_chain", "render_diff",
    "render_lookup_cost", "render_memory_map", "render_ram", "render_walk", "reveal", "snapshot",
    "source_pair", "table", "table_html", "text_pair", "timeline_figure", "verdict",
]
