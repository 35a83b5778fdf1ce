"""Forged records on the real course. A student's code runs in the same process as the hidden
checks, before them, so it can replace `record` or the checks themselves; a pass then rests on
the record alone. These students forge it from an answer cell, and must score 0 on what they
forged while a classmate graded alongside keeps full marks.

- Two generic forgers, on every registered exercise, write the record a forger can read off the
  check's source without solving: the reference's own case labels (the seeds in them) and line
  count, every boolean and None as the reference has it, empty lists, and the numbers and
  strings written in the check's source or its case label; every other value (only an answer
  gives it) as 0 or "". One replaces `record` and the registered checks, the other rewrites the
  check functions' code in place (the registry untouched) and uses the real `record`.
- Specific forgers: an answer that gets the values right but not the requirement (no lock, a
  full traversal, a lookup without the insert's lock, the wrong destroy order, one reader's
  name), with the in-process check that would catch it switched off or rewritten.

Run as root with bubblewrap (CI): in the sandbox. Elsewhere, with --no-isolation: the records
are judged the same way."""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest

from refimpl.grading import EXERCISES, sandbox
from refimpl.grading.grader import grade_class
from refimpl.grading.kernel import Limits

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = ROOT / "solutions"
ISOLATED = sandbox.unavailable() is None
LIMITS = Limits(timeout=60, memory_mb=2048)


def check_source(grade_id: str) -> str:
    """What a forger reads: the exercise's check module and the checks' common helpers."""
    module = EXERCISES[grade_id].check.__module__.rsplit(".", 1)[-1]
    folder = ROOT / "refimpl" / "grading" / "checks"
    return (folder / f"{module}.py").read_text() + (folder / "common.py").read_text()


def guessed(value, label: str, source: str, constant: dict, path=()):
    """`value` as a forger who runs no answer can write it (see the module's docstring).
    `constant`: path in a line -> the boolean every line of the exercise has there (a bit that
    never varies can be read off the source; one that varies is the answer)."""
    if isinstance(value, bool):
        return constant.get(path, True)
    if value is None or isinstance(value, dict):
        return value
    if isinstance(value, int):
        written = (re.search(rf"(?<![\w.]){value}(?![\w.])", source + " " + label)
                   or hex(value) in source + label or f"{value:#x}" in label)
        return value if written else 0
    if isinstance(value, float):
        return 0.0
    if isinstance(value, str):
        return value if value in source or value in label else ""
    return [guessed(item, label, source, constant, (*path, index))
            for index, item in enumerate(value)]


def booleans(value, path=()):
    """(path, bool) of every boolean in a line."""
    if isinstance(value, bool):
        yield path, value
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from booleans(item, (*path, index))


def skeletons(reference: dict) -> dict:
    """grade_id -> the forged record: the reference's lines with each value guessed."""
    forged = {}
    for grade_id, lines in reference.items():
        source = check_source(grade_id)
        seen: dict = {}
        for line in lines:
            for path, bit in booleans(line[1:]):
                seen.setdefault(path, set()).add(bit)
        constant = {path: bits.pop() for path, bits in seen.items() if len(bits) == 1}
        forged[grade_id] = [[line[0], *guessed(line[1:], line[0], source, constant)]
                            for line in lines]
    return forged


def dummies(grade_id: str) -> str:
    return "".join(f"\ndef {name}(*args, **kwargs):\n    return None\n"
                   for name in EXERCISES[grade_id].names)


def replaces_record(grade_id: str, lines: list) -> str:
    """An answer cell: `record` replaced everywhere, and the registered check with one that
    calls it on the forged lines."""
    module = EXERCISES[grade_id].check.__module__
    return f"""
import dataclasses, json, importlib
from refimpl.grading import transcript
from refimpl.grading.exercises import EXERCISES
checks = importlib.import_module({module!r})
FORGED = json.loads({json.dumps(json.dumps(lines))})
def record(case, *values):
    transcript._RECORD.append([case, *values])
transcript.record = checks.record = record
def forged_check(*definitions, hidden=False):
    for line in FORGED:
        checks.record(*line)
    return "passed: forged"
EXERCISES[{grade_id!r}] = dataclasses.replace(EXERCISES[{grade_id!r}], check=forged_check)
""" + dummies(grade_id)


