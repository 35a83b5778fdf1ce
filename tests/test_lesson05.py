"""Lesson 05: the region lookup cache's use-after-free happens before 79576f92808 and not after,
the WeakPtr turns it into a miss, and the measurement shows the cache's saving collapse on a
tree."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refimpl.ak import KernelPanic, WeakPtr
from refimpl.history.region_lookup_cache import (AddressSpaceClearingCacheOnExec,
                                                 AddressSpaceWithRawCache,
                                                 AddressSpaceWithWeakCache, object_at,
                                                 prepare_stale_cache)
from refimpl.history.region_lookup_cost import (LOOKUP_CALLS, malloc_trace,
                                                measure_lookup_costs, plot_lookup_costs, replay,
                                                replay_on_kernel, saving)
from refimpl.kernel import AddressSpace, Region, write_user_memory
from refimpl.kernel.address import PAGE_SIZE
from refimpl.kernel.address_space import PROT_READ, PROT_WRITE
from refimpl.kernel.syscalls import sys_mprotect, sys_munmap
from refimpl.viz import LookupCostExplorer, LookupCostModel, render_lookup_cost


def test_weak_ptr_is_null_once_its_object_is_destroyed(mm):
    from refimpl.ak import MUST
    space = MUST(AddressSpace.try_create(mm))
    region = MUST(space.allocate_region(PAGE_SIZE))
    pointer, other = region.make_weak_ptr(), region.make_weak_ptr()
    assert pointer.unsafe_ptr() is region and other
    MUST(space.deallocate_region(region))
    assert pointer.unsafe_ptr() is None and not other and not WeakPtr()


def test_exec_leaves_the_raw_cache_pointing_at_the_new_programs_region():
    stage = prepare_stale_cache(AddressSpaceWithRawCache)
    cache = stage.space.region_lookup_cache
    assert cache.range == stage.stale_range and cache.region == stage.victim.object_address()
    assert not stage.victim.make_weak_ptr()  # the victim was destroyed (its link is revoked)
    assert stage.victim not in stage.space.region_tree.regions()
    # Its kmalloc chunk now holds the new program's Region, at another address.
    assert stage.newcomer.object_address() == stage.victim.object_address()
    assert object_at(stage.space, cache.region) is stage.newcomer
    assert not stage.newcomer.range.intersects(stage.stale_range)


def test_the_stale_pointer_lets_mprotect_change_another_region():
    stage = prepare_stale_cache(AddressSpaceWithRawCache)
    result = sys_mprotect(stage.space, stage.stale_range.base, stage.stale_range.size, PROT_READ)
    assert result.value() == 0
    assert stage.newcomer.access == Region.Access.READ
    write = write_user_memory(stage.space, stage.newcomer.vaddr(), b"x")
    assert write.is_error() and "protection violation on write" in str(write.error())


def test_the_stale_pointer_lets_munmap_remove_another_region():
    stage = prepare_stale_cache(AddressSpaceWithRawCache)
    assert sys_munmap(stage.space, stage.stale_range.base, stage.stale_range.size).value() == 0
    assert stage.newcomer not in stage.space.region_tree.regions()


def test_a_stale_pointer_to_a_free_chunk_stops_the_simulation():
    stage = prepare_stale_cache(AddressSpaceWithRawCache)
    stage.space.deallocate_region(stage.newcomer)
    stage.space.region_lookup_cache.region = stage.victim.object_address()
    stage.space.region_lookup_cache.range = stage.stale_range
    with pytest.raises(KernelPanic, match="use-after-free"):
        stage.space.find_region_from_range(stage.stale_range)


@pytest.mark.parametrize("space_class", [AddressSpaceClearingCacheOnExec,
                                         AddressSpaceWithWeakCache])
def test_after_the_fixes_the_stale_range_is_a_miss(space_class):
    stage = prepare_stale_cache(space_class)
    cache = stage.space.region_lookup_cache
    if space_class is AddressSpaceWithWeakCache:
        assert cache.range == stage.stale_range and cache.region.unsafe_ptr() is None
    else:
        assert cache.range is None and cache.region == 0
    assert stage.space.find_region_from_range(stage.stale_range) is None
    result = sys_mprotect(stage.space, stage.stale_range.base, stage.stale_range.size, PROT_READ)
    assert result.is_error() and "text" in str(result.error())  # the new program's own text
    assert stage.newcomer.access == Region.Access.READ | Region.Access.WRITE


def test_the_cache_is_cleared_when_its_region_is_taken():
    for space_class in (AddressSpaceWithRawCache, AddressSpaceWithWeakCache):
        stage = prepare_stale_cache(space_class)
        space, region = stage.space, stage.newcomer
        assert space.find_region_from_range(region.range) is region
        assert space.find_region_from_range(region.range) is region  # a hit
        assert sys_munmap(space, region.vaddr(), region.size()).value() == 0
        assert not space.region_lookup_cache.region


def test_the_modern_lookup_has_no_cache_and_agrees_with_the_weak_one():
    stage = prepare_stale_cache(AddressSpaceWithWeakCache)
    for region in stage.space.region_tree.regions():
        assert AddressSpace.find_region_from_range(stage.space, region.range) is region
        assert stage.space.find_region_from_range(region.range) is region
    assert not hasattr(AddressSpace, "region_lookup_cache")


def test_the_trace_is_a_valid_program_on_the_simulated_kernel():
    trace = malloc_trace(3, 32, 600)
    assert {call.name for call in trace} == {"mmap", *LOOKUP_CALLS}
    space = replay_on_kernel(trace)
    assert len(space.region_tree) > 32


def test_the_trace_is_seeded():
    assert malloc_trace(1, 16, 200) == malloc_trace(1, 16, 200) != malloc_trace(2, 16, 200)
    with pytest.raises(ValueError, match="blocks"):
        malloc_trace(0, 0, 10)


def test_the_cache_hits_two_lookups_in_three_and_the_variants_agree_on_it():
    trace = malloc_trace(0, 64, 1000)
    costs = {(s, c): replay(trace, s, c) for s in ("list", "tree") for c in (False, True)}
    assert costs["list", True].hits == costs["tree", True].hits
    assert 0.6 < costs["tree", True].hit_rate() < 0.75
    assert costs["list", False].hits == 0
    with pytest.raises(ValueError, match="structure"):
        replay(trace, "hash", False)


def test_the_saving_is_large_over_a_list_and_small_over_a_tree():
    rows = measure_lookup_costs(sizes=(16, 256), steps=800)
    small, large = rows
    assert large["regions"] > 200
    assert saving(large, "list") > 50 and saving(large, "list") > 10 * saving(large, "tree")
    assert 0 < saving(large, "tree") < 10
    assert large["tree"] < 2 * small["tree"]  # O(log n)
    assert large["list"] > 3 * small["list"]  # O(n)


def test_the_figure_has_labelled_axes_and_legends():
    figure = plot_lookup_costs(measure_lookup_costs(sizes=(8, 64), steps=200))
    for axes in figure.axes:
        assert axes.get_xlabel() and axes.get_ylabel() and axes.get_title()
        assert axes.get_legend() is not None
    assert len(figure.axes[0].get_lines()) == 4


def test_the_cost_explorer_redraws_when_the_slider_moves():
    rows = measure_lookup_costs(sizes=(8, 256), steps=200)
    model = LookupCostModel(rows)
    first = render_lookup_cost(model)
    model.select(1)
    assert render_lookup_cost(model) != first and "hit rate" in model.summary()
    with pytest.raises(ValueError, match="index"):
        model.select(2)
    explorer = LookupCostExplorer(rows)
    before = explorer.output.value
    explorer.slider.value = 1
    assert explorer.output.value != before and explorer.model.index == 1


def test_the_cost_bars_share_one_scale_across_sizes():
    rows = measure_lookup_costs(sizes=(8, 256), steps=200)
    model = LookupCostModel(rows)
    assert model.widest() == rows[1]["list"]
    small = render_lookup_cost(model)
    model.select(1)
    assert 'width:400px' in render_lookup_cost(model) and 'width:400px' not in small


@settings(max_examples=25)
@given(st.lists(st.tuples(st.sampled_from(["mmap", "mprotect", "munmap", "split", "exec",
                                           "lookup"]), st.integers(0, 7), st.integers(1, 3)),
                max_size=25))
def test_with_a_weak_ptr_the_cache_never_changes_an_answer(operations):
    """Whatever happens, every lookup through the cache gives what the cacheless lookup gives,
    for every range ever asked about."""
    from refimpl.ak import MUST
    from refimpl.hw import X86_64, Machine, MiB
    from refimpl.kernel import MemoryManager
    space = MUST(AddressSpaceWithWeakCache.try_create(
        MemoryManager(Machine(X86_64, ram_size=16 * MiB, cpu_count=1))))
    asked = []
    for kind, index, pages in operations:
        mapped = [region for region in space.region_tree.regions() if region.mmap]
        if kind == "exec":
            space.exec([("text", pages * PAGE_SIZE, PROT_READ)])
            continue
        if kind == "mmap" or not mapped:
            MUST(space.allocate_region(pages * PAGE_SIZE, prot=PROT_READ | PROT_WRITE, mmap=True))
            continue
        region = mapped[index % len(mapped)]
        asked.append(region.range)
        if kind == "mprotect":
            MUST(space.mprotect(region.vaddr(), region.size(), PROT_READ))
        elif kind == "munmap":
            MUST(space.unmap_mmap_range(region.vaddr(), region.size()))
        elif kind == "split":
            MUST(space.unmap_mmap_range(region.vaddr(), PAGE_SIZE))
        for wanted in asked:
            assert space.find_region_from_range(wanted) is \
                AddressSpace.find_region_from_range(space, wanted)
