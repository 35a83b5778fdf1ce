"""The checks of every exercise: the learner's code against the reference, on seeded cases.

Each check runs the visible cases (seeds 0, 1, ...) or, for the autograder, hidden ones (seeds
from 1000 on, which no notebook shows), and stops at the first case where the learner's answer
differs from the reference, saying where: which index, which flag bit, which reference count,
which region boundary. An exception from the learner's code is reported as a wrong answer on
that case, except NotImplementedError, which means "not attempted" and propagates.
"""

from __future__ import annotations

import random
from typing import Callable

from refimpl.ak import MUST, Errno, Error, ErrorOr
from refimpl.grading.exercises import CheckFailed, exercise
from refimpl.grading.problems import (FORMATS, random_address, random_entry, random_free_ranges,
                                      random_tiny_machine)
from refimpl.history.kresult import KResult
from refimpl.history.page_table_map import MemoryManagerWithPageTableMap, prepare_reentrancy
from refimpl.hw import X86_64, Access, Machine, MiB, PageFault, PTEFlags, level_name
from refimpl.kernel import (AP_BOOT_TRAMPOLINE, AddressSpace, AllocationKind, MemoryManager,
                            PageDirectory, PagePurpose, Region, VirtualRange,
                            VirtualRangeAllocator, create_identity_mapped_region)
from refimpl.kernel.address import PAGE_SIZE
from refimpl.kernel.invariants import (KernelSnapshot, page_table_refcount_violations,
                                       physical_page_violations)

VISIBLE_CASES, HIDDEN_CASES, HIDDEN_SEED = 12, 40, 1000


def seeds(hidden: bool, visible: int = VISIBLE_CASES, hidden_count: int = HIDDEN_CASES):
    return range(HIDDEN_SEED, HIDDEN_SEED + hidden_count) if hidden else range(visible)


def call(function: Callable, *args, case: str):
    """Run learner code; its exceptions become feedback naming the case."""
    try:
        return function(*args)
    except (NotImplementedError, CheckFailed):
        raise
    except Exception as error:  # noqa: BLE001 - any learner exception is feedback
        raise CheckFailed(f"{case}: your code raised {type(error).__name__}: {error}") from None


def passed(count: int, what: str) -> str:
    return f"passed: {count} {what}"


def format_cases(hidden: bool):
    """(random generator, format) for every seed and every paging format of the exercises."""
    for seed in seeds(hidden):
        rng = random.Random(seed)
        for fmt in FORMATS:
            yield rng, fmt


def fresh_kernel(cpus: int = 1) -> MemoryManager:
    return MemoryManager(Machine(X86_64, ram_size=16 * MiB, cpu_count=cpus))


# Lesson 00: the machine ------------------------------------------------------------------------

@exercise("00-split-address", "Split a virtual address into indices and offset", 2,
          "split_address")
def check_split_address(split_address, hidden=False):
    cases = 0
    for rng, fmt in format_cases(hidden):
        address = random_address(fmt, rng)
        case = f"{address:#x} in {fmt.name}"
        indices, offset = call(split_address, fmt, address, case=case)
        for level, wanted in enumerate(fmt.indices(address)):
            if level >= len(indices) or indices[level] != wanted:
                got = indices[level] if level < len(indices) else "nothing"
                raise CheckFailed(f"{case}: the {level_name(fmt, level)} index (level "
                                  f"{level}) is {wanted:#x}, you gave {got}")
        if len(indices) != fmt.levels:
            raise CheckFailed(f"{case}: {fmt.name} has {fmt.levels} levels, you gave "
                              f"{len(indices)} indices")
        if offset != fmt.page_offset(address):
            raise CheckFailed(f"{case}: the page offset is {fmt.page_offset(address):#x}, "
                              f"you gave {offset:#x}")
        cases += 1
    return passed(cases, "addresses in 5 formats")


