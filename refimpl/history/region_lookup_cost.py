"""What the region lookup cache was worth: a recorded syscall trace, replayed over a list and
over a sorted index, each with and without the cache (lesson 05).

The trace (`malloc_trace`) is what a program using LibC's malloc of January 2020
(8d9dd1b04bb:Libraries/LibC/malloc.cpp) asks of the kernel, seeded:
- each heap block is one mmap'ed page; a block that becomes empty is kept for reuse (up to 32
  per size class) with `set_mmap_name`, `mprotect(PROT_NONE)` and `madvise(SET_VOLATILE)` on
  the block's page, or else unmapped;
- reusing a kept block calls `madvise(SET_NONVOLATILE)`, `mprotect(READ|WRITE)` and
  `set_mmap_name` on it: three lookups of the same range in a row, which is what the cache
  served (the commit measured "hit over 70% of the time" on g++);
- large allocations are mmap'ed and munmap'ed whole; a thread's stack is mmap'ed with an
  inaccessible guard page (mprotect of its lowest page, which splits the region) and unmapped
  when the thread exits.

`replay` counts, for every call of `find_region_from_range` (munmap, mprotect, madvise and
set_mmap_name each make one), how many comparisons the lookup makes:
- "list": the regions in creation order, as the Vector of 2020; one comparison per region
  looked at, every region on a miss;
- "tree": a binary search over the bases in address order, as a red-black tree or our
  RegionTree's bisect does: one comparison per step, plus one to check the region found;
- "+ cache": one comparison of the cached range first; a hit stops there. The entry is
  cleared when its region is removed, as take_region did.

Only lookups are counted; placing a region, splitting it and rewriting page tables cost the same
in all four variants. `replay_on_kernel` runs a trace on the simulated kernel, to show that it is
a valid program (every call succeeds and every lookup finds its region).
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass

from refimpl.ak import MUST
from refimpl.hw import X86_64, Machine, MiB
from refimpl.kernel.address import PAGE_SIZE
from refimpl.kernel.address_space import PROT_NONE, PROT_READ, PROT_WRITE, AddressSpace
from refimpl.kernel.memory_manager import MemoryManager
from refimpl.kernel.virtual_range import VirtualRange

LOOKUP_CALLS = ("munmap", "mprotect", "madvise", "set_mmap_name")
STRUCTURES = ("list", "tree")
SIZE_CLASSES = 9  # 8, 16, 32, ..., 2036 bytes
KEPT_PER_SIZE_CLASS = 32
STACK_PAGES = 16
TRACE_BASE = 0x1000_0000


@dataclass(frozen=True)
class Syscall:
    name: str  # "mmap", or one of LOOKUP_CALLS
    address: int
    size: int
    prot: int = PROT_READ | PROT_WRITE

    def __str__(self) -> str:
        return f"{self.name}({self.address:#x}, {self.size:#x})"


class _Program:
    """The malloc-using program that `malloc_trace` records."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.trace: list[Syscall] = []
        self.next_address = TRACE_BASE
        self.blocks: list[tuple[int, int]] = []  # (address, size class) of blocks in use
        self.kept: list[list[int]] = [[] for _ in range(SIZE_CLASSES)]
        self.big: list[tuple[int, int]] = []
        self.stacks: list[int] = []

    def call(self, name: str, address: int, size: int, prot: int = PROT_READ | PROT_WRITE):
        self.trace.append(Syscall(name, address, size, prot))

    def mmap(self, size: int) -> int:
        address = self.next_address
        self.next_address += size + PAGE_SIZE  # the kernel leaves holes; so do we
        self.call("mmap", address, size)
        return address

    def new_block(self) -> None:
        size_class = self.rng.randrange(SIZE_CLASSES)
        kept = self.kept[size_class]
        if kept:
            address = kept.pop()
            self.call("madvise", address, PAGE_SIZE)
            self.call("mprotect", address, PAGE_SIZE)
            self.call("set_mmap_name", address, PAGE_SIZE)
        else:
            address = self.mmap(PAGE_SIZE)
        self.blocks.append((address, size_class))

    def empty_block(self) -> None:
        address, size_class = self.blocks.pop(self.rng.randrange(len(self.blocks)))
        if len(self.kept[size_class]) < KEPT_PER_SIZE_CLASS:
            self.kept[size_class].append(address)
            self.call("set_mmap_name", address, PAGE_SIZE)
            self.call("mprotect", address, PAGE_SIZE, PROT_NONE)
            self.call("madvise", address, PAGE_SIZE)
        else:
            self.call("munmap", address, PAGE_SIZE)

    def step(self, blocks: int) -> None:
        """One event, keeping about `blocks` heap blocks in use."""
        roll = self.rng.random()
        if roll < 0.02:
            if len(self.stacks) < 4 or self.rng.random() < 0.5:
                stack = self.mmap(STACK_PAGES * PAGE_SIZE)
                self.call("mprotect", stack, PAGE_SIZE, PROT_NONE)  # the guard page
                self.stacks.append(stack)
            else:
                stack = self.stacks.pop(self.rng.randrange(len(self.stacks)))
                self.call("munmap", stack, STACK_PAGES * PAGE_SIZE)
        elif roll < 0.10:
            if not self.big or self.rng.random() < 0.5:
                size = self.rng.randrange(2, 33) * PAGE_SIZE
                self.big.append((self.mmap(size), size))
            else:
                self.call("munmap", *self.big.pop(self.rng.randrange(len(self.big))))
        elif self.rng.random() < blocks / (blocks + len(self.blocks)):
            self.new_block()
        else:
            self.empty_block()


