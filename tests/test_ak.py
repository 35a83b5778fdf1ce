import pytest

from refimpl.ak import MUST, TRY, VERIFY, Errno, Error, ErrorOr, KernelPanic, fallible


@fallible
def halve(n: int):
    if n % 2:
        return Error.from_errno(Errno.EINVAL, f"{n} is odd")
    return n // 2


@fallible
def quarter(n: int):
    return TRY(halve(TRY(halve(n))))


def test_error_kinds_and_repr():
    error = Error.from_errno(Errno.ENOMEM)
    assert error.is_errno() and error.code() == 12
    assert repr(error) == "Error(ENOMEM: Out of memory)"
    literal = Error.from_string_literal("no such region")
    assert not literal.is_errno() and literal.code() == 0
    assert literal.string_literal() == "no such region"
    assert repr(literal) == "Error('no such region')"


def test_detail_is_shown_but_not_compared():
    with_detail = Error.from_errno(Errno.EINVAL, "size is zero")
    assert "size is zero" in repr(with_detail)
    assert with_detail == Error.from_errno(Errno.EINVAL)


def test_error_or_accessors():
    good: ErrorOr[int] = ErrorOr(5)
    assert not good.is_error() and good.value() == 5 and good.release_value() == 5
    bad: ErrorOr[int] = ErrorOr.from_error(Error.from_errno(Errno.EFAULT))
    assert bad.is_error() and bad.error().code() == Errno.EFAULT
    with pytest.raises(KernelPanic, match="EFAULT"):
        bad.value()
    with pytest.raises(KernelPanic):
        good.error()
    with pytest.raises(TypeError):
        ErrorOr(Error.from_errno(Errno.EPERM))


def test_try_propagates_from_the_enclosing_function():
    assert quarter(12) == ErrorOr(3)
    result = quarter(6)
    assert result.is_error() and result.error().code() == Errno.EINVAL
    assert "3 is odd" in repr(result.error())


def test_fallible_wraps_none_as_success():
    @fallible
    def nothing():
        return None

    assert nothing() == ErrorOr(None)


def test_try_in_a_helper_that_is_not_fallible_panics_clearly():
    def helper(n):
        return TRY(halve(n))

    @fallible
    def outer(n):
        return helper(n)

    with pytest.raises(KernelPanic, match=r"helper\(\), which is not @fallible"):
        outer(3)


def test_try_propagation_passes_through_except_exception():
    @fallible
    def swallowing(n):
        try:
            return TRY(halve(n))
        except Exception:  # a TRY must not be caught by ordinary handlers
            return "swallowed"

    assert swallowing(3).is_error()


def test_must_and_verify():
    assert MUST(halve(4)) == 2
    with pytest.raises(KernelPanic, match="MUST failed: Error\\(EINVAL"):
        MUST(halve(5))
    with pytest.raises(TypeError):
        TRY(5)
    VERIFY(True)
    with pytest.raises(KernelPanic, match="broken"):
        VERIFY(False, "broken")


def test_public_names():
    import refimpl.ak as ak
    for name in ("Error", "ErrorOr", "TRY", "MUST", "KernelPanic", "Errno"):
        assert hasattr(ak, name)
    assert {"ENOMEM", "EINVAL", "EFAULT", "EEXIST", "EPERM", "ENOENT", "EBUSY",
            "EOVERFLOW"} <= set(Errno.__members__)
