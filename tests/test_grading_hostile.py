"""The autograder against a hostile class: each cheater tries one attack on the toy exercises of
`test_grading_machinery.py`, and must gain nothing, change nobody else's grade, write nothing,
leave no process behind, and not stop the class from being graded. Every payload is small and
limits itself (short sleeps, bounded loops), in case the box failed to hold it.

Run as root on Linux with bubblewrap (CI): the attacks. Elsewhere the grader refuses to grade,
and that refusal is what is tested."""

from __future__ import annotations

import hashlib
import io
import os
import stat
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest
from nbformat.v4 import new_code_cell

from refimpl.grading import __main__ as cli
from refimpl.grading import sandbox
from refimpl.grading.grader import grade_class
from refimpl.grading.sandbox import IsolationUnavailable
from test_grading_machinery import (LIMITS, C, N, P, T, W, edited, toys,  # noqa: F401 (fixture)
                                    write_notebooks)

ROOT = Path(__file__).resolve().parents[1]
ISOLATED = sandbox.unavailable() is None
needs_isolation = pytest.mark.skipif(not ISOLATED, reason=f"no isolation here: "
                                     f"{sandbox.unavailable()}")

WRONG = "\ndef double(x):\n    return 0\n"

# name: (the t1-double cell, verdicts of t1-double, -square, -quadruple, t2-greet)
ATTACKS = {
    "replaces-checks": ("""
import dataclasses
from refimpl.grading.exercises import EXERCISES
for grade_id, exercise in list(EXERCISES.items()):
    EXERCISES[grade_id] = dataclasses.replace(exercise, check=lambda *a, **k: "passed: all")
""" + WRONG, [W, W, W, P]),
    "forges-the-pipe": ("""
import json, os, sys
frame = sys._getframe()
while frame is not None and "job" not in frame.f_locals:
    frame = frame.f_back
steps, position, fd = len(frame.f_locals["job"]["steps"]), frame.f_locals["position"], int(sys.argv[1])
def send(message):
    os.write(fd, (json.dumps(message) + "\\n").encode())
for index in range(position, steps):
    if index > position:
        send({"start": index})
    send({"done": index, "status": "passed", "output": "passed: forged", "defined": True})
send({"finished": True})
os._exit(0)
""", [W, W, W, P]),
    "reads-the-solutions": ("""
import pathlib, refimpl
found = []
for folder in (pathlib.Path(refimpl.__file__).parents[1] / "solutions", pathlib.Path({solutions!r})):
    try:
        found.append((folder / "t1-numbers.ipynb").read_text())
    except OSError as error:
        print("cannot read", folder, type(error).__name__)
exec(found[0][found[0].index("def double"):].split('"')[0].replace("\\\\n", "\\n"))
""", [C, P, C, P]),
    "patches-builtins": ("""
import builtins
builtins.range = lambda *args: iter(())
builtins.len = lambda thing: 43
""" + WRONG, [W, W, W, P]),
    "equals-everything": ("""
class Anything:
    def __eq__(self, other):
        return True
    def __ne__(self, other):
        return False
    __hash__ = object.__hash__
def double(x):
    return Anything()
""", [W, P, W, P]),
    "writes-everywhere": ("""
import pathlib, site, sys, refimpl
targets = [pathlib.Path({classmate!r}), pathlib.Path({results!r}) / "grades.csv",
           pathlib.Path(refimpl.__file__).parent / "grading" / "checks.py",
           pathlib.Path(site.getsitepackages()[0]) / "sitecustomize.py",
           pathlib.Path(sys.prefix) / "sitecustomize.py", pathlib.Path("/tmp/sitecustomize.py")]
for target in targets:
    try:
        with open(target, "a") as file:
            file.write("raise SystemExit('poisoned')\\n")
        print("wrote", target)
    except OSError as error:
        print("cannot write", target, type(error).__name__)
""" + WRONG, [W, P, W, P]),
    "leaves-a-process": ("""
import subprocess, sys
subprocess.Popen([sys.executable, "-c", "import os, time\\nos.setsid()\\ntime.sleep(20)\\n"
                  "open({results!r} + '/grades.csv', 'w').write('hostile-orphan')"],
                 start_new_session=True)
""" + WRONG, [W, P, W, P]),
    "kills-the-grader": ("""
import os, signal
for target in (os.getppid(), 1, -1):
    try:
        os.kill(target, signal.SIGKILL)
    except OSError as error:
        print("cannot kill", target, type(error).__name__)
""" + WRONG, [W, P, W, P]),
    "keeps-alive": ("""
import json, os, signal, sys, time
signal.signal(signal.SIGALRM, signal.SIG_IGN)
end = time.monotonic() + 20
while time.monotonic() < end:
    os.write(1, b"still here\\n")
    time.sleep(0.05)
""" + WRONG, [T, P, C, P]),
    "keeps-alive-on-the-pipe": ("""
import json, os, signal, sys, time
signal.signal(signal.SIGALRM, signal.SIG_IGN)
end = time.monotonic() + 20
while time.monotonic() < end:
    os.write(int(sys.argv[1]), b'{"start": 0}\\n')
    time.sleep(0.05)
""" + WRONG, [C, P, C, P]),
    "raises-its-limits": ("""
import os, resource, sys
soft, hard = resource.getrlimit(resource.RLIMIT_AS)
try:
    resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    print("raised the hard limit")
except (ValueError, OSError) as error:
    print("cannot raise the hard limit", error)
resource.setrlimit(resource.RLIMIT_AS, (hard, hard))
children = 0
for _ in range(100):
    try:
        if os.fork() == 0:
            os.execv("/bin/sleep", ["hostile-fork", "20"])  # cheap, so the loop ends in time
        children += 1
    except OSError:
        break
print("forked", children)
hog = bytearray(2 ** 40)
""" + WRONG, [C, P, C, P]),
}


