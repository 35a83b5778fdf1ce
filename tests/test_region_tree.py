import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from refimpl.ak import MUST, KernelPanic
from refimpl.hw import X86_64, Machine, MiB
from refimpl.kernel import (AnonymousVMObject, MemoryManager, Region, RegionTree,
                            SpinlockProtected, VirtualRange)
from refimpl.kernel.invariants import region_tree_violations

PAGE = 4096
BASE = 0x100_0000


@pytest.fixture(scope="module")
def mm():
    return MemoryManager(Machine(X86_64, ram_size=16 * MiB))


def make_region(mm, name="r"):
    vmobject = MUST(AnonymousVMObject.try_create_with_size(mm, PAGE))
    region = MUST(Region.try_create_unplaced(mm, vmobject, 0, name, Region.Access.READ))
    vmobject.unref()
    return region


def tree_with(mm, *ranges, pages=64):
    tree = RegionTree(VirtualRange(BASE, pages * PAGE))
    for base, size in ranges:
        MUST(tree.place_specifically(make_region(mm), VirtualRange(base, size)))
    return tree


def test_anywhere_packs_from_the_bottom_and_takes_the_first_hole_that_fits(mm):
    tree = tree_with(mm)
    first = MUST(tree._allocate_range_anywhere(2 * PAGE))
    assert first == VirtualRange(BASE, 2 * PAGE)
    tree = tree_with(mm, (BASE + 3 * PAGE, PAGE), (BASE + 5 * PAGE, PAGE))
    # holes: 3 pages at BASE, 1 page at +4, 58 pages at +6; first fit wants size + one page
    assert MUST(tree._allocate_range_anywhere(PAGE)) == VirtualRange(BASE, PAGE)
    assert MUST(tree._allocate_range_anywhere(2 * PAGE)) == VirtualRange(BASE, 2 * PAGE)
    assert MUST(tree._allocate_range_anywhere(3 * PAGE)) == VirtualRange(BASE + 6 * PAGE, 3 * PAGE)


def test_a_hole_of_exactly_the_request_is_never_used(mm):
    tree = tree_with(mm, (BASE, 16 * PAGE), (BASE + 17 * PAGE, 47 * PAGE))
    # one free page and nothing else: SerenityOS's `size + alignment` test wants two
    assert tree._allocate_range_anywhere(PAGE).error().code() == 12
    assert MUST(tree._allocate_range_specific(BASE + 16 * PAGE, PAGE))


def test_larger_alignments_need_size_plus_alignment(mm):
    tree = tree_with(mm, (BASE, 16 * PAGE), (BASE + 48 * PAGE, 16 * PAGE))
    # the hole [16, 48) has 32 pages: 16 pages aligned to 16 pages fit, from the aligned base
    assert MUST(tree._allocate_range_anywhere(16 * PAGE, 16 * PAGE)) == \
        VirtualRange(BASE + 16 * PAGE, 16 * PAGE)
    tree = tree_with(mm, (BASE, 16 * PAGE), (BASE + 47 * PAGE, 17 * PAGE))
    # 31 pages would hold it at BASE + 16 pages, but the test wants 32 (SerenityOS's FIXME)
    assert tree._allocate_range_anywhere(16 * PAGE, 16 * PAGE).error().code() == 12


def test_specific_checks_every_byte(mm):
    tree = tree_with(mm, (BASE + 4 * PAGE, 2 * PAGE))
    # ENOMEM for a taken range, as RegionTree.cpp#L99-L101 at f0f97e1db02 (not EEXIST)
    assert tree._allocate_range_specific(BASE + 3 * PAGE, 2 * PAGE).error().code() == 12
    assert tree._allocate_range_specific(BASE + 5 * PAGE, PAGE).error().code() == 12
    assert MUST(tree._allocate_range_specific(BASE + 6 * PAGE, PAGE))
    assert tree._allocate_range_specific(BASE + 63 * PAGE, 2 * PAGE).error().code() == 12
    assert tree._allocate_range_specific(BASE + 1, PAGE).error().code() == 22
    assert tree._allocate_range_specific(BASE, 0).error().code() == 22


def test_randomized_is_reproducible_and_free(mm):
    def picks(seed):
        tree = RegionTree(VirtualRange(BASE, 4096 * PAGE), seed=seed)
        ranges = []
        for _ in range(6):
            region = make_region(mm)
            MUST(tree.place_anywhere(region, PAGE, randomize=True))
            ranges.append(region.range)
        assert not region_tree_violations(tree)
        return ranges

    assert picks(1) == picks(1) and picks(1) != picks(2)


def test_insert_refuses_taken_ranges_and_remove_is_by_identity(mm):
    tree = tree_with(mm, (BASE, 2 * PAGE))
    with pytest.raises(KernelPanic, match="is not free"):
        tree._insert(make_region(mm), VirtualRange(BASE + PAGE, PAGE))
    stranger = make_region(mm)
    stranger.range = VirtualRange(BASE, 2 * PAGE)
    assert tree.remove(stranger) is False
    region = tree.regions()[0]
    assert tree.remove(region) is True and tree.remove(region) is False
    assert tree.gaps() == [tree.total_range] and not region_tree_violations(tree)


