"""The lessons' figures: titled, labelled, with a legend, and drawing what they are given."""

from __future__ import annotations

from datetime import date

from matplotlib.figure import Figure

from refimpl.hw import TINY, X86_64, Machine, PTEFlags, trace_walk
from refimpl.kernel.prekernel import PageTableBuilder
from refimpl.viz import address_split_figure, page_walk_figure, ranges_figure, timeline_figure


def check(figure: Figure) -> list[str]:
    """The texts of the figure's one axes, after checking title, x label and legend."""
    axes, = figure.axes
    assert axes.get_title() and axes.get_xlabel()
    assert axes.get_legend() is not None or figure.legends
    figure.canvas.draw()  # it renders
    return [text.get_text() for text in axes.texts]


def test_the_address_split_names_every_field_with_its_value():
    texts = check(address_split_figure(X86_64, 0x2000200000))
    assert texts == ["PML4\n0x0", "PDPT\n0x80", "PD\n0x1", "PT\n0x0", "offset\n0x0"]
    labels = [text.get_text() for text in address_split_figure(TINY, 0xA5C).legends[0].texts]
    assert labels == ["PD: bits 11..8", "PT: bits 7..4", "offset: bits 3..0"]


def test_the_walk_plots_each_entry_read_and_the_data():
    machine = Machine(TINY, ram_size=512)
    builder = PageTableBuilder(machine.memory, range(1, 6))
    builder.map(0x340, 0x0C, PTEFlags.PRESENT | PTEFlags.USER_SUPERVISOR)
    figure = page_walk_figure(trace_walk(machine.memory, builder.root, 0x347))
    assert check(figure) == ["PD[0x3] at 0x13", "PT[0x4] at 0x24", "data at 0xc7"]
    assert figure.axes[0].get_ylabel() == "physical address read"
    faulted = page_walk_figure(trace_walk(machine.memory, builder.root, 0x500))
    assert check(faulted) == ["PD[0x5] at 0x15"]


def test_ranges_and_timeline():
    figure = ranges_figure((0x1000, 0x10000), [(0x4000, 0x2000)], {"a": (0x2000, 0x1000)},
                           "free and allocated")
    check(figure)
    assert [text.get_text() for text in figure.legends[0].texts] == ["free", "allocated: a"]
    assert list(figure.axes[0].get_xticks()) == list(range(0x1000, 0x11001, 0x1000))
    texts = check(timeline_figure([(date(2021, 11, 6), "c4edb9f6c2c", "AK::Error", "AK"),
                                   (date(2021, 11, 8), "79fa9765ca8", "kernel", "kernel")], "t"))
    assert texts == ["2021-11-06  c4edb9f6c2c  AK::Error", "2021-11-08  79fa9765ca8  kernel"]


def test_check_yourself_reveals_in_the_question_radix():
    from refimpl.viz import reveal, verdict
    assert verdict(None, 0xC7).startswith("no prediction yet") and "0xc7" in verdict(None, 0xC7)
    assert verdict(0xC7, 0xC7) == "right: 0xc7"
    assert verdict(199, 0xC7) == "right: 0xc7"  # the same number typed in decimal
    assert verdict(0xC8, 0xC7) == "not quite: you predicted 0xc8, the answer is 0xc7"
    assert verdict((0xA, 5), (0xA, 5)) == "right: (0xa, 0x5)"
    assert verdict(0b111, 0b111, "bin") == "right: 0b111"
    assert verdict("ENOMEM", "ENOMEM") == "right: 'ENOMEM'"
    assert "because &lt;it&gt;" in reveal(None, -17, "because <it>", "dec").data


def test_a_figure_shows_itself_as_a_png():
    png = address_split_figure(TINY, 0x347)._repr_png_()
    assert png.startswith(b"\x89PNG") and len(png) > 1000


def test_tables_have_headers_and_escape_cells():
    import pytest
    from refimpl.viz import table, table_html
    page = table_html(["identifier", "renamed"], [["Range", "VirtualRange"], ["A<B", "x"]])
    assert page.count("<th") == 2 and page.count("<tr>") == 3 and "A&lt;B" in page
    assert table(["a"], [[1]]).data == table_html(["a"], [[1]])
    with pytest.raises(ValueError, match="one per header"):
        table_html(["a", "b"], [[1]])
