"""The checks of lesson 09, the final project: munmap with region splitting, the copy-on-write
fault handler and mprotect, written by the learner and run beside the reference kernel.

Each check makes a program from a seed (a list of steps, plain tuples) and runs it twice, in
two fresh kernels: once on the reference kernel, once with the learner's function in place of
the kernel's own. After every step it takes the same picture of both (what the step returned,
every region, what each page of the window maps and what it holds, the free page count),
records the learner's, and stops at the first step where the two differ: the message names the
step, and the check cell draws the two address spaces side by side at that step.

The pictures are plain data (no addresses of kernel objects, no physical addresses), so a
learner's answer that does the same work gives the same pictures, however it is written.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass

from refimpl.ak import MUST, Errno, ErrorOr
from refimpl.grading.address_space_drawing import Map, PageRow, side_by_side
from refimpl.grading.checks.common import fresh_kernel, passed, seeds
from refimpl.grading.exercises import CheckFailed, exercise
from refimpl.grading.transcript import record
from refimpl.hw.paging import MiB
from refimpl.kernel.address import PAGE_SIZE
from refimpl.kernel.address_space import (PROT_EXEC, PROT_NONE, PROT_READ, PROT_WRITE,
                                          AddressSpace)
from refimpl.kernel.region import Access
from refimpl.kernel.syscalls import MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, sys_mmap
from refimpl.kernel.user_access import write_user_memory

RW = PROT_READ | PROT_WRITE
FIXED = MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS
ARENA_PAGES, TEXT_PAGES, TAG_BYTES = 20, 2, 8
"""The window the programs work in: a non-mmap "text" region on its first pages, mmaps after."""
VISIBLE, HIDDEN = 6, 20


def access_name(prot: int) -> str:
    return Access(prot).describe()


def returned(result, case: str) -> str:
    """What a step returned, by name: "success" or the errno's name."""
    if not isinstance(result, ErrorOr):
        raise CheckFailed(f"{case}: your function returned {result!r}; return an ErrorOr "
                          f"(mark it @fallible)")
    return Errno(result.error().code()).name if result.is_error() else "success"


# A picture of an address space, as plain data -------------------------------------------------

def contents(mm, paddr: int) -> str:
    """What a page holds: the tags a program wrote at its start and, if any, at its end."""
    if paddr == mm.shared_zero_page.paddr():
        return "zero"
    memory = mm.machine.memory
    head = memory.read(paddr, TAG_BYTES).rstrip(b"\0").decode("ascii", "replace")
    tail = memory.read(paddr + PAGE_SIZE - TAG_BYTES, TAG_BYTES).rstrip(b"\0")
    text = head or "zeros"
    return f"{text}..{tail.decode('ascii', 'replace')}" if tail else text


def tag_bytes(tag: str) -> bytes:
    """What a program's write puts at the start of a page: its tag, padded with zeros so that
    it replaces the whole of an earlier, longer tag."""
    return tag.encode().ljust(TAG_BYTES, b"\0")


def page_cell(space: AddressSpace, vaddr: int) -> str:
    """What the page at `vaddr` maps, as the process sees it: "" for no mapping, else its
    contents and the entry's access ("rw", "r", or "-" for a non-present entry naming a frame,
    as PROT_NONE pages have)."""
    mm = space.mm
    pte = mm.pte(space.page_directory, vaddr)
    if pte is None or not pte.raw():
        return ""
    access = ("rw" if pte.is_writable() else "r") if pte.is_present() else "-"
    return f"{contents(mm, pte.physical_page_base())} {access}"


@dataclass(frozen=True)
class Picture:
    """An address space after one step of a program."""

    returned: str
    regions: list
    """[base, size, access ("rw-"), name] per region, in address order."""
    pages: list
    """page_cell() of each page of the window."""
    free_pages: int

    def values(self) -> list:
        return [self.returned, self.regions, self.pages, self.free_pages]


def picture(space: AddressSpace, base: int, result: str) -> Picture:
    regions = [[int(region.vaddr()), region.size(), region.access.describe(), region.name]
               for region in space.region_tree.regions()]
    pages = [page_cell(space, base + index * PAGE_SIZE) for index in range(ARENA_PAGES)]
    return Picture(result, regions, pages, space.mm.free_physical_pages())


def region_text(row: list) -> str:
    base, size, access, name = row
    return f"{name} [{base:#x}, {base + size:#x}) {access}"


