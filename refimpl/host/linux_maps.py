"""One mmap/munmap/mprotect sequence, run on the host's Linux and on the simulated SerenityOS.

A sequence is a list of plain tuples, in pages relative to a window:
`("mmap", first_page, page_count, "rw-")` (MAP_FIXED into the window),
`("mmap_noreplace", first_page, page_count, "rw-")` (MAP_FIXED_NOREPLACE),
`("munmap", first_page, page_count)` and `("mprotect", first_page, page_count, "r--")`.

Both kernels start alike: the window is one PROT_NONE private anonymous mapping, and every
step stays inside it. On Linux the steps are real system calls made through ctypes on this
very process, and what they did is read back from /proc/self/maps; on the simulation they are
`refimpl.kernel.syscalls` on a fresh AddressSpace. `compare` puts the two side by side and
names each difference:

- "Linux merged neighbours": Linux joins neighbouring anonymous mappings with equal access
  into one VMA, when one is made (mmap_region in mm/mmap.c expands the neighbour over it:
  can_vma_merge_before/after, vma_expand; Linux v6.1) and again after an mprotect
  (mprotect_fixup in mm/mprotect.c calls vma_merge); SerenityOS
  never merges: each mmap gets a Region and an AnonymousVMObject of its own, and munmap and
  mprotect only ever split regions (f0f97e1db02: Kernel/Memory/AddressSpace.cpp#L289).
- "mprotect not atomic at a hole": Linux's mprotect changes the VMAs in address order and
  stops with ENOMEM at the first hole, keeping what it already changed (do_mprotect_pkey in
  mm/mprotect.c, v6.1); SerenityOS adds up how much of the range is mapped first and refuses
  the whole call with ENOMEM before changing anything (Kernel/Syscalls/mmap.cpp#L315-L328).
- "errno": one kernel refuses a call the other accepts, or they give different errnos:
  mprotect of a range with nothing mapped is ENOMEM on Linux (as POSIX says), EINVAL on
  SerenityOS (it finds no region, mmap.cpp#L376); anonymous memory made executable is allowed
  on Linux, EINVAL on SerenityOS (validate_mmap_prot, mmap.cpp#L78-L79).
  Both kernels agree that munmap of a range with nothing mapped succeeds
  (AddressSpace.cpp#L93-L95, since bccdc08487e). MAP_FIXED_NOREPLACE over a mapping is EEXIST
  on Linux and here, but ENOMEM in SerenityOS (RegionTree.cpp#L99-L101): refimpl differs.

The process's own memory is never touched. Python (or a thread of the notebook) may mmap at
any time, and the kernel may place that in a hole a munmap step punched in the window: every
read of /proc/self/maps checks that each page mapped in the window is one the sequence made,
and raises `ForeignMappingError` otherwise; an mmap step first claims the holes it covers with
MAP_FIXED_NOREPLACE, so MAP_FIXED can only ever replace pages of the sequence. At the end the
sequence's own pages are unmapped, whatever happened.
"""

from __future__ import annotations

import ctypes
import errno as errno_module
import html
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from IPython.display import HTML

from refimpl.ak import Errno
from refimpl.hw import X86_64, Machine, MiB
from refimpl.kernel import AddressSpace, MemoryManager
from refimpl.kernel.address import PAGE_SIZE
from refimpl.kernel.syscalls import (MAP_ANONYMOUS, MAP_FIXED, MAP_FIXED_NOREPLACE,
                                     MAP_PRIVATE, sys_mmap, sys_mprotect, sys_munmap)

Mapping = tuple[int, int, str]  # (first_page, page_count, "rw-"), relative to the window

STEP_LENGTHS = {"mmap": 4, "mmap_noreplace": 4, "munmap": 3, "mprotect": 4}
MAX_WINDOW_PAGES = 1024
_ACCESS = re.compile(r"[r-][w-][x-]\Z")

MERGED = "Linux merged neighbours"
NOT_ATOMIC = "mprotect not atomic at a hole"
ERRNO = "errno"
OTHER = "layouts differ"

