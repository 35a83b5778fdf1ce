"""A program written as data, run one step at a time on processes of the simulated kernel.

A trace is a list of plain tuples. It starts with ("exec",); then each step names what the
program does, in the parent process unless its second item names another ("child", after a
fork). Places are a label (a segment of the image, "stack", "tls", or a name given to mmap)
plus a byte offset:

    ("exec",)                                   exec the image: the parent process
    ("mmap", label, size, "rw-")                a new anonymous private mapping called label
    ("write", [process,] label, offset, length) the program writes length bytes there
    ("read", [process,] label, offset, length)  ... or reads them
    ("munmap", [process,] label, offset, size)
    ("mprotect", [process,] label, offset, size, "r--")
    ("fork",)                                   the parent forks: the child is "child"
    ("exit", [process])

`run_trace` runs it and returns, for each step, what a learner can predict before the step
runs: the page faults it takes (by kind), the pages resident in each process afterwards, the
pages shared copy-on-write, the free physical pages (page tables included), and the layouts.
A step whose syscall or access fails (EFAULT on a read-only page...) does not stop the run:
its outcome carries the error, as the program would see it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from refimpl.ak import MUST, Errno, Error
from refimpl.hw import X86_64, Machine, MiB
from refimpl.kernel.address import PAGE_SIZE
from refimpl.kernel.memory_manager import MemoryManager
from refimpl.kernel.process import Process, ProgramImage, create_signal_trampoline
from refimpl.kernel.procfs import Layout, layout

PARENT, CHILD = "parent", "child"
_ARITY = {"exec": 1, "mmap": 4, "write": 4, "read": 4, "munmap": 4, "mprotect": 5, "fork": 1,
          "exit": 1}
"""Items of each step without a process name."""
_WRITTEN_BYTE = {PARENT: b"P", CHILD: b"C"}


@dataclass(frozen=True)
class StepOutcome:
    """What one step did.

    `faults`: kind -> count taken during the step; `resident`: process -> its resident pages
    after it; `cow_shared`: physical pages marked copy-on-write somewhere and still held by
    more than one VMObject (a write there copies); `free_pages_before`, `free_pages`: the
    kernel's free physical pages before and after; `layouts`: process -> Layout after it;
    `layout`: that of the process the step ran in ([] once it has exited); `error`: what the
    program saw fail ("EFAULT (why)"), or None."""

    step: tuple
    text: str
    faults: dict[str, int]
    resident: dict[str, int]
    cow_shared: int
    free_pages_before: int
    free_pages: int
    layouts: dict[str, Layout]
    layout: Layout
    error: str | None = None

    @property
    def pages_taken(self) -> int:
        """Physical pages the step took (negative when it gave some back)."""
        return self.free_pages_before - self.free_pages


def parse_prot(text: str) -> int:
    """"rw-" -> PROT_READ | PROT_WRITE; a ValueError for anything not of that shape."""
    if not isinstance(text, str) or len(text) != 3 or \
            any(char not in (letter, "-") for char, letter in zip(text, "rwx")):
        raise ValueError(f"access must look like 'rw-', not {text!r}")
    return sum(bit for char, bit in zip(text, (1, 2, 4)) if char != "-")


def split_step(step: tuple) -> tuple[str, str, tuple]:
    """(operation, process, arguments) of a step; a ValueError naming a malformed one."""
    if not isinstance(step, tuple) or not step or step[0] not in _ARITY:
        raise ValueError(f"a step is a tuple starting with one of {', '.join(_ARITY)}, not "
                         f"{step!r}")
    operation, arity = step[0], _ARITY[step[0]]
    who, arguments = PARENT, step[1:]
    if len(step) == arity + 1 and step[1] in (PARENT, CHILD) and operation not in ("exec",
                                                                                  "fork"):
        who, arguments = step[1], step[2:]
    elif len(step) != arity:
        raise ValueError(f"{step!r}: {operation} takes {arity - 1} items after its name "
                         f"(and may name the process first)")
    if operation in ("mmap", "mprotect"):
        parse_prot(arguments[-1])
    return operation, who, arguments


def step_in_hex(step: tuple) -> str:
    """A step as written, its numbers in hex (as addresses and sizes are read)."""
    items = (f"{item:#x}" if isinstance(item, int) else repr(item) for item in step)
    return "(" + ", ".join(items) + ")"


def run_trace(image: ProgramImage, steps: list[tuple], seed: int = 0,
              mm: MemoryManager | None = None) -> list[StepOutcome]:
    """Run `steps` (the first is ("exec",)) on a fresh kernel, or on `mm`; one StepOutcome per
    step. Every step is checked before the first one runs."""
    parsed = [split_step(step) for step in steps]
    if not parsed or parsed[0][0] != "exec" or any(op == "exec" for op, _, _ in parsed[1:]):
        raise ValueError("a trace starts with ('exec',) and execs only once")
    if mm is None:
        mm = MemoryManager(Machine(X86_64, ram_size=16 * MiB))
    MUST(create_signal_trampoline(mm))  # made at boot in SerenityOS: not the program's pages
    runner = _TraceRunner(mm, image, seed)
    return [runner.run(step, *split) for step, split in zip(steps, parsed)]


class _TraceRunner:
    """The processes of one trace and how each step acts on them."""

    def __init__(self, mm: MemoryManager, image: ProgramImage, seed: int) -> None:
        self.mm, self.image, self.seed = mm, image, seed
        self.processes: dict[str, Process] = {}

    def run(self, step: tuple, operation: str, who: str, arguments: tuple) -> StepOutcome:
        free_before = self.mm.free_physical_pages()
        process = self.processes.get(who)
        if operation != "exec" and process is None:
            raise ValueError(f"{step!r}: there is no {who} process (yet, or any more)")
        before = Counter(process.faults) if process else Counter()
        text, result = getattr(self, f"_{operation}")(process, who, *arguments)
        process = self.processes.get(who, process)
        faults = dict(process.faults - before) if process else {}
        error = _describe(result.error()) if result is not None and result.is_error() else None
        layouts = {name: layout(live.space) for name, live in self.processes.items()}
        return StepOutcome(step, text if error is None else f"{text}: {error}", faults,
                           {name: rows_resident(rows) for name, rows in layouts.items()},
                           self._cow_shared(), free_before, self.mm.free_physical_pages(),
                           layouts, layouts.get(who, []), error)

    def _address(self, process: Process, label: str, offset: int) -> int:
        return process.address_of(label) + offset

    def _exec(self, _, who):
        self.processes[who] = MUST(Process.try_exec(self.mm, self.image, self.seed))
        return f"{who}: exec {self.image.name}", None

    def _mmap(self, process, who, label, size, access):
        result = process.mmap(size, parse_prot(access), name=label)
        return f"{who}: mmap {size // PAGE_SIZE} pages {access} called {label!r}", result

    def _write(self, process, who, label, offset, length):
        result = process.write(self._address(process, label, offset), _WRITTEN_BYTE[who] * length)
        return f"{who}: write {length} bytes at {label}+{offset:#x}", result

    def _read(self, process, who, label, offset, length):
        result = process.read(self._address(process, label, offset), length)
        shown = f" -> {result.value()[:8]!r}" if not result.is_error() else ""
        return f"{who}: read {length} bytes at {label}+{offset:#x}{shown}", result

    def _munmap(self, process, who, label, offset, size):
        result = process.munmap(self._address(process, label, offset), size)
        return f"{who}: munmap {size // PAGE_SIZE} pages at {label}+{offset:#x}", result

    def _mprotect(self, process, who, label, offset, size, access):
        result = process.mprotect(self._address(process, label, offset), size,
                                  parse_prot(access))
        return (f"{who}: mprotect {size // PAGE_SIZE} pages at {label}+{offset:#x} to "
                f"{access}"), result

    def _fork(self, process, who):
        if CHILD in self.processes:
            raise ValueError("a trace forks once: its child is 'child'")
        self.processes[CHILD] = MUST(process.fork(seed=self.seed + 1))
        return f"{who}: fork -> child (pid {self.processes[CHILD].pid})", None

    def _exit(self, process, who):
        process.exit()
        del self.processes[who]
        return f"{who}: exit", None

    def _cow_shared(self) -> int:
        """Physical pages marked copy-on-write in a process and held by another VMObject."""
        shared = set()
        for process in self.processes.values():
            for region in process.space.region_tree.regions():
                for index in range(region.page_count()):
                    page = region.physical_page(index)
                    if region.should_cow(index) and page.ref_count() > 1:
                        shared.add(page.paddr())
        return len(shared)


def _describe(error: Error) -> str:
    """"EFAULT (why)": what the program saw fail, and the kernel's reason."""
    name = Errno(error.code()).name
    return f"{name} ({error.detail})" if error.detail else name