def first_difference(wanted: Picture, got: Picture, base: int) -> str | None:
    """The first thing that differs, in words, or None."""
    if wanted.returned != got.returned:
        return f"the reference returned {wanted.returned}, yours {got.returned}"
    if wanted.regions != got.regions:
        missing = [row for row in wanted.regions if row not in got.regions]
        extra = [row for row in got.regions if row not in wanted.regions]
        if missing:
            return f"the reference has the region {region_text(missing[0])}, yours does not" + \
                (f" (yours has {region_text(extra[0])})" if extra else "")
        if extra:
            return f"yours has the region {region_text(extra[0])}, the reference does not"
        return (f"your regions are {', '.join(map(region_text, got.regions))}; the "
                f"reference's, {', '.join(map(region_text, wanted.regions))}")
    for index, (one, other) in enumerate(zip(wanted.pages, got.pages)):
        if one != other:
            address = base + index * PAGE_SIZE
            owned = any(row[0] <= address < row[0] + row[1] for row in got.regions)
            return (f"the page at {address:#x} maps {one or 'nothing'!r} in the reference, "
                    f"{other or 'nothing'!r} in yours"
                    f"{'' if owned else ', where no region is (a stray page table entry)'}")
    if wanted.free_pages != got.free_pages:
        return (f"the reference has {wanted.free_pages} free physical pages, yours "
                f"{got.free_pages}")
    return None


PAGE_NOTE = ('its contents (the tag a write left at its start, "zero" for the shared zero '
             'page) and the access of its page table entry')
COW_NOTE = ('its contents (the tags at its start..end, "zero" for the shared zero page), its '
            'physical frame (F1, F2...: named in the order they first appear), the frame\'s '
            'reference count, the access of the page table entry, and CoW if the page is '
            'still marked copy-on-write')


