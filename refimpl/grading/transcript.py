"""What a check saw of the learner's answers, as plain data, for the grader to judge.

A check runs next to the learner's code (it needs the kernel objects the learner's function
works on), so its own verdict is only a claim: code in the same process can rewrite the check,
patch builtins, or write "passed" on the result pipe. So each check also calls `record` with
the values it compares, normalised the way it compares them (`bool(present)`, a list of ints).
The worker sends the record as JSON; the grader, in its own process, compares it with exact
types against the record the solutions produced on the same hidden cases, or hands it to the
exercise's trusted `judge` (`grader.py`). Code in the learner's process can write any record it
likes, so a record line must hold what only a working answer produces (the values, the state a
call left), never a verdict (True, a reason, an empty list of differences) that a forger could
write without solving (`tests/test_grading_forgers.py` tries).
"""

from __future__ import annotations

_RECORD: list = []
_recording = False
"""Only the autograder's worker records (`start`); a learner's notebook keeps nothing."""


def plain(value):
    """`value` as JSON-ready plain data: exact bool, int, float, str and None, lists for
    tuples and lists, dicts with str keys. Anything else is named by its type, so it never
    matches a reference answer."""
    if value is None or type(value) in (bool, int, float, str):
        return value
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):  # an IntFlag, an IntEnum
        return int.__index__(value)
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in list(value)]
    if type(value) is dict:
        return {str(key): plain(item) for key, item in value.items()}
    return {"object": type(value).__qualname__}


def start() -> None:
    global _recording
    _recording = True


def record(case: str, *values) -> None:
    """Note what the learner's answer gave on `case` (in the autograder's worker)."""
    if _recording:
        _RECORD.append([str(case), *(plain(value) for value in values)])


def take() -> list:
    """The record so far, emptied."""
    taken = list(_RECORD)
    _RECORD.clear()
    return taken


def same(one, other) -> bool:
    """Equal with exact types at every level (True is not 1, 1.0 is not 1)."""
    if type(one) is not type(other):
        return False
    if isinstance(one, list):
        return len(one) == len(other) and all(map(same, one, other))
    if isinstance(one, dict):
        return one.keys() == other.keys() and all(same(one[key], other[key]) for key in one)
    return one == other
