"""Worker-side options given in code (README "Worker", "Retries and dead letters") are checked
when given, with a one-line error naming them: a wrong one used to pass, then crash the outcome
of the first failing task (retry={...}, ignored_exceptions=("ValueError",)), leaving its caller
without an answer."""

from __future__ import annotations

import math
from typing import Any

import pytest

from infinitic_py import BatchLimits, RetryPolicy, Worker, task
from infinitic_py.errors import ServiceDefinitionError


class Svc:
    @task
    def go(self, x: int) -> int:
        return x

    @task
    def many(self, x: int) -> int:
        return x

    @many.batch(max_messages=10, max_seconds=0.1)
    def many_batch(self, xs: dict[str, int]) -> dict[str, int]:
        return xs


def add(**options: Any) -> None:
    Worker("memory://worker-args").add_service(Svc(), **options)


@pytest.mark.parametrize(("options", "error", "words"), [
    ({"retry": {"maximum_retries": 2}}, TypeError, "retry must be a RetryPolicy"),
    ({"timeout": -1}, ValueError, "timeout must be a finite number of seconds > 0"),
    ({"timeout": math.inf}, ValueError, "timeout must be a finite number of seconds > 0"),
    ({"timeout": "30"}, TypeError, "timeout must be a number of seconds"),
    ({"concurrency": "3"}, TypeError, "concurrency must be an int"),
    ({"batch": {"many": 5}}, TypeError, r"batch\['many'\] must be BatchLimits"),
])
def test_add_service_options_are_checked(options: dict[str, Any], error: type[Exception],
                                         words: str) -> None:
    with pytest.raises(error, match=words) as info:
        add(**options)
    assert "\n" not in str(info.value)


def test_ignored_exceptions_must_be_exception_classes() -> None:
    with pytest.raises(TypeError, match=r"ignored_exceptions must be exception classes.*'Value"):
        RetryPolicy(ignored_exceptions=("ValueError",))  # type: ignore[arg-type]
    assert RetryPolicy(ignored_exceptions=(ValueError, KeyError)).is_retryable(OSError)


@pytest.mark.parametrize(("options", "error", "words"), [
    ({"retry": {"maximum_retries": 2}}, TypeError, "retry must be a RetryPolicy"),
    ({"timeout": 0}, ValueError, "timeout must be a finite number of seconds > 0"),
])
def test_task_decorator_options_are_checked(options: dict[str, Any], error: type[Exception],
                                            words: str) -> None:
    with pytest.raises(error, match=words):
        task(**options)(lambda self, x: x)


@pytest.mark.parametrize("given", [Svc, "Svc"])
def test_add_service_wants_an_instance(given: Any) -> None:
    with pytest.raises(ServiceDefinitionError, match="an instance") as info:
        Worker("memory://worker-args").add_service(given)
    assert "Svc()" in str(info.value)


def test_valid_options_still_work() -> None:
    add(retry=RetryPolicy(maximum_retries=1), timeout=5, concurrency=2,
        batch={"many": BatchLimits(5, 0.5)})
    add(batch={"many": (5, 0.5)}, timeout=None, retry=None)