def step_pages(step: tuple, base: int) -> frozenset[int]:
    """The window's pages a step works on."""
    if step[0] == "write":
        return frozenset({(step[1] - base) // PAGE_SIZE})
    first = (step[1] - base) // PAGE_SIZE
    last = min((step[1] + step[2] - 1 - base) // PAGE_SIZE, ARENA_PAGES - 1) \
        if step[2] > 0 else first - 1
    return frozenset(range(max(first, 0), last + 1))


def drawn(title: str, shot: Picture, base: int, step: tuple) -> Map:
    """A Picture as the drawing's Map: one row per page of the window."""
    rows = []
    for index, cell in enumerate(shot.pages):
        address = base + index * PAGE_SIZE
        owner = next((row for row in shot.regions if row[0] <= address < row[0] + row[1]), None)
        rows.append(PageRow(f"{address:#x}", f"{owner[3]} {owner[2]}" if owner else "",
                            owner[2] if owner else "", bool(owner) and owner[0] == address, cell))
    return Map(title, (f"returned: {shot.returned}", f"free physical pages: {shot.free_pages}"),
               tuple(rows), step_pages(step, base))


# Programs of mmap, munmap, mprotect and writes ---------------------------------------------------

def describe(step: tuple) -> str:
    kind = step[0]
    if kind == "mmap":
        _, address, size, prot, name = step
        return f"mmap({address:#x}, {size:#x}, {access_name(prot)}, MAP_FIXED) named {name}"
    if kind == "write":
        return f"write {step[2]!r} at {step[1]:#x}"
    if kind == "mprotect":
        _, address, size, prot = step
        shown = access_name(prot) if 0 <= prot <= 7 else f"{prot:#x}"
        return f"mprotect({address:#x}, {size:#x}, {shown})"
    return f"munmap({step[1]:#x}, {step[2]:#x})"


def random_program(seed: int, base: int, ceiling: int, focus: str) -> list[tuple]:
    """A program on the window at `base`: three mmaps, then writes, MAP_FIXED mmaps, munmaps
    and mprotects at random pages (most of them `focus`, the syscall the learner wrote), bad
    requests of `focus` mixed in, and a munmap of the whole window at the end."""
    rng = random.Random(seed)

    def page(index: int) -> int:
        return base + index * PAGE_SIZE

    def some_range() -> tuple[int, int]:
        first = rng.randrange(0 if rng.random() < 0.1 else TEXT_PAGES, ARENA_PAGES)
        return page(first), rng.randrange(1, min(6, ARENA_PAGES - first) + 1) * PAGE_SIZE

    def mmap(number: int) -> tuple:
        first = rng.randrange(TEXT_PAGES, ARENA_PAGES - 1)
        count = rng.randrange(1, min(7, ARENA_PAGES - first) + 1)
        return ("mmap", page(first), count * PAGE_SIZE, rng.choice([RW, RW, RW, PROT_READ]),
                f"m{number}")

    def step_of(kind: str, number: int) -> tuple:
        if kind == "mmap":
            return mmap(number)
        if kind == "write":
            return ("write", page(rng.randrange(TEXT_PAGES, ARENA_PAGES)), f"w{number}")
        if kind == "mprotect":
            return ("mprotect", *some_range(), rng.choice([PROT_READ, PROT_READ, RW, PROT_NONE]))
        return ("munmap", *some_range())

    steps = [mmap(1), mmap(2), mmap(3)]
    other = "mprotect" if focus == "munmap" else "munmap"
    for number in range(4, 20):
        roll = rng.random()
        kind = focus if roll < 0.4 else "write" if roll < 0.65 else "mmap" if roll < 0.85 \
            else other
        steps.append(step_of(kind, number))
    for bad in bad_requests(focus, page, ceiling):
        steps.insert(rng.randrange(4, len(steps) + 1), bad)
    return steps + [("munmap", page(TEXT_PAGES), (ARENA_PAGES - TEXT_PAGES) * PAGE_SIZE)]


def bad_requests(focus: str, page, ceiling: int) -> list[tuple]:
    """Requests the syscall must refuse, changing nothing, and one it must round: a misaligned
    address (SerenityOS rounds the range out to whole pages; Linux says EINVAL)."""
    if focus == "munmap":
        return [("munmap", page(3), 0), ("munmap", ceiling - PAGE_SIZE, 2 * PAGE_SIZE),
                ("munmap", page(1), 3 * PAGE_SIZE), ("munmap", page(4), 1 << 64),
                ("munmap", page(6) + 0x234, 0x1800)]
    return [("mprotect", page(3), 0, RW), ("mprotect", ceiling - PAGE_SIZE, 2 * PAGE_SIZE, RW),
            ("mprotect", page(1), 3 * PAGE_SIZE, PROT_READ), ("mprotect", page(4), PAGE_SIZE, 8),
            ("mprotect", page(5), 2 * PAGE_SIZE, RW | PROT_EXEC),
            ("mprotect", page(ARENA_PAGES + 3), PAGE_SIZE, PROT_READ),
            ("mprotect", page(6) + 0x234, 0x1800, PROT_READ)]


class Run:
    """One kernel running a program, with the learner's munmap or mprotect in place of the
    kernel's (None: the kernel's own)."""

    def __init__(self, seed: int, munmap=None, mprotect=None) -> None:
        self.mm = fresh_kernel()
        self.space = MUST(AddressSpace.try_create(self.mm, seed=seed))
        self.base = self.space.region_tree.total_range.base + 2 * MiB
        MUST(self.space.allocate_region(TEXT_PAGES * PAGE_SIZE, address=self.base,
                                        prot=PROT_READ | PROT_EXEC, name="text"))
        self.munmap = munmap or AddressSpace.unmap_mmap_range
        self.mprotect = mprotect or AddressSpace.mprotect

    def step(self, step: tuple, case: str) -> Picture:
        kind, space = step[0], self.space
        if kind == "mmap":
            result = sys_mmap(space, step[1], step[2], step[3], FIXED)
            if not result.is_error():
                space.find_region_containing(result.value()).name = step[4]
        elif kind == "write":
            result = write_user_memory(space, step[1], tag_bytes(step[2]))
        elif kind == "mprotect":
            result = self.mprotect(space, *step[1:])
        else:
            result = self.munmap(space, *step[1:])
        return picture(space, self.base, returned(result, case))


def check_program(seed: int, focus: str, learner: Run) -> int:
    """Run the seed's program on the reference and on `learner`; raise at the first step
    where they differ. Returns the number of steps."""
    reference = Run(seed)
    program = random_program(seed, reference.base, reference.mm.layout.user_range_ceiling, focus)
    for index, step in enumerate(program):
        where = f"seed {seed}, step {index + 1} of {len(program)}, {describe(step)}"
        got = learner.step(step, where)
        record(where, *got.values())
        wanted = reference.step(step, where)
        difference = first_difference(wanted, got, reference.base)
        if difference:
            drawing = side_by_side(
                f"Seed {seed}, step {index + 1} of {len(program)}: {describe(step)}. The first "
                f"step where your address space differs from the reference kernel's:",
                drawn("reference kernel", wanted, reference.base, step),
                drawn("with your function", got, reference.base, step), PAGE_NOTE)
            raise CheckFailed(f"{where}: {difference}", drawing)
    return len(program)


# 1. munmap --------------------------------------------------------------------------------------

@exercise("09-munmap", "munmap: unmap a range, splitting the regions it cuts", 4,
          "unmap_mmap_range",
          forbids=("refimpl.kernel.address_space.AddressSpace.unmap_mmap_range",
                   "refimpl.kernel.address_space.AddressSpace.try_split_region_around_range",
                   "refimpl.kernel.address_space.AddressSpace._plan_splits",
                   "refimpl.kernel.address_space.AddressSpace._replace_region",
                   "refimpl.kernel.address_space.AddressSpace._user_range"))
def check_munmap(unmap_mmap_range, hidden=False):
    steps = 0
    for seed in seeds(hidden, VISIBLE, HIDDEN):
        steps += check_program(seed, "munmap", Run(seed, munmap=unmap_mmap_range))
    return passed(steps, f"steps of {len(seeds(hidden, VISIBLE, HIDDEN))} seeded programs, "
                         f"each address space the same as the reference's after every step")


# 2. The copy-on-write fault ---------------------------------------------------------------------

COW_STEPS = 12


def cow_program(seed: int) -> tuple[int, list[int], list[tuple]]:
    """(pages of the region, pages the parent writes before the fork, steps after the fork):
    writes by the living processes, maybe a second fork (the child's "grandchild") and an exit,
    then every other process exits and the parent writes every page, then exits too."""
    rng = random.Random(seed)
    pages = rng.randrange(3, 6)
    written = sorted(rng.sample(range(pages), rng.randrange(1, pages)))
    alive, steps = ["parent", "child"], []
    for index in range(COW_STEPS):
        roll = rng.random()
        if roll < 0.1 and "grandchild" not in alive and "child" in alive:
            steps.append(("fork", "child", "grandchild"))
            alive.append("grandchild")
        elif roll < 0.2 and index > 3 and len(alive) > 2:
            who = rng.choice(alive[1:])
            steps.append(("exit", who))
            alive.remove(who)
        else:
            steps.append(("write", rng.choice(alive), rng.randrange(pages)))
    steps += [("exit", who) for who in alive[1:]]
    steps += [("write", "parent", page) for page in range(pages)] + [("exit", "parent")]
    return pages, written, steps


def describe_cow(step: tuple, index: int) -> str:
    if step[0] == "fork":
        return f"{step[1]} forks ({step[2]})"
    if step[0] == "exit":
        return f"{step[1]} exits"
    return f"{step[1]} writes {tag_of(step, index)!r} to page {step[2]}"


def tag_of(step: tuple, index: int) -> str:
    return f"{step[1][0]}{index + 1}"


class CowRun:
    """Processes forked from one parent with a private mmap'ed region, in one kernel. With
    `handler`, every VMObject's copy-on-write faults go to it instead of the kernel's."""

    def __init__(self, seed: int, handler=None) -> None:
        self.seed, self.handler = seed, handler
        self.mm = fresh_kernel()
        parent = MUST(AddressSpace.try_create(self.mm, seed=seed))
        self.base = parent.region_tree.total_range.base + 2 * MiB
        self.pages, written, self.program = cow_program(seed)
        MUST(sys_mmap(parent, self.base, self.pages * PAGE_SIZE, RW, FIXED))
        parent.find_region_containing(self.base).name = "heap"
        for page in written:  # a tag at each end: a copy must take the whole page
            address = self.base + page * PAGE_SIZE
            MUST(write_user_memory(parent, address, tag_bytes(f"old{page}")))
            MUST(write_user_memory(parent, address + PAGE_SIZE - TAG_BYTES,
                                   tag_bytes(f"end{page}")))
        self.processes = {"parent": parent}
        self.frames: dict[int, str] = {}
        self.fork("parent", "child")

    def fork(self, parent: str, child: str) -> None:
        self.processes[child] = MUST(self.processes[parent].try_clone(seed=self.seed))
        if self.handler is not None:
            for space in self.processes.values():
                for region in space.region_tree.regions():
                    region.vmobject.handle_cow_fault = functools.partial(self.handler,
                                                                         region.vmobject)

    def step(self, step: tuple, index: int) -> str:
        if step[0] == "fork":
            self.fork(step[1], step[2])
            return "success"
        if step[0] == "exit":
            self.processes.pop(step[1]).remove_all_regions()  # its page tables stay, unused
            return "success"
        space = self.processes[step[1]]
        address = self.base + step[2] * PAGE_SIZE
        return returned(write_user_memory(space, address, tag_bytes(tag_of(step, index))), "")

    def frame(self, paddr: int) -> str:
        """A name for a physical page, by the order the pictures first meet it: the same in
        any two runs that share and copy the same pages, whatever frames they were given."""
        if paddr == self.mm.shared_zero_page.paddr():
            return "zero"
        return self.frames.setdefault(paddr, f"F{len(self.frames) + 1}")

    def pages_of(self, space: AddressSpace) -> list[list]:
        """[contents, frame, references, entry access, copy-on-write] of each page."""
        region = space.find_region_containing(self.base)
        mm, rows = self.mm, []
        for index in range(self.pages):
            pte = mm.pte(space.page_directory, self.base + index * PAGE_SIZE)
            paddr = pte.physical_page_base()
            page = mm.get_physical_page_entry(paddr)
            rows.append([contents(mm, paddr), self.frame(paddr), page.ref_count(),
                         "rw" if pte.is_writable() else "r", region.should_cow(index)])
        return rows

    def picture(self) -> dict:
        return {name: self.pages_of(space) for name, space in self.processes.items()}


def cow_cell(page: list) -> str:
    text, frame, references, access, cow = page
    what = "zero page" if frame == "zero" else f"{text} {frame}"
    return f"{what} refs {references} {access}{' CoW' if cow else ''}"


def cow_text(page: list) -> str:
    text, frame, references, access, cow = page
    return (f"{text!r} in frame {frame} ({references} reference(s)), "
            f"{'writable' if access == 'rw' else 'read-only'}"
            f"{', copy-on-write' if cow else ''}")


def cow_map(title: str, result: str, processes: dict, free: int, base: int,
            step: tuple) -> Map:
    rows, marked = [], set()
    for name, pages in processes.items():
        for index, page in enumerate(pages):
            if step[0] == "write" and step[1:] == (name, index):
                marked.add(len(rows))
            rows.append(PageRow(f"{base + index * PAGE_SIZE:#x}", name, "rw-", index == 0,
                                cow_cell(page)))
    return Map(title, (f"returned: {result}", f"free physical pages: {free}"), tuple(rows),
               frozenset(marked))


def cow_difference(wanted: tuple, got: tuple) -> str | None:
    (w_result, w_processes, w_free), (g_result, g_processes, g_free) = wanted, got
    if w_result != g_result:
        return f"the write returned {w_result} on the reference, {g_result} with yours"
    for name, pages in w_processes.items():
        for index, (one, other) in enumerate(zip(pages, g_processes[name])):
            if one != other:
                return (f"the {name}'s page {index} holds {cow_text(one)} on the reference; "
                        f"with yours, {cow_text(other)}")
    if w_free != g_free:
        return f"the reference has {w_free} free physical pages, yours {g_free}"
    return None


@exercise("09-cow-fault", "Break copy-on-write, page by page", 4, "handle_cow_fault",
          forbids=("refimpl.kernel.anonymous_vmobject.AnonymousVMObject.handle_cow_fault",))
def check_cow_fault(handle_cow_fault, hidden=False):
    steps = 0
    for seed in seeds(hidden, VISIBLE, HIDDEN):
        reference, learner = CowRun(seed), CowRun(seed, handle_cow_fault)
        program = reference.program
        for index, step in enumerate(program):
            where = f"seed {seed}, step {index + 1} of {len(program)}, {describe_cow(step, index)}"
            result = learner.step(step, index)
            got = (result, learner.picture(), learner.mm.free_physical_pages())
            record(where, *got)
            wanted = (reference.step(step, index), reference.picture(),
                      reference.mm.free_physical_pages())
            difference = cow_difference(wanted, got)
            if difference:
                drawing = side_by_side(
                    f"Seed {seed}, step {index + 1} of {len(program)}: "
                    f"{describe_cow(step, index)}. The first step where a process's pages "
                    f"differ from the reference kernel's:",
                    cow_map("reference kernel", *wanted, reference.base, step),
                    cow_map("with your handler", *got, reference.base, step), COW_NOTE)
                raise CheckFailed(f"{where}: {difference}", drawing)
            steps += 1
    return passed(steps, "steps of fork, writes and exits: every page, its frame and its "
                         "references the same as the reference's")


# 3. mprotect ------------------------------------------------------------------------------------

@exercise("09-mprotect", "mprotect: change the access of part of a region", 3, "mprotect",
          forbids=("refimpl.kernel.address_space.AddressSpace.mprotect",
                   "refimpl.kernel.address_space.AddressSpace._plan_splits",
                   "refimpl.kernel.address_space.AddressSpace._replace_region",
                   "refimpl.kernel.address_space.AddressSpace._user_range"))
def check_mprotect(mprotect, hidden=False):
    steps = 0
    for seed in seeds(hidden, VISIBLE, HIDDEN):
        steps += check_program(seed, "mprotect", Run(seed, mprotect=mprotect))
    return passed(steps, f"steps of {len(seeds(hidden, VISIBLE, HIDDEN))} seeded programs, "
                         f"each address space the same as the reference's after every step")
