"""The client's producers (one per service it dispatches to) stay bounded, on both transports: a
client dispatching to many services (by name) closes the least recently used idle ones, never
one that a dispatch is using."""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import AsyncIterator, Sequence

import pytest

from infinitic_py import AsyncClient
from infinitic_py.topics import WORKER_SUBSCRIPTION, service_topic
from infinitic_py.transport import create_transport
from infinitic_py.transport.base import (
    Consumer,
    ConsumerSettings,
    OutgoingMessage,
    Partitioner,
    Producer,
    SubscriptionType,
    Transport,
)

from .harness import Harness, poll, wait_for_condition


class GatedProducer(Producer):
    """A real producer whose sends signal ``sending`` and wait for ``gate`` (open by default)."""

    def __init__(self, real: Producer, gate: asyncio.Event, sending: asyncio.Event) -> None:
        self.real = real
        self.gate = gate
        self.sending = sending
        self.closed = False

    @property
    def topic(self) -> str:
        return self.real.topic

    async def send(self, message: OutgoingMessage) -> None:
        await self.send_many([message])

    async def send_many(self, messages: Sequence[OutgoingMessage]) -> None:
        self.sending.set()
        await self.gate.wait()
        await self.real.send_many(messages)

    async def close(self) -> None:
        self.closed = True
        await self.real.close()


class Recording(Transport):
    """The harness's transport, recording every producer the client creates."""

    def __init__(self, real: Transport) -> None:
        self.real = real
        self.url = real.url
        self.producers: list[GatedProducer] = []
        self.gates: dict[str, asyncio.Event] = {}
        self.sending: dict[str, asyncio.Event] = {}

    def hold(self, topic: str) -> tuple[asyncio.Event, asyncio.Event]:
        """Sends on ``topic`` wait until the returned gate is set; the second event is set when
        one reaches it."""
        return self.gates.setdefault(topic, asyncio.Event()), self.sending.setdefault(
            topic, asyncio.Event()
        )

    async def create_producer(self, topic: str, *, schema: str | None = None,
                              partitioner: Partitioner | None = None) -> Producer:
        if topic not in self.gates:
            self.hold(topic)[0].set()
        gate, sending = self.hold(topic)
        producer = GatedProducer(await self.real.create_producer(topic), gate, sending)
        self.producers.append(producer)
        return producer

    async def subscribe(self, topic: str, subscription: str, settings: ConsumerSettings) -> Consumer:
        return await self.real.subscribe(topic, subscription, settings)

    async def ensure_subscription(
        self, topic: str, subscription: str, subscription_type: SubscriptionType
    ) -> None:
        await self.real.ensure_subscription(topic, subscription, subscription_type)

    def is_connected(self) -> bool:
        return self.real.is_connected()

    async def close(self) -> None:
        await self.real.close()

    def open_topics(self) -> list[str]:
        return [p.topic for p in self.producers if not p.closed]


@pytest.fixture
async def recording(harness: Harness) -> AsyncIterator[tuple[Harness, Recording]]:
    transport = Recording(create_transport(harness.url))
    try:
        yield harness, transport
    finally:
        await transport.close()


def names(n: int) -> list[str]:
    prefix = uuid.uuid4().hex[:8]
    return [f"Svc{prefix}n{i}" for i in range(n)]


async def test_a_client_keeps_at_most_max_producers(
    recording: tuple[Harness, Recording],
) -> None:
    harness, transport = recording
    services = names(5)
    topics = [service_topic(harness.tenant, harness.namespace, s) for s in services]
    async with AsyncClient(harness.url, tenant=harness.tenant, namespace=harness.namespace,
                           results=False, max_producers=2, transport=transport) as client:
        for service in services:
            await client.service(service).run.many([(1,)])
            # Evicted producers are closed in the background: wait for it (bounded).
            assert await wait_for_condition(lambda: len(transport.open_topics()) <= 2, 10)
        # The least recently used were closed; the two last are open.
        assert transport.open_topics() == topics[3:]
        # A service whose producer was closed gets a new one; nothing was lost.
        await client.service(services[0]).run.many([(2,)])
        assert await wait_for_condition(
            lambda: transport.open_topics() == [topics[4], topics[0]], 10
        ), transport.open_topics()
    assert transport.open_topics() == []  # closing the client closes the rest
    for topic, sent in zip(topics, (2, 1, 1, 1, 1), strict=True):
        counts = await poll(functools.partial(harness.counts, topic, WORKER_SUBSCRIPTION),
                            lambda c, n=sent: c[0] == n, timeout=30)  # type: ignore[misc]
        assert counts[0] == sent, topic


async def test_a_producer_in_use_is_not_closed(recording: tuple[Harness, Recording]) -> None:
    harness, transport = recording
    first, second = names(2)
    gate, sending = transport.hold(service_topic(harness.tenant, harness.namespace, first))
    async with AsyncClient(harness.url, tenant=harness.tenant, namespace=harness.namespace,
                           results=False, max_producers=1, transport=transport) as client:
        held = asyncio.ensure_future(client.service(first).run.many([(1,)]))
        await asyncio.wait_for(sending.wait(), 30)  # the first send is in flight, at the gate
        await client.service(second).run.many([(1,)])  # over the cap, the first one busy
        gate.set()
        await asyncio.wait_for(held, 30)
        # Once the evictions' closes are done, the busy producer is still open; the idle one
        # went instead, so the client is back under its cap.
        assert await wait_for_condition(lambda: not client._closing, 10)
        assert transport.open_topics() == [transport.producers[0].topic]
    counts = await poll(functools.partial(harness.counts, transport.producers[0].topic),
                        lambda c: c[0] == 1, timeout=30)
    assert counts[0] == 1  # the held send was published
