"""PhysicalZone: SerenityOS's binary buddy allocator over one zone of physical pages.

A block of order k is 2**k contiguous pages whose first page index is a multiple of 2**k. Each
order has a free list. Allocating order k pops a free block of that order or, if there is none,
splits a block of order k+1: its first half goes on the order-k free list and its second half is
returned. Freeing a block looks at its *buddy* (the other half of the pair it came from); if the
buddy is free too, the two merge and the pair is freed one order up.

Differences from the C++ zone, none of which changes which block is handed out: the unit is a
page (SerenityOS counts half-page "chunks"), free lists are insertion-ordered dicts (SerenityOS
threads them through PhysicalPageEntry), and "is my buddy free?" is a dict lookup instead of the
per-pair bitmap.
"""

from __future__ import annotations

from refimpl.ak import VERIFY


class PhysicalZone:
    def __init__(self, base_page: int, page_count: int) -> None:
        VERIFY(page_count > 0 and page_count & (page_count - 1) == 0,
               f"a zone holds a power-of-two number of pages, not {page_count}")
        self.base_page = base_page
        self.page_count = page_count
        self.max_order = page_count.bit_length() - 1
        self._free_lists: list[dict[int, None]] = [{} for _ in range(self.max_order + 1)]
        self._free_lists[self.max_order][0] = None
        self.used_pages = 0

    def contains(self, page: int) -> bool:
        return self.base_page <= page < self.base_page + self.page_count

    def free_pages(self) -> int:
        return self.page_count - self.used_pages

    def allocate_block(self, order: int) -> int | None:
        """The absolute page index of a free block of 2**order pages, or None."""
        index = self._allocate(order)
        if index is None:
            return None
        self.used_pages += 1 << order
        return self.base_page + index

    def _allocate(self, order: int) -> int | None:
        if order > self.max_order:
            return None
        free_list = self._free_lists[order]
        if free_list:
            return free_list.popitem()[0]
        parent = self._allocate(order + 1)
        if parent is None:
            return None
        free_list[parent] = None
        return parent + (1 << order)

    def deallocate_block(self, page: int, order: int) -> None:
        index = page - self.base_page
        VERIFY(self.contains(page) and index % (1 << order) == 0,
               f"page {page:#x} is not the start of an order-{order} block of this zone")
        VERIFY(not self.is_free(page), f"double free of physical page {page:#x}")
        self.used_pages -= 1 << order
        while order < self.max_order:
            buddy = index ^ (1 << order)
            if buddy not in self._free_lists[order]:
                break
            del self._free_lists[order][buddy]
            index = min(index, buddy)
            order += 1
        self._free_lists[order][index] = None

    def is_free(self, page: int) -> bool:
        """True when `page` lies inside some free block."""
        index = page - self.base_page
        for order, free_list in enumerate(self._free_lists):
            if (index >> order << order) in free_list:
                return True
        return False

    def free_blocks(self) -> list[tuple[int, int]]:
        """Every free block as (first page relative to the zone, order): for invariant checks."""
        return [(index, order) for order, free_list in enumerate(self._free_lists)
                for index in free_list]
