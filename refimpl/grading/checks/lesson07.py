"""The checks of lesson 07: atomic placement."""

from __future__ import annotations

import random

from refimpl.ak import MUST
from refimpl.grading.checks.common import call, fresh_kernel, passed, range_values, seeds
from refimpl.grading.exercises import CheckFailed, exercise
from refimpl.grading.transcript import record
from refimpl.history.atomic_place import MAP_FIXED, MAP_RANDOMIZED, sys_mmap_at_07f3d09c552
from refimpl.kernel import AddressSpace, Program, RegionTree, SimThread, replay
from refimpl.kernel.address import PAGE_SIZE, VirtualAddress
from refimpl.kernel.locking import ExecutionContext, running_as
from refimpl.kernel.region import Region
from refimpl.kernel.virtual_range import VirtualRange

BASE = 0x100_0000


# 1. place_anywhere from the private finder ------------------------------------------------------

class WatchedTree(RegionTree):
    """A RegionTree that notes, at each call of the finder and of `_insert`, whether its lock
    was held, and lets another CPU try to place a page there and then: it can only while the
    lock is free. Its own place_* refuse, so that the learner writes one."""

    def __init__(self, total_range: VirtualRange) -> None:
        super().__init__(total_range)
        self.seen: list[tuple[str, bool]] = []
        self.other_cpu: Region | None = None

    def _allocate_range_anywhere(self, size: int, alignment: int = PAGE_SIZE):
        self.seen.append(("find", self.get_lock().is_locked()))
        self.other_cpu_places()
        return super()._allocate_range_anywhere(size, alignment)

    def _insert(self, region: Region, placed: VirtualRange) -> None:
        self.seen.append(("insert", self.get_lock().is_locked()))
        self.other_cpu_places()
        super()._insert(region, placed)

    def other_cpu_places(self) -> None:
        """Another CPU places a one-page region, once, if it can take the tree's lock now."""
        if self.other_cpu is not None:
            return
        with running_as(ExecutionContext("the other CPU")):
            if not self.get_lock().try_lock():
                return
            try:
                self.other_cpu = Region.create_unbacked(None, "other CPU")
                found = RegionTree._allocate_range_anywhere(self, PAGE_SIZE)
                if not found.is_error():
                    RegionTree._insert(self, self.other_cpu, found.value())
            finally:
                self.get_lock().unlock()

    def place_anywhere(self, *args, **kwargs):
        raise AssertionError("write place_anywhere yourself, from the finder and _insert")

    place_specifically = place_anywhere


def tree_with_regions(seed: int, watched: bool) -> RegionTree:
    """A total range of 16 to 40 pages with regions in it, some touching, some not."""
    rng = random.Random(seed)
    pages = rng.randrange(16, 41)
    total = VirtualRange(VirtualAddress(BASE), pages * PAGE_SIZE)
    tree = WatchedTree(total) if watched else RegionTree(total)
    page = rng.choice([0, 1, 2])
    while page < pages - 4:
        length = rng.randrange(1, 4)
        MUST(RegionTree.place_specifically(tree, Region.create_unbacked(None, "taken"),
                                           VirtualRange(VirtualAddress(BASE + page * PAGE_SIZE),
                                                        length * PAGE_SIZE)))
        page += length + rng.choice([0, 1, 1, 2, 3])
    return tree


@exercise("07-place-anywhere", "Find and insert under one lock", 3, "place_anywhere",
          forbids=("refimpl.kernel.region_tree.RegionTree.place_anywhere",))
def check_place_anywhere(place_anywhere, hidden=False):
    count = 0
    for seed in seeds(hidden, visible=16, hidden_count=60):
        size = random.Random(seed).randrange(1, 9) * PAGE_SIZE
        reference = tree_with_regions(seed, watched=False)
        wanted_region = Region.create_unbacked(None, "new")
        wanted_placed = reference.place_anywhere(wanted_region, size).is_error() is False
        wanted = range_values(wanted_region.range) if wanted_placed else None

        tree = tree_with_regions(seed, watched=True)
        region = Region.create_unbacked(None, "new")
        case = f"regions {[str(r.range) for r in tree.regions()]}, {size:#x} bytes"
        try:
            got_placed = call(place_anywhere, tree, region, size, case=case)
        except CheckFailed:
            _check_locked(tree, case)  # the other CPU got in: that is the first thing to say
            raise
        _check_locked(tree, case)
        tree.other_cpu_places()  # now, after your function, when the lock must be free
        got = range_values(region.range) if region in tree.regions() else None
        # where the other CPU's page went (None: it never got the lock), not "the lock was
        # held", a True anyone could write: its place depends on when it got the lock
        record(case, got_placed, got, range_values(getattr(tree.other_cpu, "range", None)))
        if got_placed is not wanted_placed:
            raise CheckFailed(f"{case}: return {wanted_placed} (placed or not), not "
                              f"{got_placed!r}")
        if got != wanted:
            raise CheckFailed(f"{case}: the region should be in the tree at {wanted}, "
                              f"it is at {got}")
        if tree.get_lock().is_locked() or tree.other_cpu is None:
            raise CheckFailed(f"{case}: the tree's lock is still held after your function")
        count += 1
    return passed(count, "placements")


