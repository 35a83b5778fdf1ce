"""Running a learner's cells in kernel processes, with a time and a memory limit.

One notebook, one process (`worker.py`), isolated by `sandbox.py`: the reference set-up cells
and the learner's cells run in the notebook's order in one namespace, as in Jupyter, and each
exercise comes back as a claimed status, feedback and a record of plain data (the grader
decides the verdict from them, `grader.py`). The process interrupts a step that overruns the
time limit; the parent, on its own clock, kills it (with everything it started) when it dies,
breaks the protocol, or overruns the limit by GRACE.
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
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator, Sequence

from refimpl.grading import sandbox


def checks_payload(specs: list) -> list:
    """The checks as the grader sends them: .py files as their text, modules by name (the
    worker imports the modules and runs the texts)."""
    return [{"name": f"_grading_checks_{Path(spec).stem}",
             "source": Path(spec).read_text(encoding="utf-8")}
            if isinstance(spec, str) and spec.endswith(".py") else spec for spec in specs]


STARTUP = 60.0
"""Seconds a process has to start and import the checks (trusted code, so only a backstop)."""
GRACE = 2.0
"""Seconds past the time limit before the parent kills a step its process could not interrupt."""
TAIL = 4096
"""Bytes of a process's own stdout and stderr kept to explain how it died."""
MAX_RESULT_BYTES = 8 * 2**20
"""Bytes a process may send on the result pipe; past that it is killed."""


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
    record: tuple = field(default=(), compare=False)
    """What the check observed of the learner's answers, as plain data (JSON)."""


_UIDS = sandbox.Uids()


def run_steps(steps: Sequence[Step], limits: Limits, checks: Sequence, isolated: bool = True
              ) -> dict[str, Verdict]:
    """A verdict for every exercise step, using as many processes as crashes require.
    `checks`: what `worker.load_checks` takes (the grader sends sources, `grader.py`)."""
    return _NotebookGrading(steps, limits, checks, isolated).grade()


class _NotebookGrading:
    """One notebook's steps, the verdicts so far, and which steps ran without an error
    (`ran[i]`), across the processes it takes."""

    def __init__(self, steps: Sequence[Step], limits: Limits, checks: Sequence,
                 isolated: bool) -> None:
        self.steps, self.limits, self.checks = steps, limits, checks_payload(list(checks))
        self.isolated = isolated
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
                self.verdicts[step.grade_id] = Verdict(message["status"], message["output"],
                                                       tuple(message.get("record", ())))

        limits = self.limits
        job = {"checks": self.checks, "timeout": limits.timeout, "memory_mb": limits.memory_mb,
               "output_chars": limits.output_chars, "steps": [asdict(step) for _, step in todo]}
        with tempfile.TemporaryDirectory(prefix="refimpl-grade-") as folder:
            kernel = _KernelProcess(Path(folder), job, self.isolated)
            ending = ("", "overran")
            try:
                ending = kernel.follow(len(todo), limits.timeout, on_done)
            finally:
                returncode = kernel.stop(patient=ending is None or ending[1] == "died")
        if ending is not None:
            position, why = ending
            death = {"overran": "", "died": _death(returncode, kernel.tail),
                     "protocol": "the kernel process broke the grading protocol (something "
                                 "wrote to its result pipe)"}[why]
            self._blame(todo, position, death)

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
    """Without isolation: the parent's environment, plus the box's settings (the package
    importable, a fixed hash seed, no GUI backend, single-threaded numeric libraries)."""
    env = dict(os.environ)
    box = sandbox.environment()
    env.update({name: box[name] for name in ("PYTHONHASHSEED", "MPLBACKEND", "OMP_NUM_THREADS",
                                             "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")})
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [box["PYTHONPATH"], env.get("PYTHONPATH")]))
    return env


class ProtocolError(Exception):
    """What came back on the result pipe is not what the worker sends: the learner's code
    wrote to it, or sent too much."""


