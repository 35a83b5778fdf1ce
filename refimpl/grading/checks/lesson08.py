"""The checks of lesson 08: locks you can see. The deterministic scheduler is the judge: each
check runs the learner's code on two simulated CPUs under every interleaving (`explore()`).

The programs have no random part, so the hidden checks run the same exploration as the visible
ones. A verdict like "no interleaving failed" is one bit a learner's process could forge, so the
checks record what the exploration saw instead: for each run, what the lookup found and where it
fell among the other CPU's insert, or the state a destroy left. The missed-site answer is plain
data (names and a schedule), judged by the trusted `judge_missed_sites` in the grader's own
process, which replays the schedule itself."""

from __future__ import annotations

import functools

from refimpl.grading.checks.common import call, passed
from refimpl.grading.exercises import CheckFailed, exercise
from refimpl.grading.transcript import plain, record
from refimpl.history.kernel_tree_races import destroy_program, lookup_is_right, lookup_program
from refimpl.history.missed_sites import READERS, reader_program, saw_a_consistent_tree
from refimpl.kernel import explore, replay
from refimpl.kernel.invariants import kernel_region_violations

MAX_SCHEDULE = 64


def _explored(make, check, what: str, on_run=None):
    """explore(), with the learner's exceptions (other than a KernelPanic, which the scheduler
    records as a finding) reported as feedback."""
    try:
        return explore(make, check=check, on_run=on_run)
    except (NotImplementedError, CheckFailed):
        raise
    except Exception as error:  # noqa: BLE001 - any learner exception is feedback
        raise CheckFailed(f"{what}: your code raised {type(error).__name__}: {error}") from None


# 1. The readers the stopgap missed, and a schedule that breaks them ----------------------------

@functools.lru_cache(maxsize=None)
def _explored_reader(name: str) -> tuple[int, bool]:
    """(interleavings tried, whether one broke the reader) against a thread creation."""
    found = explore(reader_program(name), check=saw_a_consistent_tree)
    return found.runs, found.failure is not None


def missed_readers() -> frozenset[str]:
    """The reference: the readers some interleaving with a thread creation breaks."""
    return frozenset(name for name in READERS if _explored_reader(name)[1])


@functools.lru_cache(maxsize=1024)
def _replayed(name: str, schedule: str) -> tuple[str, tuple | None, str]:
    """(the schedule as run, what the reader saw if it saw a torn tree, why the schedule
    could not run): a class's answers are mostly the same, so each is replayed once."""
    try:
        run = replay(reader_program(name), schedule)
    except ValueError as error:
        return schedule, None, str(error)
    torn = None if saw_a_consistent_tree(run.state) else tuple(run.state.found)
    return run.schedule, torn, ""


def judge_missed_sites(record_lines: list) -> str:
    """Trusted (the grader runs it in its own process): the names must be exactly the readers
    the stopgap missed, and the schedule, replayed here, must make each of them see a torn
    tree."""
    if len(record_lines) != 1 or len(record_lines[0]) != 3:
        raise CheckFailed("missed_sites() gave no answer")
    _, names, schedule = record_lines[0]
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names) \
            or not isinstance(schedule, str):
        raise CheckFailed("missed_sites() must return (a list of reader names, a schedule "
                          "string such as 'AB...')")
    unknown = [name for name in names if name not in READERS]
    if unknown:
        raise CheckFailed(f"{unknown[0]!r} is not a reader: choose among "
                          f"{', '.join(map(repr, READERS))}")
    for name in names:
        if name not in missed_readers():
            raise CheckFailed(f"{name} against a thread creation: all "
                              f"{_explored_reader(name)[0]} interleavings saw a consistent "
                              f"tree. It takes m_lock and the tree's lock (f0f97e1db02 added "
                              f"the latter): not a missed site")
    if set(names) != missed_readers():
        raise CheckFailed(f"the stopgap missed {len(missed_readers())} of the readers; you "
                          f"named {len(set(names))}: which others take neither lock the insert "
                          f"holds?")
    if len(schedule) > MAX_SCHEDULE or set(schedule) - {"A", "B"}:
        raise CheckFailed(f"a schedule is a string of at most {MAX_SCHEDULE} letters 'A' (the "
                          f"reader) and 'B' (the thread creation), not {schedule[:80]!r}")
    for name in sorted(set(names)):
        ran, torn, error = _replayed(name, schedule)
        if error:
            raise CheckFailed(f"{name} under schedule {schedule!r}: {error}")
        if torn is None:
            raise CheckFailed(f"under schedule {schedule!r} (run as {ran!r}), {name} saw a "
                              f"consistent tree. Let the reader start its walk, then the "
                              f"insert run, then the reader go on")
    return (f"passed: the {len(set(names))} readers without the tree's lock each saw "
            f"{list(torn)} under schedule {schedule!r}")