# Linux's values (asm-generic/mman-common.h; all but mips, alpha and parisc use them).
LINUX_PROT = {"r": 0x1, "w": 0x2, "x": 0x4}
LINUX_MAP_PRIVATE, LINUX_MAP_FIXED, LINUX_MAP_ANONYMOUS = 0x02, 0x10, 0x20
LINUX_MAP_FIXED_NOREPLACE = 0x100000
_MAP_FAILED = ctypes.c_void_p(-1).value


def _host_unsupported() -> str | None:
    """Why the host's kernel cannot be observed here, or None."""
    if not sys.platform.startswith("linux"):
        return f"the host is {sys.platform}, not Linux: no /proc/self/maps to read back"
    if os.uname().machine.startswith(("mips", "alpha", "parisc")):
        return f"{os.uname().machine} numbers its MAP_ flags differently; not supported here"
    if not os.path.exists("/proc/self/maps"):
        return "/proc/self/maps does not exist (is /proc mounted?)"
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap, libc.munmap, libc.mprotect  # noqa: B018 (looked up only to check)
    except (OSError, AttributeError) as error:
        return f"the C library has no mmap/munmap/mprotect to call ({error})"
    return None


HOST_UNSUPPORTED: str | None = _host_unsupported()


class ForeignMappingError(RuntimeError):
    """A mapping the sequence did not make appeared in the window."""


@dataclass
class HostStep:
    """One step as a kernel ran it: 0 or the errno's name, and the window read back."""

    step: tuple
    errno: int | str
    mappings: list[Mapping]


@dataclass
class Comparison:
    """One step on both kernels; `difference` names why they differ (None if they agree)."""

    step: tuple
    linux: HostStep
    simulation: HostStep
    difference: str | None
    why: str


# Sequences -------------------------------------------------------------------------------------

def check_sequence(sequence: Sequence[tuple], window_pages: int) -> list[tuple]:
    """The steps as tuples, or ValueError naming the first bad one (nothing is run yet)."""
    if isinstance(window_pages, bool) or not isinstance(window_pages, int) or \
            not 1 <= window_pages <= MAX_WINDOW_PAGES:
        raise ValueError(f"window_pages must be an int from 1 to {MAX_WINDOW_PAGES}, "
                         f"not {window_pages!r}")
    if isinstance(sequence, (str, bytes)) or not isinstance(sequence, Sequence):
        raise ValueError(f"sequence must be a list of step tuples, not {sequence!r}")
    steps = [tuple(step) if isinstance(step, (tuple, list)) else step for step in sequence]
    for number, step in enumerate(steps, 1):
        problem = _step_problem(step, window_pages)
        if problem:
            raise ValueError(f"step {number} {step!r}: {problem}")
    return steps


def _step_problem(step: object, window_pages: int) -> str | None:
    if not isinstance(step, tuple) or not step or step[0] not in STEP_LENGTHS:
        return f"a step is a tuple starting with one of {sorted(STEP_LENGTHS)}"
    if len(step) != STEP_LENGTHS[step[0]]:
        return f"{step[0]} takes {STEP_LENGTHS[step[0]] - 1} values after its name"
    first, count = step[1], step[2]
    if any(isinstance(n, bool) or not isinstance(n, int) for n in (first, count)):
        return "first_page and page_count must be ints"
    if first < 0 or count < 1:
        return "first_page must be >= 0 and page_count >= 1"
    if first + count > window_pages:
        return f"pages {first}-{first + count - 1} go past the window's end ({window_pages} pages)"
    if len(step) == 4 and not (isinstance(step[3], str) and _ACCESS.match(step[3])):
        return f"the access must be like 'rw-' (r or -, w or -, x or -), not {step[3]!r}"
    return None


