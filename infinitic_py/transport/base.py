"""The transport protocol: the few broker operations infinitic-py needs.

Two implementations share these semantics: ``PulsarTransport`` (``pulsar://``, ``pulsar+ssl://``)
and ``MemoryTransport`` (``memory://NAME``, in-process). Everything above this module (executor,
client) only talks to these classes, so the same behaviour suite runs on both.

Semantics every implementation keeps (they are Pulsar's):
- A message published to a topic is delivered to every *existing* subscription of that topic;
  a topic with no subscription keeps nothing (no retention). ``ensure_subscription`` creates one.
- ``shared`` / ``key_shared`` subscriptions spread messages over their consumers; ``exclusive``
  allows one consumer.
- A received message stays *unacked* until ``acknowledge``; ``negative_acknowledge`` redelivers it
  after ``nack_redelivery_delay`` with ``redelivery_count + 1``; closing a consumer (or losing it)
  redelivers its unacked messages to the other consumers at once.
- With ``max_redeliveries`` set, a message nacked more than that many times goes to
  ``dead_letter_topic`` instead of being redelivered.
- ``deliver_after`` holds a message back for that many seconds (shared / key_shared only).
- ``receive`` waits for a message; after ``close`` (even a concurrent one) it raises
  ``ConsumerClosed``. It is never cancelled by the executor (see DESIGN §4). ``receive_many``
  is the same for a run of messages the client already holds (the executor's hot path).
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

# (partition key, number of partitions) -> partition index
Partitioner = Callable[[str, int], int]


class TransportError(Exception):
    """The broker could not do what was asked (connection lost, timeout, publish refused...).
    ``refused``: the broker refused this topic or message itself (it does not exist and cannot be
    created, no permission, too large...: asking again gets the same answer); False for a failure
    that may pass (the broker unreachable or restarting, a timeout)."""

    def __init__(self, message: str, *, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused


class SendFailed(TransportError):
    """``send_many`` failed part-way: ``sent`` are the indexes of the messages the broker
    confirmed (persisted); every other one is unconfirmed (not published, or in flight when the
    send failed: it may exist)."""

    def __init__(self, message: str, sent: Sequence[int] = (), *, refused: bool = False) -> None:
        super().__init__(message, refused=refused)
        self.sent: tuple[int, ...] = tuple(sent)


class ConsumerClosed(TransportError):
    """``receive`` was called on (or was waiting in) a consumer that has been closed."""


class SubscriptionType(enum.StrEnum):
    SHARED = "shared"
    KEY_SHARED = "key_shared"
    EXCLUSIVE = "exclusive"
    FAILOVER = "failover"


# A worker's nacks before Pulsar dead-letters a message (``pulsar.consumer.max_redeliveries``, and
# a ``Worker`` built in code): a unit whose outcomes can never be published does not loop forever.
WORKER_MAX_REDELIVERIES = 10


@dataclass(frozen=True, slots=True)
class ConsumerSettings:
    """How one consumer subscribes. Defaults fit a task worker."""

    subscription_type: SubscriptionType = SubscriptionType.SHARED
    receiver_queue_size: int = 2000
    nack_redelivery_delay: float = 1.0
    max_redeliveries: int | None = None
    dead_letter_topic: str | None = None
    # Created on dead_letter_topic along with it, so the broker keeps what lands there.
    dead_letter_subscription: str | None = None
    consumer_name: str | None = None
    # Start at the earliest unacked message when the subscription is new.
    initial_position_earliest: bool = True
    # Resolve each message's writer schema (``ReceivedMessage.writer_schema``) off the event
    # loop, for topics whose messages carry a schema version (a wire dialect decodes with it).
    writer_schemas: bool = False
    # An Avro definition the consumer subscribes with (messages are still handed out as bytes):
    # Pulsar's dead-letter producer takes the consumer's schema, and a schema-enforced
    # dead-letter topic refuses a schemaless one (the message then stays stuck, never moved).
    schema: str | None = None


class OutgoingMessage(msgspec.Struct, frozen=True, gc=False):
    """One message to publish. A frozen Struct (``msgspec.structs.replace`` for a changed copy):
    two or more are built per task, and a frozen dataclass's ``__init__`` cost ten times more.
    Not tracked by the cyclic GC: nothing it holds refers back to it."""

    data: bytes
    properties: Mapping[str, str] = {}  # a new empty dict per message (msgspec copies it)
    deliver_after: float | None = None  # seconds; None or <= 0 means now
    partition_key: str | None = None  # also the ordering key for key_shared subscriptions


class ReceivedMessage(msgspec.Struct, gc=False, eq=False):
    """A message handed out by ``Consumer.receive``; ``handle`` is the transport's own object.

    A Struct the cyclic GC does not track (it refers to no object that could refer back to it):
    one is built per message, and a worker holds thousands at a time, which the GC would
    otherwise traverse over and over. So ``handle`` must never refer back to the message (a
    cycle through it would never be collected). Two messages are equal only if they are the
    same object, and a message is hashable (``eq=False``): two deliveries of the same bytes are
    two messages. Built positionally: ``ReceivedMessage(data, properties,
    redelivery_count, topic, handle)``; ``writer_schema``: the definition of the schema the
    message was written with (registry topics, when the consumer asked for it), else None. A transport whose properties or redelivery count cost a
    call of their own may pass ``None`` / ``-1`` and override ``_read_properties`` /
    ``_read_redelivery_count``: they are then read on first access.
    """

    data: bytes
    _properties: Mapping[str, str] | None
    _redelivery_count: int
    topic: str
    handle: Any
    writer_schema: str | None = None

    @property
    def properties(self) -> Mapping[str, str]:
        if self._properties is None:
            self._properties = self._read_properties()
        return self._properties

    @property
    def redelivery_count(self) -> int:
        if self._redelivery_count < 0:
            self._redelivery_count = self._read_redelivery_count()
        return self._redelivery_count

    @property
    def partition_key(self) -> str | None:
        """The key the message was published with (``None`` without one); the worker republishes
        a retry with it, so a retry keeps its key (or its ``key_spread`` sub-key)."""
        return self._read_partition_key()

    @property
    def publish_time_ms(self) -> int | None:
        """When the broker received the message (epoch ms), if the transport knows it (read on
        access: Infinitic's event handler stamps ``emittedAt`` with it)."""
        return self._read_publish_time_ms()

    def _read_properties(self) -> Mapping[str, str]:
        return {}

    def _read_publish_time_ms(self) -> int | None:
        return None

    def _read_partition_key(self) -> str | None:
        return None

    def _read_redelivery_count(self) -> int:
        return 0

    def __repr__(self) -> str:
        return (
            f"ReceivedMessage(topic={self.topic!r}, size={len(self.data)}, "
            f"redelivery_count={self.redelivery_count})"
        )


class Consumer(abc.ABC):
    @abc.abstractmethod
    async def receive(self) -> ReceivedMessage:
        """Wait for the next message. Raises ``ConsumerClosed`` once the consumer is closed."""

    async def receive_many(self, max_messages: int) -> list[ReceivedMessage]:
        """Wait for the next message and return it with the ones already received behind it,
        at most ``max_messages`` (>= 1) in all, in order. Never waits for a second message.
        Same errors as ``receive``. This default returns one message."""
        return [await self.receive()]

    @abc.abstractmethod
    async def acknowledge(self, messages: Sequence[ReceivedMessage]) -> None:
        """Acknowledge messages (individual acks; batch-index acks where the broker has them)."""

    @abc.abstractmethod
    def negative_acknowledge(self, messages: Sequence[ReceivedMessage]) -> None:
        """Ask for redelivery of these messages after the nack redelivery delay."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Close; a pending ``receive`` raises ``ConsumerClosed``; unacked messages go back."""


class Producer(abc.ABC):
    _topic: str  # set by the implementation

    @property
    def topic(self) -> str:
        """The topic it publishes to."""
        return self._topic

    @abc.abstractmethod
    async def send(self, message: OutgoingMessage) -> None:
        """Publish one message; returns once the broker has persisted it."""

    @abc.abstractmethod
    async def send_many(self, messages: Sequence[OutgoingMessage]) -> None:
        """Publish many messages in as few round trips as the transport allows; returns once all
        are persisted. Raises ``TransportError`` if any failed (some may have been persisted:
        ``SendFailed.sent`` lists the confirmed ones where the transport knows them)."""

    @abc.abstractmethod
    async def close(self) -> None: ...


class Transport(abc.ABC):
    """A connection to one broker (or one in-process broker)."""

    url: str

    @abc.abstractmethod
    async def create_producer(self, topic: str, *, schema: str | None = None,
                              partitioner: Partitioner | None = None) -> Producer:
        """A producer of ``topic``. ``schema``: the schema definition (Avro JSON) the topic's
        messages carry in the broker's schema registry (``None``: raw bytes); the messages
        handed to it are already encoded with it (the wire dialect encodes). ``partitioner``:
        ``(partition key, partitions) -> partition`` for a partitioned topic whose readers
        expect a given partitioning of keys (``None``: the transport's own)."""

    async def create_unbatched_producer(self, topic: str, *, schema: str | None = None,
                                        partitioner: Partitioner | None = None) -> Producer:
        """``create_producer``, but each message its own broker entry (no producer batching):
        for dead letters, which the ops tools ack one by one (a broker without batch-index
        acks keeps a whole batch until all of it is acked) and ``status`` counts one by one.
        This default, for a transport that does not batch, is ``create_producer``."""
        return await self.create_producer(topic, schema=schema, partitioner=partitioner)

    @abc.abstractmethod
    async def subscribe(
        self, topic: str, subscription: str, settings: ConsumerSettings
    ) -> Consumer: ...

    @abc.abstractmethod
    async def ensure_subscription(
        self, topic: str, subscription: str, subscription_type: SubscriptionType
    ) -> None:
        """Create a durable subscription (if missing) so messages published from now on are kept."""

    @abc.abstractmethod
    def is_connected(self) -> bool:
        """Best knowledge of whether the broker is reachable right now (used by /readyz)."""

    @abc.abstractmethod
    async def close(self) -> None: ...
