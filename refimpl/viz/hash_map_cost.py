"""Lesson 03's figure: the kernel-heap traffic of `PageDirectory::m_page_tables`.

Each kmalloc() the HashMap makes is a moment at which the heap may have to expand, and an
expansion inside ensure_pte() is the bug. The figure shows when those moments come (the growth
points of AK::HashTable at a 60% load factor) and what they cost, against the modern kernel,
which makes none.
"""

from __future__ import annotations

from refimpl.history.page_table_map import MemoryManagerWithPageTableMap, hash_map_heap_cost
from refimpl.kernel.memory_manager import MemoryManager


def plot_hash_map_cost(page_tables: int = 40):
    """A matplotlib Figure: kmalloc calls so far, and the size of the latest one, as one
    directory gains `page_tables` page tables, before and after 24ecf1d0218."""
    import matplotlib.pyplot as plt

    before = hash_map_heap_cost(MemoryManagerWithPageTableMap, page_tables)
    after = hash_map_heap_cost(MemoryManager, page_tables)
    tables = [row[0] for row in before]
    growth = [row for row, previous in zip(before, [(0, 0, 0)] + before) if row[1] > previous[1]]

    figure, (calls, size) = plt.subplots(1, 2, figsize=(11, 3.6), layout="constrained")
    calls.step(tables, [row[1] for row in before], where="post", color="#c0392b",
               label="before: HashMap in the directory")
    calls.step(tables, [row[1] for row in after], where="post", color="#2471a3",
               label="after: the PDE owns the table")
    calls.plot([row[0] for row in growth], [row[1] for row in growth], "o", color="#c0392b")
    for row in growth:
        calls.annotate(f"{row[0]}", (row[0], row[1]), textcoords="offset points",
                       xytext=(4, -12), fontsize=8, color="#c0392b")
    calls.set(title="kmalloc() calls made by ensure_pte()", xlabel="page tables in the directory",
              ylabel="kmalloc calls so far")
    calls.legend(loc="upper left", fontsize=8)

    size.bar([row[0] for row in growth], [row[2] for row in growth], width=0.8,
             color="#c0392b", label="before: bytes asked for the new bucket array")
    size.axhline(0, color="#2471a3", label="after: 0 bytes, no kmalloc")
    size.set(title="Size of each rehash (capacity + 1 buckets of 24 bytes)",
             xlabel="page tables in the directory", ylabel="bytes asked of kmalloc",
             xlim=(0, page_tables + 1))
    size.legend(loc="upper left", fontsize=8)
    plt.close(figure)
    return figure