@exercise("00-decode-entry", "Decode a page-table entry", 2, "decode_entry")
def check_decode_entry(decode_entry, hidden=False):
    cases = 0
    for rng, fmt in format_cases(hidden):
        entry = random_entry(fmt, rng)
        case = f"entry {entry:#x} in {fmt.name}"
        present, frame, flags = call(decode_entry, fmt, entry, case=case)
        wanted_flags = fmt.decode_flags(entry)
        if bool(present) != bool(wanted_flags & PTEFlags.PRESENT):
            raise CheckFailed(f"{case}: present is bit {fmt.present_bit}, which is "
                              f"{entry >> fmt.present_bit & 1}; you said {present}")
        if frame != fmt.decode_frame(entry):
            raise CheckFailed(f"{case}: the frame is {fmt.decode_frame(entry):#x} (bits "
                              f"{fmt.frame_shift}..{fmt.frame_shift + fmt.frame_bits - 1}),"
                              f" you gave {frame:#x}")
        for flag in PTEFlags:
            if flag is not PTEFlags.PRESENT and fmt.has(flag) and \
                    bool(flag & flags) != bool(flag & wanted_flags):
                state = "set" if flag & wanted_flags else "clear"
                raise CheckFailed(f"{case}: {flag.name} (bit {fmt.flag_bits[flag]}) is "
                                  f"{state}, you said otherwise")
        cases += 1
    return passed(cases, "entries in 5 formats")


@exercise("00-walk", "Walk the page tables by hand", 3, "walk")
def check_walk(walk, hidden=False):
    cases = 0
    for seed in seeds(hidden):
        problem = random_tiny_machine(seed)
        for address, wanted in problem.answer().items():
            case = f"machine random_tiny_machine({seed}), address {address:#05x}"
            got = call(walk, problem.machine.memory, problem.cr3, address, case=case)
            if got != wanted:
                expected = "a fault (None)" if wanted is None else f"{wanted:#x}"
                shown = "None" if got is None else f"{got:#x}"
                raise CheckFailed(f"{case}: expected {expected}, got {shown}")
            cases += 1
    return passed(cases, "translations on random tiny machines")


@exercise("00-error-code", "Build a page-fault error code", 1, "page_fault_error_code")
def check_error_code(page_fault_error_code, hidden=False):
    bits = (("present", 1), ("write", 2), ("user", 4), ("fetch", 16))
    for combination in range(16):
        flags = {name: bool(combination >> i & 1) for i, (name, _) in enumerate(bits)}
        wanted = sum(value for i, (_, value) in enumerate(bits) if combination >> i & 1)
        got = call(page_fault_error_code, *flags.values(), case=str(flags))
        if got != wanted:
            raise CheckFailed(f"{flags}: the error code is {wanted:#07b}, you gave {got:#07b}")
    return passed(16, "combinations")


# Lesson 01: ranges ------------------------------------------------------------------------------

def _random_carve(rng: random.Random) -> tuple[VirtualRange, VirtualRange]:
    pages = rng.randrange(1, 12)
    whole = VirtualRange(0x40_0000 + rng.randrange(64) * PAGE_SIZE, pages * PAGE_SIZE)
    first = rng.randrange(pages)
    count = rng.randrange(1, pages - first + 1)
    return whole, VirtualRange(whole.base + first * PAGE_SIZE, count * PAGE_SIZE)


@exercise("01-carve", "Carve a range out of another", 2, "carve")
def check_carve(carve, hidden=False):
    for seed in seeds(hidden, visible=30, hidden_count=200):
        whole, taken = _random_carve(random.Random(seed))
        case = f"carve({whole}, {taken})"
        got = [VirtualRange(r.base, r.size) for r in call(carve, whole, taken, case=case)]
        wanted = whole.carve(taken)
        if got != wanted:
            raise CheckFailed(f"{case}: expected [{', '.join(map(str, wanted))}], "
                              f"got [{', '.join(map(str, got))}]")
    return passed(len(seeds(hidden, 30, 200)), "carves")


RENAME_TEXTS = (
    "Range RangeAllocator UsedMemoryRange PhysicalMemoryRangeType",
    "auto range = Range(base, size); // a Range of virtual memory",
    "RangeAllocator::allocate(Range const&) returns Optional<Range>",
    "ContiguousPhysicalRange(Range) and ShouldDeallocateVirtualMemoryRange::Yes",
)


