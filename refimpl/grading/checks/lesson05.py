"""The checks of lesson 05: the region lookup cache."""

from __future__ import annotations

import random
from dataclasses import dataclass

from refimpl.ak import MUST, KernelPanic
from refimpl.grading.checks.common import call, fresh_kernel, passed, seeds
from refimpl.grading.exercises import CheckFailed, exercise
from refimpl.grading.transcript import record
from refimpl.history.region_lookup_cache import AddressSpaceWithRawCache, Program, object_at
from refimpl.history.region_lookup_cost import malloc_trace, replay
from refimpl.kernel.address import PAGE_SIZE
from refimpl.kernel.address_space import PROT_EXEC, PROT_READ, PROT_WRITE
from refimpl.kernel.virtual_range import VirtualRange

RW = PROT_READ | PROT_WRITE


def _random_program(rng: random.Random) -> Program:
    return [("text", rng.randrange(1, 6) * PAGE_SIZE, PROT_READ | PROT_EXEC),
            ("data", rng.randrange(1, 4) * PAGE_SIZE, RW)][:rng.randrange(1, 3)]


def _mmap(space, rng: random.Random) -> str:
    region = MUST(space.allocate_region(rng.randrange(1, 4) * PAGE_SIZE, prot=RW, mmap=True))
    return f"mmap -> {region.range}"


def _mmapped(space):
    return [region for region in space.region_tree.regions() if region.mmap]


# Finding the stale pointer ------------------------------------------------------------------

@dataclass(frozen=True)
class CacheStep:
    """One syscall of a process with the January 2020 cache, and the state after it."""

    call: str
    cache_range: VirtualRange | None
    cache_region: int  # the raw Region* in the cache, 0 for nullptr
    live: dict  # kernel-heap address -> range, of every Region the process has


def cache_steps(seed: int, count: int = 16) -> list[CacheStep]:
    """A seeded run of mmap, mprotect, munmap and exec on `AddressSpaceWithRawCache`, recorded
    step by step (it ends early if a stale pointer is followed)."""
    rng = random.Random(seed)
    space = MUST(AddressSpaceWithRawCache.try_create(fresh_kernel()))
    steps: list[CacheStep] = []

    def note(description: str) -> None:
        cache = space.region_lookup_cache
        live = {region.object_address(): region.range for region in space.region_tree.regions()}
        steps.append(CacheStep(description, cache.range, cache.region, live))

    space.exec(_random_program(rng))
    note("exec")
    for _ in range(count):
        mapped, roll = _mmapped(space), rng.random()
        try:
            if roll < 0.3 or not mapped:
                note(_mmap(space, rng))
            elif roll < 0.6:
                region = rng.choice(mapped)
                prot = rng.choice((PROT_READ, RW))
                MUST(space.mprotect(region.vaddr(), region.size(), prot))
                note(f"mprotect({region.vaddr():#x}, {region.size():#x}, {prot})")
            elif roll < 0.8:
                region = rng.choice(mapped)
                MUST(space.unmap_mmap_range(region.vaddr(), region.size()))
                note(f"munmap({region.vaddr():#x}, {region.size():#x})")
            else:
                space.exec(_random_program(rng))
                note("exec")
        except KernelPanic:
            break  # the stale pointer was followed to free memory
    return steps


def first_stale_step(steps: list[CacheStep]) -> int | None:
    """The reference: the first step after which the cache names no live region of its range."""
    for index, step in enumerate(steps):
        if step.cache_region and step.live.get(step.cache_region) != step.cache_range:
            return index
    return None


STALE_SEEDS, STALE_HIDDEN = 8, 30


@exercise("05-find-stale", "Find the step where the cache goes stale", 2, "find_stale")
def check_find_stale(find_stale, hidden=False):
    for seed in seeds(hidden, STALE_SEEDS, STALE_HIDDEN):
        steps = cache_steps(seed)
        wanted = first_stale_step(steps)
        got = call(find_stale, steps, case=f"cache_steps({seed})")
        record(f"cache_steps({seed})", got)
        if got != wanted:
            where = (f"goes stale at step {wanted} ({steps[wanted].call})" if wanted is not None
                     else "never goes stale")
            raise CheckFailed(f"cache_steps({seed}): the cache {where}; you said {got}")
    return passed(len(seeds(hidden, STALE_SEEDS, STALE_HIDDEN)), "recorded runs")


# Invalidating in take_region ------------------------------------------------------------------

def _space_with(take_region):
    class LearnerAddressSpace(AddressSpaceWithRawCache):
        def take_region(self, region):
            return take_region(self, region)
    return MUST(LearnerAddressSpace.try_create(fresh_kernel()))


