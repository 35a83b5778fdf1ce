from math import factorial

import pytest
from hypothesis import given
from hypothesis import strategies as st

from refimpl.ak import VERIFY
from refimpl.hw import X86_64, Machine, MiB
from refimpl.kernel.locking import MAIN, Spinlock, SpinlockProtected, current_context
from refimpl.kernel.scheduler import Program, Scheduler, SimThread, Step, explore, replay


class Counter:
    def __init__(self) -> None:
        self.value = 0


def increment(counter):
    x = counter.value
    yield f"read {x}"
    counter.value = x + 1


def locked_increment(counter, lock):
    yield from lock.acquire()
    x = counter.value
    yield f"read {x}"
    counter.value = x + 1
    lock.unlock()


def racy_counter() -> Program:
    counter = Counter()
    return Program([SimThread("A", increment, counter), SimThread("B", increment, counter)],
                   state=counter)


def locked_counter() -> Program:
    counter, lock = Counter(), Spinlock("counter lock")
    return Program([SimThread(name, locked_increment, counter, lock) for name in "AB"],
                   state=counter)


def both_incremented(counter) -> bool:
    return counter.value == 2


def test_a_schedule_runs_exactly_and_replays_exactly():
    run = replay(racy_counter, "BAAB")
    assert run.schedule == "BAAB"
    assert run.trace == [Step("B", "read 0"), Step("A", "read 0"),
                         Step("A", "finished"), Step("B", "finished")]
    assert run.choices == ["AB", "AB", "AB", "B"]
    assert run.state.value == 1 and not run.deadlocked and run.panic is None
    assert replay(racy_counter, run.schedule).trace == run.trace


def test_after_the_schedule_the_first_runnable_thread_runs():
    assert replay(racy_counter, "B").schedule == "BAAB"
    assert replay(racy_counter, "").schedule == "AABB"


def test_explore_finds_the_lost_update_and_its_schedule():
    result = explore(racy_counter, both_incremented)
    assert result.runs == 2
    assert result.failing_schedule == "ABAB" and result.reason == "check failed"
    assert result.failure.state.value == 1
    assert result.failure.format_trace().splitlines() == [
        "  1 A: read 0", "  2 B: read 0", "  3 A: finished", "  4 B: finished"]


def test_the_lock_removes_the_race_for_every_interleaving():
    result = explore(locked_counter, both_incremented)
    # AABB, BBAA, and the two where the second thread waits once: ABABB, BABAA.
    assert result.runs == 4 and result.failure is None and result.failing_schedule is None
    waited = replay(locked_counter, "AB")
    assert waited.schedule == "ABABB" and waited.state.value == 2
    assert waited.trace[1] == Step("B", "waiting for counter lock")


def test_spinlock_protected_steps_remove_the_race_too():
    def add_one(counter):
        x = counter.value
        yield f"read {x}"
        counter.value = x + 1

    def thread(protected):
        yield from protected.with_locked_steps(add_one)

    def program() -> Program:
        protected = SpinlockProtected(Counter(), name="counter")
        return Program([SimThread(name, thread, protected) for name in "AB"], state=protected)

    result = explore(program, lambda protected: protected.with_locked(both_incremented))
    assert result.runs == 4 and result.failure is None


def counted_steps(log, name, count):
    for i in range(count - 1):
        log.append(name)
        yield f"step {i + 1}"
    log.append(name)


def steps_program(steps) -> Program:
    log: list[str] = []
    return Program([SimThread(name, counted_steps, log, name, count)
                    for name, count in zip("ABC", steps)], state=log)


@pytest.mark.parametrize("steps, expected", [((2, 2), 6), ((3, 3), 20), ((1, 1, 1), 6),
                                             ((2, 1, 1), 12), ((4,), 1)])
def test_exploration_counts_match_combinatorics(steps, expected):
    assert explore(lambda: steps_program(steps)).runs == expected


@given(st.lists(st.integers(1, 3), min_size=1, max_size=3))
def test_explore_runs_every_interleaving_exactly_once(steps):
    seen = []

    def record(log) -> bool:
        seen.append("".join(log))
        return True

    result = explore(lambda: steps_program(steps), record)
    multinomial = factorial(sum(steps))
    for count in steps:
        multinomial //= factorial(count)
    assert result.runs == len(seen) == len(set(seen)) == multinomial
    assert all(sorted(order) == sorted("".join(n * c for n, c in zip("ABC", steps)))
               for order in seen)


def take_two(first, second):
    yield from first.acquire()
    yield f"has {first.name}"
    yield from second.acquire()
    second.unlock()
    first.unlock()


def opposite_orders() -> Program:
    x, y = Spinlock("x"), Spinlock("y")
    return Program([SimThread("A", take_two, x, y), SimThread("B", take_two, y, x)],
                   state=(x, y))


def test_a_deadlock_is_detected_and_reported_with_its_schedule():
    result = explore(opposite_orders)
    assert result.reason == "deadlock" and result.failing_schedule == "ABAB"
    assert result.failure.deadlocked
    assert result.failure.trace == [Step("A", "has x"), Step("B", "has y"),
                                    Step("A", "waiting for y"), Step("B", "waiting for x")]
    assert replay(opposite_orders, "ABAB").deadlocked


