"""What a check cell and a summary cell show: a verdict, never an exception."""

import pytest

from refimpl.grading import feedback, grade, summary
from refimpl.grading.checks.common import shown
from refimpl.hw import TINY


@pytest.fixture(autouse=True)
def fresh_verdicts():
    feedback.VERDICTS.clear()
    yield
    feedback.VERDICTS.clear()


def page_fault_error_code(present, write, user, fetch):
    return present | write << 1 | user << 2 | fetch << 4


def test_a_passing_answer_says_what_was_checked():
    result = grade("00-error-code", page_fault_error_code)
    assert result.verdict.status == "passed"
    assert repr(result) == "00-error-code (1 point): passed: 16 combinations"
    assert 'data-status="passed"' in result._repr_html_()


def test_a_wrong_answer_is_a_result_with_the_first_difference_in_the_question_radix():
    result = grade("00-error-code", lambda present, write, user, fetch: 0)
    assert result.verdict.status == "wrong"
    assert "the error code is 0b00001, you gave 0b00000" in result.verdict.output
    html = result._repr_html_()
    assert "first difference" in html and "Fix your function" in html


def test_a_wrong_type_is_shown_as_itself_not_a_crash_of_the_check():
    result = grade("00-walk", lambda memory, cr3, vaddr: "0x12")
    assert result.verdict.status == "wrong" and "got '0x12'" in result.verdict.output


def test_an_untouched_stub_is_not_attempted():
    def walk(memory, cr3, vaddr):
        raise NotImplementedError()
    result = grade("00-walk", walk)
    assert result.verdict.status == "not attempted"
    assert "NotImplementedError" in result._repr_html_()


def test_without_definitions_the_names_come_from_the_callers_namespace():
    assert grade("00-error-code").verdict.status == "passed"
    namespace = {"grade": grade}
    exec('result = grade("00-walk")', namespace)
    assert namespace["result"].verdict.output == "wrong: your cell does not define walk"


def test_the_summary_scores_like_the_grader():
    grade("00-error-code", page_fault_error_code)
    grade("00-walk", lambda memory, cr3, vaddr: None)
    result = summary("00")
    assert [(r.grade_id, r.verdict.status) for r in result.result.exercises] == [
        ("00-split-address", "not attempted"), ("00-decode-entry", "not attempted"),
        ("00-walk", "wrong"), ("00-error-code", "passed")]
    assert result.result.score == 1 and result.result.max_score == 8
    assert "score: 1 of 8 points" in repr(result)
    assert ">verdict</th>" in result._repr_html_()
    with pytest.raises(ValueError, match="no exercises of lesson '99'"):
        summary("99")


def test_shown_keeps_the_radix_and_shows_other_types_as_they_are():
    assert shown(0x1c5) == "0x1c5" and shown(5, "d") == "5" and shown(3, "#07b") == "0b00011"
    assert shown(None) == "None" and shown(True) == "True" and shown(TINY) == repr(TINY)
