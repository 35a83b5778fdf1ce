import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

from refimpl.ak import MUST  # noqa: E402
from refimpl.history.region_tree_scan import unbacked_region  # noqa: E402
from refimpl.kernel import RegionTree, VirtualRange  # noqa: E402
from refimpl.viz.placement import (FirstFitExplorer, FirstFitModel, plot_mappings,  # noqa: E402
                                   plot_placement_cost, render_first_fit)

PAGE = 4096
BASE = 0x100_0000


def small_tree():
    """Regions at pages 2, 5-6 and 10 of 16: holes of 2, 2, 3 and 5 pages."""
    tree = RegionTree(VirtualRange(BASE, 16 * PAGE))
    for first, pages in ((2, 1), (5, 2), (10, 1)):
        MUST(tree.place_specifically(unbacked_region(name=f"r{first}"),
                                     VirtualRange(BASE + first * PAGE, pages * PAGE)))
    return tree


def test_model_marks_the_holes_passing_size_plus_alignment():
    model = FirstFitModel(small_tree())
    kinds = [(piece.range.base, piece.kind) for piece in model.segments()]
    assert kinds[0] == (BASE, "fits") and ("fits" in dict(kinds).values())
    assert model.placed() == VirtualRange(BASE, PAGE)
    model.set_request(2, 1)  # needs 3 pages: the 3-page hole at page 7
    assert model.placed() == VirtualRange(BASE + 7 * PAGE, 2 * PAGE)
    assert model.regions_scanned() == 3
    model.set_request(4, 1)  # needs 5: only the tail
    assert model.placed() == VirtualRange(BASE + 11 * PAGE, 4 * PAGE)
    assert model.regions_scanned() == 3
    model.set_request(8, 1)
    assert model.placed() is None and "ENOMEM" in model.describe()
    with pytest.raises(ValueError):
        model.set_request(1, 3)


def test_explorer_redraws_when_the_request_changes():
    explorer = FirstFitExplorer(small_tree())
    before = explorer.view.value
    explorer.pages.value = 2
    assert explorer.view.value != before and "0x1007000" in explorer.view.value
    assert explorer.view.value == render_first_fit(explorer.model)


def test_figures_have_labels():
    figure = plot_placement_cost([10, 100], {"scan": [1e-6, 1e-5], "index": [1e-6, 1e-6]})
    axes = figure.axes[0]
    assert axes.get_xlabel() and axes.get_ylabel() and axes.get_title()
    assert len(axes.get_legend().get_texts()) == 2
    figure = plot_mappings({"a": [VirtualRange(BASE, PAGE), VirtualRange(BASE + 2 * PAGE, PAGE)],
                            "b": [VirtualRange(BASE, PAGE), VirtualRange(BASE + PAGE, PAGE)]},
                           "two")
    assert figure.axes[0].get_title() == "two"
