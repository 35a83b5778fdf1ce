"""Checks of the kernel's invariants, and snapshots to prove a failed call changed nothing.

This is a debugger's view, not kernel code: it reads RAM directly (as `refimpl.hw.inspect` does)
so that checking never moves a quickmap window or touches a TLB, and it can run between any two
steps of a lesson or a test.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from refimpl.hw import PTEFlags, mapped_pages, trace_walk
from refimpl.kernel.address import PAGE_SIZE
from refimpl.kernel.address_space import AddressSpace
from refimpl.kernel.gap_tree import GapNode, GapTree
from refimpl.kernel.memory_manager import MemoryManager
from refimpl.kernel.physical_page import PagePurpose
from refimpl.kernel.region import Region
from refimpl.kernel.region_tree import RegionTree


def page_table_references(mm: MemoryManager) -> Counter[int]:
    """How many present PDEs point at each frame, over every distinct PD page (the kernel's PD is
    shared by all directories and counted once)."""
    pd_frames = {page.paddr() // PAGE_SIZE
                 for directory in mm.page_directories_by_cr3.values()
                 for page in directory.directory_pages.values()}
    fmt = mm.format
    present = fmt.present_mask
    counts: Counter[int] = Counter()
    for frame in pd_frames:
        entries = mm.machine.memory.entries(frame)
        if not any(entries):  # most PD pages are empty: one pass in C
            continue
        for entry in entries:
            if entry & present:
                counts[fmt.decode_frame(entry)] += 1
    return counts


def page_table_refcount_violations(mm: MemoryManager) -> list[str]:
    """Every page table must have exactly one reference per present PDE pointing at it, and
    every page-table page must be pointed at (else it leaked)."""
    references = page_table_references(mm)
    problems = []
    for frame, count in sorted(references.items()):
        page = mm.physical_page_entries[frame]
        if page is None:
            problems.append(f"PDE points at frame {frame:#x}, which has no live PhysicalPage")
        elif page.ref_count() != count:
            problems.append(f"page table {page.paddr()!r} has {page.ref_count()} reference(s) "
                            f"but {count} PDE(s) point at it")
    for page in mm.live_physical_pages():
        if page.purpose is PagePurpose.PAGE_TABLE and page.paddr() // PAGE_SIZE not in references:
            problems.append(f"page table {page.paddr()!r} is live but no PDE points at it")
    return problems


def physical_page_violations(mm: MemoryManager) -> list[str]:
    """Free + live pages account for every usable page, and free frames hold no live page."""
    region = mm.user_physical_region
    problems = []
    live_usable = sum(1 for page in mm.live_physical_pages()
                      if region.zone_containing(page.paddr() // PAGE_SIZE) is not None)
    if live_usable + region.free_pages() != region.usable_pages():
        problems.append(f"{live_usable} live + {region.free_pages()} free pages != "
                        f"{region.usable_pages()} usable pages")
    for zone in region.zones:
        for start, order in zone.free_blocks():
            for index in range(start, start + (1 << order)):
                if mm.physical_page_entries[zone.base_page + index] is not None:
                    problems.append(f"frame {zone.base_page + index:#x} is free and live")
    return problems


def region_tree_violations(tree: RegionTree) -> list[str]:
    """Keys equal bases; regions are page-aligned, inside the total range and do not overlap;
    regions and gaps tile the total range, no two gaps touch, and the gap index is sound."""
    problems = []
    for key, region in tree.keyed_regions():
        if region.range is None or key != region.range.base:
            problems.append(f"{region!r} is stored under key {key:#x}")
        elif not region.range.is_page_aligned() or region.range.is_empty() or \
                not tree.total_range.contains(region.range):
            problems.append(f"{region!r} is empty, misaligned or outside {tree.total_range}")
    pieces = sorted([(r.range.base, r.range.end, "region") for r in tree.regions()] +
                    [(g.base, g.end, "gap") for g in tree.gaps()])
    position, previous = tree.total_range.base, None
    for base, end, kind in pieces:
        if base != position:
            problems.append(f"{kind} at {base:#x} where {position:#x} was expected "
                            f"(overlap or hole)")
        if kind == previous == "gap":
            problems.append(f"two gaps touch at {base:#x}")
        position, previous = end, kind
    if position != tree.total_range.end:
        problems.append(f"regions and gaps end at {position:#x}, not {tree.total_range.end:#x}")
    problems += gap_tree_violations(tree.gap_index())
    return problems


def gap_tree_violations(gaps: GapTree) -> list[str]:
    """Bases increase in order, priorities form a heap, every `largest` is the largest size in
    its subtree, and the count is right."""
    problems = []
    count = 0

    def visit(node: GapNode | None, low: int, high: int) -> int:
        nonlocal count
        if node is None:
            return 0
        count += 1
        if not low <= node.base < high or node.size <= 0:
            problems.append(f"gap {node.base:#x} (+{node.size:#x}) is out of order or empty")
        for child in (node.left, node.right):
            if child is not None and child.priority > node.priority:
                problems.append(f"gap {child.base:#x} outranks its parent {node.base:#x}")
        largest = max(node.size, visit(node.left, low, node.base),
                      visit(node.right, node.base + 1, high))
        if node.largest != largest:
            problems.append(f"gap {node.base:#x} says largest {node.largest:#x}, "
                            f"not {largest:#x}")
        return largest

    visit(gaps.root, 0, 1 << 64)
    if count != len(gaps):
        problems.append(f"the gap tree holds {count} gaps but counts {len(gaps)}")
    return problems


def brute_force_region_containing(space: AddressSpace, address: int) -> Region | None:
    """The region holding `address`, by looking at every region: what lookups must agree with."""
    matches = [region for region in space.region_tree.regions() if region.range.contains(address)]
    return matches[0] if matches else None


def address_space_violations(space: AddressSpace) -> list[str]:
    """The RegionTree's invariants, and every user PTE checked against the regions: it lies in
    a region, maps the page the region's VMObject holds at that slot, is user-accessible, and is
    writable only if the region is, the page is neither the shared zero page nor CoW, and (for a
    private region) no other VMObject holds the page. Every page of a mapped region has its
    PTE."""
    mm = space.mm
    problems = region_tree_violations(space.region_tree)
    ceiling = mm.layout.user_range_ceiling
    ptes = {vaddr: entry for vaddr, entry in
            mapped_pages(mm.machine.memory, space.page_directory.cr3()).items() if vaddr < ceiling}
    for vaddr, (frame, flags) in ptes.items():
        region = brute_force_region_containing(space, vaddr)
        if region is None:
            problems.append(f"PTE for {vaddr:#x} lies in no region")
            continue
        index = (vaddr - region.vaddr()) // PAGE_SIZE
        page = region.physical_page(index)
        if page is None or page.paddr() // PAGE_SIZE != frame:
            problems.append(f"PTE for {vaddr:#x} maps frame {frame:#x}, not {region!r}'s page")
        if not flags & PTEFlags.USER_SUPERVISOR:
            problems.append(f"user PTE for {vaddr:#x} is supervisor-only")
        may_write = region.is_writable() and page is not mm.shared_zero_page and \
            not region.should_cow(index)
        if flags & PTEFlags.READ_WRITE and not may_write:
            problems.append(f"PTE for {vaddr:#x} is writable, but {region!r} page {index} "
                            f"must not be (read-only, zero page or copy-on-write)")
        if flags & PTEFlags.READ_WRITE and not region.shared and page.ref_count() != 1:
            problems.append(f"PTE for {vaddr:#x} is writable, but its page is also held by "
                            f"another VMObject: a write would show through to it")
    for region in space.region_tree.regions():
        if region.page_directory is None or not region.access & (region.Access.READ |
                                                                 region.Access.WRITE):
            continue
        for index in range(region.page_count()):
            if region.vaddr_from_page_index(index) not in ptes:
                problems.append(f"{region!r} page {index} has no PTE")
    return problems


def kernel_region_violations(mm: MemoryManager) -> list[str]:
    """The kernel RegionTree's invariants (no overlap, keys, gaps), and every page of every
    mapped kernel region mapped where it says: a present, supervisor-only PTE in the kernel
    directory naming the frame the region's VMObject holds at that slot."""
    problems = region_tree_violations(mm.region_tree)
    memory, cr3 = mm.machine.memory, mm.kernel_page_directory().cr3()
    for region in mm.region_tree.regions():
        if region.vmobject is None:
            continue  # an unbacked reservation (kernel image, kmalloc range)
        if region.page_directory is not mm.kernel_page_directory():
            problems.append(f"{region!r} is in the kernel tree but not mapped in the kernel "
                            f"directory")
            continue
        for index in range(region.page_count()):
            walk = trace_walk(memory, cr3, region.vaddr_from_page_index(index))
            page = region.physical_page(index)
            if walk.faulted:
                problems.append(f"{region!r} page {index} has no present PTE")
            elif page is None or walk.physical_address // PAGE_SIZE != page.paddr() // PAGE_SIZE:
                problems.append(f"{region!r} page {index} maps frame "
                                f"{walk.physical_address // PAGE_SIZE:#x}, not its page")
            elif walk.steps[-1].flags & PTEFlags.USER_SUPERVISOR:
                problems.append(f"{region!r} page {index} is user-accessible")
    return problems


