"""``batch.completed`` counts a task whose result could not be encoded as failed (its
method declares `int`: the worker's result check fails it, `ResultTypeError`)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import structlog

from infinitic_py import AsyncClient, TaskFailed, Worker, task
from infinitic_py.transport.memory import reset_broker


class Mixed:
    @task
    def make(self, n: int) -> int:
        return n

    @make.batch(max_messages=3, max_seconds=5.0)
    def make_batch(self, ns: dict[str, int]) -> dict[str, int]:
        # An object msgspec cannot encode: that task fails while its reply is encoded.
        unencodable: Any = object()
        return {t: (unencodable if n == 2 else n) for t, n in ns.items()}


async def test_a_result_that_cannot_be_encoded_counts_as_failed_in_the_log() -> None:
    url = "memory://batch-log-counts"
    stdlog = logging.getLogger("infinitic_py.executor")
    level = stdlog.level
    stdlog.setLevel(logging.INFO)
    worker = Worker(url)
    worker.add_service(Mixed())
    try:
        with structlog.testing.capture_logs() as logs:
            async with worker, AsyncClient(url) as client:
                d1, d2, d3 = await client.service(Mixed).make.many([1, 2, 3])
                assert await d1.result(timeout=10) == 1
                assert await d3.result(timeout=10) == 3
                with pytest.raises(TaskFailed) as failed:
                    await d2.result(timeout=10)
                assert failed.value.error_type == "ResultTypeError"
        (completed,) = [e for e in logs if e["event"] == "batch.completed"]
        assert (completed["completed"], completed["failed"]) == (2, 1)
    finally:
        stdlog.setLevel(level)
        reset_broker("batch-log-counts")
