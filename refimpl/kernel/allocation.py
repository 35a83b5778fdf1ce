"""Making allocation observable: counters, a recorder, and fault injection.

Every call of kmalloc() and of the physical page allocator reports here first (rule 3 of the
design). That gives three tools:

- `counters.calls[kind]`: how many allocations of each kind have been attempted;
- `with counters.record() as log:` lists every allocation made inside the block, with the chain
  of kernel functions that led to it ("who allocated during this call");
- `counters.fail_nth(kind, n)`: the n-th allocation of that kind from now fails with ENOMEM,
  once. Sweeping n = 1, 2, ... over an operation exercises every one of its failure paths.
"""

from __future__ import annotations

import enum
import sys
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator


class AllocationKind(enum.Enum):
    KMALLOC = "kmalloc"
    PHYSICAL_PAGE = "physical page"


@dataclass(frozen=True)
class AllocationRecord:
    kind: AllocationKind
    size: int
    call_chain: tuple[str, ...]
    """Kernel functions from the outermost to the allocator itself."""
    injected_failure: bool


def _kernel_call_chain() -> tuple[str, ...]:
    names = []
    frame = sys._getframe(2)
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module.startswith("refimpl.") and not module.startswith("refimpl.ak"):
            code = frame.f_code
            names.append(getattr(code, "co_qualname", code.co_name))
        frame = frame.f_back
    return tuple(reversed(names))


class AllocationCounters:
    def __init__(self) -> None:
        self.calls: Counter[AllocationKind] = Counter()
        self.injected_failures: Counter[AllocationKind] = Counter()
        self._countdowns: dict[AllocationKind, int] = {}
        self._logs: list[list[AllocationRecord]] = []

    def fail_nth(self, kind: AllocationKind, n: int) -> None:
        """Make the n-th allocation of `kind` from now on fail (n = 1 is the very next one)."""
        if n < 1:
            raise ValueError(f"fail_nth counts from 1, got {n}")
        self._countdowns[kind] = n

    def is_armed(self, kind: AllocationKind) -> bool:
        """True while an injected failure of `kind` is still waiting to happen."""
        return kind in self._countdowns

    def disarm(self) -> None:
        self._countdowns.clear()

    def note(self, kind: AllocationKind, size: int) -> bool:
        """Count one allocation attempt; True means "fail this one" (injected)."""
        self.calls[kind] += 1
        countdown = self._countdowns.get(kind)
        fail = countdown == 1
        if fail:
            del self._countdowns[kind]
            self.injected_failures[kind] += 1
        elif countdown is not None:
            self._countdowns[kind] = countdown - 1
        if self._logs:
            record = AllocationRecord(kind, size, _kernel_call_chain(), fail)
            for log in self._logs:
                log.append(record)
        return fail

    @contextmanager
    def record(self) -> Iterator[list[AllocationRecord]]:
        """Collect the allocations made inside the `with` block."""
        log: list[AllocationRecord] = []
        self._logs.append(log)
        try:
            yield log
        finally:
            self._logs.remove(log)
