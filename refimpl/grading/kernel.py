"""Running a learner's cells in kernel processes, with a time and a memory limit.

One notebook, one process (`worker.py`): the reference set-up cells and the learner's answers
run in the notebook's order in one namespace, as in Jupyter, and each exercise gets a verdict.
The process limits its own address space and interrupts a step that overruns the time limit; the
parent kills it (with everything it started) when it dies, or overruns the limit by GRACE.
A fresh process then carries on with the remaining exercises, after replaying the learner's
earlier cells that ran fine, so a crash or a hang costs one exercise, not the notebook.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Iterator, Sequence

STARTUP = 60.0
"""Seconds a process has to start and import the checks (trusted code, so only a backstop)."""
GRACE = 2.0
"""Seconds past the time limit before the parent kills a step its process could not interrupt."""
TAIL = 4096
"""Bytes of a process's own stdout and stderr kept to explain how it died."""


@dataclass(frozen=True)
class Limits:
    timeout: float = 30.0
    """Seconds per step: one learner cell and its check, or one set-up cell."""
    memory_mb: int = 2048
    """Address space of a kernel process, simulated RAM included (it is mapped in full)."""
    output_chars: int = 2048
    """Characters of what a learner's cell prints that make it into the feedback."""


@dataclass(frozen=True)
class Step:
    kind: str
    """"setup" (reference code), "run" (a learner's cell, for its definitions only) or
    "exercise" (a learner's cell, then the hidden check)."""
    grade_id: str
    source: str


@dataclass(frozen=True)
class Verdict:
    status: str
    """"passed", "not attempted", "wrong", "crashed" or "timed out"."""
    output: str
    """The feedback, starting with the status."""


def run_steps(steps: Sequence[Step], limits: Limits, checks: Sequence[str]
              ) -> dict[str, Verdict]:
    """A verdict for every exercise step, using as many processes as crashes require."""
    return _NotebookGrading(steps, limits, checks).grade()


class _NotebookGrading:
    """One notebook's steps, the verdicts so far, and which steps ran without an error
    (`ran[i]`), across the processes it takes."""

    def __init__(self, steps: Sequence[Step], limits: Limits, checks: Sequence[str]) -> None:
        self.steps, self.limits, self.checks = steps, limits, list(checks)
        self.verdicts: dict[str, Verdict] = {}
        self.ran: dict[int, bool] = {}

    def grade(self) -> dict[str, Verdict]:
        while True:
            todo = list(self._remaining())
            if not any(step.kind == "exercise" for _, step in todo):
                return self.verdicts
            self._run_process(todo)

    def _remaining(self) -> Iterator[tuple[int, Step]]:
        """What a fresh process runs: the set-up, the learner's cells that ran fine (for their
        definitions only), and the steps not reached yet."""
        for index, step in enumerate(self.steps):
            if index not in self.ran or step.kind == "setup":
                yield index, step
            elif self.ran[index]:
                yield index, replace(step, kind="run")

    def _run_process(self, todo: list[tuple[int, Step]]) -> None:
        def on_done(message: dict) -> None:
            index, step = todo[message["done"]]
            self.ran[index] = message["defined"]
            if step.kind == "exercise":
                self.verdicts[step.grade_id] = Verdict(message["status"], message["output"])

        limits = self.limits
        job = {"checks": self.checks, "timeout": limits.timeout, "memory_mb": limits.memory_mb,
               "output_chars": limits.output_chars, "steps": [asdict(step) for _, step in todo]}
        with tempfile.TemporaryDirectory(prefix="refimpl-grade-") as folder:
            kernel = _KernelProcess(Path(folder), job)
            try:
                ending = kernel.follow(limits.timeout, on_done)
            finally:
                returncode = kernel.stop()
        if ending is not None:
            position, overran = ending
            self._blame(todo, position, "" if overran else _death(returncode, kernel.tail))

    def _blame(self, todo: list[tuple[int, Step]], position: int | None, death: str) -> None:
        """Give the exercise the process was on (`position`) its verdict: it overran, or died
        as `death` says. A process lost outside an exercise (set-up, a replayed cell,
        start-up) takes every exercise left with it."""
        timeout = f"{self.limits.timeout:g} s"
        step = todo[position][1] if position is not None else None
        if step is not None and step.kind == "exercise":
            self.ran[todo[position][0]] = False
            self.verdicts[step.grade_id] = (
                Verdict("crashed", f"crashed: {death}") if death else
                Verdict("timed out", f"timed out after {timeout} (the code could not be "
                                     f"interrupted, so its kernel process was killed)"))
            return
        if step is None:
            where = "the kernel process's start-up"
        elif step.kind == "setup":
            where = f"the set-up cell {step.grade_id}"
        else:
            where = f"your cell {step.grade_id} (run again for its definitions)"
        output = (f"crashed: during {where}, {death}" if death
                  else f"crashed: {where} did not finish in {timeout}")
        for index, step in todo:
            if step.kind == "exercise" and index not in self.ran:
                self.ran[index] = False
                self.verdicts[step.grade_id] = Verdict("crashed", output)


