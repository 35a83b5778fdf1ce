"""A deterministic scheduler for simulated kernel threads, and a search over all interleavings.

A simulated thread is a generator: every `yield` is a preemption point, where another thread (in
the real kernel: another CPU) may run. A thread yields a label string (or None) that the trace
shows, or a `WaitingFor(lock)` marker when it cannot take a lock; it is then blocked, and never
chosen, until the lock is free.

A *step* resumes one thread until its next yield or its end. A *schedule* names the thread of
each step, one letter per step: the threads are 'A', 'B', 'C'... in the order they were given, so
"AABAB" runs A twice, then B, A, B. When the schedule string runs out, the first runnable thread
(in letter order) runs, until every thread has finished or all that remain are blocked (a
deadlock, reported, never a hang). A run returns the full schedule it took, which replays it
exactly. A KernelPanic in a thread ends the run and is recorded: an interleaving that crashes the
kernel is a finding. Any other exception is a bug in the simulation and propagates.

`explore()` runs a program under every schedule, by depth-first search over the choice points:
each run starts from fresh state, follows a prefix of a previous run, then takes the next
runnable thread in letter order at the deepest point that has one left. Nothing here uses real
threads, randomness or time.
"""

from __future__ import annotations

import inspect
import string
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Generator, Iterator, NamedTuple, Sequence, Union

from refimpl.ak import KernelPanic
from refimpl.kernel.locking import ExecutionContext, WaitingFor, running_as

if TYPE_CHECKING:
    from refimpl.hw import Machine

ThreadBody = Generator[Union[str, WaitingFor, None], None, None]
LETTERS = string.ascii_uppercase


class SimThread(ExecutionContext):
    """A simulated kernel thread: `function(*args)` must be a generator function. With a
    `cpu` index, the scheduler runs it on that CPU of its machine."""

    def __init__(self, name: str, function: Callable[..., ThreadBody], *args: Any,
                 cpu: int | None = None) -> None:
        super().__init__(name)
        self.function, self.args, self.cpu = function, args, cpu
        self.body: ThreadBody | None = None
        self.waiting_for: WaitingFor | None = None
        self.finished = False

    def is_runnable(self) -> bool:
        """Not finished, and not waiting for a lock that is still held."""
        blocked = self.waiting_for is not None and self.waiting_for.lock.is_locked()
        return not self.finished and not blocked


class Step(NamedTuple):
    """One step of a run: the thread's name and the label it yielded ("finished" at its end)."""

    thread: str
    label: str


@dataclass
class Run:
    """What one run did. `schedule` replays it exactly; `choices[i]` holds the letters of the
    threads that were runnable at step i. A run that deadlocks or panics ends there, and its
    unfinished threads are closed (their `finally` blocks run, as themselves)."""

    schedule: str
    trace: list[Step]
    choices: list[str]
    deadlocked: bool = False
    panic: KernelPanic | None = None
    state: Any = None

    def format_trace(self) -> str:
        """One line per step: its number, the thread (letter and name), its label."""
        return "\n".join(f"{i:3} {_who(letter, step.thread)}: {step.label}"
                         for i, (letter, step) in enumerate(zip(self.schedule, self.trace), 1))


@dataclass
class Program:
    """What explore() and replay() start each run from: fresh threads, the state they share
    (handed to the check), and the machine whose CPUs the threads run on, if any."""

    threads: list[SimThread]
    state: Any = None
    machine: Machine | None = None


