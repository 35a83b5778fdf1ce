"""The code *before* each refactoring the course replays, one module per SerenityOS commit.

Each module is a minimal variant of the modern code in `refimpl.kernel`, written so that a diff
of the two is the refactoring (the lessons show those diffs). Nothing in `refimpl.kernel`
imports from here.

- `range_allocator` (lesson 01, cd5faf4e425): RangeAllocator with its API of the parent commit
  (Optional results, a linear walk for specific ranges), and the rename itself.
- `kresult` (lesson 02, 79fa9765ca8): KResult and KResultOr, before AK::Error and ErrorOr.
- `page_table_map` (lesson 03, 24ecf1d0218): PageDirectory::m_page_tables and the ensure_pte()
  whose PD window a nested kmalloc -> heap expansion -> MM.pte() moved.
- `identity_mapping` (lesson 04, cdab5b20916): the generic identity-mapping API and the
  identity range allocator in every PageDirectory, and the design at the commit itself (the
  kernel range allocator kept, the trampoline unmapped without deallocating its range).
- `region_lookup_cache` (lesson 05, 4fa3c1bf2dd): the one-entry region lookup cache, as a raw
  pointer that exec left dangling (2020), then a WeakPtr; `region_lookup_cost` measures what it
  saved over a list and over a tree.
- `range_allocator_beside_tree` (lesson 06, before 02a95a196f0): an AddressSpace whose
  PageDirectory keeps the free ranges in a VirtualRangeAllocator beside the region tree.
- `holes_first_version` (lesson 06, 02a95a196f0 and 9765f9f67ed): holes found in the region
  tree, with the first version's two bugs and the off-by-one of the first fix.
- `region_tree_scan` (lesson 06, ffe2e77eba1): SerenityOS's RegionTree, scanning every region.
- `atomic_place` (lesson 07, before e852a69a069 and 07f3d09c552): find a range, then insert;
  sys$mmap losing MAP_RANDOMIZED (fixed in 858b196c595) and the hint; a failed map() leaving a
  freed region in the tree (fixed in 4edae21bd13).
- `kernel_tree_locks` (lesson 08, before f0f97e1db02 and 0a83c035469): the kernel tree looked up
  and edited without its lock, and a kernel region unregistered before it is unmapped.
"""
