import pytest
from hypothesis import given
from hypothesis import strategies as st

from refimpl.ak import KernelPanic
from refimpl.kernel.locking import (MAIN, ExecutionContext, RecursiveSpinlock, Spinlock,
                                    SpinlockProtected, WaitingFor, current_context, running_as)

OTHER = ExecutionContext("other")


def test_main_is_the_context_outside_any_thread_and_running_as_restores_it():
    assert current_context() is MAIN
    with running_as(OTHER):
        assert current_context() is OTHER
    assert current_context() is MAIN
    with pytest.raises(RuntimeError), running_as(OTHER):
        raise RuntimeError
    assert current_context() is MAIN


def test_spinlock_is_owned_by_the_context_that_took_it():
    lock = Spinlock("tree")
    assert not lock.is_locked() and lock.holder() is None and lock.depth == 0
    lock.lock()
    assert lock.is_locked() and lock.holder() is MAIN and lock.depth == 1
    assert lock.is_locked_by_current_context()
    assert repr(lock) == "Spinlock('tree', held by main)"
    with running_as(OTHER):
        assert lock.is_locked() and not lock.is_locked_by_current_context()
        assert lock.try_lock() is False
        with pytest.raises(KernelPanic, match=r"other would spin forever on .*'tree'.*main"):
            lock.lock()
        with pytest.raises(KernelPanic, match=r"other unlocks .*'tree'.*which it does not hold"):
            lock.unlock()
    assert lock.holder() is MAIN
    lock.unlock()
    assert not lock.is_locked() and repr(lock) == "Spinlock('tree', free)"


def test_try_lock_takes_a_free_lock_once():
    lock = Spinlock("quickmap")
    assert lock.try_lock() is True
    assert lock.try_lock() is False
    assert lock.holder() is MAIN and lock.depth == 1


def test_locking_a_spinlock_you_hold_is_a_self_deadlock():
    lock = Spinlock("mm")
    lock.lock()
    with pytest.raises(KernelPanic, match=r"self-deadlock: main locks Spinlock\('mm'"):
        lock.lock()
    assert lock.depth == 1


def test_unlocking_a_free_lock_panics():
    with pytest.raises(KernelPanic, match=r"main unlocks Spinlock\('mm', free\)"):
        Spinlock("mm").unlock()


def test_context_manager_releases_on_exception():
    lock = Spinlock("tree")
    with pytest.raises(ZeroDivisionError):
        with lock as held:
            assert held is lock and lock.is_locked_by_current_context()
            1 / 0
    assert not lock.is_locked()


def test_recursive_spinlock_counts_depth_and_frees_at_zero():
    lock = RecursiveSpinlock("space")
    with lock:
        with lock:
            assert lock.try_lock() is True
            assert lock.depth == 3
            with running_as(OTHER):
                assert lock.try_lock() is False
            lock.unlock()
        assert lock.depth == 1 and lock.holder() is MAIN
    assert lock.depth == 0 and not lock.is_locked()
    with running_as(OTHER):
        assert lock.try_lock() is True and lock.holder() is OTHER
        lock.unlock()


@given(st.lists(st.booleans(), max_size=30))
def test_recursive_depth_follows_a_model(operations):
    lock, depth = RecursiveSpinlock("r"), 0
    for take in operations:
        if take:
            lock.lock()
            depth += 1
        elif depth:
            lock.unlock()
            depth -= 1
        else:
            with pytest.raises(KernelPanic):
                lock.unlock()
        assert lock.depth == depth and lock.is_locked() == (depth > 0)


def test_acquire_yields_waiting_for_while_another_context_holds_the_lock():
    lock = Spinlock("tree")
    lock.lock()
    with running_as(OTHER):
        waiting = lock.acquire()
        marker = next(waiting)
        assert marker == WaitingFor(lock) and str(marker) == "waiting for tree"
        assert next(waiting) == WaitingFor(lock)
    lock.unlock()
    with running_as(OTHER):
        with pytest.raises(StopIteration):
            next(waiting)
    assert lock.holder() is OTHER


def test_acquire_of_a_free_lock_does_not_yield():
    lock = RecursiveSpinlock("r")
    assert list(lock.acquire()) == []
    assert list(lock.acquire()) == []
    assert lock.depth == 2


def test_spinlock_protected_gives_the_value_only_under_the_lock():
    protected = SpinlockProtected([1, 2], name="regions")

    def append(regions):
        assert protected.is_locked()
        regions.append(3)
        return len(regions)

    assert protected.with_locked(append) == 3
    assert not protected.is_locked()
    assert protected.with_locked(list) == [1, 2, 3]
    public = [name for name in vars(protected) if not name.startswith("_SpinlockProtected__")]
    assert public == [] and not hasattr(protected, "value")


def test_spinlock_protected_is_recursive_and_releases_on_exception():
    protected = SpinlockProtected({"count": 0})

    def nested(state):
        return protected.with_locked(lambda inner: inner is state)

    assert protected.with_locked(nested) is True

    def fail(state):
        state["count"] += 1
        raise ValueError("callback failed")

    with pytest.raises(ValueError, match="callback failed"):
        protected.with_locked(fail)
    assert not protected.is_locked()
    assert protected.with_locked(lambda state: state["count"]) == 1


def test_with_locked_steps_holds_the_lock_across_yields():
    protected = SpinlockProtected([], name="log")

    def steps(log):
        log.append("first")
        yield "appended first"
        log.append("second")
        return len(log)

    thread = protected.with_locked_steps(steps)
    assert next(thread) == "appended first"
    assert protected.is_locked()
    with running_as(OTHER):
        other = protected.with_locked_steps(steps)
        assert isinstance(next(other), WaitingFor)
    with pytest.raises(StopIteration) as finished:
        next(thread)
    assert finished.value.value == 2
    assert not protected.is_locked()


def test_with_locked_steps_releases_on_exception():
    protected = SpinlockProtected(0)

    def steps(value):
        yield "before"
        raise KeyError(value)

    thread = protected.with_locked_steps(steps)
    next(thread)
    with pytest.raises(KeyError):
        next(thread)
    assert not protected.is_locked()