def _operation(rng: random.Random, space, region_index: int, kind: str) -> str:
    """Apply one operation to `space`; the same arguments give the same operation on the
    reference space."""
    mapped = _mmapped(space)
    if kind == "mmap" or not mapped:
        return _mmap(space, rng)
    region = mapped[region_index % len(mapped)]
    base, size = region.vaddr(), region.size()
    if kind == "mprotect":
        MUST(space.mprotect(base, size, PROT_READ if region.is_writable() else RW))
        return f"mprotect({base:#x}, {size:#x})"
    if kind == "lookup":
        space.find_region_from_range(region.range)
        return f"find_region_from_range({region.range})"
    if kind == "munmap" or size == PAGE_SIZE:
        MUST(space.unmap_mmap_range(base, size))
        return f"munmap({base:#x}, {size:#x})"
    MUST(space.unmap_mmap_range(base, PAGE_SIZE))  # splits the region
    return f"munmap({base:#x}, {PAGE_SIZE:#x}) of {region.range}"


def _cache_state(space) -> str:
    cache = space.region_lookup_cache
    named = f"the region {object_at(space, cache.region).range}" if cache.region else "nullptr"
    return f"range {cache.range}, pointer to {named}"


@exercise("05-take-region", "Invalidate the cache in take_region", 3, "take_region")
def check_take_region(take_region, hidden=False):
    kinds = ("mmap", "mprotect", "lookup", "munmap", "split")
    for seed in seeds(hidden, 4, 12):
        rng = random.Random(seed)
        learner, reference = _space_with(take_region), AddressSpaceWithRawCache.try_create(
            fresh_kernel()).value()
        for step in range(24):
            kind, index, size_seed = rng.choice(kinds), rng.randrange(8), rng.random()
            case = f"seed {seed}, step {step}"
            wanted = _operation(random.Random(size_seed), reference, index, kind)
            done = call(_operation, random.Random(size_seed), learner, index, kind, case=case)
            _compare(learner, reference, f"{case}, after {done}", wanted)
            record(case, [[region.range.base, region.range.size]
                          for region in learner.region_tree.regions()], _cache_state(learner))
        _check_not_in_tree(take_region, learner, seed)
    return passed(len(seeds(hidden, 4, 12)) * 24, "operations")


def _compare(learner, reference, case: str, wanted: str) -> None:
    regions = [region.range for region in learner.region_tree.regions()]
    wanted_regions = [region.range for region in reference.region_tree.regions()]
    if regions != wanted_regions:
        raise CheckFailed(f"{case}: the regions are {regions}, expected {wanted_regions} "
                          f"(the reference did {wanted})")
    cache = learner.region_lookup_cache
    if cache.region and all(region.object_address() != cache.region
                            for region in learner.region_tree.regions()):
        raise CheckFailed(f"{case}: the cache still points at {cache.region:#x}, a region you "
                          f"took out of the tree: its chunk is free")
    got, expected = _cache_state(learner), _cache_state(reference)
    if got != expected:
        raise CheckFailed(f"{case}: the cache holds {got}; expected {expected}")


def _check_not_in_tree(take_region, space, seed: int) -> None:
    region = MUST(space.allocate_region(PAGE_SIZE, prot=RW, mmap=True))
    space.find_region_from_range(region.range)
    space.region_tree.remove(region)  # taken by someone else: no longer in the tree
    case = f"seed {seed}: take_region of a region that is not in the tree"
    result = call(take_region, space, region, case=case)
    record(case, result, [[other.range.base, other.range.size]
                          for other in space.region_tree.regions()], _cache_state(space))
    if result is not False:
        raise CheckFailed(f"{case}: return False, as RegionTree.remove does")
    region.destroy()


# Counting cache hits ------------------------------------------------------------------------

@exercise("05-hit-rate", "Count the cache's hits on a trace", 3, "count_hits")
def check_hit_rate(count_hits, hidden=False):
    for seed in seeds(hidden, 6, 20):
        blocks, steps = random.Random(seed).choice((4, 8, 16)), 150 + 10 * seed % 200
        trace = malloc_trace(seed, blocks, steps)
        cost = replay(trace, "tree", True)
        case = f"malloc_trace({seed}, {blocks}, {steps})"
        got = call(count_hits, trace, case=case)
        record(case, got)
        if got != (cost.hits, cost.lookups):
            raise CheckFailed(f"{case}: expected (hits, lookups) = ({cost.hits}, "
                              f"{cost.lookups}), got {got!r}")
    return passed(len(seeds(hidden, 6, 20)), "traces")
