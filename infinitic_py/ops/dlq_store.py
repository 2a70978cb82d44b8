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

A service's dead-letter topics, and how each message of them reads and replays, are its
dialect's (``wire.letters.DeadLetters``, from ``wire.dialects.letter_readers``): one topic for a
native service, three for an Infinitic one (``task-executor-dlq``, ``task-retry-dlq``,
``task-events-dlq``); a topic that does not exist is skipped.

Reading stops after ``idle`` seconds without a new letter. The admin API (when an admin URL is
known) only says whether there is anything at all: the subscription's ``msgBacklog`` counts
*entries* (a letter each as the worker writes them today, but an atomic bulk Pulsar
dead-lettered, or letters an older worker batched, hold several), so it is no exact count.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from infinitic_py.admin import PulsarAdmin, PulsarAdminError
from infinitic_py.topics import DLQ_SUBSCRIPTION
from infinitic_py.transport.base import (
    Consumer,
    ConsumerSettings,
    OutgoingMessage,
    ReceivedMessage,
    SubscriptionType,
    Transport,
    TransportError,
)
from infinitic_py.wire.letters import DeadLetters, LetterTopic, LetterView, letters_of
from infinitic_py.wire.native_letters import NativeLetters, read_letters

__all__ = ["DeadLetterStore", "Letter", "whole_bulks"]

_CONSUMER_NAME = "infinitic-py-dlq-tool"
_FIRST_WAIT = 5.0  # seconds for the first letter when the admin API says there are some


