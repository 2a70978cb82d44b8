"""``MemoryBroker``: the state and rules of one in-process broker (see ``transport.memory`` for
the semantics), and the per-process registry of brokers by name."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import threading
import time
from collections.abc import Sequence

from infinitic_py.transport.base import (
    ConsumerClosed,
    ConsumerSettings,
    OutgoingMessage,
    ReceivedMessage,
    SubscriptionType,
    TransportError,
)
from infinitic_py.transport.memory_state import (
    DEFAULT_BROKER_NAME,
    DELAYING_TYPES,
    ORIGIN_MESSAGE_ID_PROPERTY,
    REAL_TOPIC_PROPERTY,
    ConsumerState,
    Dispatched,
    Entry,
    MemoryMessageId,
    State,
    Subscription,
    Timer,
    Topic,
    Waiter,
    fail_closed,
    position_of,
    to_received,
    wake_closed,
)


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
        self._topics: dict[str, Topic] = {}
        self._timers: list[Timer] = []
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
            waiters: list[Waiter] = []
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
        wake_closed(waiters)

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
            return [to_received(entry) for entry in entries]

    # ---- used by transports ---------------------------------------------------------------------

    def _check_available_locked(self) -> None:
        if not self._available:
            raise TransportError(f"memory broker {self.name!r} is unavailable")

    def _topic_locked(self, topic: str) -> Topic:
        found = self._topics.get(topic)
        if found is None:
            found = self._topics[topic] = Topic(topic)
        return found

    def _subscription_locked(self, topic: str, subscription: str) -> Subscription:
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
                subscriptions[subscription] = Subscription(topic, subscription, subscription_type)

    def _subscribe(
        self, topic: str, subscription: str, settings: ConsumerSettings
    ) -> ConsumerState:
        wanted = settings.subscription_type
        with self._lock:
            self._check_available_locked()
            subscriptions = self._topic_locked(topic).subscriptions
            found = subscriptions.get(subscription)
            if found is None:
                found = subscriptions[subscription] = Subscription(topic, subscription, wanted)
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
            consumer = ConsumerState(found, settings)
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
    ) -> list[Subscription]:
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
                entry = Entry(message_id, message.data, properties, message.partition_key, 0, now)
                if delay > 0 and subscription.type in DELAYING_TYPES:
                    entry.available_at = now + delay
                    subscription.delayed += 1
                    self._schedule_locked(Timer(entry.available_at, 0, subscription, entry, None))
                else:
                    subscription.push_ready(entry)
        return subscriptions

    async def _receive(self, consumer: ConsumerState) -> ReceivedMessage:
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
                subscription.dispatched[entry.message_id.position] = Dispatched(
                    entry, consumer, State.UNACKED
                )
                return to_received(entry)
            waiter = Waiter(consumer, loop, loop.create_future())
            subscription.waiters.append(waiter)
        try:
            return await waiter.future
        except asyncio.CancelledError:
            self._abandon(waiter)
            raise

    async def _receive_many(
        self, consumer: ConsumerState, max_messages: int
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
                subscription.dispatched[entry.message_id.position] = Dispatched(
                    entry, consumer, State.UNACKED
                )
                msgs.append(to_received(entry))
        return msgs

    def _abandon(self, waiter: Waiter) -> None:
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

    def _dispatch_locked(self, subscription: Subscription) -> None:
        """Hand ready messages to waiting receives, first come first served, on their loops."""
        if not self._available:
            return
        while subscription.ready and subscription.waiters:
            waiter = self._next_waiter_locked(subscription)
            if waiter is None:
                return
            entry = subscription.pop_ready()
            position = entry.message_id.position
            subscription.dispatched[position] = Dispatched(entry, waiter.consumer, State.PENDING)
            try:
                waiter.loop.call_soon_threadsafe(self._hand_over, waiter, entry)
            except RuntimeError:  # that loop is closed: the receive is gone, keep the message
                del subscription.dispatched[position]
                subscription.push_ready(entry)

    @staticmethod
    def _next_waiter_locked(subscription: Subscription) -> Waiter | None:
        if subscription.type is not SubscriptionType.FAILOVER:
            return subscription.waiters.popleft()
        for waiter in subscription.waiters:
            if subscription.can_receive(waiter.consumer):
                subscription.waiters.remove(waiter)
                return waiter
        return None

    def _hand_over(self, waiter: Waiter, entry: Entry) -> None:
        """Runs on the waiter's loop: complete its receive with ``entry`` (or give it back)."""
        future = waiter.future
        with self._lock:
            subscription = waiter.consumer.subscription
            position = entry.message_id.position
            dispatched = subscription.dispatched.get(position)
            if (
                dispatched is not None
                and dispatched.entry is entry
                and dispatched.state is State.PENDING
            ):
                if not future.done():
                    dispatched.state = State.UNACKED
                    future.set_result(to_received(entry))
                    return
                # The receive was cancelled meanwhile: the message was never seen, no count.
                del subscription.dispatched[position]
                subscription.push_ready(entry)
                self._dispatch_locked(subscription)
                return
        # Taken back by close or reset.
        fail_closed(future)

    async def _acknowledge(
        self, consumer: ConsumerState, messages: Sequence[ReceivedMessage]
    ) -> None:
        with self._lock:
            if consumer.closed:
                raise ConsumerClosed("acknowledge on a closed consumer")
            subscription = consumer.subscription
            for message in messages:
                position = position_of(subscription, message)
                dispatched = subscription.dispatched.get(position) if position else None
                if dispatched is not None and dispatched.state is not State.PENDING:
                    # Any consumer's copy: Pulsar acks the subscription's position.
                    del subscription.dispatched[position]

    def _negative_acknowledge(
        self, consumer: ConsumerState, messages: Sequence[ReceivedMessage]
    ) -> None:
        settings = consumer.settings
        with self._lock:
            if consumer.closed:
                return
            subscription = consumer.subscription
            now = time.monotonic()
            touched: set[Subscription] = {subscription}
            for message in messages:
                position = position_of(subscription, message)
                dispatched = subscription.dispatched.get(position) if position else None
                if (
                    dispatched is None
                    or dispatched.consumer is not consumer
                    or dispatched.state is not State.UNACKED
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
                    dispatched.state = State.NACKED
                    self._schedule_locked(
                        Timer(entry.available_at, 0, subscription, entry, consumer)
                    )
                else:
                    entry.available_at = now
                    del subscription.dispatched[position]
                    subscription.push_ready(entry)
            for touched_subscription in touched:
                self._dispatch_locked(touched_subscription)

    def _dead_letter_locked(
        self, subscription: Subscription, settings: ConsumerSettings, entry: Entry
    ) -> list[Subscription]:
        topic = settings.dead_letter_topic or f"{subscription.topic}-{subscription.name}-DLQ"
        if settings.dead_letter_subscription:  # as Pulsar's initialSubscriptionName
            subscriptions = self._topic_locked(topic).subscriptions
            if settings.dead_letter_subscription not in subscriptions:
                subscriptions[settings.dead_letter_subscription] = Subscription(
                    topic, settings.dead_letter_subscription, SubscriptionType.SHARED)
        properties = {
            **entry.properties,
            REAL_TOPIC_PROPERTY: subscription.topic,
            ORIGIN_MESSAGE_ID_PROPERTY: str(entry.message_id),
        }
        message = OutgoingMessage(entry.data, properties, partition_key=entry.partition_key)
        return self._publish_locked(topic, [message])

    def _close_consumer(self, consumer: ConsumerState) -> None:
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
                if dispatched.state is State.UNACKED:
                    entry.redelivery_count += 1  # seen by the application: a redelivery
                elif dispatched.state is State.NACKED:
                    entry.available_at = now  # already counted; no need to wait any longer
                subscription.push_ready(entry)
            self._dispatch_locked(subscription)
        wake_closed(waiters)

    # ---- timers ---------------------------------------------------------------------------------

    def _schedule_locked(self, timer: Timer) -> None:
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
                touched: set[Subscription] = set()
                while self._timers and self._timers[0].due <= now:
                    timer = heapq.heappop(self._timers)
                    if self._release_locked(timer):
                        touched.add(timer.subscription)
                for subscription in touched:
                    self._dispatch_locked(subscription)
            self._timer_thread = None

    @staticmethod
    def _release_locked(timer: Timer) -> bool:
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
            or dispatched.state is not State.NACKED
        ):
            return False  # acked meanwhile, or given back when its consumer closed
        del subscription.dispatched[position]
        subscription.push_ready(entry)
        return True


