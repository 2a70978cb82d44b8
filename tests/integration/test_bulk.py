"""Atomic and non-atomic ``many()`` (issue 18), on both transports (memory:// and Pulsar).

A forced abort: ``AbortingTransport`` wraps the real transport, and its producers publish the
first half of what ``send_many`` is given, then fail. A plain ``many()`` of 1,000 thus leaves
500 tasks on the topic (and says which); an atomic one is ONE message, so the same abort leaves
nothing.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Sequence

import msgspec
import pytest

from infinitic_py import AsyncClient, BatchLimits, Call, Worker, task
from infinitic_py.errors import DispatchFailed
from infinitic_py.topics import WORKER_SUBSCRIPTION, service_topic
from infinitic_py.transport import create_transport
from infinitic_py.transport.base import (
    Consumer,
    ConsumerSettings,
    OutgoingMessage,
    Partitioner,
    Producer,
    SendFailed,
    SubscriptionType,
    Transport,
)

from .harness import Harness, poll


class Item(msgspec.Struct, frozen=True):
    n: int


class Counted:
    def __init__(self) -> None:
        self.executions: Counter[str] = Counter()

    @task
    def double(self, item: Item) -> int:
        return item.n * 2

    @double.batch(max_messages=100, max_seconds=0.2)
    def double_batch(self, items: dict[str, Item]) -> dict[str, int]:
        for t in items:
            self.executions[t] += 1
        return {t: it.n * 2 for t, it in items.items()}


class AbortingProducer(Producer):
    def __init__(self, inner: Producer) -> None:
        self._inner = inner
        self._topic = inner.topic

    async def send(self, message: OutgoingMessage) -> None:
        await self.send_many([message])

    async def send_many(self, messages: Sequence[OutgoingMessage]) -> None:
        half = len(messages) // 2
        await self._inner.send_many(messages[:half])
        raise SendFailed("forced abort part-way", range(half))

    async def close(self) -> None:
        await self._inner.close()


class AbortingTransport(Transport):
    def __init__(self, inner: Transport) -> None:
        self._inner = inner
        self.url = inner.url

    async def create_producer(self, topic: str, *, schema: str | None = None,
                              partitioner: Partitioner | None = None) -> Producer:
        return AbortingProducer(await self._inner.create_producer(
            topic, schema=schema, partitioner=partitioner))

    async def subscribe(self, topic: str, subscription: str,
                        settings: ConsumerSettings) -> Consumer:
        return await self._inner.subscribe(topic, subscription, settings)

    async def ensure_subscription(self, topic: str, subscription: str,
                                  subscription_type: SubscriptionType) -> None:
        await self._inner.ensure_subscription(topic, subscription, subscription_type)

    def is_connected(self) -> bool:
        return self._inner.is_connected()

    async def close(self) -> None:
        await self._inner.close()


def calls() -> list[Call]:
    keys = ["a", "b", "c"]
    return [Call(Item(i), task_id=f"bulk-{i}", meta={"batchKey": keys[i % 3]})
            for i in range(1000)]


async def test_atomic_many_all_or_nothing(harness: Harness) -> None:
    name = f"Bulk{uuid.uuid4().hex[:10]}"
    topic = service_topic(harness.tenant, harness.namespace, name)
    inner = create_transport(harness.url)
    try:
        async with AsyncClient(harness.url, transport=AbortingTransport(inner),
                               tenant=harness.tenant, namespace=harness.namespace) as broken:
            stub = broken.service(Counted, name=name)
            with pytest.raises(DispatchFailed, match="nothing was dispatched") as atomic_err:
                await stub.double.many(calls(), atomic=True)
            assert atomic_err.value.sent == () and len(atomic_err.value.unsent) == 1000
            # Nothing reached the topic (its worker subscription exists: the client made it).
            assert await harness.counts(topic) == (0, 0)
            # The same abort without atomic leaves half of the tasks behind, and says which.
            with pytest.raises(DispatchFailed, match="part-way") as plain_err:
                await stub.double.many(calls())
            assert plain_err.value.sent == tuple(f"bulk-{i}" for i in range(500))
            assert plain_err.value.unsent == tuple(f"bulk-{i}" for i in range(500, 1000))
            assert len(plain_err.value.deferreds) == 500
            # (Pulsar counts a backlog in entries, a producer batch being one: _purge below
            # receives exactly the 500 tasks one by one.)
            backlog = await poll(lambda: harness.counts(topic), lambda c: c[0] > 0, 30)
            assert backlog[0] > 0
    finally:
        await inner.close()
    await _purge(harness, topic)

    # Recovery: the same atomic call delivers exactly 1,000 tasks, each executed once.
    service = Counted()
    worker = Worker(harness.url, tenant=harness.tenant, namespace=harness.namespace,
                    name=f"w-{name}", shutdown_grace=10.0)
    worker.add_service(service, name=name, concurrency=4, batch={"double": BatchLimits(100, 0.2)})
    await worker.start()
    try:
        async with AsyncClient(harness.url, tenant=harness.tenant,
                               namespace=harness.namespace) as client:
            deferreds = await client.service(Counted, name=name).double.many(calls(), atomic=True)
            results = await asyncio.gather(*(d.result(timeout=120) for d in deferreds))
        assert results == [2 * i for i in range(1000)]
        assert len(service.executions) == 1000
        assert set(service.executions.values()) == {1}, "every task executes exactly once"
        # The bulk message itself is acked once its last task settled.
        assert await harness.wait_drained(topic, timeout=60) == (0, 0)
    finally:
        await worker.stop()


async def _purge(harness: Harness, topic: str) -> None:
    """Drop the 500 tasks the plain abort left behind (so the recovery run starts clean)."""
    transport = create_transport(harness.url)
    try:
        consumer = await transport.subscribe(
            topic, WORKER_SUBSCRIPTION,
            ConsumerSettings(subscription_type=SubscriptionType.SHARED))
        ids: list[str] = []
        while len(ids) < 500:
            msgs = await consumer.receive_many(500 - len(ids))
            ids.extend(m.properties["taskId"] for m in msgs)
            await consumer.acknowledge(msgs)
        assert sorted(ids) == sorted(f"bulk-{i}" for i in range(500))
        await consumer.close()
    finally:
        await transport.close()
    assert await harness.wait_drained(topic, timeout=60) == (0, 0)


class Picky:
    def __init__(self) -> None:
        self.attempts: Counter[int] = Counter()

    @task
    def check(self, item: Item) -> int:
        self.attempts[item.n] += 1
        if item.n == 3:
            raise ValueError("three is refused")
        return item.n


async def test_each_task_of_a_bulk_keeps_its_own_outcome_and_retries(harness: Harness) -> None:
    from infinitic_py import RetryPolicy, TaskFailed

    name = f"Bulk{uuid.uuid4().hex[:10]}"
    service = Picky()
    worker = Worker(harness.url, tenant=harness.tenant, namespace=harness.namespace,
                    name=f"w-{name}", shutdown_grace=5.0)
    worker.add_service(service, name=name, retry=RetryPolicy(
        maximum_retries=2, minimum_seconds=0.05, maximum_seconds=0.1, random_factor=0.0))
    await worker.start()
    try:
        async with AsyncClient(harness.url, tenant=harness.tenant,
                               namespace=harness.namespace) as client:
            deferreds = await client.service(Picky, name=name).check.many(
                [Item(i) for i in range(10)], atomic=True)
            for i, d in enumerate(deferreds):
                if i == 3:
                    with pytest.raises(TaskFailed, match="three is refused") as failed:
                        await d.result(timeout=60)
                    assert failed.value.retry_index == 2
                else:
                    assert await d.result(timeout=60) == i
        assert service.attempts[3] == 3, "the failing task alone was retried"
        assert all(service.attempts[i] == 1 for i in range(10) if i != 3)
        topic = service_topic(harness.tenant, harness.namespace, name)
        assert await harness.wait_drained(topic, timeout=60) == (0, 0)
    finally:
        await worker.stop()
