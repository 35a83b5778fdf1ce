"""Process: one program's address space, from exec to exit (Kernel/Process, Syscalls/execve).

`Process.try_exec` builds the layout SerenityOS's execve builds for a statically linked,
position-independent program (f0f97e1db02: Kernel/Syscalls/execve.cpp, `Process::load`,
`load_elf_object`, `do_exec`, and `Thread::make_thread_specific_region`):
- a new AddressSpace, and a load offset chosen at random in [0x08000000, +256 MiB), page-aligned;
- each read-only or executable segment maps the program file's VMObject, shared, under the
  program's path; each writable segment gets a fresh region, "<path> (data-rw)", never
  executable, into which its data is copied (which faults its pages in);
- "<path> (master-tls)", the TLS image, randomized;
- "Stack (Main thread)", 1 MiB, randomized; "Signal trampoline", one page of a VMObject the
  whole kernel shares, r-x, randomized;
- argv, envp and the auxiliary vector written at the top of the stack, below a random offset;
- "Thread-specific", the main thread's TLS block, randomized, the TLS image copied in.
Every random choice comes from `seed`, so a layout can be replayed.

Differences from SerenityOS, one line each:
- No ELF and no file system: a ProgramImage lists its segments; the "file" is a VMObject holding
  the read-only segments at their offsets, loaded when first needed (so no inode faults).
- One file VMObject per image per kernel, shared by every process running it and freed with the
  last region mapping it (SerenityOS's inode keeps a WeakPtr to its SharedInodeVMObject).
- Segment offsets must be page-aligned; SerenityOS rounds an unaligned one down.
- An empty segment is refused (ENOEXEC); SerenityOS skips one.
- Overlapping segments are refused up front (ENOEXEC); SerenityOS fails to place the second.
- No interpreter (dynamic loader), no ETXTBSY check, no set-id bits, no file descriptors.
- The TLS image is all zeros (.tbss): `tls_size` bytes, 8-byte aligned.
- The auxiliary vector's 15 entries are written as zeros: their values are not modelled.
- The signal trampoline's page holds a placeholder, not code; it is made on first exec in a
  kernel (SerenityOS makes it at boot) and, as there, never freed.
- A process has no Thread object and no kernel stack; pids count from 1 in each kernel.
- Fault kinds are counted per process; SerenityOS counts them per thread (Thread.h#L943-L948).
"""

from __future__ import annotations

import itertools
import random
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from refimpl.ak import TRY, Errno, Error, check_int, fallible
from refimpl.kernel.address import PAGE_SIZE, is_page_aligned, page_round_down, page_round_up
from refimpl.kernel.address_space import PROT_EXEC, PROT_READ, PROT_WRITE, AddressSpace
from refimpl.kernel.anonymous_vmobject import AllocationStrategy, AnonymousVMObject
from refimpl.kernel.region import Access, Region
from refimpl.kernel.syscalls import (MAP_ANONYMOUS, MAP_PRIVATE, sys_mmap, sys_mprotect,
                                     sys_munmap)
from refimpl.kernel.thread import Thread
from refimpl.kernel.user_access import read_user_memory, write_user_memory
from refimpl.kernel.virtual_range import round_up_to_power_of_two

if TYPE_CHECKING:
    from refimpl.kernel.memory_manager import MemoryManager

LOAD_RANGE_START = 0x08000000
"""get_load_offset's `load_range_start` (execve.cpp#L201)."""
LOAD_RANGE_SIZE = 65536 * PAGE_SIZE
"""get_load_offset's `load_range_size`, 2**16 pages = 256 MiB (execve.cpp#L202)."""
AUXILIARY_VECTOR_SIZE = 15
"""execve.cpp#L45: entries of the auxiliary vector pushed on the new stack."""
THREAD_SPECIFIC_DATA_SIZE = 8
"""sizeof(ThreadSpecificData): one pointer, `self` (Thread.h#L49)."""
TLS_ALIGNMENT = 8
SIGNAL_TRAMPOLINE_PLACEHOLDER = b"signal trampoline (its code is not modelled)"
ALL_PROT = PROT_READ | PROT_WRITE | PROT_EXEC


