"""PhysicalRegion: one contiguous run of usable RAM, cut into buddy-allocator zones.

As in SerenityOS, the region is carved into 16 MiB zones (4096 pages) first, then 1 MiB zones
(256 pages); a tail shorter than 1 MiB belongs to no zone and is never handed out (a quirk of the
real kernel kept here on purpose: `unusable_tail_pages()` reports it).
"""

from __future__ import annotations

from refimpl.ak import VERIFY
from refimpl.kernel.physical_zone import PhysicalZone

LARGE_ZONE_PAGES = 4096
SMALL_ZONE_PAGES = 256


class PhysicalRegion:
    def __init__(self, first_page: int, page_count: int) -> None:
        self.first_page = first_page
        self.page_count = page_count
        self.zones: list[PhysicalZone] = []
        page, remaining = first_page, page_count
        for zone_pages in (LARGE_ZONE_PAGES, SMALL_ZONE_PAGES):
            while remaining >= zone_pages:
                self.zones.append(PhysicalZone(page, zone_pages))
                page += zone_pages
                remaining -= zone_pages

    def unusable_tail_pages(self) -> int:
        return self.page_count - sum(zone.page_count for zone in self.zones)

    def take_free_page(self) -> int | None:
        """A free page index from the first zone that has one, or None when all are full."""
        for zone in self.zones:
            if zone.used_pages < zone.page_count:
                return zone.allocate_block(0)
        return None

    def return_page(self, page: int) -> None:
        zone = self.zone_containing(page)
        VERIFY(zone is not None, f"page {page:#x} does not belong to this physical region")
        zone.deallocate_block(page, 0)

    def zone_containing(self, page: int) -> PhysicalZone | None:
        for zone in self.zones:
            if zone.contains(page):
                return zone
        return None

    def free_pages(self) -> int:
        return sum(zone.free_pages() for zone in self.zones)

    def usable_pages(self) -> int:
        return sum(zone.page_count for zone in self.zones)
