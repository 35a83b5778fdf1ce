"""The kernel process: runs one notebook's cells for the autograder, inside its limits.

`kernel.py` starts it as `python -m refimpl.grading.worker RESULT_FD` in a fresh session and an
empty temporary folder, and writes one JSON job to its stdin:
`{"checks": [...], "timeout": s, "memory_mb": n, "output_chars": n, "steps": [...]}`, each check
a module name or `{"name": ..., "source": ...}`, each step
`{"kind": "setup" | "run" | "exercise", "grade_id": ..., "source": ...}`. All steps share one
namespace, as the cells of a notebook do. It answers on RESULT_FD, one JSON line per message:
`{"start": i}` before step i, `{"done": i, "status": ..., "output": ..., "defined": bool,
"record": [...]}` after it, `{"finished": true}` at the end. Everything it sends is a claim the
learner's code could have forged; the grader judges (`grader.py`, `transcript.py`). Its own
stdout and stderr are the parent's to drain: only output below Python (C code, `os.write`, a
faulthandler dump) reaches them.
"""

from __future__ import annotations

import builtins
import faulthandler
import functools
import importlib
import importlib.util
import io
import json
import linecache
import os
import resource
import signal
import sys
import traceback
import types
from pathlib import Path

from refimpl.grading import transcript
from refimpl.grading.exercises import EXERCISES, CheckFailed


class GradingTimeout(BaseException):
    """Raised by the step timer. A BaseException, so a learner's `except Exception` around a
    loop does not swallow it (one that catches everything is killed by the parent instead)."""


def load_checks(specs: list) -> None:
    """Import the modules that register exercises: dotted names, paths of .py files, or
    `{"name": ..., "source": ...}` (a file's text, sent to a process that cannot read it)."""
    for spec in specs:
        if isinstance(spec, dict):
            module = types.ModuleType(spec["name"])
            module.__file__ = f"<checks {spec['name']}>"
            sys.modules[spec["name"]] = module
            exec(compile(spec["source"], module.__file__, "exec"), module.__dict__)
        elif spec.endswith(".py"):
            path = Path(spec).resolve()
            name = f"_grading_checks_{path.stem}"
            module_spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[name] = module
            module_spec.loader.exec_module(module)
        else:
            importlib.import_module(spec)


def _resolve(dotted: str) -> tuple[object, str]:
    """(the object holding it, attribute name) of a dotted path such as
    `refimpl.kernel.memory_manager.MemoryManager.ensure_pte`."""
    parts = dotted.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            holder = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for part in parts[split:-1]:
            holder = getattr(holder, part)
        return holder, parts[-1]
    raise ImportError(f"cannot find {dotted}")


def forbid_references(grade_ids: list[str]) -> None:
    """The policy: in the learner's answer cell for an exercise, the reference function that
    exercise asks for (its `forbids`) raises "write this yourself"; the checks, the set-up
    and the rest of the kernel still use it. A nudge that says what is expected, not a
    security boundary: the grader compares answers, whatever computed them."""
    for grade_id in grade_ids:
        exercise = EXERCISES.get(grade_id)
        for dotted in getattr(exercise, "forbids", ()):
            holder, name = _resolve(dotted)
            original = holder.__dict__[name] if isinstance(holder, type) else getattr(holder, name)
            setattr(holder, name, _forbidden(original, dotted, f"<cell {grade_id}>"))


def _forbidden(original, dotted: str, cell: str):
    @functools.wraps(original)
    def guarded(*args, **kwargs):
        if sys._getframe(1).f_code.co_filename == cell:
            raise RuntimeError(f"write this yourself: this exercise asks you to write "
                               f"{dotted.rsplit('.', 2)[-2]}.{dotted.rsplit('.', 1)[-1]}, "
                               f"so the reference one is not available in its cell")
        return original(*args, **kwargs)
    del guarded.__wrapped__  # functools.wraps's way back to the reference
    return guarded


class _Capture(io.TextIOBase):
    """Stands in for sys.stdout and sys.stderr: keeps the first `limit` characters and counts
    the rest, so a learner printing megabytes costs the grader nothing."""

    encoding = "utf-8"

    def __init__(self, limit: int) -> None:
        self.limit, self.kept, self.total = limit, [], 0

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        room = self.limit - min(self.total, self.limit)
        if room:
            self.kept.append(text[:room])
        self.total += len(text)
        return len(text)

    def report(self) -> str:
        if not self.total:
            return ""
        text = "".join(self.kept)
        if self.total <= self.limit:
            return f"\n\nprinted:\n{text}"
        return f"\n\nprinted (the first {self.limit:,} of {self.total:,} characters):\n{text}"


def _describe(error: BaseException, memory_mb: int) -> str:
    text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    if isinstance(error, MemoryError):
        text += f" (the memory limit is {memory_mb} MB)"
    return text


