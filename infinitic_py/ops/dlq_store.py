"""Reads, replays and purges a service's dead letters through the durable DLQ subscription.

Why a consumer on the durable subscription ``DLQ_SUBSCRIPTION`` (Shared), not the admin API's
peek (``.../subscription/{sub}/position/N``) or a Reader:

- peek returns whole entries: letters written in batches (by older workers; today's write each
  letter as an entry of its own) would need the batch framing parsed by hand, and it cannot
  skip the letters of a batch already acked one by one (replayed or purged);
- a Reader sees every retained message, acked ones included: a replayed letter would still show;
- a consumer gets exactly the letters not yet acked, one by one, through the same client, auth
  and TLS as the worker. ``list`` / ``show`` never ack: closing the consumer hands every letter
  back to the subscription at once (nothing is consumed). ``replay`` acks a letter only after
  its new attempt is persisted; ``purge`` acks only with ``--yes``.

Reading stops after ``idle`` seconds without a new letter. The admin API (when an admin URL is
known) only says whether there is anything at all: the subscription's ``msgBacklog`` counts
*entries* (a letter each as the worker writes them today, but an atomic bulk Pulsar
dead-lettered, or letters an older worker batched, hold several), so it is no exact count.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from infinitic_py.admin import PulsarAdmin, PulsarAdminError
from infinitic_py.ops.dlq import LetterView, read_letters, replay_message, replay_topic
from infinitic_py.topics import (
    DLQ_SUBSCRIPTION,
    WORKER_SUBSCRIPTION,
    dead_letter_topic,
)
from infinitic_py.transport.base import (
    Consumer,
    ConsumerSettings,
    OutgoingMessage,
    ReceivedMessage,
    SubscriptionType,
    Transport,
    TransportError,
)

__all__ = ["DeadLetterStore", "Letter", "whole_bulks"]

_CONSUMER_NAME = "infinitic-py-dlq-tool"
_FIRST_WAIT = 5.0  # seconds for the first letter when the admin API says there are some


@dataclass(frozen=True)
class Letter:
    """A received dead letter: the message (to ack) and its decoded view. The tasks of an
    atomic bulk dead-lettered by Pulsar are several letters sharing one message."""

    message: ReceivedMessage
    view: LetterView


def whole_bulks(chosen: Sequence[Letter]) -> tuple[list[Letter], list[Letter]]:
    """``chosen`` split into the letters that can be settled (acked) and those of a bulk message
    only some of whose tasks are chosen: acking that message would delete the others too, so
    they are left alone (selected again with a filter matching the whole bulk)."""
    counts: dict[int, int] = {}
    for letter in chosen:
        counts[id(letter.message)] = counts.get(id(letter.message), 0) + 1
    whole: list[Letter] = []
    partial: list[Letter] = []
    for letter in chosen:
        size = letter.view.bulk_size
        (partial if size and counts[id(letter.message)] < size else whole).append(letter)
    return whole, partial


def _messages(letters: Sequence[Letter]) -> list[ReceivedMessage]:
    """Each message once (a bulk's letters share one)."""
    seen: dict[int, ReceivedMessage] = {}
    for letter in letters:
        seen.setdefault(id(letter.message), letter.message)
    return list(seen.values())


class DeadLetterStore:
    """``async with DeadLetterStore(transport, tenant, ns, service, admin=...) as store:``."""

    def __init__(
        self,
        transport: Transport,
        tenant: str,
        namespace: str,
        service: str,
        *,
        admin: PulsarAdmin | None = None,
        idle: float = 1.5,
    ) -> None:
        self._transport = transport
        self.tenant = tenant
        self.namespace = namespace
        self.service = service
        self.topic = dead_letter_topic(tenant, namespace, service)
        self._admin = admin
        self._idle = idle
        self._consumer: Consumer | None = None
        self.topic_exists = True  # False when the admin API said there is no dead-letter topic
        # True when the broker stopped delivering to the tool at its unacked-messages limit
        # (maxUnackedMessagesPerConsumer / ...PerSubscription): more letters are kept than read.
        self.truncated = False

    async def __aenter__(self) -> DeadLetterStore:
        if not await self._topic_exists():
            self.topic_exists = False
            return self  # nothing to read, and no topic made for a mistyped service name
        self._consumer = await self._transport.subscribe(
            self.topic, DLQ_SUBSCRIPTION,
            ConsumerSettings(subscription_type=SubscriptionType.SHARED,
                             receiver_queue_size=1000, consumer_name=_CONSUMER_NAME),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the consumer: letters read but not acked go back to the subscription."""
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            with contextlib.suppress(TransportError, TimeoutError):
                await asyncio.wait_for(consumer.close(), 10.0)

    async def _topic_exists(self) -> bool:
        """``False`` only when the admin API says the dead-letter topic does not exist; its
        ``PulsarAdminError`` (404) when the namespace itself does not (a mistyped namespace is
        not a service without dead letters)."""
        if self._admin is None:
            return True
        try:
            stats = await asyncio.to_thread(self._admin.topic_stats, self.topic)
        except PulsarAdminError:
            return True
        if not stats:
            try:
                await asyncio.to_thread(self._admin.topics, self.tenant, self.namespace)
            except PulsarAdminError as exc:
                if exc.status == 404:
                    raise
        return bool(stats)

    async def backlog(self) -> int | None:
        """Entries kept on the subscription (0: no letter), from the admin API (``None``
        without one)."""
        if self._admin is None:
            return None
        try:
            counts = await asyncio.to_thread(
                self._admin.subscription_counts, self.topic, DLQ_SUBSCRIPTION)
        except PulsarAdminError:
            return None
        return counts[0]

    async def read(self) -> list[Letter]:
        """Every letter the subscription holds (none is acked)."""
        consumer = self._consumer
        letters: list[Letter] = []
        if consumer is None:  # no dead-letter topic
            return letters
        backlog = await self.backlog()
        if backlog == 0:
            return letters
        wait = _FIRST_WAIT if backlog else self._idle
        while True:
            try:
                msgs = await asyncio.wait_for(consumer.receive_many(1000), wait)
            except TimeoutError:
                break
            letters += [Letter(m, view) for m in msgs for view in self._views(m)]
            wait = self._idle
        self.truncated = await self._blocked()
        return letters

    async def _blocked(self) -> bool:
        """Whether the broker holds letters back from this tool at its unacked limit (the tool
        acks nothing while it reads, so past the limit it sees only the first letters)."""
        if self._admin is None:
            return False
        try:
            stats = await asyncio.to_thread(self._admin.topic_stats, self.topic)
        except PulsarAdminError:
            return False
        sub = (stats.get("subscriptions") or {}).get(DLQ_SUBSCRIPTION) or {}
        if sub.get("blockedSubscriptionOnUnackedMsgs"):
            return True
        return any(c.get("blockedConsumerOnUnackedMsgs") for c in sub.get("consumers") or []
                   if isinstance(c, dict) and c.get("consumerName") == _CONSUMER_NAME)

    def _views(self, msg: ReceivedMessage) -> list[LetterView]:
        return read_letters(msg.data, msg.properties, service=self.service,
                            published_at=_publish_time(msg))

    async def ack(self, letters: Sequence[Letter]) -> None:
        """Delete the letters' messages. Give only ``whole_bulks`` letters: acking one letter of
        a bulk deletes every task of it."""
        if letters:
            assert self._consumer is not None
            await self._consumer.acknowledge(_messages(letters))

    async def replay(self, letters: Sequence[Letter], *, to_service: str | None = None) -> int:
        """Republish each letter's task as a new attempt; ack the letters once every new attempt
        is persisted. Returns how many were replayed. Raises TransportError (nothing acked)."""
        by_topic: dict[str, list[OutgoingMessage]] = {}
        for letter in letters:
            attempt, message = replay_message(letter.view, to_service=to_service,
                                              service=self.service)
            topic = replay_topic(self.tenant, self.namespace, attempt)
            by_topic.setdefault(topic, []).append(message)
        for topic, messages in by_topic.items():
            # As the client does: the workers' subscription first, so the tasks are kept even
            # when no worker of that service runs yet.
            with contextlib.suppress(TransportError):
                await self._transport.ensure_subscription(
                    topic, WORKER_SUBSCRIPTION, SubscriptionType.SHARED)
            producer = await self._transport.create_producer(topic)
            try:
                await producer.send_many(messages)
            finally:
                with contextlib.suppress(TransportError, TimeoutError):
                    await asyncio.wait_for(producer.close(), 10.0)
        await self.ack(letters)
        return len(letters)


def _publish_time(msg: ReceivedMessage) -> float | None:
    """Publish time of a Pulsar message (its native handle has one); ``None`` otherwise."""
    stamp: Any = getattr(msg.handle, "publish_timestamp", None)
    if not callable(stamp):
        return None
    try:
        return float(stamp()) / 1000.0
    except Exception:
        return None
