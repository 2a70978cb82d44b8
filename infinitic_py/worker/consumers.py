"""Consumers: the subscriptions one service's executor consumes (one or more topics, as its
dialect says), acks / nacks routed back to the consumer that received each message.

Dead letters are the last copy of a failed task: before subscribing, every dead-letter topic the
worker (or the broker's dead-letter policy, ``dead_letter_subscription``) writes to gets the
durable subscription ``DLQ_SUBSCRIPTION`` (a topic with no subscription keeps nothing once its
ledger rolls over; Pulsar keeps what a subscription has not acked)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator, Sequence
from operator import attrgetter

import structlog

from infinitic_py.producers import CLOSE_TIMEOUT
from infinitic_py.topics import DLQ_SUBSCRIPTION, unpartitioned
from infinitic_py.transport.base import (
    Consumer,
    ConsumerSettings,
    ReceivedMessage,
    SubscriptionType,
    Transport,
    TransportError,
)
from infinitic_py.wire import Subscription
from infinitic_py.wire.bulk import split_settlement

_topic_of = attrgetter("topic")


class Consumers:
    def __init__(self, subscriptions: Sequence[Subscription], settings: ConsumerSettings,
                 consumer_name: str, log: structlog.stdlib.BoundLogger, *,
                 keep_dead_letters: str | None = None) -> None:
        """``keep_dead_letters``: the dead-letter topic the worker writes to. It, and the
        dead-letter topic of each subscription (where the broker's dead-letter policy moves
        messages), get the durable ``DLQ_SUBSCRIPTION`` before subscribing (a topic without a
        subscription keeps nothing; `infinitic-py dlq` reads that one)."""
        self._subscriptions = subscriptions
        self._settings = settings
        self._consumer_name = consumer_name
        self._log = log
        self._keep_dead_letters = keep_dead_letters
        self._by_topic: dict[str, Consumer] = {}
        self._only: Consumer | None = None  # the usual case: one topic

    def __iter__(self) -> Iterator[Consumer]:
        return iter(self._by_topic.values())

    async def subscribe(self, transport: Transport) -> None:
        kept = {self._keep_dead_letters} | {
            self._settings_for(sub).dead_letter_topic for sub in self._subscriptions}
        for topic in sorted(t for t in kept if t):
            try:
                await transport.ensure_subscription(topic, DLQ_SUBSCRIPTION,
                                                    SubscriptionType.SHARED)
            except TransportError as exc:  # e.g. it exists with another type
                self._log.warning("dead_letters.subscription_failed", topic=topic,
                                  error=str(exc))
        for sub in self._subscriptions:
            self._by_topic[sub.topic] = await transport.subscribe(
                sub.topic, sub.subscription, self._settings_for(sub))
        if len(self._by_topic) == 1:
            self._only = next(iter(self._by_topic.values()))

    def _settings_for(self, sub: Subscription) -> ConsumerSettings:
        settings = self._settings
        if settings.max_redeliveries is not None and not settings.dead_letter_topic:
            settings = dataclasses.replace(settings, dead_letter_topic=sub.dead_letter_topic)
        if sub.writer_schemas and not settings.writer_schemas:
            settings = dataclasses.replace(settings, writer_schemas=True)
        if sub.schema != settings.schema:
            settings = dataclasses.replace(settings, schema=sub.schema)
        if settings.dead_letter_topic and not settings.dead_letter_subscription:
            settings = dataclasses.replace(settings, dead_letter_subscription=DLQ_SUBSCRIPTION)
        if settings.consumer_name is None:
            settings = dataclasses.replace(settings, consumer_name=self._consumer_name)
        return settings

    async def settle(self, msgs: Sequence[ReceivedMessage], *, ack: bool) -> None:
        """Ack (outcomes are durable) or nack (they are not) messages on their consumers. A task
        of an atomic bulk settles its part; the bulk itself once its last part settles."""
        msgs, bulks = split_settlement(msgs, ack)
        for bulk in bulks:
            await self.settle([bulk.parent], ack=bulk.ack)
        if not msgs:
            return
        if self._only is not None:
            await self._settle(self._only, msgs, ack)
            return
        if len(set(map(_topic_of, msgs))) == 1:  # the usual unit: one topic (C-level check)
            await self._settle(self._consumer_of(msgs[0]), msgs, ack)
            return
        groups: dict[Consumer, list[ReceivedMessage]] = {}
        for msg in msgs:
            groups.setdefault(self._consumer_of(msg), []).append(msg)
        for consumer, part in groups.items():
            await self._settle(consumer, part, ack)

    async def give_back_unrun(self, msgs: Sequence[ReceivedMessage]) -> None:
        """Messages the worker got while stopping, that never ran: nacked (the next worker gets
        them at once), except those at their last delivery (``max_redeliveries``), which the
        consumer's close hands back instead: a nack would have the broker dead-letter a task
        that never ran."""
        msgs = [m for m in msgs if not self.at_last_delivery(m)]
        if msgs:
            await self.settle(msgs, ack=False)

    def at_last_delivery(self, msg: ReceivedMessage) -> bool:
        """Whether a nack of ``msg`` has the broker dead-letter it: its redelivery count
        reached ``max_redeliveries`` (the dead-letter policy of its subscription)."""
        limit = self._settings.max_redeliveries
        return limit is not None and msg.redelivery_count >= limit

    async def _settle(self, consumer: Consumer, msgs: Sequence[ReceivedMessage],
                      ack: bool) -> None:
        try:
            if ack:
                await consumer.acknowledge(msgs)
            else:
                consumer.negative_acknowledge(msgs)
        except TransportError as exc:
            # The broker will redeliver unacked messages (connection loss): nothing is lost.
            self._log.warning("settle.failed", ack=ack, count=len(msgs), error=str(exc))

    def _consumer_of(self, msg: ReceivedMessage) -> Consumer:
        consumer = self._by_topic.get(msg.topic)
        if consumer is None:  # a partition of a consumed topic: "<topic>-partition-<n>"
            consumer = self._by_topic.get(unpartitioned(msg.topic))
        if consumer is None:  # a transport naming topics its own way: the first topic's
            consumer = next(iter(self._by_topic.values()))
        return consumer

    async def close(self) -> None:
        """Close every consumer (their receive loops end); bounded in time: with the broker
        gone, a close would otherwise wait for the client's operation timeout."""
        for consumer in self._by_topic.values():
            try:
                await asyncio.wait_for(consumer.close(), CLOSE_TIMEOUT)
            except (TransportError, TimeoutError) as exc:
                self._log.warning("executor.consumer_close_failed", error=str(exc) or "timeout")
