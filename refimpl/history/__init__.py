"""The code *before* each refactoring the course replays, one module per SerenityOS commit.

Each module is a minimal variant of the modern code in `refimpl.kernel`, written so that a diff
of the two is the refactoring (the lessons show those diffs). Nothing in `refimpl.kernel`
imports from here.

- `range_allocator` (lesson 01, cd5faf4e425): Range and RangeAllocator, before the rename.
- `kresult` (lesson 02, 79fa9765ca8): KResult and KResultOr, before AK::Error and ErrorOr.
- `page_table_map` (lesson 03, 24ecf1d0218): PageDirectory::m_page_tables and the ensure_pte()
  that reentered itself through kmalloc.
- `identity_mapping` (lesson 04, cdab5b20916): the generic identity-mapping API and the
  identity range allocator in every PageDirectory.
- `range_allocator_beside_tree` (lesson 06, before 02a95a196f0): an AddressSpace whose
  PageDirectory keeps the free ranges in a VirtualRangeAllocator beside the region tree.
- `holes_first_version` (lesson 06, 02a95a196f0 and 9765f9f67ed): holes found in the region
  tree, with the first version's two bugs and the off-by-one of the first fix.
- `region_tree_scan` (lesson 06, ffe2e77eba1): SerenityOS's RegionTree, scanning every region.
"""
