"""Where first fit puts a region: an address-space strip with a request you can change, and two
matplotlib figures (mappings side by side, and the scan's cost against the index's).

`FirstFitModel` reads a RegionTree and a request (pages, alignment) and says what the strip
shows: every region and hole of the tree's total range, which holes pass SerenityOS's
`size + alignment` test, where `place_anywhere` puts the request, and how many regions
SerenityOS's scan looks at to get there. `FirstFitExplorer` is its thin ipywidgets view.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import ipywidgets as widgets

from refimpl.kernel.address import PAGE_SIZE
from refimpl.kernel.region import Region
from refimpl.kernel.region_tree import RegionTree
from refimpl.kernel.virtual_range import VirtualRange

COLOURS = {"region": "#8ecae6", "hole": "#f4f4f4", "fits": "#b7e4c7", "placed": "#f4a261"}
STRIP_WIDTH, STRIP_HEIGHT = 1000, 46


@dataclass(frozen=True)
class Segment:
    """One piece of the strip: a region, a hole too small for the request, or one that fits."""

    range: VirtualRange
    kind: str  # "region", "hole" or "fits"
    label: str


class FirstFitModel:
    def __init__(self, tree: RegionTree, pages: int = 1, alignment_pages: int = 1) -> None:
        self.tree = tree
        self.pages = pages
        self.alignment_pages = alignment_pages

    def set_request(self, pages: int, alignment_pages: int) -> None:
        if pages < 1 or alignment_pages < 1 or alignment_pages & (alignment_pages - 1):
            raise ValueError(f"pages must be >= 1 and alignment_pages a power of two, not "
                             f"{pages}, {alignment_pages}")
        self.pages, self.alignment_pages = pages, alignment_pages

    def needed(self) -> int:
        """Bytes a hole must have for SerenityOS's test: size + alignment."""
        return (self.pages + self.alignment_pages) * PAGE_SIZE

    def segments(self) -> list[Segment]:
        pieces = [Segment(r.range, "region", r.name) for r in self.tree.regions()]
        for gap in self.tree.gaps():
            kind = "fits" if gap.size >= self.needed() else "hole"
            pieces.append(Segment(gap, kind, f"{gap.size // PAGE_SIZE} free"))
        return sorted(pieces, key=lambda piece: piece.range.base)

    def placed(self) -> VirtualRange | None:
        """Where `place_anywhere` puts the request: a probe region is placed, read and taken
        out again (since e89c9ed2cac the tree answers "where" only by placing)."""
        probe = Region.create_unbacked(None, "probe")
        if self.tree.place_anywhere(probe, self.pages * PAGE_SIZE,
                                    self.alignment_pages * PAGE_SIZE).is_error():
            return None
        self.tree.remove(probe)
        return probe.range

    def regions_scanned(self) -> int:
        """Regions SerenityOS's scan looks at before it answers: every region below the hole it
        takes and the one right after that hole (all of them when it takes the tail or fails)."""
        placed = self.placed()
        bases = [region.range.base for region in self.tree.regions()]
        if placed is None:
            return len(bases)
        below = sum(1 for base in bases if base < placed.base)
        return below + (1 if below < len(bases) else 0)

    def describe(self) -> str:
        placed = self.placed()
        request = (f"{self.pages} page(s), aligned to {self.alignment_pages} page(s): a hole "
                   f"needs {self.needed() // PAGE_SIZE} pages")
        if placed is None:
            return f"{request}. No hole is big enough: ENOMEM."
        return (f"{request}. First fit: {placed}. The scan looks at "
                f"{self.regions_scanned()} region(s) to get there; the gap index descends once.")


