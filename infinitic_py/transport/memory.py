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

import asyncio
import contextlib
import enum
import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from infinitic_py.transport.base import (
    Consumer,
    ConsumerClosed,
    ConsumerSettings,
    OutgoingMessage,
    Producer,
    ReceivedMessage,
    SubscriptionType,
    Transport,
    TransportError,
)

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

URL_SCHEME: Final = "memory://"
DEFAULT_BROKER_NAME: Final = "default"
# Properties Pulsar's client adds to a message it moves to a dead-letter topic.
REAL_TOPIC_PROPERTY: Final = "REAL_TOPIC"
ORIGIN_MESSAGE_ID_PROPERTY: Final = "ORIGIN_MESSAGE_ID"

_DELAYING_TYPES: Final = frozenset({SubscriptionType.SHARED, SubscriptionType.KEY_SHARED})


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


class _State(enum.Enum):
    """Where a dispatched message stands with the consumer that got it."""

    PENDING = enum.auto()  # handed to a waiting receive that has not returned it yet
    UNACKED = enum.auto()  # returned by receive, waiting for ack / nack
    NACKED = enum.auto()  # nacked, waiting out the nack redelivery delay


@dataclass(slots=True, eq=False)
class _Entry:
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
class _Dispatched:
    entry: _Entry
    consumer: _ConsumerState
    state: _State


@dataclass(slots=True, eq=False)
class _Waiter:
    """A ``receive`` waiting on ``loop`` for the next message of its consumer's subscription."""

    consumer: _ConsumerState
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[ReceivedMessage]


@dataclass(slots=True, eq=False)
class _ConsumerState:
    subscription: _Subscription
    settings: ConsumerSettings
    closed: bool = False


@dataclass(slots=True, eq=False)
class _Subscription:
    topic: str
    name: str
    type: SubscriptionType
    # Messages ready now, a heap ordered by (availability time, position).
    ready: list[tuple[float, int, _Entry]] = field(default_factory=list)
    # Messages handed to a consumer and not acked yet, by position.
    dispatched: dict[int, _Dispatched] = field(default_factory=dict)
    delayed: int = 0  # deliver_after messages the timer still holds
    waiters: deque[_Waiter] = field(default_factory=deque)
    consumers: list[_ConsumerState] = field(default_factory=list)

    def push_ready(self, entry: _Entry) -> None:
        heapq.heappush(self.ready, (*entry.sort_key(), entry))

    def pop_ready(self) -> _Entry:
        return heapq.heappop(self.ready)[2]

    def can_receive(self, consumer: _ConsumerState) -> bool:
        """Whether ``consumer`` may be handed messages (failover: only the active consumer)."""
        if self.type is SubscriptionType.FAILOVER:
            return bool(self.consumers) and self.consumers[0] is consumer
        return True


@dataclass(slots=True, eq=False)
class _Topic:
    name: str
    last_position: int = 0
    subscriptions: dict[str, _Subscription] = field(default_factory=dict)


@dataclass(slots=True, order=True)
class _Timer:
    """A message the timer thread must release at ``due``: a delayed message or a nack."""

    due: float
    seq: int
    subscription: _Subscription = field(compare=False)
    entry: _Entry = field(compare=False)
    nacked_by: _ConsumerState | None = field(compare=False)  # None: deliver_after


def _fail_closed(future: asyncio.Future[ReceivedMessage]) -> None:
    if not future.done():
        future.set_exception(ConsumerClosed("consumer closed"))