def example_sequence() -> list[tuple]:
    """The lesson's sequence in a 32-page window: each difference happens at least once, and
    the two kernels come back in step between them."""
    return [
        ("mmap", 0, 4, "rw-"),       # both: one new mapping
        ("mmap", 4, 4, "rw-"),       # Linux merges it with its neighbour
        ("mprotect", 2, 4, "r--"),   # SerenityOS splits both regions, Linux its one VMA
        ("mprotect", 2, 4, "rw-"),   # Linux merges back into one VMA
        ("munmap", 0, 8),            # both: the pages are gone
        ("mmap", 0, 8, "rw-"),       # both: one mapping again
        ("munmap", 10, 2),           # both: a hole at pages 10-11
        ("mprotect", 8, 4, "r--"),   # ENOMEM on both, but Linux changed pages 8-9 first
        ("mprotect", 8, 2, "---"),   # both: back in step
        ("mprotect", 10, 2, "r--"),  # nothing mapped there: ENOMEM on Linux, EINVAL here
        ("munmap", 10, 2),           # nothing mapped there: success on both
        ("mprotect", 0, 2, "r-x"),   # executable anonymous memory: Linux yes, SerenityOS no
        ("mprotect", 0, 2, "rw-"),   # both: back in step
    ]


def describe_step(step: tuple) -> str:
    """A step in words, e.g. "mprotect pages 8-11 to r--"."""
    kind, first, count = step[:3]
    if kind == "mmap":
        return f"mmap {_pages(first, count)} {step[3]} (MAP_FIXED)"
    if kind == "mmap_noreplace":
        return f"mmap {_pages(first, count)} {step[3]} (MAP_FIXED_NOREPLACE)"
    if kind == "mprotect":
        return f"mprotect {_pages(first, count)} to {step[3]}"
    return f"munmap {_pages(first, count)}"


def describe_mapping(mapping: Mapping) -> str:
    first, count, access = mapping
    return f"{_pages(first, count)} {access}"


def _pages(first: int, count: int) -> str:
    return f"page {first}" if count == 1 else f"pages {first}-{first + count - 1}"


# Linux -----------------------------------------------------------------------------------------

def run_on_linux(sequence: Sequence[tuple], window_pages: int = 32) -> list[HostStep]:
    """Run `sequence` on the kernel this process runs on, in a window it reserves first."""
    steps = check_sequence(sequence, window_pages)
    if HOST_UNSUPPORTED:
        raise RuntimeError(f"cannot run on the host: {HOST_UNSUPPORTED}")
    window = _LinuxWindow(window_pages)
    try:
        results = []
        for step in steps:
            window.read()  # nothing foreign crept in since the last step
            code = window.run(step)
            results.append(HostStep(step, code, window.read()))
        return results
    finally:
        window.close()


def window_mappings(maps_text: str, base: int, pages: int, page_size: int) -> list[Mapping]:
    """The lines of /proc/self/maps that fall in the window, clipped to it, in pages relative
    to its base. (A neighbour outside it may have merged with its first or last mapping.)"""
    end = base + pages * page_size
    mappings = []
    for line in maps_text.splitlines():
        addresses, permissions = line.split()[:2]
        start, stop = (int(part, 16) for part in addresses.split("-"))
        start, stop = max(start, base), min(stop, end)
        if start < stop:
            mappings.append(((start - base) // page_size, (stop - start) // page_size,
                             permissions[:3]))
    return mappings


