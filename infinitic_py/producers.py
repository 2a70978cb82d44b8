"""ProducerCache: the producers of a client or an executor, keyed by topic (or service), at most
``capacity`` of them once idle. Topics come and go (a worker publishes to each client's reply
topic, a client dispatches to any service by name): beyond the capacity the least recently used
producers that no publish is using, and that are not pinned, are closed (by the cache itself, in
the background: the one place producers are evicted). With ``max_idle``, ``sweep()`` also closes
those unused for that many seconds: a reply producer kept open on a client's response topic would
recreate the topic (empty) when the client deletes it at close, as pulsar-client reconnects a
producer whose topic was deleted."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import structlog

from infinitic_py.topics import DLQ_TOPIC_PREFIX
from infinitic_py.transport.base import OutgoingMessage, Producer, Transport, TransportError

if TYPE_CHECKING:
    from infinitic_py.wire import Dialect

CLOSE_TIMEOUT = 5.0  # seconds for a producer / consumer close during shutdown (one value)

log = structlog.get_logger("infinitic_py.producers")


class ProducerCache:
    def __init__(
        self,
        create: Callable[[str], Awaitable[Producer]],
        capacity: int,
        pinned: Collection[str] = (),
        *,
        max_idle: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"max_producers must be >= 1, got {capacity}")
        self._create = create
        self.capacity = capacity
        self._pinned = pinned
        self._producers: OrderedDict[str, Producer] = OrderedDict()  # least recently used first
        self._users: dict[str, int] = {}  # publishes using a key right now
        self._used_at: dict[str, float] = {}
        self.max_idle = max_idle
        self._clock = clock
        self._creating: dict[str, asyncio.Task[Producer]] = {}  # one creation per key
        self._closing: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._producers)

    @contextmanager
    def using(self, *keys: str) -> Iterator[None]:
        """Mark ``keys`` in use (before their producers are looked up: an idle producer may be
        evicted meanwhile); on exit, trim what went idle."""
        for key in keys:
            self._users[key] = self._users.get(key, 0) + 1
        try:
            yield
        finally:
            for key in keys:
                users = self._users[key] - 1
                if users:
                    self._users[key] = users
                else:
                    del self._users[key]
            self._trim()

    async def get(self, key: str) -> Producer:
        """The producer of ``key``, created once if missing (concurrent callers await the same
        creation; a creation that hangs delays only the callers of its key)."""
        producer = self._producers.get(key)
        if producer is None:
            creating = self._creating.get(key)
            if creating is None:
                creating = asyncio.get_running_loop().create_task(self._make(key))
                creating.add_done_callback(_retrieve)
                self._creating[key] = creating
            # Shielded: a caller cancelled while waiting does not cancel it for the others.
            producer = await asyncio.shield(creating)
        if key in self._producers:  # (it may have been evicted meanwhile, idle)
            self._producers.move_to_end(key)
        if self.max_idle is not None:
            self._used_at[key] = self._clock()
        self._trim()
        return producer

    async def _make(self, key: str) -> Producer:
        try:
            producer = await self._create(key)
            self._producers[key] = producer
            return producer
        finally:
            del self._creating[key]

    def sweep(self) -> int:
        """Close the producers unused for ``max_idle`` seconds (not in use, not pinned); returns
        how many. The least recently used come first, so this stops at the first recent one."""
        if self.max_idle is None:
            return 0
        horizon = self._clock() - self.max_idle
        evicted = 0
        for key in list(self._producers):
            if key in self._users or key in self._pinned:
                continue
            if self._used_at.get(key, horizon) > horizon:
                break
            self._evict(key)
            evicted += 1
        return evicted

    async def publish(self, by_topic: Mapping[str, Sequence[OutgoingMessage]]) -> None:
        """Publish every message, each topic's in order, topics concurrently; returns once all
        are persisted. Raises ``TransportError`` if any failed."""
        if not by_topic:
            return
        with self.using(*by_topic):
            producers = [await self.get(topic) for topic in by_topic]
            await asyncio.gather(*(
                producer.send_many(msgs)
                for producer, msgs in zip(producers, by_topic.values(), strict=True)
            ))

    def sweep_every(self, interval: float) -> None:
        """``sweep()`` now, then every ``interval`` seconds until ``close()``."""
        self.sweep()
        self._sweeper = asyncio.get_running_loop().call_later(
            interval, self.sweep_every, interval)

    async def publish_each(
        self, by_topic: Mapping[str, Sequence[OutgoingMessage]]
    ) -> dict[str, TransportError]:
        """Like ``publish``, but a failure is pinned to its topic: every topic is published
        (concurrently), and the topics whose publish failed are returned with their error
        (empty: all persisted). Raises only what is not a ``TransportError`` (a bug, a
        cancellation)."""
        if not by_topic:
            return {}
        with self.using(*by_topic):
            results = await asyncio.gather(
                *(self._send(topic, msgs) for topic, msgs in by_topic.items()),
                return_exceptions=True,
            )
        failures: dict[str, TransportError] = {}
        for topic, result in zip(by_topic, results, strict=True):
            if isinstance(result, TransportError):
                failures[topic] = result
            elif isinstance(result, BaseException):
                raise result
        return failures

    async def _send(self, topic: str, msgs: Sequence[OutgoingMessage]) -> None:
        producer = await self.get(topic)
        await producer.send_many(msgs)

    async def close(self) -> None:
        """Close every producer (and wait for evicted ones still closing)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        if self._creating:  # a producer created after this close would stay open
            await asyncio.wait(set(self._creating.values()), timeout=CLOSE_TIMEOUT)
        producers = list(self._producers.values())
        self._producers.clear()
        for producer in producers:
            await _close(producer)
        if self._closing:
            await asyncio.wait(set(self._closing), timeout=CLOSE_TIMEOUT)

    def _trim(self) -> None:
        excess = len(self._producers) - self.capacity
        if excess <= 0:
            return
        for key in list(self._producers):
            if excess <= 0:
                return
            if key in self._users or key in self._pinned:
                continue
            excess -= 1
            self._evict(key)

    def _evict(self, key: str) -> None:
        """Close ``key``'s producer in the background (``close()`` waits for it)."""
        self._used_at.pop(key, None)
        closing = asyncio.get_running_loop().create_task(_close(self._producers.pop(key)))
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)


