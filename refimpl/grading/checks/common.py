"""What every lesson's checks share: seeds, running learner code, fresh kernels, ErrorOr
expectations."""

from __future__ import annotations

import hashlib
import random
from typing import Callable

from refimpl.ak import Errno, ErrorOr
from refimpl.grading.exercises import CheckFailed
from refimpl.grading.problems import FORMATS
from refimpl.hw import X86_64, Machine, MiB
from refimpl.kernel import MemoryManager

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


def shown(value, spec: str = "#x") -> str:
    """A value as the question writes it: an int in the question's radix (`spec`: "#x" hex,
    "d" decimal, "#07b" binary), anything else, a wrong type included, as its repr."""
    if isinstance(value, int) and not isinstance(value, bool):
        return format(value, spec)
    return repr(value)


def describe_format(fmt) -> str:
    """A paging format by its geometry, for formats the lessons do not name (ostep, i386...)."""
    return (f"{fmt.name} ({fmt.levels} levels of {'/'.join(map(str, fmt.level_bits))} index "
            f"bits, {fmt.page_size}-byte pages)")


def range_values(value):
    """A range the learner returned, as the plain [base, size] the grader records (None stays
    None): a VirtualRange object itself would record as its type alone."""
    if value is None:
        return None
    return [getattr(value, "base", None), getattr(value, "size", None)]


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


def expect_value(result, case: str):
    if not isinstance(result, ErrorOr):
        raise CheckFailed(f"{case}: return an ErrorOr (mark the function @fallible), not "
                          f"{result!r}")
    if result.is_error():
        raise CheckFailed(f"{case}: expected success, got {result.error()!r}")
    return result.value()


def expect_error(result, errno: Errno, case: str) -> None:
    if not isinstance(result, ErrorOr) or not result.is_error():
        raise CheckFailed(f"{case}: expected the error {errno.name} to be returned, got "
                          f"{result!r}")
    if result.error().code() != errno:
        raise CheckFailed(f"{case}: expected {errno.name}, got {result.error()!r}")


def snapshot_values(snapshot) -> list:
    """A KernelSnapshot as a check records it: its counts and a digest of its pages, page
    tables and regions. A failed call must leave the kernel as it found it; recording that
    state (which only running the kernel gives) rather than the list of differences (empty
    when all is well, so a forger's guess) keeps the record worth something."""
    regions = tuple(tuple(state[:5] + state[6:] for state in space)
                    for space in snapshot.regions)  # without id(vmobject)
    state = (snapshot.live_pages, snapshot.directories, snapshot.mappings, regions,
             snapshot.kernel_regions)
    return [snapshot.free_pages, snapshot.kmalloc_allocated, snapshot.kmalloc_size,
            hashlib.sha256(repr(state).encode()).hexdigest()[:20]]
