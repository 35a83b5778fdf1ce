"""Translation and ensure_pte, each as a ratio against a floor measured in the same run.

    .venv/bin/python benchmarks/bench_translation.py

Translations are supervisor reads (the default access), on a user directory's pages.

Floors:
- `dict lookup`: a function that looks a page number up in a dict and adds the offset, i.e. the
  least a TLB hit can cost in Python;
- `minimal walk`: a function that walks four levels of 512 eight-byte entries over a memoryview,
  checking only the present bit, i.e. the least a page walk can cost in Python.
Goals (issue #2): TLB hit <= 3x dict lookup; walk (TLB miss) <= 2x minimal walk.
"""

from __future__ import annotations

from refimpl.ak import MUST
from refimpl.hw import X86_64, Machine, MiB
from refimpl.kernel import MemoryManager, PageDirectory, PagePurpose

from timing import interleaved, report

PAGES = 4096  # distinct pages touched by the miss benchmark: far more than the TLB holds
HIT_PAGES = 32  # fits in the TLB


def build_kernel():
    mm = MemoryManager(Machine(X86_64, ram_size=64 * MiB))
    directory = MUST(PageDirectory.try_create_for_userspace(mm))
    page = MUST(mm.allocate_physical_page(purpose=PagePurpose.USER))
    addresses = [0x40_0000 + i * 0x1000 for i in range(PAGES)]
    for vaddr in addresses:
        pte = MUST(mm.ensure_pte(directory, vaddr))
        pte.set_physical_page_base(page.paddr())
        pte.set_user_allowed(True)
        pte.set_writable(True)
        pte.set_present(True)
    mm.machine.bsp.mmu.load_cr3(directory.cr3())
    return mm, directory, addresses


def minimal_walk_floor(memory, cr3):
    """A bare 4-level walk over the same RAM, seen as one memoryview of 8-byte entries."""
    entries = memory.entry_array

    def minimal_walk(vaddr):
        table = cr3
        for shift in (39, 30, 21, 12):
            entry = entries[(table >> 3) + ((vaddr >> shift) & 511)]
            if not entry & 1:
                raise LookupError(vaddr)
            table = entry & 0x000F_FFFF_FFFF_F000
        return table | (vaddr & 0xFFF)

    return minimal_walk


def main() -> None:
    mm, directory, addresses = build_kernel()
    mmu = mm.machine.bsp.mmu
    hit_addresses = [address + 8 for address in addresses[:HIT_PAGES]] * 100
    table = {address >> 12: mmu.translate(address) & ~0xFFF for address in hit_addresses}

    def dict_lookup(vaddr):
        return table[vaddr >> 12] | (vaddr & 0xFFF)

    minimal_walk = minimal_walk_floor(mm.machine.memory, directory.cr3())
    assert all(minimal_walk(a) == mmu.translate(a) for a in addresses)

    def ensure_pte(vaddr):
        return mm.ensure_pte(directory, vaddr)

    misses = mmu.tlb.misses
    times = interleaved({
        "dict lookup": (dict_lookup, hit_addresses),
        "hit": (mmu.translate, hit_addresses[:HIT_PAGES] + hit_addresses),
        "minimal walk": (minimal_walk, addresses),
        "miss": (mmu.translate, addresses),
        "ensure_pte": (ensure_pte, addresses[:256]),
    })
    assert mmu.tlb.misses - misses >= 15 * len(addresses), "the miss runs must all miss"
    report([
        ("dict lookup (floor)", times["dict lookup"], times["dict lookup"], ""),
        ("translate, TLB hit", times["hit"], times["dict lookup"], "goal <= 3x"),
        ("minimal 4-level walk (floor)", times["minimal walk"], times["minimal walk"], ""),
        ("translate, TLB miss (walk + TLB fill)", times["miss"], times["minimal walk"],
         "goal <= 2x"),
        ("ensure_pte, table present", times["ensure_pte"], times["minimal walk"], "no goal"),
    ])


if __name__ == "__main__":
    main()