@exercise("01-rename", "Rename whole identifiers only", 2, "rename_whole_identifiers")
def check_rename(rename_whole_identifiers, hidden=False):
    from refimpl.history.range_allocator import RENAMES
    from refimpl.history.range_allocator import rename_whole_identifiers as reference
    texts = list(RENAME_TEXTS)
    words = ["Range", "RangeAllocator", "Ranges", "XRange", "Range_", "range", "Range2",
             "(Range)", "Range::", "RangeAllocator*"]
    for seed in seeds(hidden, visible=6, hidden_count=30):
        rng = random.Random(seed)
        texts.append(" ".join(rng.choice(words) for _ in range(8)))
    for text in texts:
        got = call(rename_whole_identifiers, text, dict(RENAMES), case=repr(text))
        wanted = reference(text, RENAMES)
        if got != wanted:
            for got_word, wanted_word in zip(got.split(), wanted.split()):
                if got_word != wanted_word:
                    raise CheckFailed(f"in {text!r}: expected {wanted_word!r}, got {got_word!r}")
            raise CheckFailed(f"in {text!r}: expected {wanted!r}, got {got!r}")
    return passed(len(texts), "texts")


def first_fit_with_guard_pages(free_ranges: list[VirtualRange], size: int,
                               alignment: int) -> VirtualRange | None:
    """The reference: what a real VirtualRangeAllocator holding exactly these free ranges
    returns for try_allocate_anywhere(size, alignment), or None for ENOMEM."""
    allocator = VirtualRangeAllocator(fresh_kernel())
    first, last = free_ranges[0], free_ranges[-1]
    MUST(allocator.initialize_with_range(first.base, last.end - first.base))
    for before, after in zip(free_ranges, free_ranges[1:]):
        MUST(allocator.try_allocate_specific(before.end, after.base - before.end))
    result = allocator.try_allocate_anywhere(size, alignment)
    return None if result.is_error() else result.value()


@exercise("01-first-fit", "Choose a range the way VirtualRangeAllocator did", 3,
          "allocate_anywhere")
def check_first_fit(allocate_anywhere, hidden=False):
    for seed in seeds(hidden, visible=20, hidden_count=80):
        free, size, alignment = random_free_ranges(seed)
        case = (f"free [{', '.join(map(str, free))}], {size:#x} bytes aligned to "
                f"{alignment:#x}")
        got = call(allocate_anywhere, list(free), size, alignment, case=case)
        wanted = first_fit_with_guard_pages(free, size, alignment)
        if got != wanted:
            raise CheckFailed(f"{case}: expected {wanted}, got {got}")
    return passed(len(seeds(hidden, 20, 80)), "requests")


# Lesson 02: errors ------------------------------------------------------------------------------

ERRNOS = [Errno.EPERM, Errno.ENOENT, Errno.ENOMEM, Errno.EFAULT, Errno.EEXIST, Errno.EINVAL,
          Errno.EOVERFLOW, Errno.EBUSY]


@exercise("02-kresult-to-error", "Turn a KResult into an Error", 1, "error_from_kresult")
def check_kresult_to_error(error_from_kresult, hidden=False):
    for errno in ERRNOS:
        got = call(error_from_kresult, KResult(errno), case=f"KResult({errno.name})")
        if not isinstance(got, Error) or got != Error.from_errno(errno):
            raise CheckFailed(f"KResult({errno.name}) holds {-errno}: expected "
                              f"Error.from_errno({errno.name}), got {got!r}")
    return passed(len(ERRNOS), "errnos")


@exercise("02-try", "Propagate errors with TRY", 3, "allocate_read_only")
def check_try(allocate_read_only, hidden=False):
    space = MUST(AddressSpace.try_create(fresh_kernel()))
    region = _expect_value(call(allocate_read_only, space, 3 * PAGE_SIZE,
                                case="allocate_read_only(space, 3 pages)"), "3 pages")
    if region.access != Region.Access.READ or region.size() != 3 * PAGE_SIZE:
        raise CheckFailed(f"expected a 3-page read-only region, got {region!r}")
    zero = call(allocate_read_only, space, 0, case="allocate_read_only(space, 0)")
    _expect_error(zero, Errno.EINVAL, "size 0")
    failures = range(1, 4) if not hidden else range(1, 6)
    for n in failures:
        kernel = fresh_kernel()
        space = MUST(AddressSpace.try_create(kernel))
        before = KernelSnapshot.take(kernel, (space,))
        kernel.allocations.fail_nth(AllocationKind.KMALLOC, n)
        result = call(allocate_read_only, space, PAGE_SIZE, case=f"kmalloc #{n} failing")
        if kernel.allocations.is_armed(AllocationKind.KMALLOC):
            break
        _expect_error(result, Errno.ENOMEM, f"kmalloc #{n} failing")
        if KernelSnapshot.take(kernel, (space,)).differences(before):
            raise CheckFailed(f"kmalloc #{n} failing: the address space changed although the "
                              f"call failed")
    return passed(2 + len(failures), "calls, failing ones included")


