"""What a learner sees in an exercise notebook: a check cell's result, and the notebook's score.

A check cell calls `grade("<id>")`. It runs the exercise's visible cases and *returns* a result
that Jupyter renders (passed, with what was checked; wrong, with the first difference; not
attempted; crashed), so a wrong or untouched answer never stops Run All. The summary cell at the
end calls `summary("<lesson>")`, which scores the verdicts of this kernel with the autograder's
own `ExerciseResult` and `StudentResult`, so the score means what the grader's does.
"""

from __future__ import annotations

import html
import sys
from dataclasses import dataclass

from refimpl.grading.exercises import EXERCISES, CheckFailed, Exercise
from refimpl.grading.kernel import Verdict

VERDICTS: dict[str, Verdict] = {}
"""grade_id -> the verdict of its latest check in this kernel (what `summary` scores)."""

STYLES = {"passed": ("#2e7d32", "#edf7ee", "✓"), "wrong": ("#b42318", "#fdf0ee", "✗"),
          "not attempted": ("#6b6b6b", "#f4f4f4", "○"), "crashed": ("#b42318", "#fdf0ee", "✗")}
NEXT_STEP = {"wrong": "Fix your function in the cell above, run that cell, then this one.",
             "crashed": "Fix your function in the cell above, run that cell, then this one.",
             "not attempted": "Replace raise NotImplementedError() in the cell above with your "
                              "answer, run that cell, then this one."}


def points(count: int) -> str:
    return f"{count} point" if count == 1 else f"{count} points"


def judge(exercise: Exercise, definitions: tuple, hidden: bool = False) -> Verdict:
    """The verdict of `exercise.check` on the learner's definitions, in the autograder's terms
    (its worker sorts the same outcomes into the same statuses)."""
    return judge_with_drawing(exercise, definitions, hidden)[0]


def judge_with_drawing(exercise: Exercise, definitions: tuple, hidden: bool = False
                       ) -> tuple[Verdict, str]:
    """The verdict, and the drawing a wrong answer's check attached to its first difference
    ("" if none)."""
    try:
        line = exercise.check(*definitions, hidden=hidden)
    except NotImplementedError:
        return Verdict("not attempted", "not attempted: your code still raises "
                                        "NotImplementedError"), ""
    except CheckFailed as failure:
        return Verdict("wrong", f"wrong: {failure}"), getattr(failure, "drawing", "")
    except Exception as error:  # noqa: BLE001 - whatever the learner's code did is feedback
        return Verdict("crashed", f"crashed: {type(error).__name__}: {error}"), ""
    return Verdict("passed", line if line.startswith("passed") else f"passed: {line}"), ""


@dataclass(frozen=True)
class Feedback:
    """A check cell's result: rendered as a small box in Jupyter, as text elsewhere."""

    exercise: Exercise
    verdict: Verdict
    drawing: str = ""
    """HTML the check drew of the first difference (`CheckFailed.drawing`), shown under it."""

    def __repr__(self) -> str:
        return f"{self.exercise.grade_id} ({points(self.exercise.points)}): {self.verdict.output}"

    def _repr_html_(self) -> str:
        status = self.verdict.status
        colour, background, mark = STYLES.get(status, STYLES["crashed"])
        detail = self.verdict.output.removeprefix(f"{status}:").strip()
        label = "first difference" if status == "wrong" else "checked" if status == "passed" \
            else "why"
        lines = [f'<b style="color:{colour}">{mark} {html.escape(status)}</b> · '
                 f'{html.escape(self.exercise.title)} ({points(self.exercise.points)})']
        if detail:
            lines.append(f'<span style="color:#555">{label}:</span> '
                         f'<code style="white-space:pre-wrap">{html.escape(detail)}</code>')
        if status in NEXT_STEP:
            lines.append(f'<span style="color:#555">{html.escape(NEXT_STEP[status])}</span>')
        drawing = self.drawing if status == "wrong" else ""
        return (f'<div class="refimpl-feedback" data-status="{html.escape(status)}" '
                f'style="border-left:4px solid {colour};background:{background};'
                f'padding:6px 10px;line-height:1.6">{"<br>".join(lines)}{drawing}</div>')


def grade(grade_id: str, *definitions) -> Feedback:
    """What a check cell calls: check the exercise on its visible cases and return the result.

    Without `definitions`, the exercise's names are looked up where `grade` was called (the
    notebook's namespace), so a renamed or deleted function is feedback, not a NameError."""
    exercise = EXERCISES[grade_id]
    if not definitions:
        namespace = sys._getframe(1).f_globals
        missing = [name for name in exercise.names if name not in namespace]
        if missing:
            verdict = Verdict("wrong", f"wrong: your cell does not define {', '.join(missing)}")
            VERDICTS[grade_id] = verdict
            return Feedback(exercise, verdict)
        definitions = tuple(namespace[name] for name in exercise.names)
    verdict, drawing = judge_with_drawing(exercise, definitions)
    VERDICTS[grade_id] = verdict
    return Feedback(exercise, verdict, drawing)


@dataclass(frozen=True)
class Summary:
    """A notebook's exercises, their verdicts so far and the score, the grader's way."""

    result: object
    """A `refimpl.grading.grader.StudentResult`."""

    def __repr__(self) -> str:
        lines = [f"{r.grade_id}: {r.score}/{r.points}  {r.verdict.status}"
                 for r in self.result.exercises]
        return "\n".join(lines + [f"score: {self.result.score} of {self.result.max_score} points"])

    def _repr_html_(self) -> str:
        left = 'style="text-align:left"'
        rows = []
        for r in self.result.exercises:
            colour, _, mark = STYLES.get(r.verdict.status, STYLES["crashed"])
            rows.append(f'<tr><td {left}>{html.escape(r.title)}</td><td>{r.score} / {r.points}'
                        f'</td><td {left}><span style="color:{colour}">{mark} '
                        f'{html.escape(r.verdict.status)}</span></td></tr>')
        return (f'<div class="refimpl-summary"><table><thead><tr><th {left}>exercise</th>'
                f'<th>points</th><th {left}>verdict</th></tr></thead><tbody>{"".join(rows)}'
                f'</tbody></table><p><b>Score: {self.result.score} of {self.result.max_score} '
                f'points</b> on the cases shown here. The autograder scores the same way on '
                f'more, hidden cases.</p></div>')


def summary(lesson: str) -> Summary:
    """The score of lesson `lesson`'s exercises ("00", "01", ...), from the checks run in this
    kernel, in the notebook's order; an exercise whose check cell has not run counts as not
    attempted."""
    from refimpl.grading.grader import ExerciseResult, StudentResult  # nbformat: slow import
    not_run = Verdict("not attempted", "not attempted: its check cell has not run")
    results = tuple(ExerciseResult(grade_id, exercise.title, exercise.points,
                                   VERDICTS.get(grade_id, not_run))
                    for grade_id, exercise in EXERCISES.items()
                    if grade_id.startswith(f"{lesson}-"))
    if not results:
        raise ValueError(f"no exercises of lesson {lesson!r}; lessons: "
                         f"{', '.join(sorted({g.split('-')[0] for g in EXERCISES}))}")
    return Summary(StudentResult("you", results))