class _LinuxWindow:
    """The reserved window and the pages of it the sequence owns (mapped by its own calls)."""

    def __init__(self, pages: int) -> None:
        self.libc = libc = ctypes.CDLL(None, use_errno=True)  # this instance's own prototypes
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                              ctypes.c_int, ctypes.c_long]
        libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        self.page_size = os.sysconf("SC_PAGE_SIZE")
        self.pages = pages
        ctypes.set_errno(0)
        base = libc.mmap(None, pages * self.page_size, 0, LINUX_MAP_PRIVATE | LINUX_MAP_ANONYMOUS,
                         -1, 0)
        if base == _MAP_FAILED:
            code = ctypes.get_errno()
            raise OSError(code, f"reserving the window: {os.strerror(code)}")
        self.base = base
        self.owned = set(range(pages))

    def address(self, page: int) -> int:
        return self.base + page * self.page_size

    def run(self, step: tuple) -> int | str:
        """Make the step's system call: 0, or the name of its errno."""
        kind, first, count = step[:3]
        address, size = self.address(first), count * self.page_size
        if kind == "munmap":
            result = self._call(self.libc.munmap, address, size)
            if result == 0:
                self.owned -= set(range(first, first + count))
        elif kind == "mprotect":
            result = self._call(self.libc.mprotect, address, size, _linux_prot(step[3]))
        elif kind == "mmap":
            self._claim_holes(first, count)  # MAP_FIXED now replaces only our own pages
            result = self._mmap(address, size, _linux_prot(step[3]), LINUX_MAP_FIXED)
        else:
            result = self._mmap(address, size, _linux_prot(step[3]), LINUX_MAP_FIXED_NOREPLACE)
            if result == 0:
                self.owned |= set(range(first, first + count))
        return result

    def _mmap(self, address: int, size: int, prot: int, flags: int) -> int | str:
        """mmap exactly at `address`; a kernel that takes the address as a hint (Linux before
        4.17 ignores MAP_FIXED_NOREPLACE) gets its mapping back and an error."""
        ctypes.set_errno(0)
        got = self.libc.mmap(address, size, prot,
                             LINUX_MAP_PRIVATE | LINUX_MAP_ANONYMOUS | flags, -1, 0)
        if got == _MAP_FAILED:
            return errno_module.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))
        if got != address:
            self.libc.munmap(got, size)
            raise RuntimeError(f"mmap placed {size:#x} bytes at {got:#x}, not {address:#x}: "
                               f"this kernel does not know MAP_FIXED_NOREPLACE (Linux < 4.17)")
        return 0

    def _call(self, function, *arguments) -> int | str:
        ctypes.set_errno(0)
        if function(*arguments) == 0:
            return 0
        return errno_module.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))

    def _claim_holes(self, first: int, count: int) -> None:
        """Map PROT_NONE with MAP_FIXED_NOREPLACE over each page run of [first, first+count)
        the sequence does not own: if something foreign got there, the kernel refuses."""
        for run_first, run_count in _runs(set(range(first, first + count)) - self.owned):
            result = self._mmap(self.address(run_first), run_count * self.page_size, 0,
                                LINUX_MAP_FIXED_NOREPLACE)
            if result != 0:
                raise ForeignMappingError(f"{_pages(run_first, run_count)} of the window could "
                                          f"not be claimed ({result}): something else is there")
            self.owned |= set(range(run_first, run_first + run_count))

    def read(self) -> list[Mapping]:
        """The window as /proc/self/maps shows it; ForeignMappingError if a page is mapped
        that the sequence does not own. The pages found mapped become the owned ones."""
        with open("/proc/self/maps") as maps:
            mappings = window_mappings(maps.read(), self.base, self.pages, self.page_size)
        mapped = {page for first, count, _ in mappings for page in range(first, first + count)}
        foreign = mapped - self.owned
        if foreign:
            self.owned &= mapped
            raise ForeignMappingError(
                f"pages {sorted(foreign)} of the window were mapped by someone else (Python's "
                f"allocator, another thread) in a hole the sequence made; run it again")
        self.owned = mapped
        return mappings

    def close(self) -> None:
        """Unmap every page the sequence owns, and only those."""
        for first, count in _runs(self.owned):
            self.libc.munmap(self.address(first), count * self.page_size)
        self.owned = set()


def _linux_prot(access: str) -> int:
    return sum(LINUX_PROT[letter] for letter in access if letter != "-")


def _runs(pages: set[int]) -> list[tuple[int, int]]:
    """Runs of consecutive pages, as (first, count)."""
    runs: list[tuple[int, int]] = []
    for page in sorted(pages):
        if runs and runs[-1][0] + runs[-1][1] == page:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((page, 1))
    return runs


# The simulated SerenityOS ----------------------------------------------------------------------