def test_lookup_edges(mm):
    tree = tree_with(mm, (BASE + 2 * PAGE, 2 * PAGE))
    region = tree.regions()[0]
    assert tree.find_region_containing(BASE + 2 * PAGE - 1) is None
    assert tree.find_region_containing(BASE + 2 * PAGE) is region
    assert tree.find_region_containing(BASE + 4 * PAGE - 1) is region
    assert tree.find_region_containing(BASE + 4 * PAGE) is None
    assert tree.find_region_containing(VirtualRange(BASE + 3 * PAGE, PAGE)) is region
    assert tree.find_region_containing(VirtualRange(BASE + 3 * PAGE, 2 * PAGE)) is None
    assert tree.find_regions_intersecting(VirtualRange(BASE + 4 * PAGE, PAGE)) == []
    assert tree.find_regions_intersecting(VirtualRange(BASE + PAGE, PAGE)) == []
    assert tree.find_regions_intersecting(VirtualRange(BASE + PAGE, 2 * PAGE)) == [region]


def test_find_regions_intersecting_catches_serenityos_misses(mm):
    # (b): A=[0x1000,0x4000) B=[0x4000,0x5000), query [0x3000,0x5000): SerenityOS stops after A.
    tree = tree_with(mm, (BASE + 1 * PAGE, 3 * PAGE), (BASE + 4 * PAGE, PAGE))
    found = tree.find_regions_intersecting(VirtualRange(BASE + 3 * PAGE, 2 * PAGE))
    assert [r.range.base for r in found] == [BASE + PAGE, BASE + 4 * PAGE]
    # (a): no region starts at or below the query's base, but one starts inside it.
    tree = tree_with(mm, (BASE + 8 * PAGE, PAGE))
    found = tree.find_regions_intersecting(VirtualRange(BASE + 4 * PAGE, 8 * PAGE))
    assert [r.range.base for r in found] == [BASE + 8 * PAGE]


def test_get_lock_and_spinlock_protected_forms(mm):
    tree = tree_with(mm)
    with tree.get_lock():
        MUST(tree.place_anywhere(make_region(mm), PAGE))  # recursive: the tree locks again
    protected = SpinlockProtected(tree, "region tree")
    count = protected.with_locked(lambda t: len(t))
    assert count == 1 and not protected.is_locked()


class TreeAgainstPages(RuleBasedStateMachine):
    """Random placements and removals; lookups checked against a brute-force scan."""

    PAGES = 64

    def __init__(self):
        super().__init__()
        self.mm = MemoryManager(Machine(X86_64, ram_size=16 * MiB))
        self.tree = RegionTree(VirtualRange(BASE, self.PAGES * PAGE))

    def _pages_taken(self):
        taken = [False] * self.PAGES
        for region in self.tree.regions():
            first = (region.range.base - BASE) // PAGE
            for page in range(first, first + region.page_count()):
                taken[page] = True
        return taken

    @rule(pages=st.integers(1, 8), alignment=st.sampled_from([1, 1, 4]))
    def anywhere(self, pages, alignment):
        taken = self._pages_taken()
        longest = max((g.size for g in self.tree.gaps()), default=0)
        region = make_region(self.mm)
        result = self.tree.place_anywhere(region, pages * PAGE, alignment * PAGE)
        # It fails exactly when no gap passes SerenityOS's `size + alignment` test.
        assert result.is_error() == (longest < (pages + alignment) * PAGE)
        if not result.is_error():
            first = (region.range.base - BASE) // PAGE
            assert not any(taken[first:first + pages])

    @rule(first=st.integers(0, 63), pages=st.integers(1, 8))
    def specific(self, first, pages):
        taken = self._pages_taken()
        result = self.tree.place_specifically(make_region(self.mm),
                                              VirtualRange(BASE + first * PAGE, pages * PAGE))
        free = first + pages <= self.PAGES and not any(taken[first:first + pages])
        assert result.is_error() != free

    @rule(data=st.data())
    def remove(self, data):
        regions = self.tree.regions()
        if regions:
            assert self.tree.remove(data.draw(st.sampled_from(regions)))

    @rule(page=st.integers(-1, 64), pages=st.integers(1, 10),
          offset=st.sampled_from([0, 1, 123, PAGE - 1]))
    def lookups_match_brute_force(self, page, pages, offset):
        address = BASE + page * PAGE + offset
        expected = [r for r in self.tree.regions() if r.range.contains(address)]
        assert self.tree.find_region_containing(address) is (expected[0] if expected else None)
        wanted = VirtualRange(max(BASE + page * PAGE, 0), pages * PAGE)
        assert self.tree.find_regions_intersecting(wanted) == \
            [r for r in self.tree.regions() if r.range.intersects(wanted)]
        holder = [r for r in self.tree.regions() if r.range.contains(wanted)]
        assert self.tree.find_region_containing(wanted) is (holder[0] if holder else None)

    @invariant()
    def tree_is_consistent(self):
        assert region_tree_violations(self.tree) == []


TestTreeAgainstPages = TreeAgainstPages.TestCase
