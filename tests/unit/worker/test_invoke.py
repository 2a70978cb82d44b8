"""Invoke: always one outcome per task, whatever the user code does."""

from __future__ import annotations

from typing import Any

import structlog

from infinitic_py import get_context, task
from infinitic_py.errors import MissingBatchResult, TaskTimeout
from infinitic_py.service import define_service
from infinitic_py.worker.invoke import Invoker
from infinitic_py.worker.outcomes import Completed, Failed

from .parts import Job, message, routed

LOG = structlog.get_logger("test")


class Odd:
    @task
    def f(self, job: Job) -> Any:  # Any: the outputs are whatever each case needs (unchecked)
        return job.n

    @f.batch(max_messages=10, max_seconds=1)
    def f_batch(self, jobs: dict[str, Job]) -> dict[str, Any] | None:
        kind = next(iter(jobs.values())).n
        if kind == 1:
            return None
        if kind == 2:
            wrong: Any = ["not", "a", "dict"]
            return wrong  # type: ignore[no-any-return]
        if kind == 3:
            return {t: ValueError("no") for t in jobs} | {"stranger": 1}
        if kind == 4:
            return {}
        if kind == 5:
            return {t: get_context(t).batch_key for t in jobs}
        raise RuntimeError("whole batch")


async def run(n: int, count: int = 2, timeout: float | None = None) -> tuple[list[Any], int]:
    method = define_service(Odd(), name="Jobs").methods["f"]
    items = routed(*(message(f"t{i}", "double", (Job(n),), meta={"batchKey": "k"})
                     for i in range(count)))
    invoker = Invoker("Jobs", "w", 2)
    try:
        result = await invoker.run(method, items, "b1", timeout, LOG)
    finally:
        invoker.shutdown()
    assert len(result.outcomes) == count
    return result.outcomes, result.unknown_ids


async def test_none_completes_every_task() -> None:
    outcomes, _ = await run(1)
    assert outcomes == [Completed(None)] * 2


async def test_a_wrong_shape_fails_every_task() -> None:
    outcomes, _ = await run(2)
    assert all(isinstance(o, Failed) and isinstance(o.error, TypeError) for o in outcomes)


async def test_exception_values_fail_alone_and_unknown_ids_are_counted() -> None:
    outcomes, unknown = await run(3)
    assert unknown == 1
    assert all(isinstance(o, Failed) and isinstance(o.error, ValueError) for o in outcomes)


async def test_missing_ids_fail_with_missing_batch_result() -> None:
    outcomes, _ = await run(4)
    assert all(isinstance(o, Failed) and isinstance(o.error, MissingBatchResult)
               for o in outcomes)


async def test_contexts_reach_a_sync_batch_method_in_its_thread() -> None:
    outcomes, _ = await run(5)
    assert outcomes == [Completed("k")] * 2


async def test_a_raising_batch_fails_every_task() -> None:
    outcomes, _ = await run(6, count=3)
    assert [type(o.error) for o in outcomes if isinstance(o, Failed)] == [RuntimeError] * 3


async def test_a_single_method_times_out_as_a_task_timeout() -> None:
    class Slow:
        @task
        async def f(self, job: Job) -> int:
            import asyncio

            await asyncio.sleep(5)
            return 0

    method = define_service(Slow(), name="Jobs").methods["f"]
    invoker = Invoker("Jobs", "w", 2)
    result = await invoker.run(method, routed(message("s", "one")), None, 0.01, LOG)
    invoker.shutdown()
    (outcome,) = result.outcomes
    assert isinstance(outcome, Failed) and isinstance(outcome.error, TaskTimeout)


class Exits:
    """Handlers that call ``sys.exit`` (argparse-style helpers do) or raise KeyboardInterrupt."""

    @task
    def sync_one(self, job: Job) -> int:
        raise SystemExit(job.n)

    @task
    async def async_one(self, job: Job) -> int:
        raise SystemExit(job.n)

    @task
    def f(self, job: Job) -> int:
        return job.n

    @f.batch(max_messages=10, max_seconds=1, isolate_failures=True)
    async def f_batch(self, jobs: dict[str, Job]) -> dict[str, int]:
        if len(jobs) > 1:
            raise SystemExit("whole batch")
        return {t: j.n for t, j in jobs.items()}

    @task
    def interrupted(self, job: Job) -> int:
        raise KeyboardInterrupt


async def test_a_handler_exiting_fails_its_tasks_and_never_stops_the_worker() -> None:
    """Before: SystemExit left the unit's task and stopped the event loop: the worker died
    without draining, and the task, redelivered, killed the next worker too."""
    definition = define_service(Exits(), name="Jobs")
    invoker = Invoker("Jobs", "w", 2)
    try:
        for name in ("sync_one", "async_one", "interrupted"):
            for timeout in (None, 5.0):
                (item,) = routed(message("t1", "one", (Job(3),)))
                result = await invoker.run(definition.methods[name], [item], None, timeout, LOG)
                (outcome,) = result.outcomes
                assert isinstance(outcome, Failed), (name, timeout, outcome)
                assert type(outcome.error).__name__ in ("SystemExit", "KeyboardInterrupt")
        items = routed(*(message(f"t{i}", "double", (Job(i),)) for i in range(4)))
        for timeout in (None, 5.0):
            result = await invoker.run(definition.methods["f"], items, "b1", timeout, LOG)
            assert result.outcomes == [Completed(i) for i in range(4)]  # isolated: all ran
    finally:
        invoker.shutdown()