def test_the_same_order_never_deadlocks():
    def same_order() -> Program:
        x, y = Spinlock("x"), Spinlock("y")
        return Program([SimThread(name, take_two, x, y) for name in "AB"])

    result = explore(same_order)
    assert result.failure is None and result.runs > 1


def test_a_deadlocked_run_closes_its_threads_as_themselves():
    def nested(outer, inner):
        def hold_inner(_):
            yield "has both"

        def hold_outer(_):
            yield "has outer"
            yield from inner.with_locked_steps(hold_inner)

        yield from outer.with_locked_steps(hold_outer)

    def program() -> Program:
        x, y = SpinlockProtected(0, name="x"), SpinlockProtected(0, name="y")
        return Program([SimThread("A", nested, x, y), SimThread("B", nested, y, x)],
                       state=(x, y))

    run = replay(program, "ABAB")
    assert run.deadlocked
    assert [protected.is_locked() for protected in run.state] == [False, False]
    assert current_context() is MAIN


def test_blocked_threads_are_never_chosen():
    with pytest.raises(ValueError, match=r"step 3 chooses B, which is blocked waiting for "
                                         r"counter lock, held by A; runnable: A"):
        replay(locked_counter, "ABB")


@given(st.text(alphabet="AB", max_size=7))
def test_any_schedule_either_runs_as_written_or_is_refused(schedule):
    try:
        run = replay(locked_counter, schedule)
    except ValueError as error:
        assert "blocked" in str(error) or "finished" in str(error)
        return
    assert run.schedule.startswith(schedule)
    assert all(letter in runnable for letter, runnable in zip(run.schedule, run.choices))
    assert run.state.value == 2


@pytest.mark.parametrize("schedule, message", [
    ("AXB", r"step 2 names 'X', but the threads are A, B"),
    ("a", r"step 1 names 'a'"),
    ("AAA", r"step 3 chooses A, which has finished; runnable: B"),
    ("AABBA", r"step 5 chooses A, which has finished; runnable: none"),
])
def test_bad_schedules_are_refused_clearly(schedule, message):
    with pytest.raises(ValueError, match=message):
        replay(racy_counter, schedule)


def test_a_panic_in_a_thread_fails_the_interleaving():
    def insert(items):
        items.append(0)
        yield "appended"
        items.sort()

    def lookup(items):
        VERIFY(items == sorted(items), f"lookup found an unsorted tree: {items}")
        yield "looked up"

    def program() -> Program:
        items = [1, 2]
        return Program([SimThread("insert", insert, items), SimThread("lookup", lookup, items)])

    result = explore(program)
    assert result.failing_schedule == "AB" and result.runs == 2
    assert result.reason == "panic: lookup found an unsorted tree: [1, 2, 0]"
    assert result.failure.trace[-1] == Step("lookup", "panic: lookup found an unsorted tree: "
                                                      "[1, 2, 0]")
    assert result.failure.format_trace().splitlines()[0] == "  1 A (insert): appended"


def test_max_runs_bounds_the_exploration():
    assert explore(lambda: steps_program((2, 2)), max_runs=6).runs == 6
    with pytest.raises(RuntimeError, match="explored 5 interleavings and more remain"):
        explore(lambda: steps_program((2, 2)), max_runs=5)


def test_threads_run_on_their_cpu_as_their_own_context():
    machine = Machine(X86_64, ram_size=1 * MiB, cpu_count=2)
    seen = []

    def where():
        seen.append((current_context().name, machine.current_cpu.id))
        yield
        seen.append((current_context().name, machine.current_cpu.id))

    threads = [SimThread("bsp", where), SimThread("ap", where, cpu=1)]
    run = Scheduler(threads, machine).run("BAB")
    assert seen == [("ap", 1), ("bsp", 0), ("ap", 1), ("bsp", 0)]
    assert run.trace[0] == Step("ap", "")
    assert machine.current_cpu is machine.cpus[0] and current_context() is MAIN


def test_misuse_is_reported_clearly():
    with pytest.raises(ValueError, match="asks for CPU 1, but the scheduler has no machine"):
        Scheduler([SimThread("A", increment, Counter(), cpu=1)])
    machine = Machine(X86_64, ram_size=1 * MiB, cpu_count=2)
    with pytest.raises(ValueError, match="asks for CPU 2, but .* has CPUs 0-1"):
        Scheduler([SimThread("A", increment, Counter(), cpu=2)], machine)
    with pytest.raises(TypeError, match="not a generator function"):
        Scheduler([SimThread("A", lambda: None)]).run()
    with pytest.raises(TypeError, match=r"yielded 5: yield a label string"):
        Scheduler([SimThread("A", lambda: (yield 5))]).run()
    scheduler = Scheduler(racy_counter().threads)
    scheduler.run()
    with pytest.raises(ValueError, match="runs its threads once"):
        scheduler.run()


def test_a_thread_that_never_ends_is_stopped():
    def forever():
        while True:
            yield "spin"

    with pytest.raises(RuntimeError, match="no end after 50 steps"):
        Scheduler([SimThread("A", forever)], max_steps=50).run()
