"""The executor's batching contract (issue 4), run on both transports: memory:// and Pulsar."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator

import msgspec
import pytest

from infinitic_py import (
    AsyncClient,
    BatchLimits,
    Call,
    ServiceDefinitionError,
    Worker,
    current_context,
    get_context,
    task,
)
from infinitic_py.topics import service_topic

from .harness import Harness


class Item(msgspec.Struct, frozen=True):
    n: int


def unique_service() -> str:
    return f"Svc{uuid.uuid4().hex[:10]}"


class Recorder:
    """A batched service that records what it executed."""

    def __init__(self) -> None:
        self.batches: list[tuple[str | None, list[str]]] = []
        self.executions: Counter[str] = Counter()
        self.running = 0
        self.max_running = 0
        self.first_run_at: dict[int, float] = {}
        self.sleep = 0.0
        self.return_none = False

    @task
    def double(self, item: Item) -> int:
        return item.n * 2

    @double.batch(max_messages=100, max_seconds=0.5)
    async def double_batch(self, items: dict[str, Item]) -> dict[str, int] | None:
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            keys = {get_context(t).batch_key for t in items}
            assert len(keys) == 1, f"a batch mixed batch keys: {keys}"
            self.batches.append((keys.pop(), list(items)))
            now = time.monotonic()
            for t, it in items.items():
                self.executions[t] += 1
                self.first_run_at.setdefault(it.n, now)
            if self.sleep:
                await asyncio.sleep(self.sleep)  # the workload itself, not a wait
            if self.return_none:
                return None
            return {t: it.n * 2 for t, it in items.items()}
        finally:
            self.running -= 1


@pytest.fixture
async def client(harness: Harness) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(harness.url, tenant=harness.tenant, namespace=harness.namespace) as c:
        yield c


async def start_worker(
    harness: Harness,
    service: object,
    name: str,
    *,
    concurrency: int = 10,
    limits: BatchLimits | None = None,
) -> Worker:
    worker = Worker(
        harness.url,
        tenant=harness.tenant,
        namespace=harness.namespace,
        name=f"test-{name}",
        shutdown_grace=10.0,
    )
    worker.add_service(
        service, name=name, concurrency=concurrency, batch={"double": limits} if limits else None
    )
    await worker.start()
    return worker


async def test_thousand_tasks_three_batch_keys(harness: Harness, client: AsyncClient) -> None:
    name = unique_service()
    recorder = Recorder()
    worker = await start_worker(harness, recorder, name, limits=BatchLimits(100, 0.5))
    try:
        keys = ["tenant-a", "tenant-b", "tenant-c"]
        calls = [Call(Item(i), meta={"batchKey": keys[i % 3]}) for i in range(1000)]
        stub = client.service(Recorder, name=name)
        deferreds = await stub.double.many(calls)
        results = await asyncio.gather(*(d.result(timeout=60) for d in deferreds))
        assert results == [2 * i for i in range(1000)]
        assert sum(len(ids) for _, ids in recorder.batches) == 1000
        assert all(1 <= len(ids) <= 100 for _, ids in recorder.batches)
        assert {k for k, _ in recorder.batches} == set(keys)
        assert set(recorder.executions.values()) == {1}, "every task executes exactly once"
        assert len(recorder.executions) == 1000
        topic = service_topic(harness.tenant, harness.namespace, name)
        assert await harness.wait_drained(topic) == (0, 0)
    finally:
        await worker.stop()


async def test_lone_task_flushed_by_time(harness: Harness, client: AsyncClient) -> None:
    name = unique_service()
    recorder = Recorder()
    worker = await start_worker(harness, recorder, name, limits=BatchLimits(100, 0.3))
    try:
        stub = client.service(Recorder, name=name)
        sent_at = time.monotonic()
        d = await stub.double(Item(7))
        assert await d.result(timeout=10) == 14
        waited = recorder.first_run_at[7] - sent_at
        # Flushed by the age of its first message: not before max_seconds (the timer, not the
        # size, flushed it), and not at some other, much later time (a deadline off by a
        # multiple). How close to max_seconds a flush lands is measured by `make bench`
        # (flush), not asserted here: this wait includes the broker's round trip on a shared
        # machine (it took 0.4 s once under a full CI run).
        assert 0.3 - 0.02 <= waited <= 0.3 + 1.2, waited
    finally:
        await worker.stop()


async def test_concurrency_limits_running_batches(harness: Harness, client: AsyncClient) -> None:
    name = unique_service()
    recorder = Recorder()
    recorder.sleep = 0.3
    worker = await start_worker(harness, recorder, name, concurrency=3, limits=BatchLimits(1, 0.05))
    try:
        stub = client.service(Recorder, name=name)
        deferreds = await stub.double.many([Item(i) for i in range(12)])
        await asyncio.gather(*(d.result(timeout=30) for d in deferreds))
        assert recorder.max_running == 3
    finally:
        await worker.stop()


async def test_batch_returning_none_completes_every_task_with_none(
    harness: Harness, client: AsyncClient
) -> None:
    name = unique_service()
    recorder = Recorder()
    recorder.return_none = True
    worker = await start_worker(harness, recorder, name, limits=BatchLimits(10, 0.1))
    try:
        stub = client.service(Recorder, name=name)
        deferreds = await stub.double.many([Item(i) for i in range(25)])
        assert [await d.result(timeout=30) for d in deferreds] == [None] * 25
    finally:
        await worker.stop()


class WrongTwin:
    @task
    def double(self, item: Item) -> int:
        return item.n * 2

    @double.batch(max_messages=10, max_seconds=1.0)
    def double_batch(self, items: list[Item]) -> dict[str, int]:
        return {}


async def test_wrong_batch_signature_fails_worker_start(harness: Harness) -> None:
    worker = Worker(harness.url, tenant=harness.tenant, namespace=harness.namespace)
    with pytest.raises(
        ServiceDefinitionError, match=r"WrongTwin: batch method 'double_batch'.*dict\[str, I\]"
    ):
        worker.add_service(WrongTwin())


class Singles:
    """Plain (non-batched) tasks: one task per concurrency slot."""

    @task
    def greet(self, name: str, punctuation: str = "!") -> str:
        ctx = current_context()
        return f"hello {name}{punctuation} ({ctx.method}, retry {ctx.retry_index}, {ctx.batch_key})"

    @task
    async def add(self, a: int, b: int) -> int:
        assert current_context().batch_id is None
        await asyncio.sleep(0)
        return a + b


async def test_single_tasks_sync_and_async(harness: Harness, client: AsyncClient) -> None:
    name = unique_service()
    worker = Worker(harness.url, tenant=harness.tenant, namespace=harness.namespace)
    worker.add_service(Singles(), name=name, concurrency=4)
    await worker.start()
    try:
        stub = client.service(Singles, name=name, meta={"batchKey": "k1"})
        greeting = await stub.greet("ada", punctuation="?")
        sums = await stub.add.many([(i, i) for i in range(20)])
        assert await greeting.result(timeout=30) == "hello ada? (greet, retry 0, k1)"
        assert [await d.result(timeout=30) for d in sums] == [2 * i for i in range(20)]
        with pytest.raises(TypeError, match="missing a required argument"):
            await stub.add(1)
    finally:
        await worker.stop()