def _learner_trace(error: BaseException) -> str:
    """The traceback's frames in the learner's own cells: where their code failed, without
    the grader's frames or the hidden check's."""
    frames = [frame for frame in traceback.extract_tb(error.__traceback__)
              if frame.filename.startswith("<cell ")]
    return "\n" + "".join(traceback.format_list(frames)).rstrip() if frames else ""


class _Notebook:
    """The namespace the steps share, and what each step did."""

    def __init__(self, job: dict) -> None:
        self.timeout, self.memory_mb = job["timeout"], job["memory_mb"]
        self.output_chars = job["output_chars"]
        # notebook code may call display(), which a kernel provides without an import
        self.namespace = {"__name__": "__main__", "__builtins__": builtins,
                          "display": lambda *objects, **_: print(*objects)}
        self.broken = ""
        """Why the reference set-up failed, if it did: the reason every later exercise fails."""

    def _exec(self, filename: str, source: str) -> None:
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        exec(compile(source, filename, "exec"), self.namespace)

    def step(self, kind: str, grade_id: str, source: str) -> dict:
        """Run one step under the timer with its output captured: status, output, defined."""
        capture = _Capture(self.output_chars)
        sys.stdout = sys.stderr = capture
        signal.signal(signal.SIGALRM, _on_alarm)
        result = {"defined": False}
        try:
            try:
                signal.setitimer(signal.ITIMER_REAL, self.timeout)
                result["status"], result["output"] = self._run(kind, grade_id, source, result)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        except GradingTimeout:
            result["status"] = "timed out"
            result["output"] = f"timed out after {self.timeout:g} s"
            if kind == "setup":
                self.broken = f"the set-up cell {grade_id} did not finish in {self.timeout:g} s"
        finally:
            sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
        result["output"] += capture.report()
        return result

    def _run(self, kind: str, grade_id: str, source: str, result: dict) -> tuple[str, str]:
        if kind == "setup":
            return self._setup(grade_id, source, result)
        if self.broken and kind == "exercise":
            return "crashed", f"crashed: {self.broken}"
        try:
            self._exec(f"<cell {grade_id}>", source)
        except GradingTimeout:
            raise
        except NotImplementedError:
            return "not attempted", "not attempted: your cell still raises NotImplementedError"
        except BaseException as error:  # noqa: BLE001 - SystemExit included: it is a verdict
            return "crashed", f"crashed: {_describe(error, self.memory_mb)}{_learner_trace(error)}"
        result["defined"] = True
        return self._check(grade_id) if kind == "exercise" else ("ran", "")

    def _setup(self, grade_id: str, source: str, result: dict) -> tuple[str, str]:
        if self.broken:
            return "skipped", ""
        try:
            self._exec(f"<setup {grade_id}>", source)
        except GradingTimeout:
            raise
        except BaseException as error:  # noqa: BLE001 - reported on every later exercise
            self.broken = f"the set-up cell {grade_id} failed: {_describe(error, self.memory_mb)}"
            return "failed", self.broken
        result["defined"] = True
        return "ran", ""

    def _check(self, grade_id: str) -> tuple[str, str]:
        exercise = EXERCISES[grade_id]
        missing = [name for name in exercise.names if name not in self.namespace]
        transcript.take()
        if missing:
            return "wrong", f"wrong: your cell does not define {', '.join(missing)}"
        try:
            line = exercise.check(*(self.namespace[name] for name in exercise.names),
                                  hidden=True)
        except GradingTimeout:
            raise
        except NotImplementedError:
            return "not attempted", "not attempted: your code still raises NotImplementedError"
        except CheckFailed as failure:
            return "wrong", f"wrong: {failure}"
        except BaseException as error:  # noqa: BLE001 - whatever the learner's code raised
            return "crashed", f"crashed: {_describe(error, self.memory_mb)}{_learner_trace(error)}"
        if line.startswith("passed"):
            return "passed", line
        return "passed", f"passed: {line}" if line else "passed"


def _on_alarm(signum, frame) -> None:
    raise GradingTimeout()


def _send(fd: int, message: dict) -> None:
    data = (json.dumps(message) + "\n").encode("utf-8")
    while data:
        data = data[os.write(fd, data):]


def _limit_memory(memory_mb: int) -> None:
    """Cap the address space (a MemoryError past it) and forbid core dumps."""
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = memory_mb * 2**20
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def main(argv: list[str]) -> None:
    result_fd = int(argv[0])
    job = json.loads(sys.stdin.read())
    sys.stdin = io.StringIO()
    _limit_memory(job["memory_mb"])
    faulthandler.enable(file=sys.__stderr__)
    load_checks(job["checks"])
    transcript.start()
    forbid_references([step["grade_id"] for step in job["steps"] if step["kind"] == "exercise"])
    notebook = _Notebook(job)
    for position, step in enumerate(job["steps"]):
        _send(result_fd, {"start": position})
        result = notebook.step(step["kind"], step["grade_id"], step["source"])
        if step["kind"] == "exercise":
            result["record"] = transcript.take()
        _send(result_fd, {"done": position, **result})
    _send(result_fd, {"finished": True})
    # without waiting for threads a learner's code may have left running
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
