"""Backlog gauges against the real broker (issue 15): with delayed tasks present, the ready gauge
counts only the due work and the delayed gauge the rest."""

from __future__ import annotations

import asyncio
import uuid

import msgspec

from infinitic_py import AsyncClient, Call, Worker, task
from infinitic_py.admin import PulsarAdmin
from infinitic_py.topics import WORKER_SUBSCRIPTION, service_topic
from infinitic_py.transport.base import ConsumerSettings

from .conftest import BrokerInfo
from .harness import poll

READY = 200
DELAYED = 30


class Job(msgspec.Struct, frozen=True):
    n: int


class GatedService:
    """Holds its first batch until ``gate`` opens: the rest of the ready tasks wait on the topic."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.done = 0

    @task
    def run(self, job: Job) -> None:
        return None

    @run.batch(max_messages=10, max_seconds=0.1)
    async def run_batch(self, jobs: dict[str, Job]) -> None:
        await self.gate.wait()
        self.done += len(jobs)


async def test_ready_backlog_excludes_delayed_tasks(
    pulsar_broker: BrokerInfo, admin: PulsarAdmin
) -> None:
    name = f"Backlog{uuid.uuid4().hex[:10]}"
    topic = service_topic("public", "default", name)
    service = GatedService()
    worker = Worker(
        pulsar_broker.service_url, name="backlog-test", http_port=None,
        admin_url=pulsar_broker.admin_url, backlog_interval=0.5,
        consumer=ConsumerSettings(receiver_queue_size=10), max_buffered_messages=20,
    ).add_service(service, name=name, concurrency=1)

    def gauge(metric: str) -> float | None:
        return worker.metrics.registry.get_sample_value(
            f"infinitic_backlog_{metric}_messages", {"service": name})

    async def gauges() -> tuple[float | None, float | None]:
        return gauge("ready"), gauge("delayed")

    async with AsyncClient(pulsar_broker.service_url, results=False) as client:
        stub = client.service(GatedService, name=name)
        await stub.run.many([Call(Job(i), delay=600.0) for i in range(DELAYED)])
        # One key per task: one entry each (the broker counts a backlog in entries, and a
        # producer batch of one key is one entry).
        await stub.run.many([Call(Job(i), meta={"batchKey": f"k{i}"}) for i in range(READY)])
        await worker.start()
        try:
            # The worker holds at most 20 (+ its receive queue): the rest is due and waiting.
            held = await poll(gauges, lambda g: g[1] == DELAYED and (g[0] or 0) > READY / 2,
                              timeout=30)
            assert held[1] == DELAYED and (held[0] or 0) > READY / 2, held
            stats = await asyncio.to_thread(admin.topic_stats, topic)
            msg_backlog = stats["subscriptions"][WORKER_SUBSCRIPTION]["msgBacklog"]
            assert msg_backlog >= READY / 2 + DELAYED, "msgBacklog counts the delayed tasks too"
            service.gate.set()  # the due work drains; the delayed tasks stay
            drained = await poll(gauges, lambda g: g == (0, DELAYED), timeout=30)
            assert drained == (0, DELAYED), drained
            assert service.done == READY
            print(f"\nwhile held: ready {held[0]:.0f}, delayed {held[1]:.0f}, msgBacklog "
                  f"{msg_backlog}; drained: ready {drained[0]:.0f}, delayed {drained[1]:.0f}")
        finally:
            await worker.stop(grace=5)
