import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from refimpl.ak import MUST
from refimpl.hw import X86_64, Machine, MiB
from refimpl.kernel import AllocationKind, MemoryManager, VirtualRange, VirtualRangeAllocator
from refimpl.kernel.address import VirtualAddress

PAGE = 4096


def test_range_basics():
    r = VirtualRange(0x10000, 0x3000)
    assert r.end == 0x13000 and r.page_count() == 3 and isinstance(r.base, VirtualAddress)
    assert r.contains(0x12FFF) and not r.contains(0x13000)
    assert r.contains(VirtualRange(0x11000, 0x2000)) and not r.contains(VirtualRange(0x12000, 0x2000))
    assert r.intersects(VirtualRange(0x12000, 0x5000))
    assert not r.intersects(VirtualRange(0x13000, 0x1000))
    assert r.intersect(VirtualRange(0x12000, 0x5000)) == VirtualRange(0x12000, 0x1000)


def test_carve_gives_zero_one_or_two_pieces():
    r = VirtualRange(0x10000, 0x4000)
    assert r.carve(r) == []
    assert r.carve(VirtualRange(0x10000, 0x1000)) == [VirtualRange(0x11000, 0x3000)]
    assert r.carve(VirtualRange(0x11000, 0x1000)) == [VirtualRange(0x10000, 0x1000),
                                                      VirtualRange(0x12000, 0x2000)]
    with pytest.raises(ValueError, match="page-aligned part"):
        r.carve(VirtualRange(0x11000, 0x800))
    with pytest.raises(ValueError, match="page-aligned part"):
        r.carve(VirtualRange(0x13000, 0x2000))


def test_bad_ranges_and_page_expansion():
    with pytest.raises(ValueError, match="overflows"):
        VirtualRange(0xFFFF_FFFF_FFFF_F000, 0x2000)
    with pytest.raises(ValueError, match="non-negative"):
        VirtualRange(0x1000, -1)
    with pytest.raises(ValueError, match="do not intersect"):
        VirtualRange(0, 0x1000).intersect(VirtualRange(0x1000, 0x1000))
    assert MUST(VirtualRange.expand_to_page_boundaries(0x1234, 0x1000)) == \
        VirtualRange(0x1000, 0x2000)
    assert VirtualRange.expand_to_page_boundaries(0xFFFF_FFFF_FFFF_FFF0, 0x20).error().code() == 22


@pytest.fixture
def allocator():
    mm = MemoryManager(Machine(X86_64, ram_size=16 * MiB))
    allocator = VirtualRangeAllocator(mm, seed=7)
    MUST(allocator.initialize_with_range(0x10_0000, 64 * PAGE))
    return allocator


def test_anywhere_leaves_guard_pages(allocator):
    first = MUST(allocator.try_allocate_anywhere(2 * PAGE))
    second = MUST(allocator.try_allocate_anywhere(PAGE))
    assert first.base == 0x10_0000 + PAGE
    assert second.base == first.end + PAGE, "one unmapped guard page between allocations"


def test_specific_randomized_and_errors(allocator):
    assert MUST(allocator.try_allocate_specific(0x10_8000, 2 * PAGE)) == VirtualRange(0x10_8000, 0x2000)
    assert allocator.try_allocate_specific(0x10_9000, PAGE).error().code() == 17  # EEXIST
    assert allocator.try_allocate_specific(0x20_0000, PAGE).error().code() == 12  # outside
    assert allocator.try_allocate_specific(0x10_0800, PAGE).error().code() == 22  # misaligned
    assert allocator.try_allocate_anywhere(0).error().code() == 22
    assert allocator.try_allocate_anywhere(PAGE, alignment=3 * PAGE).error().code() == 22
    assert allocator.try_allocate_anywhere(1 << 64).error().code() == 75  # EOVERFLOW
    assert allocator.try_allocate_anywhere(128 * PAGE).error().code() == 12


def test_randomized_is_reproducible():
    def picks(seed):
        mm = MemoryManager(Machine(X86_64, ram_size=16 * MiB))
        allocator = VirtualRangeAllocator(mm, seed=seed)
        MUST(allocator.initialize_with_range(0x10_0000, 1024 * PAGE))
        return [MUST(allocator.try_allocate_randomized(PAGE)).base for _ in range(5)]

    assert picks(3) == picks(3) and picks(3) != picks(4)


