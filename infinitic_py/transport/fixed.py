"""FixedTransport: a Transport around one consumer you provide, for driving a ServiceExecutor (or
anything else above the transport protocol) without a broker: the benchmarks' broker-free
executor row and unit tests. The first ``subscribe`` returns that consumer, whatever the topic;
a later one (the other topics of a service: its priority bands) an idle consumer that receives
nothing until closed. ``create_producer`` calls ``producers(topic)`` (by default: there is
nothing to publish to)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from infinitic_py.transport.base import (
    Consumer,
    ConsumerClosed,
    ConsumerSettings,
    Partitioner,
    Producer,
    ReceivedMessage,
    SubscriptionType,
    Transport,
    TransportError,
)


def _no_producers(topic: str) -> Producer:
    raise TransportError(f"FixedTransport has no producer for {topic}")


class IdleConsumer(Consumer):
    """Receives nothing; ``receive`` ends with ``ConsumerClosed`` once closed."""

    def __init__(self) -> None:
        self._closed = asyncio.Event()

    async def receive(self) -> ReceivedMessage:
        await self._closed.wait()
        raise ConsumerClosed("closed")

    async def acknowledge(self, messages: Sequence[ReceivedMessage]) -> None:
        pass

    def negative_acknowledge(self, messages: Sequence[ReceivedMessage]) -> None:
        pass

    async def close(self) -> None:
        self._closed.set()


class FixedTransport(Transport):
    def __init__(
        self,
        consumer: Consumer,
        producers: Callable[[str], Producer] = _no_producers,
        url: str = "fixed://",
    ) -> None:
        self.url = url
        self.consumer = consumer
        self._producers = producers
        self._subscribed = False

    async def create_producer(self, topic: str, *, schema: str | None = None,
                              partitioner: Partitioner | None = None) -> Producer:
        return self._producers(topic)

    async def subscribe(
        self, topic: str, subscription: str, settings: ConsumerSettings
    ) -> Consumer:
        if self._subscribed:
            return IdleConsumer()
        self._subscribed = True
        return self.consumer

    async def ensure_subscription(
        self, topic: str, subscription: str, subscription_type: SubscriptionType
    ) -> None:
        pass

    def is_connected(self) -> bool:
        return True

    async def close(self) -> None:
        pass