def malloc_trace(seed: int, blocks: int, steps: int) -> list[Syscall]:
    """The syscalls of a program keeping about `blocks` heap blocks in use: `blocks` mmaps to
    start, then `steps` seeded events (see the module docstring)."""
    if blocks < 1 or steps < 0:
        raise ValueError(f"blocks must be positive and steps non-negative, not {blocks}, "
                         f"{steps}")
    program = _Program(seed)
    for _ in range(blocks):
        program.new_block()
    for _ in range(steps):
        program.step(blocks)
    return program.trace


# Replaying the trace -----------------------------------------------------------------------

Key = tuple[int, int]  # a region's (base, size)


class _Regions:
    """The regions of the replay, in creation order (the list) and in address order (the
    tree's bases), with comparison-counting lookups."""

    def __init__(self) -> None:
        self.in_creation_order: list[Key] = []
        self.bases: list[int] = []
        self.sizes: dict[int, int] = {}

    def add(self, base: int, size: int) -> None:
        self.in_creation_order.append((base, size))
        bisect.insort(self.bases, base)
        self.sizes[base] = size

    def remove(self, key: Key) -> None:
        self.in_creation_order.remove(key)
        self.bases.remove(key[0])
        del self.sizes[key[0]]

    def intersecting(self, base: int, size: int) -> list[Key]:
        return [(b, self.sizes[b]) for b in self.bases if b < base + size and
                base < b + self.sizes[b]]

    def find_in_list(self, base: int, size: int) -> tuple[Key | None, int]:
        """(region, comparisons): the Vector of 2020, walked front to back."""
        for index, key in enumerate(self.in_creation_order):
            if key == (base, size):
                return key, index + 1
        return None, len(self.in_creation_order)

    def find_in_tree(self, base: int, size: int) -> tuple[Key | None, int]:
        """(region, comparisons): a binary search for the last base <= `base`, then one check
        that the region found is exactly the range."""
        low, high, comparisons = 0, len(self.bases), 0
        while low < high:
            middle = (low + high) // 2
            comparisons += 1
            if base < self.bases[middle]:
                high = middle
            else:
                low = middle + 1
        comparisons += 1
        if low and self.bases[low - 1] == base and self.sizes[base] == size:
            return (base, size), comparisons
        return None, comparisons


@dataclass(frozen=True)
class LookupCost:
    """One replay: lookups made, comparisons they cost, cache hits, regions present (summed
    over the lookups, for the mean)."""

    lookups: int
    comparisons: int
    hits: int
    regions: int

    def per_lookup(self) -> float:
        return self.comparisons / self.lookups if self.lookups else 0.0

    def hit_rate(self) -> float:
        return self.hits / self.lookups if self.lookups else 0.0

    def mean_regions(self) -> float:
        return self.regions / self.lookups if self.lookups else 0.0


def replay(trace: list[Syscall], structure: str, cached: bool) -> LookupCost:
    """Count what `find_region_from_range` costs over `trace` ("list" or "tree")."""
    if structure not in STRUCTURES:
        raise ValueError(f"structure is one of {STRUCTURES}, not {structure!r}")
    regions = _Regions()
    find = regions.find_in_list if structure == "list" else regions.find_in_tree
    cache: tuple[Key, Key] | None = None  # (range asked for, region found)
    lookups = comparisons = hits = present = 0
    for call in trace:
        if call.name == "mmap":
            regions.add(call.address, call.size)
            continue
        wanted = (call.address, call.size)
        lookups += 1
        present += len(regions.in_creation_order)
        if cached:
            comparisons += 1
            if cache is not None and cache[0] == wanted:
                hits += 1
                region = cache[1]
            else:
                region, cost = find(*wanted)
                comparisons += cost
                cache = (wanted, region) if region else cache
        else:
            region, cost = find(*wanted)
            comparisons += cost
        removed = _apply(regions, call, region)
        if cache is not None and cache[1] in removed:
            cache = None  # take_region clears the entry
    return LookupCost(lookups, comparisons, hits, present)


