"""The figures of lessons 03 and 04: the data they draw, and that they draw it."""

import matplotlib

matplotlib.use("Agg")

from refimpl.history.identity_mapping import (MemoryManagerWithIdentityRegions,  # noqa: E402
                                              boot_aps as boot_aps_before)
from refimpl.history.page_table_map import (MemoryManagerWithPageTableMap,  # noqa: E402
                                            hash_map_heap_cost)
from refimpl.hw import X86_64, Machine, MiB  # noqa: E402
from refimpl.kernel import MemoryManager, boot_aps  # noqa: E402
from refimpl.viz.ap_boot_timeline import plot_ap_boot_timeline, record_ap_boot  # noqa: E402
from refimpl.viz.hash_map_cost import plot_hash_map_cost  # noqa: E402


def test_hash_map_cost_grows_at_the_load_factor_and_the_modern_kernel_pays_nothing():
    before = hash_map_heap_cost(MemoryManagerWithPageTableMap, 12)
    assert [row[1] for row in before] == [1, 1, 2, 2, 3, 3, 3, 3, 3, 4, 4, 4]
    assert before[0][2] == 120 and before[-1][2] == 33 * 24
    assert all(row[1:] == (0, 0) for row in hash_map_heap_cost(MemoryManager, 12))


def test_the_ap_boot_timeline_shows_each_ap_dropping_0x8000_and_a_bsp_only_unmap():
    for kernel, boot in ((MemoryManager, boot_aps),
                         (MemoryManagerWithIdentityRegions, boot_aps_before)):
        steps = record_ap_boot(kernel(Machine(X86_64, ram_size=16 * MiB, cpu_count=3)), boot)
        labels = [step.label for step in steps]
        assert labels.index("BSP copies trampoline") < labels.index("AP 1: init_ap")
        for ap in (1, 2):
            cached = [step.label for step in steps if ap in step.caching]
            assert cached == [f"AP {ap}: runs at 0x8040"]
        unmap = labels.index("BSP unmaps 0x8000")
        assert not steps[unmap].smp_enabled and not steps[unmap].caching
        assert steps[unmap - 1].caching == {0}
        assert steps[-1].label == "smp_enable()" and steps[-1].smp_enabled


def test_the_figures_have_titles_and_labelled_axes():
    steps = record_ap_boot(MemoryManager(Machine(X86_64, ram_size=16 * MiB, cpu_count=3)),
                           boot_aps)
    for figure in (plot_ap_boot_timeline(steps, 3), plot_hash_map_cost(12)):
        for axes in figure.axes:
            assert axes.get_title() and axes.get_xlabel() and axes.get_ylabel()
            assert axes.get_legend() is not None