class Scheduler:
    """Runs its threads once, one step at a time, in the order a schedule string says."""

    def __init__(self, threads: Sequence[SimThread], machine: Machine | None = None,
                 max_steps: int = 10_000) -> None:
        if not 1 <= len(threads) <= len(LETTERS):
            raise ValueError(f"a scheduler runs 1 to {len(LETTERS)} threads, not {len(threads)}")
        for thread in threads:
            _check_cpu(thread, machine)
        self.threads = list(threads)
        self.machine = machine
        self.max_steps = max_steps

    def run(self, schedule: str = "") -> Run:
        """Follow `schedule`, then run the first runnable thread until none is left."""
        self._start(schedule)
        run = Run(schedule="", trace=[], choices=[])
        try:
            while len(run.trace) < self.max_steps:
                runnable = "".join(LETTERS[i] for i, t in enumerate(self.threads)
                                   if t.is_runnable())
                if len(run.trace) < len(schedule):
                    letter = self._checked_choice(schedule, len(run.trace), runnable)
                elif runnable:
                    letter = runnable[0]
                else:
                    run.deadlocked = not all(t.finished for t in self.threads)
                    return run
                run.schedule += letter
                run.choices.append(runnable)
                if not self._step(self.threads[LETTERS.index(letter)], run):
                    return run
            raise RuntimeError(f"no end after {self.max_steps} steps: does a thread loop forever?")
        finally:
            self._close_unfinished()

    def _start(self, schedule: str) -> None:
        if any(thread.body is not None for thread in self.threads):
            raise ValueError("a Scheduler runs its threads once; build fresh ones to run again")
        letters = LETTERS[:len(self.threads)]
        for i, letter in enumerate(schedule, 1):
            if letter not in letters:
                raise ValueError(f"schedule {schedule!r}: step {i} names {letter!r}, but the "
                                 f"threads are {', '.join(letters)}")
        for thread in self.threads:
            thread.body = thread.function(*thread.args)
            if not inspect.isgenerator(thread.body):
                raise TypeError(f"thread {thread.name}: {thread.function.__name__} is not a "
                                f"generator function (it needs at least one yield)")

    def _checked_choice(self, schedule: str, step: int, runnable: str) -> str:
        letter = schedule[step]
        if letter in runnable:
            return letter
        thread = self.threads[LETTERS.index(letter)]
        if thread.finished:
            why = "which has finished"
        else:
            lock = thread.waiting_for.lock
            why = f"which is blocked waiting for {lock.name}, held by {lock.holder().name}"
        raise ValueError(f"schedule {schedule!r}: step {step + 1} chooses "
                         f"{_who(letter, thread.name)}, {why}; runnable: {runnable or 'none'}")

    def _step(self, thread: SimThread, run: Run) -> bool:
        """Resume `thread` until its next yield; False when it panicked (the run ends)."""
        with self._running(thread):
            try:
                yielded = next(thread.body)
            except StopIteration:
                thread.finished = True
                yielded = "finished"
            except KernelPanic as panic:
                thread.finished = True
                run.trace.append(Step(thread.name, f"panic: {panic}"))
                run.panic = panic
                return False
        if not isinstance(yielded, (str, WaitingFor, type(None))):
            raise TypeError(f"thread {thread.name} yielded {yielded!r}: yield a label string, "
                            f"None, or WaitingFor(lock)")
        thread.waiting_for = yielded if isinstance(yielded, WaitingFor) else None
        run.trace.append(Step(thread.name, "" if yielded is None else str(yielded)))
        return True

    @contextmanager
    def _running(self, thread: SimThread) -> Iterator[None]:
        """Make `thread` the current context, on its CPU if it has one, for one step."""
        machine = self.machine
        saved_cpu = machine.current_cpu if machine is not None else None
        if machine is not None and thread.cpu is not None:
            machine.current_cpu = machine.cpus[thread.cpu]
        try:
            with running_as(thread):
                yield
        finally:
            if machine is not None:
                machine.current_cpu = saved_cpu

    def _close_unfinished(self) -> None:
        """Kill threads left behind, as themselves, so that no `finally` block of theirs runs
        later (at garbage collection) under the wrong context."""
        for thread in self.threads:
            if thread.body is not None and not thread.finished:
                with self._running(thread):
                    thread.body.close()


def _who(letter: str, name: str) -> str:
    return letter if name == letter else f"{letter} ({name})"


def _check_cpu(thread: SimThread, machine: Machine | None) -> None:
    if thread.cpu is None:
        return
    if machine is None:
        raise ValueError(f"thread {thread.name} asks for CPU {thread.cpu}, but the scheduler "
                         f"has no machine")
    if not 0 <= thread.cpu < len(machine.cpus):
        raise ValueError(f"thread {thread.name} asks for CPU {thread.cpu}, but {machine!r} "
                         f"has CPUs 0-{len(machine.cpus) - 1}")


def replay(make_program: Callable[[], Program], schedule: str) -> Run:
    """Run exactly `schedule` (then the default order) from fresh state."""
    program = make_program()
    run = Scheduler(program.threads, program.machine).run(schedule)
    run.state = program.state
    return run


@dataclass
class Exploration:
    """What explore() found: how many interleavings it ran, and the first failing run."""

    runs: int
    failure: Run | None = None
    reason: str | None = None

    @property
    def failing_schedule(self) -> str | None:
        return self.failure.schedule if self.failure is not None else None


def explore(make_program: Callable[[], Program], check: Callable[[Any], bool] | None = None,
            max_runs: int = 10_000, on_run: Callable[[Run], None] | None = None) -> Exploration:
    """Run every interleaving of `make_program()`'s threads, each from fresh state, until one
    fails: it deadlocks, panics, or `check(state)` is false once all threads have finished.
    `on_run(run)` sees every run, the failing one included (a grading check notes what each
    did). Raises RuntimeError if more than `max_runs` interleavings exist (no silent partial
    proof)."""
    prefix: str | None = ""
    runs = 0
    while prefix is not None:
        if runs == max_runs:
            raise RuntimeError(f"explored {max_runs} interleavings and more remain: raise "
                               f"max_runs or make the program smaller")
        run = replay(make_program, prefix)
        runs += 1
        if on_run is not None:
            on_run(run)
        reason = _failure(run, check)
        if reason is not None:
            return Exploration(runs, run, reason)
        prefix = _next_prefix(run)
    return Exploration(runs)


def _failure(run: Run, check: Callable[[Any], bool] | None) -> str | None:
    if run.deadlocked:
        return "deadlock"
    if run.panic is not None:
        return f"panic: {run.panic}"
    if check is not None and not check(run.state):
        return "check failed"
    return None


def _next_prefix(run: Run) -> str | None:
    """The schedule that branches off `run` at its deepest step with an untried choice."""
    for step in reversed(range(len(run.schedule))):
        later = [letter for letter in run.choices[step] if letter > run.schedule[step]]
        if later:
            return run.schedule[:step] + later[0]
    return None
