"""RetryPolicy: when (and whether) a failed task is tried again. Pure, no I/O.

Infinitic's names in snake_case; the delay is computed with tenacity's wait strategies:
``wait_exponential`` (minimum × coefficient^retry_index, capped at maximum) then a symmetric jitter
of ±``random_factor``, and ``stop_after_attempt`` for the retry count.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import tenacity


def _fake_state(attempt_number: int) -> tenacity.RetryCallState:
    state = tenacity.RetryCallState(retry_object=tenacity.Retrying(), fn=None, args=(), kwargs={})
    state.attempt_number = attempt_number
    return state


@dataclass(frozen=True)
class RetryPolicy:
    """Retry with exponential backoff and jitter.

    ``maximum_retries`` retries at most (0 = never retry). Retry ``n`` (0-based: the first retry is
    ``retry_index`` 0 → 1) waits ``min(maximum_seconds, minimum_seconds × backoff_coefficient^n)``
    multiplied by a random factor in ``[1 - random_factor, 1 + random_factor]``.
    Exceptions whose type (or a base of it) is in ``ignored_exceptions`` are never retried.
    """

    maximum_retries: int = 11
    minimum_seconds: float = 1.0
    maximum_seconds: float = 1000.0
    backoff_coefficient: float = 2.0
    random_factor: float = 0.5
    ignored_exceptions: tuple[type[BaseException], ...] = ()
    _random: Callable[[], float] = field(default=random.random, repr=False, compare=False)

    def __post_init__(self) -> None:
        ignored = self.ignored_exceptions
        if isinstance(ignored, type):
            ignored = (ignored,)
        if isinstance(ignored, str) or not isinstance(ignored, tuple | list | set | frozenset):
            ignored = (ignored,)
        for item in ignored:
            if not (isinstance(item, type) and issubclass(item, BaseException)):
                raise TypeError(
                    f"ignored_exceptions must be exception classes (ValueError, not the name "
                    f"'ValueError'), got {item!r}")
        object.__setattr__(self, "ignored_exceptions", tuple(ignored))
        problems = []
        if self.maximum_retries < 0:
            problems.append("maximum_retries must be >= 0")
        if self.minimum_seconds < 0:
            problems.append("minimum_seconds must be >= 0")
        if self.maximum_seconds < self.minimum_seconds:
            problems.append("maximum_seconds must be >= minimum_seconds")
        if self.backoff_coefficient < 1:
            problems.append("backoff_coefficient must be >= 1")
        if not 0 <= self.random_factor <= 1:
            problems.append("random_factor must be within [0, 1]")
        if problems:
            raise ValueError("invalid RetryPolicy: " + "; ".join(problems))
        object.__setattr__(
            self,
            "_wait",
            tenacity.wait_exponential(
                multiplier=self.minimum_seconds,
                exp_base=self.backoff_coefficient,
                min=self.minimum_seconds,
                max=self.maximum_seconds,
            ),
        )
        object.__setattr__(self, "_stop", tenacity.stop_after_attempt(self.maximum_retries + 1))

    @classmethod
    def never(cls) -> RetryPolicy:
        """No retry: Infinitic's default."""
        return cls(maximum_retries=0)

    def is_retryable(self, error_type: type[BaseException] | None) -> bool:
        return error_type is None or not issubclass(error_type, self.ignored_exceptions)

    def base_delay(self, retry_index: int) -> float:
        """Delay before retry number ``retry_index + 1``, without jitter."""
        wait: tenacity.wait.wait_base = self._wait  # type: ignore[attr-defined]
        return float(wait(_fake_state(retry_index + 1)))

    def delay_bounds(self, retry_index: int) -> tuple[float, float]:
        base = self.base_delay(retry_index)
        return base * (1 - self.random_factor), base * (1 + self.random_factor)

    def next_delay(
        self, retry_index: int, error_type: type[BaseException] | None = None
    ) -> float | None:
        """Seconds to wait before the next try of a task that failed at ``retry_index``;
        ``None`` when the task must not be retried (exhausted or ignored exception)."""
        if not self.is_retryable(error_type):
            return None
        stop: tenacity.stop.stop_base = self._stop  # type: ignore[attr-defined]
        if stop(_fake_state(retry_index + 1)):
            return None
        jitter = 1 + self.random_factor * (2 * self._random() - 1)
        return max(0.0, self.base_delay(retry_index) * jitter)


NO_RETRY = RetryPolicy.never()


def check_retry(retry: object) -> RetryPolicy | None:
    """A retry option given in code: None or a RetryPolicy (TypeError otherwise)."""
    if retry is not None and not isinstance(retry, RetryPolicy):
        raise TypeError(f"retry must be a RetryPolicy (or None), got {type(retry).__name__}: "
                        f"RetryPolicy(**{retry!r})" if isinstance(retry, dict) else
                        f"retry must be a RetryPolicy (or None), got {retry!r}")
    return retry