_STATE_FLAGS = ~(PTEFlags.ACCESSED | PTEFlags.DIRTY)


@dataclass(frozen=True)
class KernelSnapshot:
    """What a failed operation must leave exactly as it found it."""

    free_pages: int
    live_pages: tuple[tuple[int, int], ...]
    kmalloc_allocated: int
    kmalloc_size: int
    directories: tuple[int, ...]
    mappings: tuple[tuple[int, tuple[tuple[int, int, int], ...]], ...]
    regions: tuple = ()
    kernel_regions: tuple = ()

    @staticmethod
    def take(mm: MemoryManager, spaces: tuple[AddressSpace, ...] = ()) -> KernelSnapshot:
        """`spaces`: address spaces whose regions, VMObject slots and CoW marks to include."""
        quickmap_area = (mm.layout.kernel_pt1024_base, mm.layout.kernel_pt1024_base + 0x200000)
        mappings = []
        for cr3 in sorted(mm.page_directories_by_cr3):
            pages = mapped_pages(mm.machine.memory, cr3)
            mappings.append((cr3, tuple(
                (vaddr, frame, int(flags & _STATE_FLAGS))
                for vaddr, (frame, flags) in sorted(pages.items())
                if not quickmap_area[0] <= vaddr < quickmap_area[1])))
        return KernelSnapshot(
            free_pages=mm.free_physical_pages(),
            live_pages=tuple((page.paddr(), page.ref_count()) for page in mm.live_physical_pages()),
            kmalloc_allocated=mm.kmalloc_heap.allocated_bytes(),
            kmalloc_size=mm.kmalloc_heap.size(),
            directories=tuple(sorted(mm.page_directories_by_cr3)),
            mappings=tuple(mappings),
            regions=tuple(tuple(_region_state(region) for region in space.region_tree.regions())
                          for space in spaces),
            kernel_regions=tuple((region.range, region.name)
                                 for region in mm.region_tree.regions()),
        )

    def differences(self, other: KernelSnapshot) -> list[str]:
        """What changed between two snapshots, one line per field."""
        return [f"{name} changed" for name in self.__dataclass_fields__
                if getattr(self, name) != getattr(other, name)]


def _region_state(region: Region) -> tuple:
    vmobject = region.vmobject
    return (region.range, region.access, region.name, region.mmap, region.offset_in_vmobject,
            id(vmobject), tuple(page.paddr() if page else None for page in vmobject.physical_pages),
            tuple(sorted(vmobject.cow_map)))
