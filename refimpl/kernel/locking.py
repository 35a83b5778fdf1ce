"""Spinlock, RecursiveSpinlock and SpinlockProtected (Kernel/Locking), for a simulated kernel.

Who owns a lock: in SerenityOS a spinlock is owned by a CPU, and the CPU keeps interrupts off
while it holds one, so the holder is never preempted on its own CPU; other CPUs still run at the
same time. Here the owner is the *current execution context*: the simulated thread that the
deterministic scheduler (`refimpl.kernel.scheduler`) is running, or `MAIN` outside any scheduler.
A simulated thread that yields while holding a lock therefore stands for another CPU running in
between, not for a context switch on this one.

Waiting: nothing runs concurrently in a simulation, so a plain `lock()` of a lock that another
context holds would spin forever; it panics instead, naming the holder. A simulated thread
waits with `yield from lock.acquire()`: it yields a `WaitingFor(lock)` marker, and the scheduler
does not resume it until the lock is free.

Departures from SerenityOS: no LockRank, no interrupt state; `try_lock` exists on both lock
kinds; a self-deadlock (locking a non-recursive lock you hold) panics instead of hanging.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Generator, Generic, Iterator, TypeVar

from refimpl.ak import KernelPanic

T = TypeVar("T")
R = TypeVar("R")
Y = TypeVar("Y")


class ExecutionContext:
    """Who is running kernel code right now; the owner of the locks it takes."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


MAIN = ExecutionContext("main")
"""The single context of plain code, when no simulated thread is running."""

_current: ExecutionContext = MAIN


def current_context() -> ExecutionContext:
    return _current


@contextmanager
def running_as(context: ExecutionContext) -> Iterator[None]:
    """Make `context` the current one for the body (the scheduler does this for each step)."""
    global _current
    saved, _current = _current, context
    try:
        yield
    finally:
        _current = saved


@dataclass(frozen=True)
class WaitingFor:
    """Yielded by a simulated thread that cannot take `lock`: it is blocked until the lock is
    free, and retries when resumed."""

    lock: Spinlock

    def __str__(self) -> str:
        return f"waiting for {self.lock.name}"


class Spinlock:
    """A non-recursive lock: its holder locking it again is a self-deadlock (a panic here)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._holder: ExecutionContext | None = None
        self._depth = 0

    def holder(self) -> ExecutionContext | None:
        return self._holder

    @property
    def depth(self) -> int:
        """How many unlock() calls it takes to free the lock (0 when free)."""
        return self._depth

    def is_locked(self) -> bool:
        return self._holder is not None

    def is_locked_by_current_context(self) -> bool:
        return self._holder is current_context()

    def try_lock(self) -> bool:
        """Take the lock if it is free, in one atomic test-and-set; never waits."""
        if self._holder is not None:
            return False
        self._holder, self._depth = current_context(), 1
        return True

    def lock(self) -> None:
        """Take the lock, or panic: in plain code there is nobody who could release it."""
        if self.try_lock():
            return
        me = current_context()
        if self._holder is me:
            raise KernelPanic(f"self-deadlock: {me.name} locks {self}, which it already holds")
        raise KernelPanic(
            f"{me.name} would spin forever on {self}: plain code cannot wait for "
            f"{self._holder.name} to release it (a simulated thread uses "
            f"`yield from lock.acquire()`)")

    def unlock(self) -> None:
        me = current_context()
        if self._holder is not me:
            raise KernelPanic(f"{me.name} unlocks {self}, which it does not hold")
        self._depth -= 1
        if self._depth == 0:
            self._holder = None

    def acquire(self) -> Generator[WaitingFor, None, None]:
        """Take the lock from a simulated thread: `yield from lock.acquire()`.

        While another context holds it, yield `WaitingFor(self)` (the scheduler keeps this
        thread off the CPU until the lock is free), then take it."""
        while self.is_locked() and not self.is_locked_by_current_context():
            yield WaitingFor(self)
        self.lock()

    def __enter__(self) -> Spinlock:
        self.lock()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.unlock()

    def __repr__(self) -> str:
        state = "free" if self._holder is None else f"held by {self._holder.name}"
        return f"{type(self).__name__}({self.name!r}, {state})"


class RecursiveSpinlock(Spinlock):
    """A lock its holder may take again: each lock() adds one to the depth, each unlock()
    removes one, and the lock is free at depth 0. Kernel code that holds a lock and calls a
    function which takes the same lock needs one (RegionTree's lock after f0f97e1db02)."""

    def try_lock(self) -> bool:
        if self.is_locked_by_current_context():
            self._depth += 1
            return True
        return super().try_lock()


class SpinlockProtected(Generic[T]):
    """A value that can only be reached with its lock held (SerenityOS, August 2022).

    A lock beside the data it guards depends on every caller remembering to take it, and one
    forgotten call site is a data race (the flaky CI behind f0f97e1db02). Here the value lives
    in a private attribute and the only way to it is `with_locked(callback)` (SerenityOS's
    `with`, a keyword in Python), so the forgotten site cannot be written.

    What Python cannot prevent, and C++ cannot either: a callback that returns or stores the
    value (or something inside it) smuggles a reference out, and using it after the lock is
    released is the old race again (cf16b2c8e64 warns about pointers into an address space).
    Name mangling only hides the attribute from honest code; it is not a security boundary.
    """

    def __init__(self, value: T, name: str = "SpinlockProtected") -> None:
        self.__value = value
        self.__lock = RecursiveSpinlock(name)

    def is_locked(self) -> bool:
        return self.__lock.is_locked()

    def with_locked(self, callback: Callable[[T], R]) -> R:
        """Call `callback(value)` with the lock held, released even if the callback raises."""
        with self.__lock:
            return callback(self.__value)

    def with_locked_steps(
            self, steps: Callable[[T], Generator[Y, None, R]]
    ) -> Generator[Y | WaitingFor, None, R]:
        """The same for a simulated thread: `yield from protected.with_locked_steps(steps)`.

        Waits for the lock as `acquire()` does, then runs the generator `steps(value)` with the
        lock held across its yields (where the thread may be preempted)."""
        yield from self.__lock.acquire()
        try:
            return (yield from steps(self.__value))
        finally:
            self.__lock.unlock()
