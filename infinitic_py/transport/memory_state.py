"""The in-process broker's state: message ids, entries, subscriptions, waiting receives, timers
(plain data, guarded by the broker's lock), and small helpers on them. See ``transport.memory``
for the semantics."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import heapq
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from infinitic_py.transport.base import (
    ConsumerClosed,
    ConsumerSettings,
    ReceivedMessage,
    SubscriptionType,
)

DEFAULT_BROKER_NAME: Final = "default"
# Properties Pulsar's client adds to a message it moves to a dead-letter topic.
REAL_TOPIC_PROPERTY: Final = "REAL_TOPIC"
ORIGIN_MESSAGE_ID_PROPERTY: Final = "ORIGIN_MESSAGE_ID"

DELAYING_TYPES: Final = frozenset({SubscriptionType.SHARED, SubscriptionType.KEY_SHARED})


@dataclass(frozen=True, slots=True, order=True)
class MemoryMessageId:
    """Identity of a message: its topic and its position in that topic (1, 2, ...).

    Shared by the copies of the message in every subscription and kept across redeliveries.
    ``str()`` follows Pulsar's ``ledger:entry:partition:batch`` form.
    """

    topic: str
    position: int

    def __str__(self) -> str:
        return f"0:{self.position}:-1:-1"


class State(enum.Enum):
    """Where a dispatched message stands with the consumer that got it."""

    PENDING = enum.auto()  # handed to a waiting receive that has not returned it yet
    UNACKED = enum.auto()  # returned by receive, waiting for ack / nack
    NACKED = enum.auto()  # nacked, waiting out the nack redelivery delay


@dataclass(slots=True, eq=False)
class Entry:
    """One subscription's copy of a message (its redelivery count is per subscription)."""

    message_id: MemoryMessageId
    data: bytes
    properties: Mapping[str, str]
    partition_key: str | None
    redelivery_count: int
    available_at: float

    def sort_key(self) -> tuple[float, int]:
        return (self.available_at, self.message_id.position)


@dataclass(slots=True, eq=False)
class Dispatched:
    """A message handed to one consumer and not settled yet: which one, and how far it got."""

    entry: Entry
    consumer: ConsumerState
    state: State


@dataclass(slots=True, eq=False)
class Waiter:
    """A ``receive`` waiting on ``loop`` for the next message of its consumer's subscription."""

    consumer: ConsumerState
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[ReceivedMessage]


@dataclass(slots=True, eq=False)
class ConsumerState:
    subscription: Subscription
    settings: ConsumerSettings
    closed: bool = False


@dataclass(slots=True, eq=False)
class Subscription:
    topic: str
    name: str
    type: SubscriptionType
    # Messages ready now, a heap ordered by (availability time, position).
    ready: list[tuple[float, int, Entry]] = field(default_factory=list)
    # Messages handed to a consumer and not acked yet, by position.
    dispatched: dict[int, Dispatched] = field(default_factory=dict)
    delayed: int = 0  # deliver_after messages the timer still holds
    waiters: deque[Waiter] = field(default_factory=deque)
    consumers: list[ConsumerState] = field(default_factory=list)

    def push_ready(self, entry: Entry) -> None:
        heapq.heappush(self.ready, (*entry.sort_key(), entry))

    def pop_ready(self) -> Entry:
        return heapq.heappop(self.ready)[2]

    def can_receive(self, consumer: ConsumerState) -> bool:
        """Whether ``consumer`` may be handed messages (failover: only the active consumer)."""
        if self.type is SubscriptionType.FAILOVER:
            return bool(self.consumers) and self.consumers[0] is consumer
        return True


@dataclass(slots=True, eq=False)
class Topic:
    name: str
    last_position: int = 0
    subscriptions: dict[str, Subscription] = field(default_factory=dict)


@dataclass(slots=True, order=True)
class Timer:
    """A message the timer thread must release at ``due``: a delayed message or a nack."""

    due: float
    seq: int
    subscription: Subscription = field(compare=False)
    entry: Entry = field(compare=False)
    nacked_by: ConsumerState | None = field(compare=False)  # None: deliver_after


def fail_closed(future: asyncio.Future[ReceivedMessage]) -> None:
    if not future.done():
        future.set_exception(ConsumerClosed("consumer closed"))


def wake_closed(waiters: Sequence[Waiter]) -> None:
    for waiter in waiters:
        # A closed loop (RuntimeError) has nobody waiting any more.
        with contextlib.suppress(RuntimeError):
            waiter.loop.call_soon_threadsafe(fail_closed, waiter.future)


def position_of(subscription: Subscription, message: ReceivedMessage) -> int:
    """The message's position in ``subscription``'s topic, or 0 if it is not one of its."""
    handle = message.handle
    if isinstance(handle, MemoryMessageId) and handle.topic == subscription.topic:
        return handle.position
    return 0


def to_received(entry: Entry) -> ReceivedMessage:
    return ReceivedMessage(
        entry.data,
        dict(entry.properties),
        entry.redelivery_count,
        entry.message_id.topic,
        entry.message_id,
    )