@exercise("08-missed-site", "Name the readers the stopgap missed, and break them", 2,
          "missed_sites", judge=judge_missed_sites)
def check_missed_site(missed_sites, hidden=False):
    answer = call(missed_sites, case="missed_sites()")
    if not isinstance(answer, (tuple, list)) or len(answer) != 2 or \
            not isinstance(answer[0], (list, tuple, set, frozenset)) or \
            not isinstance(answer[1], str):
        raise CheckFailed(f"missed_sites() must return (a list of reader names, a schedule "
                          f"string), not {answer!r}")
    names = [name if isinstance(name, str) else plain(name) for name in answer[0]]
    names = sorted(names, key=repr)
    record("missed_sites()", names, answer[1])
    if hidden:  # the autograder: its judge decides, in its own process, once per answer
        return "passed: your answer is recorded for the grader's judge"
    return judge_missed_sites([["missed_sites()", names, answer[1]]])


def _distinct(outcomes: list) -> list:
    """Each outcome once, in a fixed order: how many runs gave it depends on harmless choices
    (where a learner yields), which outcomes exist does not."""
    return sorted({repr(outcome): outcome for outcome in outcomes}.values(), key=repr)


# 2. A lookup under the locks the insert holds --------------------------------------------------

def _region(value):
    """A region a lookup returned, as plain data: its name and range."""
    if value is None or not hasattr(value, "range"):
        return plain(value)
    return [value.name, value.range.base, value.range.size]


def _lookup_outcome(run) -> list:
    """What one run shows of the lookup: the lookup's and the insert's steps in the order
    they ran (a lookup under the insert's lock never falls between two insert steps), and
    what the lookup found."""
    steps = [f"{step.thread}: {step.label}" for step in run.trace
             if step.label.startswith(("lookup:", "insert:", "buffer placed"))]
    return [steps, _region(run.state.found), run.panic is not None]


@exercise("08-lookup-lock", "Take the locks a kernel lookup needs", 3,
          "kernel_region_from_vaddr_steps")
def check_lookup_lock(kernel_region_from_vaddr_steps, hidden=False):
    outcomes = []
    found = _explored(lookup_program(kernel_region_from_vaddr_steps), lookup_is_right,
                      "a lookup against a placement",
                      on_run=lambda run: outcomes.append(_lookup_outcome(run)))
    record("every interleaving of a lookup and a placement: what the lookup saw",
           _distinct(outcomes) if found.failure is None else outcomes[-1:])
    if found.failure is not None:
        got = found.failure.state.found
        raise CheckFailed(f"schedule {found.failing_schedule!r} ({found.reason}): your lookup "
                          f"returned {getattr(got, 'name', got)!r} for the live stack's "
                          f"address.\n{found.failure.format_trace()}")
    return passed(found.runs, "interleavings with a placement on the other CPU")


# 3. Destroying a kernel region --------------------------------------------------------------

def _destroy_outcome(run) -> list:
    """The state a run left: every kernel region (name, range) in the tree, what the
    allocation got, and what is not mapped where it says."""
    mm = run.state.mm
    return [[_region(region) for region in mm.region_tree.regions()], _region(run.state.found),
            kernel_region_violations(mm)]


@exercise("08-region-destroy", "Destroy a kernel region in the right order", 2, "destroy_steps")
def check_region_destroy(destroy_steps, hidden=False):
    make = destroy_program(destroy_steps)
    try:
        serial = replay(make, "")
    except (NotImplementedError, CheckFailed):
        raise
    except Exception as error:  # noqa: BLE001 - any learner exception is feedback
        raise CheckFailed(f"destroying a kernel stack: your code raised "
                          f"{type(error).__name__}: {error}") from None
    labels = [step.label for step in serial.trace if step.thread == "destroy"]
    yours = [label for label in labels if label in ("unmapped", "unregistered")]
    if sorted(yours) != ["unmapped", "unregistered"]:
        raise CheckFailed(f"your thread yielded {labels}: yield \"unmapped\" right after the "
                          f"unmap and \"unregistered\" right after leaving the tree, once each")
    if serial.state.target in serial.state.mm.region_tree.regions():
        raise CheckFailed("after your destroy_steps the stack is still in the kernel tree")
    outcomes = []
    # every_region_mapped, read off the outcome just noted: the violations are computed once
    found = _explored(make, lambda state: outcomes[-1][2] == [],
                      "a destroy against an allocation",
                      on_run=lambda run: outcomes.append(_destroy_outcome(run)))
    record("every interleaving of a destroy and an allocation: the states left",
           _distinct(outcomes) if found.failure is None else outcomes[-1:])
    if found.failure is not None:
        problems = kernel_region_violations(found.failure.state.mm)
        raise CheckFailed(f"schedule {found.failing_schedule!r} ({found.reason}): "
                          f"{'; '.join(problems)}.\n{found.failure.format_trace()}")
    return passed(found.runs, "interleavings with an allocation on the other CPU")