@dataclass(frozen=True)
class Segment:
    """One PT_LOAD of a position-independent program: `offset` is where it goes relative to
    the load base, `size` its size in memory; `data` shorter than `size` is padded with zeros
    (like .bss)."""

    name: str
    offset: int
    size: int
    prot: int
    data: bytes = b""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise TypeError(f"name must be a str, not {type(self.name).__name__}")
        for field in ("offset", "size", "prot"):
            check_int(field, getattr(self, field))
        if not isinstance(self.data, bytes):
            raise TypeError(f"data must be bytes, not {type(self.data).__name__}")

    def is_writable(self) -> bool:
        return bool(self.prot & PROT_WRITE)

    def mapped_prot(self) -> int:
        """What SerenityOS maps it with: a writable segment never executable (L315-L319)."""
        return self.prot & (PROT_READ | PROT_WRITE) if self.is_writable() else self.prot

    def region_name(self, path: str) -> str:
        """SerenityOS's name for its region: the program's path, and for a writable segment
        "(data-" and its r/w letters (execve.cpp#L320)."""
        if not self.is_writable():
            return path
        return f"{path} (data-{'r' if self.prot & PROT_READ else ''}w)"

    def page_span(self) -> tuple[int, int]:
        """[first byte, end) of its pages, relative to the load base."""
        return self.offset, self.offset + page_round_up(self.size)


@dataclass(frozen=True)
class ProgramImage:
    """A program to exec: its path (`name`), its segments, its TLS size and entry point."""

    name: str
    segments: tuple[Segment, ...]
    tls_size: int = 0
    entry: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"name must be a non-empty str, not {self.name!r}")
        if not isinstance(self.segments, tuple) or \
                not all(isinstance(segment, Segment) for segment in self.segments):
            raise TypeError("segments must be a tuple of Segment")
        check_int("tls_size", self.tls_size)
        check_int("entry", self.entry)

    @staticmethod
    def example() -> ProgramImage:
        """A small program: two pages of text, one of read-only data, and a data segment of
        one page of data and two of .bss; 64 bytes of TLS."""
        return ProgramImage("/bin/hello", (
            Segment("text", 0, 2 * PAGE_SIZE, PROT_READ | PROT_EXEC, b"\x55\x48\x89\xe5" * 16),
            Segment("rodata", 2 * PAGE_SIZE, PAGE_SIZE, PROT_READ, b"Hello, friends!\n\0"),
            Segment("data", 3 * PAGE_SIZE, 3 * PAGE_SIZE, PROT_READ | PROT_WRITE,
                    b"counter=0\0"),
        ), tls_size=64, entry=0x10)

    def file_contents(self) -> bytes:
        """The "file" the read-only segments map: each one's data at its offset."""
        read_only = [segment for segment in self.segments if not segment.is_writable()]
        end = max((segment.page_span()[1] for segment in read_only), default=0)
        contents = bytearray(end)
        for segment in read_only:
            contents[segment.offset:segment.offset + len(segment.data)] = segment.data
        return bytes(contents)

    def problem(self) -> Error | None:
        """Why this image cannot be executed (EINVAL, ENOEXEC), or None."""
        if not self.segments:
            return Error.from_errno(Errno.ENOEXEC, f"{self.name} has no segment to load")
        for segment in self.segments:
            if segment.prot < 0 or segment.prot & ~ALL_PROT:
                return Error.from_errno(Errno.EINVAL, f"segment {segment.name!r}: prot "
                                                      f"{segment.prot:#x} has unknown bits")
            if segment.size <= 0:
                return Error.from_errno(Errno.ENOEXEC, f"segment {segment.name!r} is empty")
            if segment.offset < 0 or not is_page_aligned(segment.offset):
                return Error.from_errno(Errno.EINVAL, f"segment {segment.name!r}: offset "
                                                      f"{segment.offset:#x} is not a "
                                                      f"page-aligned offset")
            if len(segment.data) > segment.size:
                return Error.from_errno(Errno.ENOEXEC, f"segment {segment.name!r}: its data "
                                                       f"sneaks outside it")
        spans = sorted((segment.page_span(), segment.name) for segment in self.segments)
        for ((_, end), first), ((start, _), second) in itertools.pairwise(spans):
            if start < end:
                return Error.from_errno(Errno.ENOEXEC, f"segments {first!r} and {second!r} "
                                                       f"overlap")
        if spans[-1][0][1] > LOAD_RANGE_SIZE:
            return Error.from_errno(Errno.ENOEXEC, f"{self.name} is larger than the load "
                                                   f"range ({LOAD_RANGE_SIZE:#x} bytes)")
        if self.tls_size < 0 or self.entry < 0:
            return Error.from_errno(Errno.EINVAL, "tls_size and entry must not be negative")
        return None