def _expect_value(result, case: str):
    if not isinstance(result, ErrorOr):
        raise CheckFailed(f"{case}: return an ErrorOr (mark the function @fallible), not "
                          f"{result!r}")
    if result.is_error():
        raise CheckFailed(f"{case}: expected success, got {result.error()!r}")
    return result.value()


def _expect_error(result, errno: Errno, case: str) -> None:
    if not isinstance(result, ErrorOr) or not result.is_error():
        raise CheckFailed(f"{case}: expected the error {errno.name} to be returned, got "
                          f"{result!r}")
    if result.error().code() != errno:
        raise CheckFailed(f"{case}: expected {errno.name}, got {result.error()!r}")


@exercise("02-return-value", "Hand a result to user space", 1, "syscall_return_value")
def check_return_value(syscall_return_value, hidden=False):
    cases = [ErrorOr(0), ErrorOr(0x2000_0000)] + [ErrorOr.from_error(Error.from_errno(e))
                                                  for e in ERRNOS]
    for result in cases:
        wanted = -result.error().code() if result.is_error() else result.value()
        got = call(syscall_return_value, result, case=repr(result))
        if got != wanted:
            raise CheckFailed(f"{result!r}: user space must see {wanted}, you return {got}")
    return passed(len(cases), "results")


# Lesson 03: page tables -------------------------------------------------------------------------

def _addresses(rng: random.Random, count: int) -> list[int]:
    """User addresses spread over a few page tables, some sharing one."""
    tables = [0x40_0000 + rng.randrange(64) * 0x20_0000 for _ in range(3)]
    return [rng.choice(tables) + rng.randrange(512) * PAGE_SIZE for _ in range(count)]


@exercise("03-ensure-pte", "Write ensure_pte: the PDE owns the page table", 4, "ensure_pte")
def check_ensure_pte(ensure_pte, hidden=False):
    for seed in seeds(hidden, visible=3, hidden_count=8):
        rng = random.Random(seed)
        mm = fresh_kernel()
        directory = MUST(PageDirectory.try_create_for_userspace(mm))
        for address in _addresses(rng, 6):
            case = f"ensure_pte(directory, {address:#x}) (seed {seed})"
            with mm.allocations.record() as log:
                result = call(ensure_pte, mm, directory, address, case=case)
            pte = _expect_value(result, case)
            wanted = mm.pte(directory, address)
            if wanted is None or pte.address != wanted.address:
                raise CheckFailed(f"{case}: the PTE pointer should be {wanted.address!r} (entry "
                                  f"{mm.layout.pt_index(address)} of the PT window), got "
                                  f"{getattr(pte, 'address', pte)!r}")
            heap = [r for r in log if r.kind is AllocationKind.KMALLOC]
            if heap:
                raise CheckFailed(f"{case}: ensure_pte must not kmalloc; it did from "
                                  f"{' > '.join(heap[0].call_chain[-3:])}")
            _check_refcounts(mm, case)
        _check_ensure_pte_failure(ensure_pte, seed)
    return passed(len(seeds(hidden, 3, 8)) * 6, "calls on fresh kernels, and out of memory")


def _check_refcounts(mm: MemoryManager, case: str) -> None:
    problems = page_table_refcount_violations(mm)
    if problems:
        raise CheckFailed(f"{case}: {problems[0]}")


def _check_ensure_pte_failure(ensure_pte, seed: int) -> None:
    mm = fresh_kernel()
    directory = MUST(PageDirectory.try_create_for_userspace(mm))
    before = KernelSnapshot.take(mm)
    mm.allocations.fail_nth(AllocationKind.PHYSICAL_PAGE, 1)
    case = "ensure_pte with no free physical page"
    result = call(ensure_pte, mm, directory, 0x80_0000 + seed * PAGE_SIZE, case=case)
    _expect_error(result, Errno.ENOMEM, case)
    differences = KernelSnapshot.take(mm).differences(before)
    if differences:
        raise CheckFailed(f"{case}: the call failed but changed {', '.join(differences)}")


