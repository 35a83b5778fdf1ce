"""The program-as-data runner: the example trace's outcomes, exactly, and malformed traces."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refimpl.kernel.anonymous_vmobject import COW_FAULT, COW_FAULT_LAST_HOLDER, ZERO_FAULT
from refimpl.kernel.process import ProgramImage
from refimpl.kernel.program_trace import (CHILD, example_trace, parse_prot, run_trace, split_step,
                                         step_in_hex)

PAGE = 4096
LAST = COW_FAULT_LAST_HOLDER


@pytest.fixture(scope="module")
def outcomes():
    return run_trace(ProgramImage.example(), example_trace())


def test_every_step_of_the_example_faults_as_predicted(outcomes):
    expected = [
        {ZERO_FAULT: 3}, {ZERO_FAULT: 1}, {}, {}, {ZERO_FAULT: 4}, {}, {}, {}, {},
        {COW_FAULT: 1}, {LAST: 1}, {COW_FAULT: 1}, {LAST: 1}, {ZERO_FAULT: 1},
        {COW_FAULT: 1}, {COW_FAULT: 1}, {}, {}, {}]
    assert [outcome.faults for outcome in outcomes] == expected


def test_resident_pages_and_cow_sharing_after_each_step(outcomes):
    parent = [outcome.resident.get("parent") for outcome in outcomes]
    child = [outcome.resident.get(CHILD) for outcome in outcomes]
    # exec: text 2 + rodata 1 + trampoline 1 (shared) + data 1 + stack 1 + thread-specific 1
    assert parent == [7, 8, 8, 8, 12, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, None]
    assert child == [None] * 8 + [11, 11, 11, 11, 11, 12, 12, 12, 12, None, None]
    # fork shares data 2, heap 3, stack 1, thread-specific 1; each copy or last write unshares
    assert [outcome.cow_shared for outcome in outcomes][8:] == [7, 6, 6, 5, 5, 5, 5, 4, 4, 0, 0]


def test_pages_taken_by_each_step(outcomes):
    taken = [outcome.pages_taken for outcome in outcomes]
    # munmap frees nothing: the heap's VMObject still holds the page of the hole
    assert taken[1:8] == [1, 0, 1, 4, 0, 0, 0]
    assert taken[9:17] == [1, 0, 1, 0, 1, 1, 1, 0]
    before_exec = outcomes[0].free_pages_before
    assert outcomes[-1].free_pages == before_exec  # exit gave every page back
    assert outcomes[-1].layouts == {} and outcomes[-1].layout == []


def test_munmap_and_mprotect_split_the_heap(outcomes):
    def heap(outcome):
        rows = [row for row in outcome.layout if row.name == "heap"]
        base = rows[0].base
        return [((row.base - base) // PAGE, row.access, row.pages) for row in rows]

    assert heap(outcomes[4]) == [(0, "rw-", "####.")]
    assert heap(outcomes[5]) == [(0, "rw-", "#"), (2, "rw-", "##.")]
    assert heap(outcomes[6]) == [(0, "rw-", "#"), (2, "rw-", "#"), (3, "r--", "#"),
                                 (4, "rw-", ".")]
    assert outcomes[7].error.startswith("EFAULT") and "EFAULT" in outcomes[7].text
    assert heap(outcomes[8]) == [(0, "rw-", "c"), (2, "rw-", "c"), (3, "r--", "c"),
                                 (4, "rw-", ".")]


def test_the_data_segment_breaks_copy_on_write_page_by_page(outcomes):
    def data_pages(outcome, who):
        return next(row.pages for row in outcome.layouts[who] if row.name.endswith("(data-rw)"))

    assert data_pages(outcomes[8], "parent") == data_pages(outcomes[8], CHILD) == "cc."
    assert data_pages(outcomes[9], "parent") == "#c."  # the parent's copy
    assert data_pages(outcomes[10], CHILD) == "#c."  # no copy: its page is its own now
    assert data_pages(outcomes[12], "parent") == data_pages(outcomes[12], CHILD) == "##."
    assert data_pages(outcomes[13], CHILD) == "###"
    assert outcomes[16].text.endswith("b'CCCCCCCC'")


def test_every_step_of_the_example_has_a_line_of_text(outcomes):
    assert [outcome.text.split(":")[0] for outcome in outcomes[8:11]] == \
        ["parent", "parent", "child"]
    assert all(outcome.text for outcome in outcomes)


@pytest.mark.parametrize("steps, message", [
    ([("write", "data", 0, 8)], "starts with"),
    ([("exec",), ("exec",)], "execs only once"),
    ([("exec",), ("jump", "data")], "one of"),
    ([("exec",), ("write", "data", 0)], "takes 3 items"),
    ([("exec",), ("mmap", "heap", PAGE, "rwz")], "rw-"),
    ([("exec",), ("write", CHILD, "data", 0, 8)], "no child"),
    ([("exec",), ("fork",), ("fork",)], "forks once"),
])
def test_malformed_traces_are_value_errors(steps, message):
    with pytest.raises(ValueError, match=message):
        run_trace(ProgramImage.example(), steps)


def test_split_step_reads_the_process_name():
    assert split_step(("write", "child", "heap", 0, 8)) == ("write", "child", ("heap", 0, 8))
    assert split_step(("write", "heap", 0, 8)) == ("write", "parent", ("heap", 0, 8))


@given(st.sampled_from(["r", "-"]), st.sampled_from(["w", "-"]), st.sampled_from(["x", "-"]))
def test_parse_prot_reads_each_letter(read, write, execute):
    assert parse_prot(read + write + execute) == \
        (read == "r") * 1 + (write == "w") * 2 + (execute == "x") * 4


@settings(max_examples=15)
@given(st.lists(st.tuples(st.sampled_from(["parent", CHILD]), st.integers(0, 4)),
                max_size=8))
def test_any_writes_after_fork_give_every_page_back_at_exit(writes):
    steps = [("exec",), ("mmap", "heap", 5 * PAGE, "rw-"), ("write", "heap", 0, 3 * PAGE),
             ("fork",)]
    steps += [("write", who, "heap", page * PAGE, 8) for who, page in writes]
    steps += [("exit", CHILD), ("exit",)]
    outcomes = run_trace(ProgramImage.example(), steps)
    assert all(outcome.error is None for outcome in outcomes)
    assert outcomes[-1].free_pages == outcomes[0].free_pages_before
    copies = sum(outcome.faults.get(COW_FAULT, 0) for outcome in outcomes)
    assert copies <= 6  # at most one copy per written page and process


operations = st.tuples(st.sampled_from(["write", "munmap", "mprotect"]),
                       st.sampled_from(["parent", CHILD]), st.integers(0, 7), st.integers(1, 3),
                       st.sampled_from(["rw-", "r--", "---"]))


def as_step(operation, who, page, pages, access):
    if operation == "write":
        return ("write", who, "heap", page * PAGE, pages * PAGE)
    if operation == "munmap":
        return ("munmap", who, "heap", page * PAGE, pages * PAGE)
    return ("mprotect", who, "heap", page * PAGE, pages * PAGE, access)


@settings(max_examples=15)
@given(before=st.lists(operations, max_size=5), after=st.lists(operations, max_size=5))
def test_any_splits_writes_and_forks_give_every_page_back(before, after):
    steps = [("exec",), ("mmap", "heap", 8 * PAGE, "rw-")]
    steps += [as_step(op, "parent", *rest) for op, _, *rest in before]
    steps += [("fork",)] + [as_step(*operation) for operation in after]
    steps += [("exit", CHILD), ("exit",)]
    outcomes = run_trace(ProgramImage.example(), steps)
    assert outcomes[-1].free_pages == outcomes[0].free_pages_before
    for outcome in outcomes:
        for rows in outcome.layouts.values():
            assert all(a.end <= b.base for a, b in zip(rows, rows[1:]))
        if outcome.error:  # only what a program can get wrong: a bad access or range
            assert outcome.error.split()[0] in ("EFAULT", "EINVAL", "ENOMEM", "EPERM")


def test_a_step_reads_in_hex_as_written():
    assert step_in_hex(("munmap", "heap", 0x1000, 0x2000)) == "('munmap', 'heap', 0x1000, 0x2000)"