def rewrites_the_check(grade_id: str, lines: list) -> str:
    """An answer cell: the registered check function's code replaced in place (the registry
    keeps the same function object), recording the forged lines with the real `record`."""
    module = EXERCISES[grade_id].check.__module__
    return f"""
import json, importlib
from refimpl.grading.exercises import EXERCISES
checks = importlib.import_module({module!r})
checks.FORGED_LINES = json.loads({json.dumps(json.dumps(lines))})
def forged_check(*definitions, hidden=False):
    for line in FORGED_LINES:
        record(*line)
    return "passed: forged"
EXERCISES[{grade_id!r}].check.__code__ = forged_check.__code__
""" + dummies(grade_id)


UNLOCKED_PLACE = """
from refimpl.grading.checks import lesson07
lesson07._check_locked = lambda tree, case: None
def place_anywhere(tree, region, size):
    found = tree._allocate_range_anywhere(size)
    if found.is_error():
        return False
    with tree.get_lock():
        tree._insert(region, found.value())
    return True
"""
FULL_TRAVERSAL = """
import dataclasses
from refimpl.grading.exercises import EXERCISES
from refimpl.grading.checks import lesson06
def lowest_fitting(root, needed):
    found = []
    def walk(node):
        if node is not None:
            walk(node.left)
            if node.size >= needed:
                found.append((node.base, node.size))
            walk(node.right)
    walk(root)
    return found[0] if found else None
def forged_check(lowest_fitting, hidden=False):
    for case, gaps, height, needed in lesson06.lowest_gap_cases(hidden):
        got = lowest_fitting(lesson06.WatchedNode(gaps.root, set()), needed)
        lesson06.record(case, got, [got[0]] if got else [])
    return "passed: one descent, honest"
EXERCISES["06-lowest-gap"] = dataclasses.replace(EXERCISES["06-lowest-gap"], check=forged_check)
"""
NEVER_FAILS = """
from refimpl.grading.checks import lesson08
from refimpl.kernel import explore
lesson08._explored = lambda make, check, what, on_run=None: explore(make, on_run=on_run)
"""
UNLOCKED_LOOKUP = NEVER_FAILS + """
def kernel_region_from_vaddr_steps(mm, vaddr):
    return (yield from mm.region_tree.find_region_containing_steps(vaddr))
"""
UNREGISTERED_FIRST = NEVER_FAILS + """
def destroy_steps(mm, region):
    yield from mm.unregister_kernel_region_steps(region)
    yield "unregistered"
    region.unmap()
    yield "unmapped"
    region._release()
"""
ONE_NAME = """
def missed_sites():
    return ["sys$fork"], "ABBBAAB"
"""
# student: (the notebook, {grade_id: answer cell}); the other answers are the solutions'
SPECIFIC = {
    "no-lock-at-the-find": ("07-atomic-placement.ipynb", {"07-place-anywhere": UNLOCKED_PLACE}),
    "full-traversal": ("06-one-source-of-truth.ipynb", {"06-lowest-gap": FULL_TRAVERSAL}),
    "lookup-without-locks": ("08-locks-you-can-see.ipynb", {"08-lookup-lock": UNLOCKED_LOOKUP}),
    "unregisters-first": ("08-locks-you-can-see.ipynb",
                          {"08-region-destroy": UNREGISTERED_FIRST}),
    "one-reader-named": ("08-locks-you-can-see.ipynb", {"08-missed-site": ONE_NAME}),
}
HONEST_PART = ("06-one-source-of-truth.ipynb", "07-atomic-placement.ipynb",
               "08-locks-you-can-see.ipynb")