@exercise("03-release-pte", "Write release_pte: unref, then clear the PDE", 3, "release_pte")
def check_release_pte(release_pte, hidden=False):
    for seed in seeds(hidden, visible=3, hidden_count=8):
        rng = random.Random(seed)
        mm = fresh_kernel()
        directory = MUST(PageDirectory.try_create_for_userspace(mm))
        free = mm.free_physical_pages()
        addresses = sorted(set(_addresses(rng, 8)))
        pages = {}
        for address in addresses:
            page = MUST(mm.allocate_physical_page(purpose=PagePurpose.USER))
            pte = MUST(mm.ensure_pte(directory, address))
            pte.set_raw(mm.format.encode(page.paddr() // PAGE_SIZE,
                                         PTEFlags.PRESENT | PTEFlags.USER_SUPERVISOR))
            pages[address] = page
        rng.shuffle(addresses)
        for address in addresses:
            case = f"release_pte(directory, {address:#x}, is_last_pte=True) (seed {seed})"
            call(release_pte, mm, directory, address, True, case=case)
            pte = mm.pte(directory, address)
            if pte is not None and pte.raw():
                raise CheckFailed(f"{case}: the PTE is still {pte.describe()}")
            _check_refcounts(mm, case)
            pages.pop(address).unref()
        left = directory.page_table_addresses()
        if left:
            raise CheckFailed(f"seed {seed}: every PTE was released with is_last_pte=True, but "
                              f"{len(left)} page table(s) are still mapped")
        if mm.free_physical_pages() != free:
            raise CheckFailed(f"seed {seed}: {free - mm.free_physical_pages()} page(s) were not "
                              f"given back")
    return passed(len(seeds(hidden, 3, 8)) * 8, "releases, every page table given back")


FIND_WATCH = ["Region.map", "MemoryManagerWithPageTableMap.ensure_pte",
              "MemoryManager.quickmap_pd", "MemoryManager.quickmap_pt",
              "MemoryManager.allocate_physical_page", "HashMap.set", "HashMap._grow",
              "KmallocHeap.kmalloc", "KmallocHeap.try_expand"]


def reentrancy_events(seed: int):
    """A recorded call chain of the lesson 03 bug; the seed picks which functions are shown."""
    from refimpl.viz.call_chain import quickmap_pd_probe, record_call_chain
    rng = random.Random(seed)
    watched = FIND_WATCH[:2] + rng.sample(FIND_WATCH[2:], rng.randrange(2, len(FIND_WATCH) - 1))
    if "MemoryManager.quickmap_pd" not in watched:
        watched.append("MemoryManager.quickmap_pd")
    mm, space, region = prepare_reentrancy(MemoryManagerWithPageTableMap)
    _, events = record_call_chain(lambda: region.map(space.page_directory), watched,
                                  quickmap_pd_probe(mm))
    return events


def window_moves_at(events) -> int:
    """The reference: the first event, after the outermost ensure_pte's own quickmap_pd has
    returned, at which the PD window shows something else."""
    outer = next(i for i, e in enumerate(events) if e.function.endswith("ensure_pte"))
    pointed = next(i for i in range(outer + 1, len(events))
                   if events[i].kind == "return" and events[i].function.endswith("quickmap_pd"))
    return next(i for i in range(pointed + 1, len(events))
                if events[i].probe != events[pointed].probe)


@exercise("03-find-reentrancy", "Find where the quickmap window moved", 2, "find_reentrancy")
def check_find_reentrancy(find_reentrancy, hidden=False):
    for seed in seeds(hidden, visible=2, hidden_count=4):
        events = reentrancy_events(seed)
        wanted = window_moves_at(events)
        got = call(find_reentrancy, events, case=f"reentrancy_events({seed})")
        if got != wanted:
            event = events[wanted]
            raise CheckFailed(f"reentrancy_events({seed}): the window moves at step {wanted} "
                              f"({event.kind} {event.function}: {event.probe}), you said {got}")
    return passed(len(seeds(hidden, 2, 4)), "recorded chains")


# Lesson 04: bringing up other CPUs --------------------------------------------------------------