def run_on_simulation(sequence: Sequence[tuple], window_pages: int = 32, *,
                      mm: MemoryManager | None = None) -> list[HostStep]:
    """Run `sequence` through refimpl's sys_mmap/sys_munmap/sys_mprotect on a new
    AddressSpace (in `mm`, or a new 16 MiB machine), in a window reserved the way Linux's is.
    The address space is destroyed at the end: every page and kmalloc block goes back."""
    steps = check_sequence(sequence, window_pages)
    mm = mm if mm is not None else MemoryManager(Machine(X86_64, ram_size=16 * MiB))
    space = AddressSpace.try_create(mm)
    if space.is_error():
        raise RuntimeError(f"creating the simulated address space: {space.error()}")
    space = space.value()
    try:
        base = sys_mmap(space, 0, window_pages * PAGE_SIZE, 0, MAP_PRIVATE | MAP_ANONYMOUS)
        if base.is_error():
            raise RuntimeError(f"reserving the simulated window: {base.error()}")
        base = base.value()
        results = []
        for step in steps:
            result = _simulated_call(space, base, step)
            code = Errno(result.error().code()).name if result.is_error() else 0
            results.append(HostStep(step, code, _simulated_mappings(space, base, window_pages)))
        return results
    finally:
        space.destroy()


def _simulated_call(space: AddressSpace, base: int, step: tuple):
    kind, first, count = step[:3]
    address, size = base + first * PAGE_SIZE, count * PAGE_SIZE
    if kind == "munmap":
        return sys_munmap(space, address, size)
    prot = _linux_prot(step[3])  # PROT_READ/WRITE/EXEC have the same values in SerenityOS
    if kind == "mprotect":
        return sys_mprotect(space, address, size, prot)
    fixed = MAP_FIXED if kind == "mmap" else MAP_FIXED_NOREPLACE
    return sys_mmap(space, address, size, prot, MAP_PRIVATE | MAP_ANONYMOUS | fixed)


def _simulated_mappings(space: AddressSpace, base: int, pages: int) -> list[Mapping]:
    """The regions in the window, clipped to it, in pages relative to its base."""
    end = base + pages * PAGE_SIZE
    mappings = []
    for region in space.region_tree.regions():
        start, stop = max(region.range.base, base), min(region.range.end, end)
        if start < stop:
            mappings.append(((start - base) // PAGE_SIZE, (stop - start) // PAGE_SIZE,
                             region.access.describe()))
    return mappings


# Comparing -------------------------------------------------------------------------------------

def compare(sequence: Sequence[tuple], window_pages: int = 32) -> list[Comparison]:
    """Run `sequence` on both kernels and compare them step by step."""
    linux = run_on_linux(sequence, window_pages)
    simulation = run_on_simulation(sequence, window_pages)
    return compare_results(linux, simulation, window_pages)


def compare_results(linux: list[HostStep], simulation: list[HostStep],
                    window_pages: int = 32) -> list[Comparison]:
    """Name the difference at each step of two runs of one sequence."""
    comparisons = []
    linux_before: list[Mapping] = [(0, window_pages, "---")]  # the reserved window
    for on_linux, on_simulation in zip(linux, simulation, strict=True):
        difference, why = _difference(on_linux, on_simulation, linux_before)
        comparisons.append(Comparison(on_linux.step, on_linux, on_simulation, difference, why))
        linux_before = on_linux.mappings
    return comparisons


def _difference(linux: HostStep, simulation: HostStep,
                linux_before: list[Mapping]) -> tuple[str | None, str]:
    if linux.step[0] == "mprotect" and linux.errno != 0 and linux.mappings != linux_before:
        changed = [f"{_pages(first, count)} to {access}"
                   for first, count, access in linux.mappings
                   if (first, count, access) not in linux_before]
        return NOT_ATOMIC, (f"Linux failed with {linux.errno} but had already changed "
                            f"{', '.join(changed)}; SerenityOS ({_outcome(simulation.errno)}) "
                            f"checks that the whole range is mapped before changing anything.")
    if linux.errno != simulation.errno:
        return ERRNO, (f"Linux: {_outcome(linux.errno)}; SerenityOS: "
                       f"{_outcome(simulation.errno)}{_errno_reason(simulation, linux_before)}.")
    if linux.mappings == simulation.mappings:
        return None, ""
    if _merged(simulation.mappings) == linux.mappings:
        return MERGED, (f"Linux shows {len(linux.mappings)} mappings where SerenityOS keeps "
                        f"{len(simulation.mappings)} regions: Linux merges neighbouring "
                        f"anonymous mappings with the same access, SerenityOS never does.")
    return OTHER, "The two kernels' windows differ."