def _check_locked(tree: WatchedTree, case: str) -> None:
    unlocked = [what for what, locked in tree.seen if not locked]
    if unlocked:
        raise CheckFailed(f"{case}: the {unlocked[0]} ran without the tree's lock: another "
                          f"CPU could take the range between the find and the insert")


# 2. Which schedules make two find-then-insert threads collide ----------------------------------

def find_work_insert_steps(tree: RegionTree, region: Region, work: int):
    """Find a range, do `work` steps of other work (build, name, map), then insert."""
    placed = MUST(tree._allocate_range_anywhere(PAGE_SIZE))
    yield f"{region.name} found {placed}"
    for step in range(work):
        yield f"{region.name} works ({step + 1})"
    tree._insert(region, placed)
    yield f"{region.name} inserted"


def collides_reference(schedule: str, work_a: int, work_b: int) -> bool:
    """Run the two threads by `schedule` on the simulated kernel: did an insert panic?"""
    def make() -> Program:
        tree = RegionTree(VirtualRange(VirtualAddress(BASE), 64 * PAGE_SIZE))
        threads = [SimThread(name, find_work_insert_steps, tree,
                             Region.create_unbacked(None, name), work)
                   for name, work in (("A", work_a), ("B", work_b))]
        return Program(threads, state=tree)
    return replay(make, schedule).panic is not None


def random_schedule(rng: random.Random, work_a: int, work_b: int) -> str:
    letters = list("A" * (work_a + 3) + "B" * (work_b + 3))
    rng.shuffle(letters)
    return "".join(letters)


@exercise("07-collides", "Which interleavings collide", 2, "collides")
def check_collides(collides, hidden=False):
    count = 0
    for seed in seeds(hidden, visible=12, hidden_count=40):
        rng = random.Random(seed)
        work_a, work_b = rng.randrange(0, 4), rng.randrange(0, 4)
        for _ in range(5):
            schedule = random_schedule(rng, work_a, work_b)
            case = f"work_a={work_a}, work_b={work_b}, schedule {schedule!r}"
            got = call(collides, schedule, work_a, work_b, case=case)
            record(case, got)
            wanted = collides_reference(schedule, work_a, work_b)
            if got is not wanted:
                raise CheckFailed(f"{case}: expected {wanted}, got {got!r}")
            count += 1
    return passed(count, "schedules")


# 3. Where mmap put MAP_RANDOMIZED mappings at 07f3d09c552 --------------------------------------

def random_requests(seed: int, user_base: int) -> list[tuple[int, int | None]]:
    """A few MAP_FIXED mappings near the bottom of the user range (none overlapping), then
    MAP_RANDOMIZED ones; sizes in bytes, not always whole pages."""
    rng = random.Random(seed)
    requests, page = [], rng.randrange(0, 3)
    for _ in range(rng.randrange(1, 4)):
        pages = rng.randrange(1, 3)
        requests.append((pages * PAGE_SIZE, user_base + page * PAGE_SIZE))
        page += pages + rng.choice([0, 1, 1, 2, 3])
    for _ in range(rng.randrange(3, 6)):
        requests.append((rng.randrange(1, 3 * PAGE_SIZE + 1), None))
    return requests


def aslr_less_reference(requests: list[tuple[int, int | None]]) -> list[int]:
    """The addresses sys$mmap at 07f3d09c552 returns, on a fresh process of the simulated
    kernel (seed 0: its user range starts at the same base every time)."""
    space = MUST(AddressSpace.try_create(fresh_kernel()))
    return [MUST(sys_mmap_at_07f3d09c552(space, address or 0, size, 3,
                                         MAP_FIXED if address is not None else MAP_RANDOMIZED))
            for size, address in requests]


@exercise("07-aslr-lost", "Where MAP_RANDOMIZED went at 07f3d09c552", 2, "aslr_less_addresses",
          forbids=("refimpl.history.atomic_place.sys_mmap_at_07f3d09c552",))
def check_aslr_lost(aslr_less_addresses, hidden=False):
    user_base = MUST(AddressSpace.try_create(fresh_kernel())).region_tree.total_range.base
    count = 0
    for seed in seeds(hidden, visible=12, hidden_count=40):
        requests = random_requests(seed, user_base)
        shown = [(f"{size:#x}", None if address is None else f"{address:#x}")
                 for size, address in requests]
        case = f"user range from {user_base:#x}, requests {shown}"
        got = call(aslr_less_addresses, user_base, list(requests), case=case)
        got = list(got) if isinstance(got, (list, tuple)) else got
        record(case, got)
        wanted = aslr_less_reference(requests)
        if got != wanted:
            raise CheckFailed(f"{case}: expected {_hexes(wanted)}, got {_hexes(got)}")
        count += 1
    return passed(count, "processes")


def _hexes(addresses) -> str:
    if not isinstance(addresses, list):
        return repr(addresses)
    return "[" + ", ".join(f"{a:#x}" if isinstance(a, int) else repr(a) for a in addresses) + "]"