class MemoryBroker:
    """An in-process broker shared by every ``MemoryTransport`` with the same name.

    Besides what transports use, it offers test hooks: ``set_available`` (simulate an outage),
    ``reset``, and read-only stats (``topics``, ``subscriptions``, ``subscription_counts``,
    ``peek``, ``consumer_count``).
    """

    def __init__(self, name: str = DEFAULT_BROKER_NAME) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._timer_wakeup = threading.Condition(self._lock)
        self._topics: dict[str, _Topic] = {}
        self._timers: list[_Timer] = []
        self._timer_seq = itertools.count()
        self._timer_thread: threading.Thread | None = None
        self._available = True

    def __repr__(self) -> str:
        return f"MemoryBroker(name={self.name!r})"

    # ---- test hooks -----------------------------------------------------------------------------

    @property
    def available(self) -> bool:
        return self._available

    def set_available(self, available: bool) -> None:
        """Simulate an outage (False) or its end (True); see the module docstring."""
        with self._lock:
            self._available = available
            if available:
                for topic in self._topics.values():
                    for subscription in topic.subscriptions.values():
                        self._dispatch_locked(subscription)

    def reset(self) -> None:
        """Forget every topic, subscription and scheduled message; close every consumer (pending
        receives raise ``ConsumerClosed``) and end any outage. Producers and transports stay usable.
        """
        with self._lock:
            waiters: list[_Waiter] = []
            for topic in self._topics.values():
                for subscription in topic.subscriptions.values():
                    for consumer in subscription.consumers:
                        consumer.closed = True
                    waiters.extend(subscription.waiters)
                    subscription.waiters.clear()
                    subscription.consumers.clear()
                    subscription.dispatched.clear()
                    subscription.ready.clear()
                    subscription.delayed = 0
            self._topics.clear()
            self._timers.clear()
            self._available = True
            self._timer_wakeup.notify()
        self._wake_closed(waiters)

    def topics(self) -> list[str]:
        """Every topic a producer, a subscription or a publish has created, sorted."""
        with self._lock:
            return sorted(self._topics)

    def subscriptions(self, topic: str) -> list[str]:
        """The subscriptions of ``topic``, sorted (empty for an unknown topic)."""
        with self._lock:
            known = self._topics.get(topic)
            return sorted(known.subscriptions) if known else []

    def subscription_counts(self, topic: str, subscription: str) -> tuple[int, int]:
        """``(backlog, unacked)`` like Pulsar's ``msgBacklog`` / ``unackedMessages``: the backlog
        counts every message not acked yet (ready, delayed, unacked, waiting out a nack delay);
        unacked counts those handed to consumers. Raises ``KeyError`` for an unknown subscription.
        """
        with self._lock:
            found = self._subscription_locked(topic, subscription)
            unacked = len(found.dispatched)
            return (len(found.ready) + found.delayed + unacked, unacked)

    def consumer_count(self, topic: str, subscription: str) -> int:
        """Connected consumers of a subscription. Raises ``KeyError`` for an unknown one."""
        with self._lock:
            return len(self._subscription_locked(topic, subscription).consumers)

    def peek(self, topic: str, subscription: str) -> list[ReceivedMessage]:
        """Every message in the subscription's backlog, by position, changing nothing. The
        handles are real message ids, but acking a message nobody received is a no-op.
        """
        with self._lock:
            found = self._subscription_locked(topic, subscription)
            entries = [entry for _, _, entry in found.ready]
            entries.extend(d.entry for d in found.dispatched.values())
            entries.extend(
                timer.entry
                for timer in self._timers
                if timer.subscription is found and timer.nacked_by is None
            )
            entries.sort(key=lambda entry: entry.message_id.position)
            return [self._to_received(entry) for entry in entries]

    # ---- used by transports ---------------------------------------------------------------------

    def _check_available_locked(self) -> None:
        if not self._available:
            raise TransportError(f"memory broker {self.name!r} is unavailable")

    def _topic_locked(self, topic: str) -> _Topic:
        found = self._topics.get(topic)
        if found is None:
            found = self._topics[topic] = _Topic(topic)
        return found

    def _subscription_locked(self, topic: str, subscription: str) -> _Subscription:
        known = self._topics.get(topic)
        found = known.subscriptions.get(subscription) if known else None
        if found is None:
            raise KeyError(f"no subscription {subscription!r} on topic {topic!r}")
        return found

    def _create_topic(self, topic: str) -> None:
        with self._lock:
            self._check_available_locked()
            self._topic_locked(topic)

    def _ensure_subscription(
        self, topic: str, subscription: str, subscription_type: SubscriptionType
    ) -> None:
        with self._lock:
            self._check_available_locked()
            subscriptions = self._topic_locked(topic).subscriptions
            if subscription not in subscriptions:
                subscriptions[subscription] = _Subscription(topic, subscription, subscription_type)

    def _subscribe(
        self, topic: str, subscription: str, settings: ConsumerSettings
    ) -> _ConsumerState:
        wanted = settings.subscription_type
        with self._lock:
            self._check_available_locked()
            subscriptions = self._topic_locked(topic).subscriptions
            found = subscriptions.get(subscription)
            if found is None:
                found = subscriptions[subscription] = _Subscription(topic, subscription, wanted)
            elif not found.consumers:
                found.type = wanted
            elif found.type is not wanted:
                raise TransportError(
                    f"subscription {subscription!r} on {topic!r} is {found.type.value}, "
                    f"cannot subscribe as {wanted.value}"
                )
            elif wanted is SubscriptionType.EXCLUSIVE:
                raise TransportError(
                    f"exclusive subscription {subscription!r} on {topic!r} already has a consumer"
                )
            consumer = _ConsumerState(found, settings)
            found.consumers.append(consumer)
            self._dispatch_locked(found)
            return consumer

    def _publish(self, topic: str, messages: Sequence[OutgoingMessage]) -> None:
        with self._lock:
            self._check_available_locked()
            touched = self._publish_locked(topic, messages)
            for subscription in touched:
                self._dispatch_locked(subscription)

    def _publish_locked(
        self, topic: str, messages: Sequence[OutgoingMessage]
    ) -> list[_Subscription]:
        """Copy ``messages`` into every subscription of ``topic``; returns the ones to dispatch."""
        found = self._topic_locked(topic)
        subscriptions = list(found.subscriptions.values())
        now = time.monotonic()
        for message in messages:
            found.last_position += 1
            message_id = MemoryMessageId(topic, found.last_position)
            properties = dict(message.properties)
            delay = message.deliver_after or 0.0
            for subscription in subscriptions:
                entry = _Entry(message_id, message.data, properties, message.partition_key, 0, now)
                if delay > 0 and subscription.type in _DELAYING_TYPES:
                    entry.available_at = now + delay
                    subscription.delayed += 1
                    self._schedule_locked(_Timer(entry.available_at, 0, subscription, entry, None))
                else:
                    subscription.push_ready(entry)
        return subscriptions

    async def _receive(self, consumer: _ConsumerState) -> ReceivedMessage:
        # A real receive always suspends; yielding once here keeps a receive loop from starving
        # the event loop while a backlog drains.
        await asyncio.sleep(0)
        loop = asyncio.get_running_loop()
        subscription = consumer.subscription
        with self._lock:
            if consumer.closed:
                raise ConsumerClosed("consumer closed")
            # Dispatch keeps "no ready message while an eligible receive waits", so taking the
            # head here is fair to receives that were already waiting.
            if self._available and subscription.ready and subscription.can_receive(consumer):
                entry = subscription.pop_ready()
                subscription.dispatched[entry.message_id.position] = _Dispatched(
                    entry, consumer, _State.UNACKED
                )
                return self._to_received(entry)
            waiter = _Waiter(consumer, loop, loop.create_future())
            subscription.waiters.append(waiter)
        try:
            return await waiter.future
        except asyncio.CancelledError:
            self._abandon(waiter)
            raise

    async def _receive_many(
        self, consumer: _ConsumerState, max_messages: int
    ) -> list[ReceivedMessage]:
        """One message as ``_receive`` gets it, then whatever is ready for this consumer now."""
        msgs = [await self._receive(consumer)]
        subscription = consumer.subscription
        with self._lock:
            while (
                len(msgs) < max_messages
                and not consumer.closed
                and self._available
                and subscription.ready
                and subscription.can_receive(consumer)
            ):
                entry = subscription.pop_ready()
                subscription.dispatched[entry.message_id.position] = _Dispatched(
                    entry, consumer, _State.UNACKED
                )
                msgs.append(self._to_received(entry))
        return msgs

    def _abandon(self, waiter: _Waiter) -> None:
        """A waiting receive was cancelled: never lose the message it may already hold."""
        future = waiter.future
        with self._lock:
            subscription = waiter.consumer.subscription
            # Absent if already served, failed, or handed a message that is still on its way.
            with contextlib.suppress(ValueError):
                subscription.waiters.remove(waiter)
            if future.done() and not future.cancelled() and future.exception() is None:
                # The result arrived but the task was cancelled before it resumed: put it back.
                handle = future.result().handle
                assert isinstance(handle, MemoryMessageId)
                dispatched = subscription.dispatched.get(handle.position)
                if dispatched is not None and dispatched.consumer is waiter.consumer:
                    del subscription.dispatched[handle.position]
                    subscription.push_ready(dispatched.entry)
                    self._dispatch_locked(subscription)
            # A message still on its way is put back by _hand_over, which sees the future done.

    def _dispatch_locked(self, subscription: _Subscription) -> None:
        """Hand ready messages to waiting receives, first come first served, on their loops."""
        if not self._available:
            return
        while subscription.ready and subscription.waiters:
            waiter = self._next_waiter_locked(subscription)
            if waiter is None:
                return
            entry = subscription.pop_ready()
            position = entry.message_id.position
            subscription.dispatched[position] = _Dispatched(entry, waiter.consumer, _State.PENDING)
            try:
                waiter.loop.call_soon_threadsafe(self._hand_over, waiter, entry)
            except RuntimeError:  # that loop is closed: the receive is gone, keep the message
                del subscription.dispatched[position]
                subscription.push_ready(entry)

    @staticmethod
    def _next_waiter_locked(subscription: _Subscription) -> _Waiter | None:
        if subscription.type is not SubscriptionType.FAILOVER:
            return subscription.waiters.popleft()
        for waiter in subscription.waiters:
            if subscription.can_receive(waiter.consumer):
                subscription.waiters.remove(waiter)
                return waiter
        return None

    def _hand_over(self, waiter: _Waiter, entry: _Entry) -> None:
        """Runs on the waiter's loop: complete its receive with ``entry`` (or give it back)."""
        future = waiter.future
        with self._lock:
            subscription = waiter.consumer.subscription
            position = entry.message_id.position
            dispatched = subscription.dispatched.get(position)
            if (
                dispatched is not None
                and dispatched.entry is entry
                and dispatched.state is _State.PENDING
            ):
                if not future.done():
                    dispatched.state = _State.UNACKED
                    future.set_result(self._to_received(entry))
                    return
                # The receive was cancelled meanwhile: the message was never seen, no count.
                del subscription.dispatched[position]
                subscription.push_ready(entry)
                self._dispatch_locked(subscription)
                return
        # Taken back by close or reset.
        _fail_closed(future)

    async def _acknowledge(
        self, consumer: _ConsumerState, messages: Sequence[ReceivedMessage]
    ) -> None:
        with self._lock:
            if consumer.closed:
                raise ConsumerClosed("acknowledge on a closed consumer")
            subscription = consumer.subscription
            for message in messages:
                position = self._position(subscription, message)
                dispatched = subscription.dispatched.get(position) if position else None
                if dispatched is not None and dispatched.state is not _State.PENDING:
                    # Any consumer's copy: Pulsar acks the subscription's position.
                    del subscription.dispatched[position]

    def _negative_acknowledge(
        self, consumer: _ConsumerState, messages: Sequence[ReceivedMessage]
    ) -> None:
        settings = consumer.settings
        with self._lock:
            if consumer.closed:
                return
            subscription = consumer.subscription
            now = time.monotonic()
            touched: set[_Subscription] = {subscription}
            for message in messages:
                position = self._position(subscription, message)
                dispatched = subscription.dispatched.get(position) if position else None
                if (
                    dispatched is None
                    or dispatched.consumer is not consumer
                    or dispatched.state is not _State.UNACKED
                ):
                    continue
                entry = dispatched.entry
                count = entry.redelivery_count + 1
                if settings.max_redeliveries is not None and count > settings.max_redeliveries:
                    del subscription.dispatched[position]
                    touched.update(self._dead_letter_locked(subscription, settings, entry))
                    continue
                entry.redelivery_count = count
                delay = settings.nack_redelivery_delay
                if delay > 0:
                    entry.available_at = now + delay
                    dispatched.state = _State.NACKED
                    self._schedule_locked(
                        _Timer(entry.available_at, 0, subscription, entry, consumer)
                    )
                else:
                    entry.available_at = now
                    del subscription.dispatched[position]
                    subscription.push_ready(entry)
            for touched_subscription in touched:
                self._dispatch_locked(touched_subscription)

    def _dead_letter_locked(
        self, subscription: _Subscription, settings: ConsumerSettings, entry: _Entry
    ) -> list[_Subscription]:
        topic = settings.dead_letter_topic or f"{subscription.topic}-{subscription.name}-DLQ"
        properties = {
            **entry.properties,
            REAL_TOPIC_PROPERTY: subscription.topic,
            ORIGIN_MESSAGE_ID_PROPERTY: str(entry.message_id),
        }
        message = OutgoingMessage(entry.data, properties, partition_key=entry.partition_key)
        return self._publish_locked(topic, [message])

    def _close_consumer(self, consumer: _ConsumerState) -> None:
        with self._lock:
            if consumer.closed:
                return
            consumer.closed = True
            subscription = consumer.subscription
            if consumer in subscription.consumers:
                subscription.consumers.remove(consumer)
            waiters = [w for w in subscription.waiters if w.consumer is consumer]
            for waiter in waiters:
                subscription.waiters.remove(waiter)
            now = time.monotonic()
            for position, dispatched in list(subscription.dispatched.items()):
                if dispatched.consumer is not consumer:
                    continue
                del subscription.dispatched[position]
                entry = dispatched.entry
                if dispatched.state is _State.UNACKED:
                    entry.redelivery_count += 1  # seen by the application: a redelivery
                elif dispatched.state is _State.NACKED:
                    entry.available_at = now  # already counted; no need to wait any longer
                subscription.push_ready(entry)
            self._dispatch_locked(subscription)
        self._wake_closed(waiters)

    @staticmethod
    def _wake_closed(waiters: Sequence[_Waiter]) -> None:
        for waiter in waiters:
            # A closed loop (RuntimeError) has nobody waiting any more.
            with contextlib.suppress(RuntimeError):
                waiter.loop.call_soon_threadsafe(_fail_closed, waiter.future)

    @staticmethod
    def _position(subscription: _Subscription, message: ReceivedMessage) -> int:
        """The message's position in ``subscription``'s topic, or 0 if it is not one of its."""
        handle = message.handle
        if isinstance(handle, MemoryMessageId) and handle.topic == subscription.topic:
            return handle.position
        return 0

    @staticmethod
    def _to_received(entry: _Entry) -> ReceivedMessage:
        return ReceivedMessage(
            entry.data,
            dict(entry.properties),
            entry.redelivery_count,
            entry.message_id.topic,
            entry.message_id,
        )

    # ---- timers ---------------------------------------------------------------------------------

    def _schedule_locked(self, timer: _Timer) -> None:
        timer.seq = next(self._timer_seq)
        heapq.heappush(self._timers, timer)
        if self._timer_thread is None:
            self._timer_thread = threading.Thread(
                target=self._run_timers, name=f"memory-broker-{self.name}-timers", daemon=True
            )
            self._timer_thread.start()  # it waits for the lock we hold
        elif self._timers[0] is timer:
            self._timer_wakeup.notify()  # a new earliest due time

    def _run_timers(self) -> None:
        """The timer thread: release due messages; sleep until the next due time; exit when idle."""
        with self._timer_wakeup:
            while self._timers:
                now = time.monotonic()
                wait = self._timers[0].due - now
                if wait > 0:
                    self._timer_wakeup.wait(wait)
                    continue
                touched: set[_Subscription] = set()
                while self._timers and self._timers[0].due <= now:
                    timer = heapq.heappop(self._timers)
                    if self._release_locked(timer):
                        touched.add(timer.subscription)
                for subscription in touched:
                    self._dispatch_locked(subscription)
            self._timer_thread = None

    @staticmethod
    def _release_locked(timer: _Timer) -> bool:
        subscription = timer.subscription
        entry = timer.entry
        if timer.nacked_by is None:
            subscription.delayed -= 1
            subscription.push_ready(entry)
            return True
        position = entry.message_id.position
        dispatched = subscription.dispatched.get(position)
        if (
            dispatched is None
            or dispatched.entry is not entry
            or dispatched.consumer is not timer.nacked_by
            or dispatched.state is not _State.NACKED
        ):
            return False  # acked meanwhile, or given back when its consumer closed
        del subscription.dispatched[position]
        subscription.push_ready(entry)
        return True


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

    @property
    def topic(self) -> str:
        return self._topic

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
        state: _ConsumerState,
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


