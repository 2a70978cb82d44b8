"""OpenTelemetry (the ``otel`` extra): a dispatched task's trace reaches the worker's batch span
as a link; a failed task is a span event; a retry keeps the trace."""

from __future__ import annotations

import pytest

pytest.importorskip("opentelemetry.sdk", reason="the dev extra installs opentelemetry-sdk")

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)

from infinitic_py import AsyncClient, RetryPolicy, TaskFailed, Worker, task, tracing
from infinitic_py.transport.memory import reset_broker

EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module", autouse=True)
def provider() -> None:
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
    trace.set_tracer_provider(tracer_provider)  # once per process: OpenTelemetry's rule
    tracing._no_provider_until = 0.0  # "no provider" is believed for a second: not any more


class Traced:
    def __init__(self) -> None:
        self.calls = 0

    @task
    def go(self, n: int) -> int:
        return n

    @go.batch(max_messages=2, max_seconds=0.2)
    def go_batch(self, ns: dict[str, int]) -> dict[str, int | Exception]:
        self.calls += 1
        return {t: (ValueError(f"odd {n}") if n % 2 else n) for t, n in ns.items()}


async def test_the_callers_trace_reaches_the_batch_span_and_its_retries() -> None:
    assert tracing.ENABLED
    EXPORTER.clear()
    url = "memory://tracing"
    worker = Worker(url)
    worker.add_service(Traced(), retry=RetryPolicy(maximum_retries=1, minimum_seconds=0.01,
                                                   random_factor=0.0))
    tracer = trace.get_tracer("test")
    try:
        async with worker, AsyncClient(url) as client:
            with tracer.start_as_current_span("web-request") as request:
                ok, odd = await client.service(Traced).go.many([2, 3])
            trace_id = request.get_span_context().trace_id
            assert await ok.result(timeout=10) == 2
            with pytest.raises(TaskFailed):
                await odd.result(timeout=10)
    finally:
        reset_broker("tracing")
    batches = [s for s in EXPORTER.get_finished_spans() if s.name == "Traced.go"]
    assert len(batches) == 2  # the first batch, then the retry of the odd task
    first, retry = sorted(batches, key=lambda s: s.start_time or 0)
    assert {link.context.trace_id for link in first.links} == {trace_id}
    assert len(first.links) == 2
    assert [link.context.trace_id for link in retry.links] == [trace_id]  # the retry kept it
    (failed,) = [e for e in first.events if e.name == "task.failed"]
    assert failed.attributes is not None
    assert failed.attributes["exception.type"] == "ValueError"
    assert failed.attributes["infinitic.task_id"] == odd.task_id
    assert first.attributes is not None and first.attributes["infinitic.service"] == "Traced"


def test_without_the_package_tracing_is_off_and_tasks_still_run() -> None:
    import subprocess
    import sys

    script = (
        "import sys; sys.modules['opentelemetry'] = None\n"  # as if the extra were not installed
        "import asyncio\n"
        "from infinitic_py import AsyncClient, Worker, tracing\n"
        "from tests.unit.plain_service import Plain\n"
        "assert not tracing.ENABLED\n"
        "async def main():\n"
        "    async with Worker('memory://off').add_service(Plain()), AsyncClient('memory://off') as c:\n"
        "        (d,) = await c.service(Plain).go.many([5])\n"
        "        assert await d.result(timeout=10) == 5\n"
        "asyncio.run(main())\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60, check=False)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr


async def test_an_atomic_bulk_carries_the_callers_trace_to_each_task() -> None:
    EXPORTER.clear()
    url = "memory://tracing-bulk"
    worker = Worker(url)
    worker.add_service(Traced())
    tracer = trace.get_tracer("test")
    try:
        async with worker, AsyncClient(url) as client:
            with tracer.start_as_current_span("web-request") as request:
                ds = await client.service(Traced).go.many([2, 4], atomic=True)
            trace_id = request.get_span_context().trace_id
            assert [await d.result(timeout=10) for d in ds] == [2, 4]
    finally:
        reset_broker("tracing-bulk")
    (batch,) = [s for s in EXPORTER.get_finished_spans() if s.name == "Traced.go"]
    assert [link.context.trace_id for link in batch.links] == [trace_id, trace_id]