def rows_resident(rows: Layout) -> int:
    return sum(row.resident() for row in rows)


def example_trace() -> list[tuple]:
    """The lesson's program, for ProgramImage.example(): every behaviour once at least."""
    page = PAGE_SIZE
    return [
        ("exec",),                                    # data, stack top, TLS block: zero faults
        ("write", "data", page, 100),                 # a .bss page: demand zero
        ("read", "data", 2 * page, 16),               # reading .bss: the zero page, no fault
        ("mmap", "heap", 5 * page, "rw-"),            # the heap grows by mmap: nothing resident
        ("write", "heap", 0, 4 * page),               # four demand-zero faults
        ("munmap", "heap", page, page),               # a hole: two regions; the VMObject keeps
                                                      # the page, so none is freed
        ("mprotect", "heap", 3 * page, page, "r--"),  # the right part splits in three
        ("write", "heap", 3 * page, 8),               # EFAULT: that page is read-only now
        ("fork",),                                    # private resident pages: shared CoW
        ("write", "data", 0, 8),                      # the parent copies data page 0
        ("write", CHILD, "data", 0, 8),               # the child holds the old page alone: no copy
        ("write", CHILD, "data", page, 8),            # the child copies data page 1
        ("write", "data", page, 8),                   # the parent is left alone with it: no copy
        ("write", CHILD, "data", 2 * page, 8),        # never written: a zero fault in the child
        ("write", CHILD, "heap", 0, 8),               # the child copies heap page 0
        ("write", "heap", 0, 8),                      # and so does the parent: each heap piece
                                                      # of the child cloned the whole VMObject
        ("read", CHILD, "heap", 0, 8),
        ("exit", CHILD),
        ("exit",),                                    # every page back
    ]
