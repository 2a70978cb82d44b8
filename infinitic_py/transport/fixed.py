"""FixedTransport: a Transport around one consumer you provide, for driving a ServiceExecutor (or
anything else above the transport protocol) without a broker: the benchmarks' broker-free
executor row and unit tests. ``subscribe`` returns that consumer whatever the topic;
``create_producer`` calls ``producers(topic)`` (by default: there is nothing to publish to)."""

from __future__ import annotations

from collections.abc import Callable

from infinitic_py.transport.base import (
    Consumer,
    ConsumerSettings,
    Partitioner,
    Producer,
    SubscriptionType,
    Transport,
    TransportError,
)


def _no_producers(topic: str) -> Producer:
    raise TransportError(f"FixedTransport has no producer for {topic}")


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

    async def create_producer(self, topic: str, *, schema: str | None = None,
                              partitioner: Partitioner | None = None) -> Producer:
        return self._producers(topic)

    async def subscribe(
        self, topic: str, subscription: str, settings: ConsumerSettings
    ) -> Consumer:
        return self.consumer

    async def ensure_subscription(
        self, topic: str, subscription: str, subscription_type: SubscriptionType
    ) -> None:
        pass

    def is_connected(self) -> bool:
        return True

    async def close(self) -> None:
        pass
