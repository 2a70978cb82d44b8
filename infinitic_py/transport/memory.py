"""The in-process transport (``memory://NAME``): Pulsar's semantics without a broker.

Every ``MemoryTransport`` built with the same ``memory://NAME`` URL in one process shares one
``MemoryBroker`` (``get_broker(NAME)``; an empty name means ``"default"``), so a client and a
worker in the same process talk to each other exactly as they would through Pulsar.

The broker is thread-safe: a sync client runs its own event loop in another thread, so producers
and consumers of one broker may live on different loops. All broker state sits behind one
``threading.Lock``; a waiting ``receive`` is woken on its own loop with
``loop.call_soon_threadsafe``; delayed messages and nack redeliveries are released by one
broker-owned daemon thread that sleeps on a ``threading.Condition`` until the earliest due time
(it exits when nothing is scheduled). Time is ``time.monotonic()``, the clock asyncio loops use.

Semantics (those of ``transport.base``, which are Pulsar's), with the choices made here:

- A published message is copied to every subscription the topic has *now*; with none it is
  dropped (no retention), so ``initial_position_earliest`` has nothing to replay and is ignored.
  Subscriptions are durable: they outlive their consumers and accumulate a backlog.
- Message ids (``MemoryMessageId``, the ``handle`` of a ``ReceivedMessage``) are per topic, shared
  by the copies in each subscription and kept across redeliveries, like Pulsar's positions. An
  ack therefore acts on the subscription's copy whichever consumer of it received the message.
- Delivery order is FIFO by *availability time*: publish time, the due time of a delayed message
  or of a nack redelivery; a message taken back from a closed consumer keeps its first
  availability time, so it goes back near the head, as Pulsar redelivers before reading on.
- ``shared``: each waiting ``receive`` (across all consumers, first come first served) gets the
  next message; there is no prefetch, so ``receiver_queue_size`` is ignored.
- ``key_shared`` dispatches like ``shared`` (no per-key consumer affinity or ordering in memory).
- ``exclusive``: a second consumer gets ``TransportError`` (Pulsar's ConsumerBusy).
- ``failover``: extra consumers are accepted as standbys; only the first connected consumer
  receives, and the next one takes over when it closes (Pulsar's rule for unpartitioned topics).
- A subscription with connected consumers cannot be joined with another type (``TransportError``);
  with none, ``subscribe`` switches its type. ``ensure_subscription`` never changes an existing one.
- ``deliver_after`` holds a message back only in ``shared`` / ``key_shared`` subscriptions (the
  type at publish time); others get it at once, as in Pulsar.
- ``negative_acknowledge``: the message counts as unacked during ``nack_redelivery_delay`` and then
  comes back with ``redelivery_count + 1``. When ``max_redeliveries`` is set and that count would
  exceed it, the message is published instead to ``dead_letter_topic`` (default, as in Pulsar:
  ``"<topic>-<subscription>-DLQ"``) with its data, key and properties plus ``REAL_TOPIC`` and
  ``ORIGIN_MESSAGE_ID``, and leaves the subscription. That happens at nack time (Pulsar's client
  does it when the delay ends). Redelivery counts and dead-lettering apply to every type here.
- ``Consumer.close`` (or the transport's) sends its unacked messages back at once with
  ``redelivery_count + 1``; messages it had been handed but not yet returned from ``receive`` and
  messages waiting out a nack delay go back without a further increment. A pending ``receive``
  raises ``ConsumerClosed``. A ``receive`` that is cancelled never loses its message: it goes back
  to the subscription uncounted.
- ``acknowledge`` of an unknown or already acked message is a no-op; on a closed consumer it raises
  ``ConsumerClosed`` (Pulsar raises AlreadyClosed). ``negative_acknowledge`` of unknown, already
  acked or already nacked messages, or on a closed consumer, is a no-op.
- ``Producer.send`` / ``send_many`` enqueue synchronously (``send_many`` all or nothing) and return;
  a closed producer or transport, or an unavailable broker, raises ``TransportError``.
- Outage simulation: ``broker.set_available(False)`` makes sends, ``subscribe``,
  ``create_producer`` and ``ensure_subscription`` raise ``TransportError`` and ``is_connected()``
  return False; receives wait (nothing is dispatched) until ``set_available(True)``. Acks and nacks
  still apply, as Pulsar's client queues them.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TypeVar

from infinitic_py.transport.base import (
    Consumer,
    ConsumerSettings,
    OutgoingMessage,
    Partitioner,
    Producer,
    ReceivedMessage,
    SubscriptionType,
    Transport,
    TransportError,
)
from infinitic_py.transport.memory_broker import MemoryBroker
from infinitic_py.transport.memory_state import (
    DEFAULT_BROKER_NAME,
    ConsumerState,
    MemoryMessageId,
)
from infinitic_py.transport.urls import MEMORY_SCHEME

URL_SCHEME = MEMORY_SCHEME + "://"

__all__ = [
    "DEFAULT_BROKER_NAME",
    "MemoryBroker",
    "MemoryConsumer",
    "MemoryMessageId",
    "MemoryProducer",
    "MemoryTransport",
    "broker_name",
    "get_broker",
    "reset_all_brokers",
    "reset_broker",
]


_brokers: dict[str, MemoryBroker] = {}
_brokers_lock = threading.Lock()


def get_broker(name: str = DEFAULT_BROKER_NAME) -> MemoryBroker:
    """The process-wide broker called ``name`` (created on first use; ``""`` means default)."""
    name = name or DEFAULT_BROKER_NAME
    with _brokers_lock:
        broker = _brokers.get(name)
        if broker is None:
            broker = _brokers[name] = MemoryBroker(name)
        return broker


def reset_broker(name: str = DEFAULT_BROKER_NAME) -> None:
    """``MemoryBroker.reset()`` on the broker called ``name``, if it exists."""
    with _brokers_lock:
        broker = _brokers.get(name or DEFAULT_BROKER_NAME)
    if broker is not None:
        broker.reset()


def reset_all_brokers() -> None:
    """Reset every broker of this process (a test fixture's teardown)."""
    with _brokers_lock:
        brokers = list(_brokers.values())
    for broker in brokers:
        broker.reset()


def broker_name(url: str) -> str:
    """``memory://NAME`` → ``NAME`` (surrounding slashes dropped; empty → ``"default"``)."""
    if not url.startswith(URL_SCHEME):
        raise ValueError(f"not a memory transport URL (expected memory://NAME): {url!r}")
    return url[len(URL_SCHEME) :].strip("/") or DEFAULT_BROKER_NAME


class MemoryProducer(Producer):
    """Publishes to one topic of a ``MemoryBroker``."""

    def __init__(self, transport: MemoryTransport, topic: str) -> None:
        self._transport = transport
        self._topic = topic
        self._closed = False

    async def send(self, message: OutgoingMessage) -> None:
        """Enqueue one message (delivered to every subscription the topic has now)."""
        self._check_open()
        self._transport.broker._publish(self._topic, [message])

    async def send_many(self, messages: Sequence[OutgoingMessage]) -> None:
        """Enqueue all messages at once, all or nothing."""
        self._check_open()
        if messages:
            self._transport.broker._publish(self._topic, messages)

    async def close(self) -> None:
        self._closed = True
        self._transport._forget(self)

    def _check_open(self) -> None:
        if self._closed:
            raise TransportError(f"producer on {self._topic!r} is closed")
        self._transport._check_open()


class MemoryConsumer(Consumer):
    """One consumer of a subscription of a ``MemoryBroker``."""

    def __init__(
        self,
        transport: MemoryTransport,
        state: ConsumerState,
    ) -> None:
        self._transport = transport
        self._state = state

    @property
    def topic(self) -> str:
        return self._state.subscription.topic

    @property
    def subscription(self) -> str:
        return self._state.subscription.name

    @property
    def closed(self) -> bool:
        return self._state.closed

    def __repr__(self) -> str:
        return (
            f"MemoryConsumer(topic={self.topic!r}, subscription={self.subscription!r}, "
            f"name={self._state.settings.consumer_name!r}, closed={self.closed})"
        )

    async def receive(self) -> ReceivedMessage:
        return await self._transport.broker._receive(self._state)

    async def receive_many(self, max_messages: int) -> list[ReceivedMessage]:
        return await self._transport.broker._receive_many(self._state, max_messages)

    async def acknowledge(self, messages: Sequence[ReceivedMessage]) -> None:
        await self._transport.broker._acknowledge(self._state, messages)

    def negative_acknowledge(self, messages: Sequence[ReceivedMessage]) -> None:
        self._transport.broker._negative_acknowledge(self._state, messages)

    async def close(self) -> None:
        self._transport.broker._close_consumer(self._state)
        self._transport._forget(self)


_Member = TypeVar("_Member", MemoryProducer, MemoryConsumer)


class MemoryTransport(Transport):
    """A connection to the in-process broker named by ``memory://NAME``."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.broker = get_broker(broker_name(url))
        self._closed = False
        self._lock = threading.Lock()
        self._members: set[MemoryProducer | MemoryConsumer] = set()  # made here, open

    def __repr__(self) -> str:
        return f"MemoryTransport(url={self.url!r})"

    async def create_producer(self, topic: str, *, schema: str | None = None,
                              partitioner: Partitioner | None = None) -> MemoryProducer:
        # ``schema`` is not checked, ``partitioner`` not used (no partitions): the in-process broker keeps bytes, whatever their schema.
        self._check_open()
        self.broker._create_topic(topic)
        return self._track(MemoryProducer(self, topic))

    async def subscribe(
        self, topic: str, subscription: str, settings: ConsumerSettings
    ) -> MemoryConsumer:
        self._check_open()
        return self._track(MemoryConsumer(self, self.broker._subscribe(topic, subscription,
                                                                      settings)))

    async def ensure_subscription(
        self, topic: str, subscription: str, subscription_type: SubscriptionType
    ) -> None:
        self._check_open()
        self.broker._ensure_subscription(topic, subscription, subscription_type)

    def is_connected(self) -> bool:
        return not self._closed and self.broker.available

    async def close(self) -> None:
        """Close every producer and consumer made by this transport (unacked messages go back)."""
        with self._lock:
            self._closed = True
            members, self._members = self._members, set()
        for consumer in [m for m in members if isinstance(m, MemoryConsumer)]:
            await consumer.close()
        for producer in [m for m in members if isinstance(m, MemoryProducer)]:
            await producer.close()

    def _check_open(self) -> None:
        if self._closed:
            raise TransportError(f"transport {self.url!r} is closed")

    def _track(self, member: _Member) -> _Member:
        with self._lock:
            self._members.add(member)
        return member

    def _forget(self, member: MemoryProducer | MemoryConsumer) -> None:
        with self._lock:
            self._members.discard(member)