def _apply(regions: _Regions, call: Syscall, whole_region: Key | None) -> list[Key]:
    """What the call does to the regions; returns the regions it took out."""
    if call.name == "munmap":
        removed = [whole_region] if whole_region else regions.intersecting(call.address,
                                                                           call.size)
        for key in removed:
            regions.remove(key)
        return removed
    if call.name == "mprotect" and whole_region is None:  # a split: the guard page
        (base, size), = regions.intersecting(call.address, call.size)
        regions.remove((base, size))
        for piece in VirtualRange(base, size).carve(VirtualRange(call.address, call.size)):
            regions.add(piece.base, piece.size)
        regions.add(call.address, call.size)
        return [(base, size)]
    return []


# Measuring and drawing --------------------------------------------------------------------------

VARIANTS = (("list", False), ("list", True), ("tree", False), ("tree", True))
SIZES = (8, 16, 32, 64, 128, 256, 512)


def variant_name(structure: str, cached: bool) -> str:
    return structure + (" + cache" if cached else "")


def measure_lookup_costs(sizes=SIZES, seed: int = 0, steps: int = 1500) -> list[dict]:
    """One row per size (heap blocks kept in use): the mean number of regions at a lookup,
    the lookups made, the cache's hit rate, and the comparisons per lookup of each variant."""
    rows = []
    for blocks in sizes:
        trace = malloc_trace(seed, blocks, steps)
        costs = {variant_name(*variant): replay(trace, *variant) for variant in VARIANTS}
        cached = costs["tree + cache"]
        row = {"blocks": blocks, "regions": round(cached.mean_regions(), 1),
               "lookups": cached.lookups, "hit rate": round(cached.hit_rate(), 3)}
        row.update({name: round(cost.per_lookup(), 2) for name, cost in costs.items()})
        rows.append(row)
    return rows


def saving(row: dict, structure: str) -> float:
    """Comparisons per lookup the cache saves over `structure` (negative: it costs)."""
    return round(row[structure] - row[structure + " + cache"], 2)


def plot_lookup_costs(rows: list[dict]):
    """Three panels: comparisons per lookup of the four variants, what the cache saves over
    each structure, and its hit rate; all against the mean number of regions."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter
    regions = [row["regions"] for row in rows]
    figure, (costs, saved, hits) = plt.subplots(1, 3, figsize=(12, 3.8))
    styles = {"list": ("tab:red", "o"), "tree": ("tab:blue", "s")}
    for structure, cached in VARIANTS:
        colour, marker = styles[structure]
        name = variant_name(structure, cached)
        costs.plot(regions, [row[name] for row in rows], color=colour, marker=marker,
                   linestyle="--" if cached else "-", label=name)
        if cached:
            saved.plot(regions, [saving(row, structure) for row in rows], color=colour,
                       marker=marker, label=f"saved over the {structure}")
    costs.set(xscale="log", yscale="log", title="find_region_from_range",
              xlabel="regions in the address space", ylabel="comparisons per lookup")
    saved.set(xscale="log", yscale="log", title="what the cache saves",
              xlabel="regions in the address space", ylabel="comparisons saved per lookup")
    hits.plot(regions, [100 * row["hit rate"] for row in rows], color="tab:green", marker="^",
              label="hit rate")
    hits.set(xscale="log", ylim=(0, 100), title="the cache's hit rate",
             xlabel="regions in the address space", ylabel="lookups served by the cache (%)")
    for axes in (costs, saved, hits):
        axes.grid(True, which="major", alpha=0.3)
        axes.legend(fontsize=8)
        axes.xaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
        axes.xaxis.set_major_formatter(ScalarFormatter())
        axes.xaxis.set_minor_formatter(NullFormatter())
    figure.tight_layout()
    return figure


def replay_on_kernel(trace: list[Syscall]) -> AddressSpace:
    """Run `trace` on the simulated kernel (mmaps at the trace's addresses; madvise and
    set_mmap_name as lookups). Panics on the first call that does not do what it should."""
    mm = MemoryManager(Machine(X86_64, ram_size=64 * MiB, cpu_count=1))
    space = MUST(AddressSpace.try_create(mm))
    for call in trace:
        if call.name == "mmap":
            MUST(space.allocate_region(call.size, address=call.address, prot=call.prot,
                                       mmap=True))
        elif call.name == "munmap":
            MUST(space.unmap_mmap_range(call.address, call.size))
        elif call.name == "mprotect":
            MUST(space.mprotect(call.address, call.size, call.prot))
        else:
            wanted = VirtualRange(call.address, call.size)
            if space.find_region_from_range(wanted) is None:
                raise AssertionError(f"{call}: no region is exactly {wanted}")
    return space