@exercise("04-identity-map", "Identity-map the AP trampoline", 3, "identity_map")
def check_identity_map(identity_map, hidden=False):
    for paddr in (AP_BOOT_TRAMPOLINE, 0x9000) if not hidden else (0x8000, 0xA000, 0x7000):
        mm = fresh_kernel()
        case = f"identity_map(mm, {paddr:#x}, 4096)"
        region = _expect_value(call(identity_map, mm, paddr, PAGE_SIZE, case=case), case)
        mmu = mm.machine.bsp.mmu
        try:
            got = mmu.translate(paddr + 0x40, Access.EXECUTE)
        except PageFault as fault:
            raise CheckFailed(f"{case}: fetching {paddr + 0x40:#x} faults: {fault}") from None
        if got != paddr + 0x40:
            raise CheckFailed(f"{case}: {paddr + 0x40:#x} translates to {got:#x}, not itself")
        try:
            mmu.translate(paddr, Access.USER)
            raise CheckFailed(f"{case}: user mode can read the trampoline; it must be "
                              f"supervisor-only")
        except PageFault:
            pass
        if not isinstance(region, Region) or region.range != VirtualRange(paddr, PAGE_SIZE):
            raise CheckFailed(f"{case}: return the Region covering [{paddr:#x}, +0x1000), got "
                              f"{region!r}")
    return passed(2 if not hidden else 3, "trampoline pages")


def _warm_up_aps(cpu_count: int) -> tuple[MemoryManager, Region]:
    """APs booted, with the identity mapping still in every CPU's TLB."""
    mm = fresh_kernel(cpus=cpu_count)
    region = MUST(create_identity_mapped_region(mm, AP_BOOT_TRAMPOLINE, PAGE_SIZE))
    for cpu in mm.machine.cpus:
        cpu.enable_paging(mm.kernel_page_directory().cr3())
        cpu.mmu.translate(AP_BOOT_TRAMPOLINE, Access.EXECUTE)
    return mm, region


@exercise("04-unmap-everywhere", "Remove the identity mapping from every CPU", 2,
          "remove_identity_mapping")
def check_unmap_everywhere(remove_identity_mapping, hidden=False):
    for cpu_count in (2, 4) if not hidden else (3, 5, 8):
        mm, region = _warm_up_aps(cpu_count)
        free = mm.free_physical_pages()
        case = f"remove_identity_mapping on {cpu_count} CPUs"
        call(remove_identity_mapping, mm, region, case=case)
        for cpu in mm.machine.cpus:
            try:
                cpu.mmu.translate(AP_BOOT_TRAMPOLINE, Access.EXECUTE)
            except PageFault:
                continue
            stale = AP_BOOT_TRAMPOLINE >> 12 in cpu.mmu.tlb
            raise CheckFailed(f"{case}: CPU {cpu.id} still translates 0x8000"
                              + (" through a stale TLB entry: flush every CPU, not only the "
                                 "current one" if stale else ""))
        if mm.free_physical_pages() != free + 1:
            raise CheckFailed(f"{case}: the page table for 0x8000 was not given back (free "
                              f"pages {mm.free_physical_pages()}, expected {free + 1})")
        problems = page_table_refcount_violations(mm) + physical_page_violations(mm)
        if problems:
            raise CheckFailed(f"{case}: {problems[0]}")
    return passed(2 if not hidden else 3, "machines")


@exercise("04-boot-aps", "Boot the APs and clean up", 3, "boot_all_aps")
def check_boot_aps(boot_all_aps, hidden=False):
    for cpu_count in (2, 4) if not hidden else (3, 6):
        mm = fresh_kernel(cpus=cpu_count)
        before = KernelSnapshot.take(mm)
        case = f"boot_all_aps on {cpu_count} CPUs"
        _expect_value(call(boot_all_aps, mm, case=case), case)
        offline = [cpu.id for cpu in mm.machine.cpus if not cpu.online]
        if offline:
            raise CheckFailed(f"{case}: CPU(s) {offline} did not come online")
        for cpu in mm.machine.cpus:
            try:
                cpu.mmu.translate(AP_BOOT_TRAMPOLINE, Access.EXECUTE)
                raise CheckFailed(f"{case}: 0x8000 still translates on CPU {cpu.id}")
            except PageFault:
                pass
        differences = KernelSnapshot.take(mm).differences(before)
        if differences:
            raise CheckFailed(f"{case}: booting left {', '.join(differences)} changed")
    mm = fresh_kernel(cpus=2)
    mm.allocations.fail_nth(AllocationKind.KMALLOC, 1)
    result = call(boot_all_aps, mm, case="boot_all_aps with kmalloc failing")
    _expect_error(result, Errno.ENOMEM, "boot_all_aps with kmalloc failing")
    if any(cpu.online for cpu in mm.machine.aps):
        raise CheckFailed("boot_all_aps with kmalloc failing: an AP came online anyway")
    return passed(3, "boots, one of them out of memory")