def tree_hashes(folder: Path) -> dict[str, str]:
    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file() and "__pycache__"
            not in path.parts}


def sandbox_processes() -> list[str]:
    """Processes carrying a payload's marker (not any student uid's: another grader may be
    running alongside, another test file under xdist)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        uid = int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])
        if "hostile-orphan" in command or "hostile-fork" in command:
            found.append(f"{entry.name} uid {uid}: {command[:100]}")
    return found


def with_helper(notebooks):
    """The correct answers, t1-double written with a helper in a cell of its own."""
    result = edited(notebooks, {"t1-double": "def double(x):\n    return times(FACTOR, x)"})
    cells = result["t1-numbers.ipynb"].cells
    position = next(i for i, cell in enumerate(cells)
                    if cell.metadata.get("nbgrader", {}).get("grade_id") == "t1-double")
    cells.insert(position, new_code_cell("def times(a, b):\n    return a * b", id="helper"))
    return result


@pytest.fixture(scope="module")
def hostile(toys):  # noqa: F811 - the fixture of test_grading_machinery
    solutions = {path.name: nbformat.read(path, as_version=4)
                 for path in sorted(toys.solutions.glob("*.ipynb"))}
    submissions, out = toys.folder / "hostile-class", toys.folder / "hostile-results"
    write_notebooks(submissions / "honest", solutions)
    write_notebooks(submissions / "zz-honest", solutions)
    write_notebooks(submissions / "helper-cells", with_helper(solutions))
    classmate = submissions / "zz-honest" / "t1-numbers.ipynb"
    for name, (cell, _) in ATTACKS.items():
        source = cell.replace("{classmate!r}", repr(str(classmate))).replace(
            "{results!r}", repr(str(out))).replace("{solutions!r}", repr(str(toys.solutions)))
        write_notebooks(submissions / name, edited(solutions, {"t1-double": source}))
    # a link to a classmate's notebook, a linked folder, and an unreadable notebook
    (submissions / "links").mkdir()
    os.symlink(classmate, submissions / "links" / "t1-numbers.ipynb")
    os.symlink(submissions / "honest", submissions / "linked-folder")
    write_notebooks(submissions / "malformed", {"t2-words.ipynb": solutions["t2-words.ipynb"]})
    (submissions / "malformed" / "t1-numbers.ipynb").write_text('{"cells": [{"cell_type": ')
    watched = {"submissions": submissions, "refimpl": ROOT / "refimpl",
               "toys": toys.solutions}
    before = {name: tree_hashes(folder) for name, folder in watched.items()}
    results = grade_class(submissions, out, solutions=toys.solutions, limits=LIMITS, jobs=2,
                          checks=[toys.checks], progress=io.StringIO())
    return SimpleNamespace(
        results={result.student: result for result in results}, out=out,
        changed=[name for name, folder in watched.items()
                 if tree_hashes(folder) != before[name]],
        processes=sandbox_processes(), submissions=submissions, checks=toys.checks,
        solutions=toys.solutions)


def statuses(hostile, student):
    return [exercise.verdict.status for exercise in hostile.results[student].exercises]


def feedback(hostile, student, grade_id):
    return next(exercise.verdict.output for exercise in hostile.results[student].exercises
                if exercise.grade_id == grade_id)


@needs_isolation
@pytest.mark.parametrize("student", sorted(ATTACKS))
def test_a_cheater_gains_nothing(hostile, student):
    assert statuses(hostile, student) == ATTACKS[student][1], \
        [e.verdict.output for e in hostile.results[student].exercises]


@needs_isolation
def test_every_honest_student_keeps_full_marks(hostile):
    for student in ("honest", "zz-honest", "helper-cells"):
        assert statuses(hostile, student) == [P, P, P, P], student
        assert hostile.results[student].score == 7
    assert (hostile.out / "grades.csv").read_text().count(",7,7\n") == 3


@needs_isolation
def test_nothing_is_written_and_no_process_survives(hostile):
    assert hostile.changed == []
    assert hostile.processes == []
    assert "hostile-orphan" not in (hostile.out / "grades.csv").read_text()


@needs_isolation
def test_what_the_cheaters_saw(hostile):
    solutions = feedback(hostile, "reads-the-solutions", "t1-double")
    assert solutions.count("cannot read") == 2 and "IndexError" in solutions
    writes = feedback(hostile, "writes-everywhere", "t1-double")
    # only its own /tmp, which no other process sees and which ends with it
    assert writes.count("cannot write") == 5 and "wrote /tmp/sitecustomize.py" in writes
    kills = feedback(hostile, "kills-the-grader", "t1-double")
    assert kills.count("cannot kill") == 3
    limits = feedback(hostile, "raises-its-limits", "t1-double")
    assert "cannot raise the hard limit" in limits and "MemoryError" in limits
    assert f"forked {sandbox.NPROC - 1}" in limits  # the worker counts: then EAGAIN
    # a whole forged run, every message well-formed: judged on its (empty) record
    assert feedback(hostile, "forges-the-pipe", "t1-double") == (
        "wrong: double(-3): the grader expected [-6], your answer gave nothing")
    assert feedback(hostile, "keeps-alive-on-the-pipe", "t1-double").endswith(
        "broke the grading protocol (something wrote to its result pipe)")
    assert feedback(hostile, "keeps-alive", "t1-double").startswith(
        "timed out after 1 s (the code could not be interrupted")


@needs_isolation
def test_checks_rewritten_in_the_student_process_do_not_pass(hostile):
    square = feedback(hostile, "replaces-checks", "t1-square")
    assert square.startswith("wrong: square(-3): the grader expected [9], your answer gave "
                             "nothing")
    assert feedback(hostile, "patches-builtins", "t1-square").startswith("wrong: ")
    assert feedback(hostile, "equals-everything", "t1-double") == (
        'wrong: double(-3): the grader expected [-6], your answer gave [{"object": '
        '"Anything"}]')


@needs_isolation
def test_links_are_not_followed_and_a_broken_notebook_costs_only_its_exercises(hostile):
    assert statuses(hostile, "links") == [N, N, N, N]
    assert hostile.results["links"].notes == ("t1-numbers.ipynb is a symbolic link: not "
                                              "followed",)
    assert statuses(hostile, "linked-folder") == [N, N, N, N]
    assert statuses(hostile, "malformed") == [N, N, N, P]
    assert feedback(hostile, "malformed", "t1-double").startswith(
        "not attempted: t1-numbers.ipynb could not be read: ")


@needs_isolation
def test_a_rerun_resumes_and_regrades_only_what_is_missing(hostile):
    (hostile.out / "honest" / "grading.json").unlink()
    (hostile.out / "grades.csv").unlink()
    progress = io.StringIO()
    results = grade_class(hostile.submissions, hostile.out, solutions=hostile.solutions,
                          limits=LIMITS, jobs=2, checks=[hostile.checks], progress=progress)
    lines = progress.getvalue().splitlines()
    assert sum("(graded before)" in line for line in lines) == len(results) - 1
    assert {result.student: result.score for result in results} == {
        student: result.score for student, result in hostile.results.items()}
    assert (hostile.out / "grades.csv").exists()


def test_without_isolation_the_grader_refuses(toys, tmp_path, monkeypatch, capsys):  # noqa: F811
    monkeypatch.setattr("refimpl.grading.grader.unavailable", lambda: "no bwrap (simulated)")
    with pytest.raises(IsolationUnavailable, match="simulated"):
        grade_class(toys.solutions, tmp_path / "out", solutions=toys.solutions,
                    checks=[toys.checks], progress=io.StringIO())
    assert not (tmp_path / "out").exists()
    arguments = ["grade", str(toys.solutions), "--out", str(tmp_path / "out"), "--solutions",
                 str(toys.solutions), "--checks", toys.checks]
    assert cli.main(arguments) == 3
    assert "REFUSING TO GRADE" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert cli.main(arguments + ["--no-isolation", "--timeout", "5"]) == 0
    assert "WARNING: --no-isolation" in capsys.readouterr().err
    assert (tmp_path / "out" / "grades.csv").read_text().endswith(",7,7\n")


def test_an_unprivileged_grader_is_told_why(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    sandbox.unavailable.cache_clear()
    try:
        assert sandbox.unavailable().startswith("isolation needs root")
    finally:
        monkeypatch.undo()
        sandbox.unavailable.cache_clear()


NOBODY = 65534


def as_nobody(argv: list[str]) -> list[str]:
    """`argv` run as the unprivileged user nobody when the suite runs as root (CI); as the
    suite's own user otherwise, which is then the unprivileged one."""
    if os.geteuid() != 0:
        return argv
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *argv]