class _KernelProcess:
    """One worker process, in the sandbox (or, without isolation, in its own session), and
    the pipes it talks on. The job goes in on stdin from a file only the grader can see."""

    def __init__(self, folder: Path, job: dict, isolated: bool) -> None:
        job_path = folder / "job.json"
        job_path.write_text(json.dumps(job), encoding="utf-8")
        self.results, write_end = os.pipe()
        self.isolated, self.uid = isolated, None
        argv = [sys.executable, "-m", "refimpl.grading.worker", str(write_end)]
        options: dict = dict(env=_environment(), start_new_session=True, cwd=folder)
        if isolated:
            self.uid = _UIDS.take()
            steps = len(job["steps"])
            cpu = int(STARTUP + steps * (job["timeout"] + GRACE)) + 1
            argv = sandbox.command(argv, sandbox.HardLimits(cpu, job["memory_mb"]), self.uid)
            options = dict(env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                           start_new_session=True, cwd="/")
        try:
            with job_path.open("rb") as stdin:
                self.process = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE,
                                                stderr=subprocess.STDOUT, pass_fds=(write_end,),
                                                **options)
        except BaseException:
            self._give_back_uid()
            raise
        finally:
            os.close(write_end)
        self.tail = b""
        self.received = 0

    def follow(self, steps: int, timeout: float, on_done: Callable[[dict], None]
               ) -> tuple[int | None, str] | None:
        """Pass each finished step to `on_done` until the process finishes (None), or else
        (the position of the step it was in, or None; why it ended: "overran", "died" or
        "protocol"). The grader's own clock decides: the start-up gets STARTUP seconds, and
        step i `timeout` + GRACE from its start; a message never moves a deadline further."""
        expected = 0
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
                        return current, "died"
                    self.received += len(data)
                    if self.received > MAX_RESULT_BYTES:
                        return current, "protocol"
                    *lines, pending = (pending + data).split(b"\n")
                    for line in lines:
                        try:
                            message = _message(line, expected, current, steps)
                        except ProtocolError:
                            return current, "protocol"
                        if "finished" in message:
                            return None
                        if "start" in message:
                            current = message["start"]
                            deadline = time.monotonic() + timeout + GRACE
                        else:
                            on_done(message)
                            expected += 1
            return current, "overran"

    def _keep(self, data: bytes) -> None:
        self.tail = (self.tail + data)[-TAIL:]

    def stop(self, patient: bool) -> int:
        """Kill the process and anything it started; its exit status (the real one if it had
        already died, or ends within a moment when `patient`), as a negative signal number
        when a signal killed it."""
        if patient:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(1.0)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        returncode = self.process.wait()
        self._drain()
        os.close(self.results)
        self.process.stdout.close()
        self._give_back_uid()
        if self.isolated and returncode > 128:  # bwrap reports a signal as 128 + its number
            return 128 - returncode
        return returncode

    def _give_back_uid(self) -> None:
        if self.uid is not None:
            _UIDS.give_back(self.uid)
            self.uid = None

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


def _message(line: bytes, expected: int, current: int | None, steps: int) -> dict:
    """One message of the worker, checked against what may come next: `{"start": i}` for the
    next step, its `{"done": i, ...}`, or `{"finished": true}` once every step is done."""
    try:
        message = json.loads(line)
    except ValueError:
        raise ProtocolError() from None
    if not isinstance(message, dict):
        raise ProtocolError()
    if message == {"finished": True} and expected == steps:
        return message
    if set(message) == {"start"} and message["start"] == expected and current != expected \
            and type(message["start"]) is int:
        return message
    if (message.get("done") == expected == current and type(message["done"]) is int
            and type(message.get("status")) is str and type(message.get("output")) is str
            and type(message.get("defined")) is bool
            and type(message.get("record", [])) is list):
        return message
    raise ProtocolError()