class ProgramFileVMObject(AnonymousVMObject):
    """Stands for the SharedInodeVMObject of a program's file: its pages hold the image's
    read-only segments from the start (no inode faults), and nothing ever writes them."""

    @classmethod
    @fallible
    def try_create_for_image(cls, mm: MemoryManager, image: ProgramImage):
        contents = image.file_contents()
        vmobject = TRY(cls.try_create_with_size(mm, len(contents),
                                                AllocationStrategy.ALLOCATE_NOW))
        for index, page in enumerate(vmobject.physical_pages):
            window = mm.quickmap_page(page.paddr())  # as reading the file into the page cache
            mm.current_cpu().store(window, contents[index * PAGE_SIZE:(index + 1) * PAGE_SIZE])
            mm.unquickmap_page()
        return vmobject


@dataclass
class _KernelProcesses:
    """What the kernel keeps for every process: the signal trampoline, the file VMObjects of
    programs being run (not holding them: the regions do), the next pid."""

    signal_trampoline: Region
    program_files: dict
    next_pid: int = 1


@fallible
def create_signal_trampoline(mm: MemoryManager):
    """ErrorOr[Region]: the kernel region "Signal trampolines" (Process.cpp#L368-L381), made
    once per kernel and never freed; every process maps its VMObject."""
    if mm.process_globals is not None:
        return mm.process_globals.signal_trampoline
    region = TRY(mm.allocate_kernel_region(PAGE_SIZE, "Signal trampolines",
                                           Access.READ | Access.WRITE,
                                           AllocationStrategy.ALLOCATE_NOW))
    mm.current_cpu().store(region.vaddr(), SIGNAL_TRAMPOLINE_PLACEHOLDER)
    region.access = Access.READ  # set_writable(false), then remap
    region.remap()
    mm.process_globals = _KernelProcesses(region, {})
    return region


def maps_signal_trampoline(mm: MemoryManager, region: Region) -> bool:
    """Whether `region` maps the kernel's signal trampoline: the one user region execve marks
    as a syscall region (`set_syscall_region(true)`, execve.cpp#L473)."""
    state = mm.process_globals
    return state is not None and region.vmobject is state.signal_trampoline.vmobject


@fallible
def _program_file_vmobject(mm: MemoryManager, image: ProgramImage):
    """ErrorOr[ProgramFileVMObject] with a reference for the caller: the one every process
    running `image` maps, made if none is alive."""
    files = mm.process_globals.program_files
    vmobject = files.get(image)
    if vmobject is not None and vmobject.ref_count() > 0:
        vmobject.ref()
        return vmobject
    vmobject = TRY(ProgramFileVMObject.try_create_for_image(mm, image))
    files[image] = vmobject
    return vmobject


