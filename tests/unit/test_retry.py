from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infinitic_py.retry import NO_RETRY, RetryPolicy


def test_default_policy_of_the_worker_never_retries() -> None:
    assert NO_RETRY.next_delay(0, ValueError) is None


def test_exponential_backoff_without_jitter() -> None:
    policy = RetryPolicy(maximum_retries=5, minimum_seconds=1.0, maximum_seconds=10.0,
                         backoff_coefficient=2.0, random_factor=0.0)
    assert [policy.next_delay(i) for i in range(6)] == [1.0, 2.0, 4.0, 8.0, 10.0, None]


def test_jitter_stays_within_random_factor() -> None:
    low = RetryPolicy(minimum_seconds=2.0, random_factor=0.5, _random=lambda: 0.0)
    high = RetryPolicy(minimum_seconds=2.0, random_factor=0.5, _random=lambda: 0.999999)
    assert low.next_delay(0) == pytest.approx(1.0)
    assert high.next_delay(0) == pytest.approx(3.0, rel=1e-5)


def test_ignored_exceptions_are_never_retried_including_subclasses() -> None:
    policy = RetryPolicy(ignored_exceptions=(LookupError,))
    assert policy.next_delay(0, KeyError) is None
    assert policy.next_delay(0, ValueError) is not None


def test_invalid_policies_are_rejected_with_every_problem_named() -> None:
    with pytest.raises(ValueError, match=r"maximum_retries.*random_factor"):
        RetryPolicy(maximum_retries=-1, random_factor=2.0)


@given(
    retries=st.integers(0, 15),
    minimum=st.floats(0.0, 10.0),
    extra=st.floats(0.0, 100.0),
    coefficient=st.floats(1.0, 4.0),
    factor=st.floats(0.0, 1.0),
    index=st.integers(0, 20),
)
def test_delay_is_within_bounds_and_retries_stop(
    retries: int, minimum: float, extra: float, coefficient: float, factor: float, index: int
) -> None:
    policy = RetryPolicy(maximum_retries=retries, minimum_seconds=minimum,
                         maximum_seconds=minimum + extra, backoff_coefficient=coefficient,
                         random_factor=factor)
    delay = policy.next_delay(index)
    if index >= retries:
        assert delay is None
    else:
        assert delay is not None
        lo, hi = policy.delay_bounds(index)
        assert lo - 1e-9 <= delay <= hi + 1e-9
        assert policy.base_delay(index) <= minimum + extra + 1e-9