def _retrieve(task: asyncio.Task[Producer]) -> None:
    """Mark a creation's failure seen (its callers may all have been cancelled)."""
    if not task.cancelled():
        task.exception()


async def _close(producer: Producer) -> None:
    with contextlib.suppress(TransportError, TimeoutError):
        try:
            await asyncio.wait_for(producer.close(), CLOSE_TIMEOUT)
        except (TransportError, TimeoutError) as exc:
            log.debug("producer.close_failed", topic=producer.topic, error=str(exc) or "timeout")


def dialect_producers(transport: Transport, dialect: Dialect[Any]) -> Callable[[str], Awaitable[Producer]]:
    """Producers as a dialect wants them: its schema and partitioning per topic."""

    def create(topic: str) -> Awaitable[Producer]:
        schema, partitioner = dialect.producer_schema(topic), dialect.partitioner(topic)
        if topic.rsplit("/", 1)[-1].startswith(DLQ_TOPIC_PREFIX):
            # Dead letters one entry each: the dlq tools ack them one by one, which a broker
            # without batch-index acks (acknowledgmentAtBatchIndexLevelEnabled=false) does not
            # honour within a batch (a purge or replay left every letter of the batch behind),
            # and the subscription's backlog (`status` DEAD) counts them one by one.
            return transport.create_unbatched_producer(topic, schema=schema,
                                                       partitioner=partitioner)
        return transport.create_producer(topic, schema=schema, partitioner=partitioner)

    return create