class Process:
    """A process: a pid, a name, an AddressSpace, and the kinds of page fault resolved for it.
    `labels` maps the names a program uses (its segments, "stack", "tls", "thread-specific",
    "signal trampoline", its named mmaps) to their base addresses."""

    def __init__(self, mm: MemoryManager, image: ProgramImage, space: AddressSpace) -> None:
        state = mm.process_globals
        self.pid = state.next_pid
        state.next_pid += 1
        self.mm = mm
        self.image = image
        self.name = image.name.rsplit("/", 1)[-1]
        self.space: AddressSpace | None = space
        self.faults: Counter = Counter()
        self.labels: dict[str, int] = {}
        self.load_base = 0
        self.entry = 0
        self.stack_pointer = 0

    # exec ----------------------------------------------------------------------------------------

    @classmethod
    @fallible
    def try_exec(cls, mm: MemoryManager, image: ProgramImage, seed: int = 0):
        """ErrorOr[Process]: a new process running `image`, its address space built as
        SerenityOS's execve builds it. On failure nothing is left behind (bar the signal
        trampoline, made once per kernel)."""
        if not isinstance(image, ProgramImage):
            raise TypeError(f"image must be a ProgramImage, not {type(image).__name__}")
        check_int("seed", seed)
        problem = image.problem()
        if problem:
            return problem
        TRY(create_signal_trampoline(mm))
        space = TRY(AddressSpace.try_create(mm, seed=seed))
        process = cls(mm, image, space)
        loaded = process._load(random.Random(seed))
        if loaded.is_error():
            space.destroy()
            mm.process_globals.next_pid -= 1
            return loaded
        return process

    @fallible
    def _load(self, rng: random.Random):
        """Process::load, then what do_exec adds: every region, and the writes that fault."""
        load_offset = page_round_down(LOAD_RANGE_START + rng.getrandbits(64) % LOAD_RANGE_SIZE)
        self.load_base = load_offset
        self.entry = load_offset + self.image.entry
        if any(not segment.is_writable() for segment in self.image.segments):
            program_file = TRY(_program_file_vmobject(self.mm, self.image))
            loaded = self._load_segments(load_offset, program_file)
            program_file.unref()  # the regions hold their own references
            TRY(loaded)
        else:
            TRY(self._load_segments(load_offset, None))
        if self.image.tls_size:
            self._add("tls", TRY(self._allocate(self.image.tls_size,
                                                f"{self.image.name} (master-tls)")))
        stack = TRY(self._allocate(Thread.DEFAULT_USERSPACE_STACK_SIZE, "Stack (Main thread)"))
        stack.stack = True
        self._add("stack", stack)
        trampoline = self.mm.process_globals.signal_trampoline.vmobject
        self._add("signal trampoline", TRY(self.space.allocate_region_with_vmobject(
            PAGE_SIZE, trampoline, 0, name="Signal trampoline", prot=PROT_READ | PROT_EXEC,
            shared=True, randomize=True)))
        self.stack_pointer = TRY(self._push_initial_stack(stack, rng))
        if self.image.tls_size:
            TRY(self._make_thread_specific_region())
        return None

    @fallible
    def _load_segments(self, load_offset: int, program_file: ProgramFileVMObject | None):
        """load_elf_object's PT_LOAD loop: copy writable segments, map the others."""
        for segment in self.image.segments:
            address = load_offset + segment.offset
            if segment.is_writable():
                region = TRY(self.space.allocate_region(
                    segment.size, address=address, name=segment.region_name(self.image.name),
                    prot=segment.mapped_prot()))
                TRY(write_user_memory(self.space, address, segment.data, self.faults))
            else:
                region = TRY(self.space.allocate_region_with_vmobject(
                    segment.size, program_file, segment.offset, address=address,
                    name=segment.region_name(self.image.name), prot=segment.prot, shared=True))
            self._add(segment.name, region)
        return None

    @fallible
    def _allocate(self, size: int, name: str):
        """ErrorOr[Region]: anonymous read-write memory placed at random, as execve's
        `allocate_region(RandomizeVirtualAddress::Yes, {}, size, ...)`."""
        return self.space.allocate_region(size, name=name, prot=PROT_READ | PROT_WRITE,
                                          randomize=True)

    def _add(self, label: str, region: Region) -> None:
        self.labels[label] = int(region.vaddr())

    @fallible
    def _push_initial_stack(self, stack: Region, rng: random.Random):
        """make_userspace_context_for_main_thread (execve.cpp#L71-L162): ErrorOr[int], the new
        stack pointer. The writes are the first touches of the stack: they zero-fault."""
        sp = int(stack.range.end) - round_up_to_power_of_two(rng.randrange(4096), 16)

        @fallible
        def push(data: bytes):
            nonlocal sp
            sp -= round_up_to_power_of_two(len(data), 8)
            TRY(write_user_memory(self.space, sp, data, self.faults))
            return sp

        path = self.image.name.encode() + b"\0"
        argv0 = TRY(push(path))
        TRY(push(path))  # the auxiliary vector's ExecFilename
        TRY(push(rng.randbytes(16)))  # its Random: 16 bytes for the C library
        TRY(push(bytes(16 * AUXILIARY_VECTOR_SIZE)))
        TRY(push(bytes(8)))  # envp's null terminator (no environment)
        TRY(push(bytes(8)))  # argv's null terminator
        TRY(push(argv0.to_bytes(8, "little")))
        return sp - sp % 16

    @fallible
    def _make_thread_specific_region(self):
        """Thread::make_thread_specific_region (Thread.cpp#L1416-L1436): a region for the main
        thread's copy of the TLS image, followed by its ThreadSpecificData (`self`)."""
        tls_size = round_up_to_power_of_two(self.image.tls_size, TLS_ALIGNMENT)
        region = TRY(self._allocate(tls_size + THREAD_SPECIFIC_DATA_SIZE, "Thread-specific"))
        self._add("thread-specific", region)
        data = int(region.vaddr()) + tls_size
        TRY(write_user_memory(self.space, data, data.to_bytes(8, "little"), self.faults))
        image = TRY(read_user_memory(self.space, self.labels["tls"], self.image.tls_size,
                                     self.faults))
        TRY(write_user_memory(self.space, data - tls_size, image, self.faults))
        return None

    # What the program does --------------------------------------------------------------------

    @fallible
    def read(self, vaddr: int, length: int):
        """ErrorOr[bytes] read by the program at `vaddr` (its faults resolved and counted)."""
        TRY(self._check_alive())
        return read_user_memory(self.space, vaddr, length, self.faults)

    @fallible
    def write(self, vaddr: int, data: bytes):
        """ErrorOr[None]: the program writes `data` at `vaddr`."""
        TRY(self._check_alive())
        return write_user_memory(self.space, vaddr, data, self.faults)

    @fallible
    def mmap(self, size: int, prot: int, flags: int = MAP_PRIVATE | MAP_ANONYMOUS,
             address: int | None = None, name: str = "mmap"):
        """ErrorOr[int]: sys$mmap; a mapping's `name` also becomes a label."""
        TRY(self._check_alive())
        base = TRY(sys_mmap(self.space, 0 if address is None else address, size, prot, flags,
                            name=name))
        self.labels[name] = base
        return base

    @fallible
    def munmap(self, address: int, size: int):
        """ErrorOr[int]: sys$munmap, 0 on success."""
        TRY(self._check_alive())
        return sys_munmap(self.space, address, size)

    @fallible
    def mprotect(self, address: int, size: int, prot: int):
        """ErrorOr[int]: sys$mprotect, 0 on success."""
        TRY(self._check_alive())
        return sys_mprotect(self.space, address, size, prot)

    @fallible
    def fork(self, seed: int = 0):
        """ErrorOr[Process]: a child with a copy of this address space (AddressSpace.try_clone:
        private pages shared copy-on-write, shared regions shared). `seed` randomizes the
        child's later placements."""
        TRY(self._check_alive())
        child = Process(self.mm, self.image, TRY(self.space.try_clone(seed=seed)))
        child.labels = dict(self.labels)
        child.load_base, child.entry = self.load_base, self.entry
        child.stack_pointer = self.stack_pointer
        return child

    def exit(self) -> None:
        """Tear the address space down: every page it held goes back (unless still shared)."""
        if self.space is None:
            raise ValueError(f"process {self.pid} ({self.name}) has already exited")
        self.space.destroy()
        self.space = None

    @fallible
    def _check_alive(self):
        if self.space is None:
            return Error.from_errno(Errno.ESRCH, f"process {self.pid} ({self.name}) has exited")
        return None

    # Looking at it -------------------------------------------------------------------------------

    def address_of(self, label: str) -> int:
        """The base address `label` names (a KeyError listing the labels if none)."""
        if label not in self.labels:
            raise KeyError(f"no label {label!r}; labels: {', '.join(self.labels)}")
        return self.labels[label]

    def region_named(self, name: str) -> Region:
        """The region called `name`, or else the one holding the address `name` labels."""
        if self.space is None:
            raise ValueError(f"process {self.pid} ({self.name}) has exited")
        regions = [region for region in self.space.region_tree.regions()
                   if region.name == name]
        if len(regions) == 1:
            return regions[0]
        if name in self.labels:
            region = self.space.find_region_containing(self.labels[name])
            if region is not None:
                return region
        if regions:
            raise ValueError(f"{len(regions)} regions are called {name!r}; use a label: "
                             f"{', '.join(self.labels)}")
        raise KeyError(f"no region or label {name!r}")

    def __repr__(self) -> str:
        state = "exited" if self.space is None else f"{len(self.space.region_tree)} regions"
        return f"Process({self.pid}, {self.name!r}, {state})"