def nobodys_python() -> tuple[str, str]:
    """(an interpreter the unprivileged user can start, again and again, and the PYTHONPATH
    that gives it this environment's packages): this virtual environment's interpreter may
    live under root's home, out of that user's reach, so the system's is used when it is the
    same Python version."""
    import subprocess
    import sys
    import sysconfig
    system = "/usr/bin/python3"
    same = Path(system).exists() and subprocess.run(
        [system, "-c", f"import sys; sys.exit(sys.version_info[:2] != {sys.version_info[:2]})"]
    ).returncode == 0
    paths = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib"), str(ROOT)}
    return (system if same else sys.executable), os.pathsep.join(sorted(paths))


def run_as_nobody(argv: list[str], cwd: Path):
    import subprocess
    python, path = nobodys_python()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(cwd),
           "PYTHONDONTWRITEBYTECODE": "1", "LANG": "C.UTF-8", "PYTHONPATH": path}
    return subprocess.run(as_nobody([python, *argv]), cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def closed_to_others(paths: list[str]) -> dict[Path, int]:
    """The mode bits others lack to import from `paths` (a checkout cloned into a `mktemp -d`
    folder, mode 0700, say): read and pass through on each path itself (Python lists a
    sys.path folder to find modules in it), pass through on the folders above it."""
    missing: dict[Path, int] = {}
    for path in map(Path, paths):
        for folder, needed in [(path, stat.S_IROTH | stat.S_IXOTH),
                               *((parent, stat.S_IXOTH) for parent in path.parents)]:
            if folder.is_dir() and needed & ~folder.stat().st_mode:
                missing[folder] = missing.get(folder, 0) | (needed & ~folder.stat().st_mode)
    return missing


@pytest.fixture
def nobodys_class(toys, tmp_path_factory):  # noqa: F811 - the fixture of test_grading_machinery
    """A copy of the toy class (two honest students, one who tries to write where it should
    not) and its checks, in a folder the unprivileged user owns. As root, what others lack
    to import the project and its packages is opened for the test's length, then closed."""
    import shutil
    import tempfile
    opened = closed_to_others(nobodys_python()[1].split(os.pathsep)) if os.geteuid() == 0 else {}
    folder = Path(tempfile.mkdtemp(prefix="refimpl-nobody-"))
    try:
        for closed, bits in opened.items():
            closed.chmod(closed.stat().st_mode | bits)
        solutions = shutil.copytree(toys.solutions, folder / "solutions")
        shutil.copy(toys.checks, folder / "toy_checks.py")
        notebooks = {path.name: nbformat.read(path, as_version=4)
                     for path in sorted(solutions.glob("*.ipynb"))}
        write_notebooks(folder / "class" / "honest", notebooks)
        write_notebooks(folder / "class" / "zz-honest", notebooks)
        if os.geteuid() == 0:
            for path in [folder, *folder.rglob("*")]:
                os.chown(path, NOBODY, NOBODY)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        for closed, bits in opened.items():
            closed.chmod(closed.stat().st_mode & ~bits)


def test_an_unprivileged_grader_really_refuses_or_really_isolates(nobodys_class):
    """The grader run for real as an unprivileged user (not a faked euid). The test asks the
    grader's own detection, in that user's process, which behaviour to expect: isolation, with
    the class graded and the hostile student gaining nothing; or a loud refusal that writes
    nothing, then grading only when told --no-isolation, saying loudly it is unisolated."""
    folder = nobodys_class
    detected = run_as_nobody(["-c", "import os\nfrom refimpl.grading.sandbox import unavailable"
                              "\nprint(os.geteuid())\nprint(unavailable())"], folder)
    assert detected.returncode == 0, detected.stderr
    uid, why = detected.stdout.strip().split("\n", 1)
    assert int(uid) != 0
    grade = ["-m", "refimpl.grading", "grade", "class", "--out", "out", "--solutions",
             "solutions", "--checks", "toy_checks.py", "--timeout", "5", "--memory", "512",
             "--jobs", "1"]
    run = run_as_nobody(grade, folder)
    if why == "None":  # isolation works for this user: a real grading, in the box
        assert run.returncode == 0, run.stderr[-2000:]
        assert (folder / "out" / "grades.csv").read_text().count(",7,7\n") == 2
        return
    # no isolation for this user: refuse, loudly, writing nothing, for the reason detected
    assert why.startswith("isolation needs root") or "bwrap" in why, why
    assert run.returncode == 3, run.stdout + run.stderr
    assert "REFUSING TO GRADE: student code cannot be isolated here: " + why in run.stderr
    assert "--no-isolation" in run.stderr
    assert not (folder / "out").exists()
    # told to, it grades, and says it is not isolated
    unisolated = run_as_nobody(grade + ["--no-isolation"], folder)
    assert unisolated.returncode == 0, unisolated.stderr[-2000:]
    assert "WARNING: --no-isolation: student code runs as you" in unisolated.stderr
    assert (folder / "out" / "grades.csv").read_text().count(",7,7\n") == 2
    assert (folder / "out" / "honest" / "results.json").stat().st_uid == int(uid)
