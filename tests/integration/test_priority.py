"""Priority bands (issue 18) on both transports: preference, and bounded starvation."""

from __future__ import annotations

import asyncio
import uuid

import msgspec

from infinitic_py import AsyncClient, Call, Worker, task
from infinitic_py.worker.priority import DEFAULT_K

from .harness import Harness, wait_for_condition


class Job(msgspec.Struct, frozen=True):
    n: int
    priority: int


class Slow:
    """A slow single-task method that records the order in which tasks start."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started: list[Job] = []
        self.completed: list[Job] = []

    @task
    async def work(self, job: Job) -> None:
        self.started.append(job)
        await asyncio.sleep(self.seconds)  # the workload itself, not a wait
        self.completed.append(job)


async def _worker(harness: Harness, service: Slow, name: str) -> Worker:
    worker = Worker(harness.url, tenant=harness.tenant, namespace=harness.namespace,
                    name=f"w-{name}", shutdown_grace=2.0)
    worker.add_service(service, name=name, concurrency=2)
    await worker.start()
    return worker


async def test_high_priority_overtakes_a_low_backlog(harness: Harness) -> None:
    name = f"Prio{uuid.uuid4().hex[:10]}"
    service = Slow(0.005)
    worker = await _worker(harness, service, name)
    try:
        async with AsyncClient(harness.url, tenant=harness.tenant, namespace=harness.namespace,
                               results=False) as client:
            stub = client.service(Slow, name=name)
            await stub.work.many([Call(Job(i, 0), priority=0) for i in range(5000)])
            assert await wait_for_condition(lambda: len(service.started) >= 20, 60)
            await stub.work.many([Call(Job(i, 9), priority=9) for i in range(100)])
            assert await wait_for_condition(
                lambda: sum(j.priority == 9 for j in service.completed) == 100, 120)
        lows_before = [j for j in service.started if j.priority == 0]
        last_high = max(i for i, j in enumerate(service.started) if j.priority == 9)
        lows_before_last_high = sum(j.priority == 0 for j in service.started[:last_high])
        # Measured figure (README): the lows that started before the last high one did.
        print(f"\n[{harness.kind}] lows started before the last of 100 highs: "
              f"{lows_before_last_high} (of {len(lows_before)} started when it completed)")
        assert lows_before_last_high < 1000
        # From the first high on, lows start at least once per k highs (bounded starvation)
        # and at most that: 100 highs -> about 100 / k lows interleaved.
        first_high = min(i for i, j in enumerate(service.started) if j.priority == 9)
        window = service.started[first_high:last_high + 1]
        highs = sum(j.priority == 9 for j in window)
        lows = len(window) - highs
        print(f"[{harness.kind}] while highs waited: {highs} highs, {lows} lows started")
        assert highs == 100
        assert lows >= highs // (DEFAULT_K + 2) - 1, "lows starved"
        assert lows <= highs // DEFAULT_K + 3, "highs not preferred"
    finally:
        await worker.stop()