def write_student(folder: Path, names, answers: dict) -> None:
    folder.mkdir(parents=True)
    for name in names:
        notebook = nbformat.read(SOLUTIONS / name, 4)
        for cell in notebook.cells:
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
            if grade_id in answers:
                cell.source = answers[grade_id]
        nbformat.write(notebook, folder / name)


@pytest.fixture(scope="module")
def forgers(tmp_path_factory):
    root = tmp_path_factory.mktemp("forgers")
    out = root / "results"
    # 1. the solutions' records, as the grader computes them for any class
    starter = root / "starter"
    shutil.copytree(ROOT / "exercises", starter / "untouched")
    grade_class(starter, out, limits=LIMITS, jobs=2, progress=io.StringIO(), isolated=ISOLATED)
    reference = json.loads((out / "reference.json").read_text())["expected"]
    # 2. the forgers, and an honest classmate graded in the same run
    forged = skeletons(reference)
    names = sorted(path.name for path in SOLUTIONS.glob("*.ipynb"))
    submissions = root / "class"
    for student, forge in (("replaces-record", replaces_record),
                           ("rewrites-the-check", rewrites_the_check)):
        write_student(submissions / student, names,
                      {grade_id: forge(grade_id, lines) for grade_id, lines in forged.items()})
    for student, (name, answers) in SPECIFIC.items():
        write_student(submissions / student, [name], answers)
    write_student(submissions / "zz-honest", HONEST_PART, {})
    results = grade_class(submissions, out, limits=LIMITS, jobs=2, progress=io.StringIO(),
                          isolated=ISOLATED)
    return SimpleNamespace(results={result.student: result for result in results},
                           reference=reference, forged=forged)


def verdicts(forgers, student) -> dict:
    return {exercise.grade_id: exercise.verdict for exercise in
            forgers.results[student].exercises}


@pytest.mark.parametrize("student", ["replaces-record", "rewrites-the-check"])
def test_a_generic_forger_scores_zero_on_every_exercise(forgers, student):
    got = verdicts(forgers, student)
    assert set(got) == set(EXERCISES)
    passed = {grade_id: verdict.output for grade_id, verdict in got.items()
              if verdict.status == "passed"}
    assert passed == {}
    assert forgers.results[student].score == 0
    # every forged check claimed a pass: the grader, not the student process, said wrong
    assert all(verdict.status == "wrong" for verdict in got.values()), \
        {g: v.output for g, v in got.items() if v.status != "wrong"}


def test_the_forged_records_are_what_the_source_gives_away(forgers):
    """The forgers are not strawmen: they have the reference's case labels and line counts,
    and most of its values."""
    for grade_id, lines in forgers.forged.items():
        reference = forgers.reference[grade_id]
        assert [line[0] for line in lines] == [line[0] for line in reference]
    kept = sum(value == wanted for grade_id, lines in forgers.forged.items()
               for line, reference in zip(lines, forgers.reference[grade_id])
               for value, wanted in zip(line[1:], reference[1:]))
    assert kept > 1000


@pytest.mark.parametrize("student", sorted(SPECIFIC))
def test_a_specific_forger_loses_exactly_what_it_forged(forgers, student):
    name, answers = SPECIFIC[student]
    got = verdicts(forgers, student)
    for grade_id, verdict in got.items():
        if grade_id in answers:
            assert verdict.status == "wrong", verdict.output
        elif grade_id.startswith(name[:2]):
            assert verdict.status == "passed", (grade_id, verdict.output)
        else:
            assert verdict.status == "not attempted"


def test_the_honest_classmate_keeps_full_marks(forgers):
    got = verdicts(forgers, "zz-honest")
    for grade_id, verdict in got.items():
        expected = "passed" if grade_id[:2] in ("06", "07", "08") else "not attempted"
        assert verdict.status == expected, (grade_id, verdict.output)
