"""Executor throughput: a ``ServiceExecutor`` (what ``Worker`` runs per service) draining N
pre-published ExecuteTask messages through a batched no-op.

Measured: from the first message the executor's consumer hands out to the acknowledgement of the
N-th (a thin counting wrapper around the transport's consumer; one extra await per receive).
Afterwards the admin API must show the subscription drained (no backlog, nothing unacked).
No ``reply_to``: nothing is published back, so this is the worker's receive → decode → route →
batch → run → ack path alone.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from benchmarks.common import (
    NAMESPACE,
    TENANT,
    CountingTransport,
    Env,
    outgoing,
    prepublish,
    rate,
    wait_drained,
)
from benchmarks.services import NoopService, SyncNoopService
from infinitic_py.batching import BatchLimits
from infinitic_py.observability import Metrics
from infinitic_py.service import define_service
from infinitic_py.topics import service_topic
from infinitic_py.worker.executor import ServiceExecutor
from infinitic_py.worker.settings import ExecutorSettings


@dataclass(frozen=True)
class ExecutorResult:
    max_messages: int
    n: int
    seconds: float
    drained: bool
    batches: int

    @property
    def tasks_per_s(self) -> float:
        return rate(self.n, self.seconds)


@contextlib.contextmanager
def _profiling(profile_path: str | None) -> Iterator[None]:
    if profile_path is None:
        yield
        return
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0005, async_mode="disabled")
    profiler.start()
    try:
        yield
    finally:
        profiler.stop()
        with open(profile_path, "w") as out:
            out.write(profiler.output_text(unicode=True, color=False, show_all=False))
        html = profile_path.rsplit(".", 1)[0] + ".html"
        with open(html, "w") as out:
            out.write(profiler.output_html())


async def run_executor(
    env: Env,
    max_messages: int,
    n: int,
    *,
    max_seconds: float = 0.05,
    concurrency: int = 10,
    profile_path: str | None = None,
    transport_options: dict[str, Any] | None = None,
    sync: bool = False,
) -> ExecutorResult:
    """``sync``: the batch method is a plain ``def`` (run in the executor's thread pool)."""
    service = env.service_name(f"Exec{max_messages}{'s' if sync else ''}")
    topic = service_topic(TENANT, NAMESPACE, service)
    await prepublish(env, topic, outgoing(service, "noop", n))
    transport = CountingTransport(env.url, **(transport_options or {}))
    transport.expected = n
    transport.topic = topic
    definition = define_service(
        SyncNoopService() if sync else NoopService(), name=service,
        batch_limits={"noop": BatchLimits(max_messages, max_seconds)},
    )
    metrics = Metrics()
    executor = ServiceExecutor(
        definition, transport, metrics=metrics, settings=
        ExecutorSettings(tenant=TENANT, namespace=NAMESPACE, concurrency=concurrency,
                         worker_name=f"bench-{env.run_id}"),
    )
    batches = 0
    try:
        with _profiling(profile_path):
            await executor.start()
            counting = transport.counting
            assert counting is not None
            await asyncio.wait_for(counting.all_acked.wait(), timeout=max(60.0, n / 500))
        seconds = counting.elapsed
        batches = int(metrics.registry.get_sample_value(
            "infinitic_batch_size_count", {"service": service, "method": "noop"}) or 0)
    finally:
        await executor.stop(grace=5.0)
        await transport.close()
    drained = await wait_drained(env, topic, timeout=10.0) == (0, 0)
    return ExecutorResult(max_messages, n, seconds, drained, batches)