class MemoryTransport(Transport):
    """A connection to the in-process broker named by ``memory://NAME``."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.broker = get_broker(broker_name(url))
        self._closed = False
        self._lock = threading.Lock()
        self._producers: set[MemoryProducer] = set()
        self._consumers: set[MemoryConsumer] = set()

    def __repr__(self) -> str:
        return f"MemoryTransport(url={self.url!r})"

    async def create_producer(self, topic: str, *, schema: str | None = None) -> MemoryProducer:
        # ``schema`` is not checked: the in-process broker keeps bytes, whatever their schema.
        self._check_open()
        self.broker._create_topic(topic)
        producer = MemoryProducer(self, topic)
        with self._lock:
            self._producers.add(producer)
        return producer

    async def subscribe(
        self, topic: str, subscription: str, settings: ConsumerSettings
    ) -> MemoryConsumer:
        self._check_open()
        consumer = MemoryConsumer(self, self.broker._subscribe(topic, subscription, settings))
        with self._lock:
            self._consumers.add(consumer)
        return consumer

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
            producers, self._producers = self._producers, set()
            consumers, self._consumers = self._consumers, set()
        for consumer in consumers:
            await consumer.close()
        for producer in producers:
            await producer.close()

    def _check_open(self) -> None:
        if self._closed:
            raise TransportError(f"transport {self.url!r} is closed")

    def _forget(self, member: MemoryProducer | MemoryConsumer) -> None:
        with self._lock:
            if isinstance(member, MemoryProducer):
                self._producers.discard(member)
            else:
                self._consumers.discard(member)
