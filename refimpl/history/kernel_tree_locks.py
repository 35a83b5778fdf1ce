"""Before f0f97e1db02 and 0a83c035469 (April 2022): the kernel RegionTree's two races.

Both are steps for simulated threads (`refimpl.kernel.scheduler`), the "before" twins of
`MemoryManager.kernel_region_from_vaddr_steps`, `unregister_kernel_region_steps` and
`Region.destroy_steps`; a diff of each pair is the fix.

- **The tree lock not taken outside RegionTree** (e852a69a069 to f0f97e1db02, Apr 3 15:27 to
  Apr 5 01:07). e852a69a069 moved kernel-tree *insertion* under `RegionTree::m_lock`
  (place_anywhere), but `kernel_region_from_vaddr` and `unregister_kernel_region` kept only
  `s_mm_lock`. A lookup or a removal on one CPU could therefore walk or edit the tree while
  another CPU's insert was rebalancing it. f0f97e1db02 took the tree's lock in both (and in the
  AddressSpace functions), calling itself "a stopgap patch to try and fix the currently flaky
  CI"; which failure CI showed is not on record.
- **Unregistering before unmapping** (e8f543c3908 to 0a83c035469, Apr 3 13:28 to Apr 5 13:46).
  `~Region` took a kernel region out of the tree first and unmapped it after. Since the tree is
  the only record of free kernel ranges (e8f543c3908), another CPU could place a new region at
  that address and map it in between; the old region's unmap then cleared the new region's
  PTEs. Touching the new region faults "not present" while its VMObject holds the page:
  SerenityOS's "BUG! Unexpected NP fault" (logging added in 9bb45ab3a6f).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from refimpl.kernel.memory_manager import MemoryManager
    from refimpl.kernel.region import Region


def kernel_region_from_vaddr_steps(mm: MemoryManager, vaddr: int):
    """f0f97e1db02^: the lookup under s_mm_lock only, while inserts hold the tree's lock."""
    yield from mm.mm_lock.acquire()
    try:
        return (yield from mm.region_tree.find_region_containing_steps(vaddr))
    finally:
        mm.mm_lock.unlock()


def unregister_kernel_region_steps(mm: MemoryManager, region: Region):
    """f0f97e1db02^: the removal under s_mm_lock only."""
    yield from mm.mm_lock.acquire()
    try:
        yield from mm.region_tree.remove_steps(region)
    finally:
        mm.mm_lock.unlock()


def destroy_steps_unregistering_first(mm: MemoryManager, region: Region):
    """0a83c035469^: ~Region leaves the tree first, then unmaps (the locks as after
    f0f97e1db02, so that only the order differs)."""
    if region.is_kernel():
        yield from mm.unregister_kernel_region_steps(region)
        yield f"{region.name} unregistered"
    if region.page_directory is not None:
        region.unmap()
        yield f"{region.name} unmapped"
    region._release()  # the rest of ~Region, unchanged