def _death(returncode: int, tail: bytes) -> str:
    """How a process died, with the lines of its last output that say where (a faulthandler
    dump names the learner's cell), or else its last lines."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        how = f"the kernel process was killed by {name} ({signal.strsignal(-returncode)})"
    else:
        how = f"the kernel process exited with status {returncode}"
    lines = [line.strip() for line in tail.decode("utf-8", "replace").splitlines()]
    telling = ([line for line in lines if "Fatal Python error" in line or '"<cell ' in line]
               or [line for line in lines if line][-3:])
    return how + "".join(f"\n  {line[:200]}" for line in telling)


def _environment() -> dict[str, str]:
    """The parent's environment, plus: this package importable from the process's empty
    folder, a fixed hash seed (the same set order, so the same grade, on every run), no GUI
    backend and single-threaded numeric libraries (each thread would reserve address space)."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    env.update(PYTHONHASHSEED="0", MPLBACKEND="Agg", OMP_NUM_THREADS="1",
               OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


class _KernelProcess:
    """One worker process in its own session and an empty folder, and the pipes it talks on."""

    def __init__(self, folder: Path, job: dict) -> None:
        job_path = folder / "job.json"
        job_path.write_text(json.dumps(job), encoding="utf-8")
        self.results, write_end = os.pipe()
        try:
            with job_path.open("rb") as stdin:
                self.process = subprocess.Popen(
                    [sys.executable, "-m", "refimpl.grading.worker", str(write_end)],
                    stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=folder,
                    env=_environment(), pass_fds=(write_end,), start_new_session=True)
        finally:
            os.close(write_end)
        self.tail = b""

    def follow(self, timeout: float, on_done: Callable[[dict], None]
               ) -> tuple[int | None, bool] | None:
        """Pass each finished step to `on_done` until the process finishes (None), dies or
        overruns: then (the position of the step it was in, or None; whether it overran)."""
        with selectors.DefaultSelector() as selector:
            selector.register(self.results, selectors.EVENT_READ)
            selector.register(self.process.stdout, selectors.EVENT_READ)
            deadline, current, pending = time.monotonic() + STARTUP, None, b""
            while (left := deadline - time.monotonic()) > 0:
                for key, _ in selector.select(left):
                    data = os.read(key.fd, 65536)
                    if key.fd != self.results:
                        if data:
                            self._keep(data)
                        else:
                            selector.unregister(key.fileobj)
                        continue
                    if not data:
                        return current, False
                    *lines, pending = (pending + data).split(b"\n")
                    for line in lines:
                        try:
                            message = json.loads(line)
                        except ValueError:  # the learner's code wrote to our pipe
                            return current, False
                        if message.get("finished"):
                            return None
                        current = message.get("start")
                        if "done" in message:
                            on_done(message)
                        deadline = time.monotonic() + timeout + GRACE
            return current, True

    def _keep(self, data: bytes) -> None:
        self.tail = (self.tail + data)[-TAIL:]

    def stop(self) -> int:
        """Kill the process and anything it started; its exit status (the real one if it had
        already died)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        returncode = self.process.wait()
        self._drain()
        os.close(self.results)
        self.process.stdout.close()
        return returncode

    def _drain(self, seconds: float = 1.0) -> None:
        """Read what is left of the process's output (a faulthandler dump), for a moment at most:
        something it started in another session may hold the pipe open."""
        deadline = time.monotonic() + seconds
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            while (left := deadline - time.monotonic()) > 0 and selector.select(left):
                data = os.read(self.process.stdout.fileno(), 65536)
                if not data:
                    return
                self._keep(data)