def _errno_reason(simulation: HostStep, before: list[Mapping]) -> str:
    """What made SerenityOS refuse, in the two cases the lesson shows."""
    kind, first, count = simulation.step[:3]
    if simulation.errno != "EINVAL" or kind == "munmap":
        return ""
    if "x" in simulation.step[3]:
        return " (it never makes anonymous memory executable)"
    touched = [m for m in before if m[0] < first + count and first < m[0] + m[1]]
    if kind == "mprotect" and not touched:
        return " (nothing is mapped in the range: it finds no region and says EINVAL)"
    return ""


def _outcome(code: int | str) -> str:
    return "success" if code == 0 else str(code)


def _merged(mappings: list[Mapping]) -> list[Mapping]:
    """Neighbouring mappings with the same access joined, as Linux would show them."""
    merged: list[Mapping] = []
    for first, count, access in mappings:
        if merged and merged[-1][0] + merged[-1][1] == first and merged[-1][2] == access:
            merged[-1] = (merged[-1][0], merged[-1][1] + count, access)
        else:
            merged.append((first, count, access))
    return merged


# The table -------------------------------------------------------------------------------------

_CELL = "padding:3px 8px;text-align:left;vertical-align:top;border-bottom:1px solid #ddd"
_HIGHLIGHT = "background:#fff3cd"
_NOWRAP = '<span style="white-space:nowrap">{}</span>'


def comparison_table_html(comparisons: list[Comparison]) -> str:
    """An HTML table, one row per step: the step, what each kernel answered and left in the
    window (in bold what the other kernel lacks), and the difference (its row highlighted)
    with why."""
    headers = ["#", "step", "Linux (this machine)", "SerenityOS (simulated)", "difference"]
    head = "".join(f'<th style="{_CELL}">{title}</th>' for title in headers)
    rows = []
    for number, comparison in enumerate(comparisons, 1):
        style = f' style="{_HIGHLIGHT}"' if comparison.difference else ""
        difference = ("same" if comparison.difference is None else
                      f"<b>{html.escape(comparison.difference)}</b><br>"
                      f"{html.escape(comparison.why)}")
        step = _NOWRAP.format(html.escape(describe_step(comparison.step)))
        cells = [str(number), step, _result_html(comparison.linux, comparison.simulation),
                 _result_html(comparison.simulation, comparison.linux), difference]
        rows.append(f"<tr{style}>" + "".join(f'<td style="{_CELL}">{cell}</td>'
                                              for cell in cells) + "</tr>")
    return (f'<table style="border-collapse:collapse;font-size:13px;max-width:1200px">'
            f'<tr>{head}</tr>{"".join(rows)}</table>')


def _result_html(result: HostStep, other: HostStep) -> str:
    """The errno and the mappings, one a line; in bold what the other kernel does not have."""
    lines = [(_outcome(result.errno), result.errno != other.errno)]
    lines += [(describe_mapping(m), m not in other.mappings) for m in result.mappings]
    if not result.mappings:
        lines.append(("(nothing mapped)", bool(other.mappings)))
    return ('<span style="font-family:monospace;white-space:nowrap">'
            + "<br>".join(f"<b>{html.escape(text)}</b>" if differs else html.escape(text)
                          for text, differs in lines) + "</span>")


def comparison_table(comparisons: list[Comparison]) -> HTML:
    """`comparison_table_html` for display in a notebook."""
    return HTML(comparison_table_html(comparisons))