def render_first_fit(model: FirstFitModel) -> str:
    """The strip as inline SVG, pages drawn to scale, the placed range outlined."""
    total = model.tree.total_range
    scale = STRIP_WIDTH / total.size

    def x(address: int) -> float:
        return (address - total.base) * scale

    parts = []
    for piece in model.segments():
        left, width = x(piece.range.base), piece.range.size * scale
        parts.append(f'<rect x="{left:.1f}" y="0" width="{width:.1f}" height="{STRIP_HEIGHT}" '
                     f'fill="{COLOURS[piece.kind]}" stroke="#555" stroke-width="0.5">'
                     f'<title>{html.escape(piece.label)} {piece.range}</title></rect>')
        if width > 34:
            parts.append(f'<text x="{left + width / 2:.1f}" y="{STRIP_HEIGHT / 2 + 4}" '
                         f'font-size="11" text-anchor="middle">{html.escape(piece.label)}</text>')
    placed = model.placed()
    if placed is not None:
        parts.append(f'<rect x="{x(placed.base):.1f}" y="2" width="{placed.size * scale:.1f}" '
                     f'height="{STRIP_HEIGHT - 4}" fill="{COLOURS["placed"]}" fill-opacity="0.85" '
                     f'stroke="#c0392b" stroke-width="2"/>')
    legend = " ".join(
        f'<span style="background:{COLOURS[kind]};border:1px solid #555;padding:0 6px">'
        f'{name}</span>' for kind, name in (("region", "region"), ("hole", "hole too small"),
                                            ("fits", "hole passing size + alignment"),
                                            ("placed", "where first fit puts it")))
    return (f'<div style="font-family:sans-serif;font-size:13px">'
            f'<svg viewBox="0 0 {STRIP_WIDTH} {STRIP_HEIGHT}" role="img" '
            f'style="width:100%;max-width:{STRIP_WIDTH}px">{"".join(parts)}</svg>'
            f'<div>{legend}</div><div style="margin-top:4px;white-space:normal">'
            f'{html.escape(model.describe())}</div></div>')


class FirstFitExplorer(widgets.VBox):
    """Change the request; the strip shows where first fit puts it."""

    def __init__(self, tree: RegionTree, max_pages: int = 8) -> None:
        self.model = FirstFitModel(tree)
        self.pages = widgets.IntSlider(value=1, min=1, max=max_pages, description="pages")
        self.alignment = widgets.Dropdown(options=[1, 2, 4, 8], value=1,
                                          description="alignment")
        self.view = widgets.HTML()
        for control in (self.pages, self.alignment):
            control.observe(lambda _: self._update(), names="value")
        self._update()
        super().__init__([widgets.HBox([self.pages, self.alignment]), self.view])

    def _update(self) -> None:
        self.model.set_request(self.pages.value, self.alignment.value)
        self.view.value = render_first_fit(self.model)


# Figures -----------------------------------------------------------------------------------------

def plot_mappings(layouts: dict[str, list[VirtualRange]], title: str):
    """One row of bars per allocator: where its mappings landed (pages from the first one)."""
    import matplotlib.pyplot as plt
    figure, axes = plt.subplots(figsize=(9, 0.8 + 0.7 * len(layouts)))
    origin = min(r.base for ranges in layouts.values() for r in ranges)
    for row, (name, ranges) in enumerate(layouts.items()):
        bars = [((r.base - origin) / PAGE_SIZE, r.size / PAGE_SIZE) for r in ranges]
        colours = ["#8ecae6", "#f4a261", "#b7e4c7"][:len(bars)]
        axes.broken_barh(bars, (row - 0.3, 0.6), facecolors=colours, edgecolors="#333")
        for (start, width), label in zip(bars, ("first", "second", "third")):
            axes.text(start + width / 2, row, label, ha="center", va="center", fontsize=9)
    axes.set_yticks(range(len(layouts)), list(layouts))
    axes.set_xlabel("pages from the first mapping's base")
    axes.set_title(title)
    axes.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    return figure


def plot_placement_cost(counts: list[int], times: dict[str, list[float]]):
    """Seconds per `allocate anywhere` against the number of regions, for the scan and the
    index (as `refimpl.history.region_tree_scan.scan_and_index_times` measures them)."""
    import matplotlib.pyplot as plt
    figure, axes = plt.subplots(figsize=(7, 4))
    labels = {"scan": "SerenityOS's scan, O(n)", "index": "RegionTree's gap index, O(log n)"}
    for name, seconds in times.items():
        axes.plot(counts, [s * 1e6 for s in seconds], marker="o", label=labels.get(name, name))
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("regions in the tree (n)")
    axes.set_ylabel("µs per allocate anywhere")
    axes.set_title("Finding a hole: walking every region vs one descent")
    axes.legend()
    axes.grid(alpha=0.3, which="both")
    figure.tight_layout()
    return figure
