"""GapTree: the free ranges of a RegionTree, indexed so that first fit is one descent.

SerenityOS finds a hole by walking every region in address order (O(n)). Linux keeps, in each
node of its VMA tree, the largest gap anywhere in that node's subtree (`rb_subtree_gap`), so the
lowest gap of at least N bytes is found by one walk from the root: go left while the left
subtree has a gap that large, else take this node if its own gap is, else go right. This module
is that idea on its own: a tree of gaps keyed by base address, each node holding `largest`, the
size of the largest gap in its subtree.

The tree is a treap: a binary search tree by base address that is also a heap by a random
priority drawn when a gap is inserted. Random priorities keep it balanced in expectation
whatever order the addresses come in, with less code than a red-black tree. `seed` makes the
shape reproducible.

Cost of each operation, n gaps (expected, over the random priorities):
- `insert`, `remove`: O(log n), one path down and the `largest` fields fixed on the way up;
- `lowest_fitting(needed)`: O(log n), one descent, never backtracking;
- iteration: O(n).
"""

from __future__ import annotations

import random
from typing import Iterator


class GapNode:
    __slots__ = ("base", "size", "priority", "left", "right", "largest")

    def __init__(self, base: int, size: int, priority: float) -> None:
        self.base = base
        self.size = size
        self.priority = priority
        self.left: GapNode | None = None
        self.right: GapNode | None = None
        self.largest = size

    def update(self) -> None:
        """Recompute `largest` from this node and its children's `largest`."""
        largest = self.size
        if self.left is not None and self.left.largest > largest:
            largest = self.left.largest
        if self.right is not None and self.right.largest > largest:
            largest = self.right.largest
        self.largest = largest


def _largest(node: GapNode | None) -> int:
    return node.largest if node is not None else 0


def _split(node: GapNode | None, base: int) -> tuple[GapNode | None, GapNode | None]:
    """Two treaps: the gaps below `base`, and those at or above it."""
    if node is None:
        return None, None
    if node.base < base:
        node.right, above = _split(node.right, base)
        node.update()
        return node, above
    below, node.left = _split(node.left, base)
    node.update()
    return below, node


def _merge(low: GapNode | None, high: GapNode | None) -> GapNode | None:
    """One treap from two, every gap of `low` below every gap of `high`."""
    if low is None:
        return high
    if high is None:
        return low
    if low.priority > high.priority:
        low.right = _merge(low.right, high)
        low.update()
        return low
    high.left = _merge(low, high.left)
    high.update()
    return high


class GapTree:
    def __init__(self, seed: int = 0) -> None:
        self.root: GapNode | None = None
        self._count = 0
        self._random = random.Random(seed)

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[tuple[int, int]]:
        """(base, size) of every gap, in address order. O(n)."""
        stack: list[GapNode] = []
        node = self.root
        while stack or node is not None:
            while node is not None:
                stack.append(node)
                node = node.left
            node = stack.pop()
            yield node.base, node.size
            node = node.right

    def largest(self) -> int:
        """The size of the largest gap, 0 if there is none. O(1)."""
        return _largest(self.root)

    def insert(self, base: int, size: int) -> None:
        """Add the gap `[base, base + size)`; its base must not be in the tree. O(log n)."""
        node = GapNode(base, size, self._random.random())
        below, above = _split(self.root, base)
        self.root = _merge(_merge(below, node), above)
        self._count += 1

    def remove(self, base: int) -> int:
        """Take out the gap starting at `base` and return its size (KeyError if none). O(log n)."""
        below, rest = _split(self.root, base)
        found, above = _split(rest, base + 1)
        if found is None:
            self.root = _merge(below, above)
            raise KeyError(f"no gap starts at {base:#x}")
        self.root = _merge(below, above)
        self._count -= 1
        return found.size

    def lowest_fitting(self, needed: int) -> tuple[int, int] | None:
        """(base, size) of the lowest-addressed gap of at least `needed` bytes, or None.

        One descent: the left subtree holds every lower gap, so if its `largest` is big enough
        the answer is there; otherwise this node is the next candidate; otherwise the answer,
        if any, is to the right. O(log n)."""
        node = self.root
        if node is None or node.largest < needed:
            return None
        while True:
            if _largest(node.left) >= needed:
                node = node.left
            elif node.size >= needed:
                return node.base, node.size
            else:
                node = node.right
