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
- **The same on the user side.** After 07f3d09c552, `Thread::make_thread_specific_region`
  (from sys$create_thread) called `AddressSpace::allocate_region`, which placed under the tree's
  lock only, while `find_region_containing` (the syscall-entry check, page faults) and
  `take_region` (thread exit) held `m_lock` only. `make_thread_specific_region_steps` and
  `find_region_containing_steps` are those two, before f0f97e1db02 added the tree's lock inside
  `m_lock` (`AddressSpace.allocate_region_steps` and `.find_region_containing_steps` after).
- **Unregistering before unmapping** (e8f543c3908 to 0a83c035469, Apr 3 13:28 to Apr 5 13:46).
  `~Region` took a kernel region out of the tree first and unmapped it after. Since the tree is
  the only record of free kernel ranges (e8f543c3908), another CPU could place a new region at
  that address and map it in between; the old region's unmap then cleared the new region's
  PTEs. Touching the new region faults "not present" while its VMObject holds the page:
  SerenityOS's "BUG! Unexpected NP fault" (logging added in 9bb45ab3a6f).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from refimpl.ak import MUST, VERIFY
from refimpl.kernel.anonymous_vmobject import AnonymousVMObject
from refimpl.kernel.region import Access, Region

if TYPE_CHECKING:
    from refimpl.kernel.address_space import AddressSpace
    from refimpl.kernel.memory_manager import MemoryManager


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


def make_thread_specific_region_steps(space: AddressSpace, size: int, name: str):
    """f0f97e1db02^: allocate_region places under the tree's lock, without m_lock."""
    vmobject = MUST(AnonymousVMObject.try_create_with_size(space.mm, size))
    region = MUST(Region.try_create_unplaced(space.mm, vmobject, 0, name,
                                             Access.READ | Access.WRITE))
    vmobject.unref()
    error = yield from space.region_tree.place_anywhere_steps(region, size)
    VERIFY(error is None, f"placing {name!r}: {error}")
    MUST(region.map(space.page_directory))
    yield f"{name} placed at {region.range} and mapped"
    return region


def find_region_containing_steps(space: AddressSpace, address: int):
    """f0f97e1db02^: AddressSpace::find_region_containing under m_lock only."""
    yield from space.get_lock().acquire()
    try:
        return (yield from space.region_tree.find_region_containing_steps(address))
    finally:
        space.get_lock().unlock()


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