def test_deallocate_coalesces_and_refuses_double_free(allocator):
    first = MUST(allocator.try_allocate_specific(0x10_4000, PAGE))
    second = MUST(allocator.try_allocate_specific(0x10_5000, PAGE))
    MUST(allocator.deallocate(first))
    MUST(allocator.deallocate(second))
    assert allocator.available_ranges() == [VirtualRange(0x10_0000, 64 * PAGE)]
    before = allocator.available_ranges()
    assert "double free" in repr(allocator.deallocate(first).error())
    assert allocator.deallocate(VirtualRange(0x20_0000, PAGE)).error().code() == 22
    assert allocator.available_ranges() == before


def test_bookkeeping_allocates_and_failure_changes_nothing(allocator):
    mm = allocator._mm
    with mm.allocations.record() as log:
        MUST(allocator.try_allocate_specific(0x10_4000, PAGE))  # splits the free range in two
    assert [r.kind for r in log] == [AllocationKind.KMALLOC] * 2
    before = allocator.available_ranges()
    for n in (1, 2):
        mm.allocations.fail_nth(AllocationKind.KMALLOC, n)
        assert allocator.try_allocate_specific(0x10_8000, PAGE).error().code() == 12
        assert allocator.available_ranges() == before
    mm.allocations.fail_nth(AllocationKind.KMALLOC, 1)
    MUST(allocator.deallocate(VirtualRange(0x10_4000, PAGE)))  # merges both ways: no new node
    assert mm.allocations.is_armed(AllocationKind.KMALLOC)


class AllocatorAgainstBitmap(RuleBasedStateMachine):
    """Random allocations and frees against a page bitmap of what is allocated."""

    PAGES = 48
    BASE = 0x40_0000

    def __init__(self):
        super().__init__()
        self.mm = MemoryManager(Machine(X86_64, ram_size=16 * MiB))
        self.allocator = VirtualRangeAllocator(self.mm, seed=1)
        MUST(self.allocator.initialize_with_range(self.BASE, self.PAGES * PAGE))
        self.used = [False] * self.PAGES
        self.allocated: list[VirtualRange] = []

    def _pages(self, r):
        first = (r.base - self.BASE) // PAGE
        return range(first, first + r.page_count())

    def _take(self, result, expect_free=True):
        if not result.is_error():
            r = result.value()
            assert all(not self.used[p] for p in self._pages(r)), f"{r} overlaps"
            for p in self._pages(r):
                self.used[p] = True
            self.allocated.append(r)

    @rule(pages=st.integers(1, 6))
    def anywhere(self, pages):
        self._take(self.allocator.try_allocate_anywhere(pages * PAGE))

    @rule(first=st.integers(0, 47), pages=st.integers(1, 6))
    def specific(self, first, pages):
        result = self.allocator.try_allocate_specific(self.BASE + first * PAGE, pages * PAGE)
        fits = first + pages <= self.PAGES
        free = fits and not any(self.used[first:first + pages])
        assert result.is_error() != free, (first, pages, result)
        self._take(result)

    @rule(pages=st.integers(1, 4))
    def randomized(self, pages):
        self._take(self.allocator.try_allocate_randomized(pages * PAGE))

    @rule(data=st.data())
    def free(self, data):
        if self.allocated:
            r = self.allocated.pop(data.draw(st.integers(0, len(self.allocated) - 1)))
            MUST(self.allocator.deallocate(r))
            for p in self._pages(r):
                self.used[p] = False

    @invariant()
    def free_ranges_are_sorted_disjoint_coalesced_and_complete(self):
        free = self.allocator.available_ranges()
        for a, b in zip(free, free[1:]):
            assert a.end < b.base, f"{a} and {b} overlap or touch"
        free_pages = [False] * self.PAGES
        for r in free:
            for p in self._pages(r):
                free_pages[p] = True
        assert free_pages == [not used for used in self.used]


TestAllocatorAgainstBitmap = AllocatorAgainstBitmap.TestCase