@dataclass(frozen=True)
class Letter:
    """A received dead letter: the message (to ack) and its decoded view. The tasks of an
    atomic bulk dead-lettered by Pulsar are several letters sharing one message."""

    message: ReceivedMessage
    view: LetterView
    consumer: Consumer | None = None  # the one that received it (acks go there)


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
    """``async with DeadLetterStore(transport, tenant, ns, service, admin=..., readers=...) as
    store:``. ``readers``: the service's dialect(s) (``wire.dialects.letter_readers``; default:
    native)."""

    def __init__(
        self,
        transport: Transport,
        tenant: str,
        namespace: str,
        service: str,
        *,
        admin: PulsarAdmin | None = None,
        idle: float = 1.5,
        readers: Sequence[DeadLetters] | None = None,
    ) -> None:
        self._transport = transport
        self.tenant = tenant
        self.namespace = namespace
        self.service = service
        self._readers = list(readers) if readers else [NativeLetters(tenant, namespace)]
        self._letter_topics = _union(r.letter_topics(service) for r in self._readers)
        self.topics = [t.topic for t in self._letter_topics]
        self.topic = self.topics[0]  # the main one (the service's tasks)
        self._admin = admin
        self._idle = idle
        self._consumers: list[tuple[LetterTopic, Consumer]] = []
        self.topic_exists = True  # False when the admin API said there is no dead-letter topic
        # True when the broker stopped delivering to the tool at its unacked-messages limit
        # (maxUnackedMessagesPerConsumer / ...PerSubscription): more letters are kept than read.
        self.truncated = False

    async def __aenter__(self) -> DeadLetterStore:
        found = [t for t in self._letter_topics if await self._topic_exists(t.topic)]
        self.topic_exists = bool(found)
        # nothing to read, and no topic made for a mistyped service name
        for letter_topic in found:
            consumer = await self._transport.subscribe(
                letter_topic.topic, DLQ_SUBSCRIPTION,
                ConsumerSettings(subscription_type=SubscriptionType.SHARED,
                                 receiver_queue_size=1000, consumer_name=_CONSUMER_NAME,
                                 writer_schemas=letter_topic.writer_schemas),
            )
            self._consumers.append((letter_topic, consumer))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the consumers: letters read but not acked go back to the subscription."""
        consumers, self._consumers = self._consumers, []
        for _, consumer in consumers:
            with contextlib.suppress(TransportError, TimeoutError):
                await asyncio.wait_for(consumer.close(), 10.0)

    async def _topic_exists(self, topic: str) -> bool:
        """``False`` only when the admin API says the dead-letter topic does not exist; its
        ``PulsarAdminError`` (404) when the namespace itself does not (a mistyped namespace is
        not a service without dead letters)."""
        if self._admin is None:
            # without an admin API, only the main topic is read: subscribing to the others
            # would create them
            return topic == self.topic
        try:
            stats = await asyncio.to_thread(self._admin.topic_stats, topic)
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
        """Entries kept on the subscriptions (0: no letter), from the admin API (``None``
        without one, or when one cannot be read)."""
        if self._admin is None:
            return None
        total = 0
        for letter_topic, _ in self._consumers:
            try:
                counts = await asyncio.to_thread(
                    self._admin.subscription_counts, letter_topic.topic, DLQ_SUBSCRIPTION)
            except PulsarAdminError:
                return None
            total += counts[0]
        return total

    async def read(self) -> list[Letter]:
        """Every letter the subscriptions hold (none is acked)."""
        letters: list[Letter] = []
        if not self._consumers:  # no dead-letter topic
            return letters
        backlog = await self.backlog()
        if backlog == 0:
            return letters
        for letter_topic, consumer in self._consumers:
            letters += await self._read(letter_topic, consumer, backlog)
        self.truncated = await self._blocked()
        return letters

    async def _read(self, letter_topic: LetterTopic, consumer: Consumer,
                    backlog: int | None) -> list[Letter]:
        letters: list[Letter] = []
        wait = _FIRST_WAIT if backlog else self._idle
        while True:
            try:
                msgs = await asyncio.wait_for(consumer.receive_many(1000), wait)
            except TimeoutError:
                break
            letters += [Letter(m, view, consumer) for m in msgs
                        for view in self._views(letter_topic, m)]
            wait = self._idle
        return letters

    async def _blocked(self) -> bool:
        """Whether the broker holds letters back from this tool at its unacked limit (the tool
        acks nothing while it reads, so past the limit it sees only the first letters)."""
        if self._admin is None:
            return False
        for letter_topic, _ in self._consumers:
            try:
                stats = await asyncio.to_thread(self._admin.topic_stats, letter_topic.topic)
            except PulsarAdminError:
                continue
            sub = (stats.get("subscriptions") or {}).get(DLQ_SUBSCRIPTION) or {}
            if sub.get("blockedSubscriptionOnUnackedMsgs"):
                return True
            if any(c.get("blockedConsumerOnUnackedMsgs") for c in sub.get("consumers") or []
                   if isinstance(c, dict) and c.get("consumerName") == _CONSUMER_NAME):
                return True
        return False

    def _views(self, letter_topic: LetterTopic, msg: ReceivedMessage) -> list[LetterView]:
        when = _publish_time(msg)
        views = letters_of(self._readers, msg, role=letter_topic.role, service=self.service,
                           published_at=when)
        if views is not None:
            return views
        # nobody's letter: shown (and purgeable) as the native reader shows what it cannot read
        return read_letters(msg.data, msg.properties, service=self.service, published_at=when)

    async def ack(self, letters: Sequence[Letter]) -> None:
        """Delete the letters' messages. Give only ``whole_bulks`` letters: acking one letter of
        a bulk deletes every task of it."""
        by_consumer: dict[int, tuple[Consumer, list[Letter]]] = {}
        for letter in letters:
            consumer = letter.consumer or self._consumers[0][1]
            by_consumer.setdefault(id(consumer), (consumer, []))[1].append(letter)
        for consumer, mine in by_consumer.values():
            await consumer.acknowledge(_messages(mine))

    def _reader(self, view: LetterView) -> DeadLetters:
        for reader in self._readers:
            if reader.wire == view.wire:
                return reader
        return self._readers[0]

    async def replay(self, letters: Sequence[Letter], *, to_service: str | None = None) -> int:
        """Republish each letter's content as its dialect replays it; ack the letters once
        every replayed message is persisted. Returns how many were replayed. Raises
        TransportError (nothing acked), ValueError for a letter with nothing to replay."""
        by_topic: dict[str, tuple[DeadLetters, list[OutgoingMessage]]] = {}
        for letter in letters:
            reader = self._reader(letter.view)
            publish = reader.replay(letter.view, service=self.service, to_service=to_service)
            by_topic.setdefault(publish.topic, (reader, []))[1].append(publish.message)
        for topic, (reader, messages) in by_topic.items():
            keep = reader.keep_subscription(topic)
            if keep:
                with contextlib.suppress(TransportError):
                    await self._transport.ensure_subscription(
                        topic, keep, SubscriptionType.SHARED)
            producer = await self._transport.create_producer(
                topic, schema=reader.producer_schema(topic))
            try:
                await producer.send_many(messages)
            finally:
                with contextlib.suppress(TransportError, TimeoutError):
                    await asyncio.wait_for(producer.close(), 10.0)
        await self.ack(letters)
        return len(letters)


def _union(groups: Iterable[Sequence[LetterTopic]]) -> list[LetterTopic]:
    """The letter topics of every reader, each once (native and Infinitic share the name of the
    main one), in order."""
    seen: dict[str, LetterTopic] = {}
    for group in groups:
        for letter_topic in group:
            known = seen.get(letter_topic.topic)
            if known is None or (letter_topic.writer_schemas and not known.writer_schemas):
                seen[letter_topic.topic] = letter_topic
    return list(seen.values())


def _publish_time(msg: ReceivedMessage) -> float | None:
    """Publish time of a Pulsar message (its native handle has one); ``None`` otherwise."""
    stamp: Any = getattr(msg.handle, "publish_timestamp", None)
    if not callable(stamp):
        return None
    try:
        return float(stamp()) / 1000.0
    except Exception:
        return None
