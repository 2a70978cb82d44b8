"""Shared pieces of the benchmarks: broker URLs, realistic payloads, pre-publishing, waits,
percentiles, and the clean-up of every topic a run created."""

from __future__ import annotations

import asyncio
import math
import os
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pulsar

from infinitic_py.admin import PulsarAdmin
from infinitic_py.topics import WORKER_SUBSCRIPTION, service_topic
from infinitic_py.transport.base import (
    Consumer,
    OutgoingMessage,
    ReceivedMessage,
    SubscriptionType,
)
from infinitic_py.transport.pulsar import PulsarTransport
from infinitic_py.wire import native as wire

TENANT = "public"
NAMESPACE = "default"
PUBLISH_CHUNK = 5000


@dataclass
class Env:
    url: str
    admin_url: str
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    created_topics: list[str] = field(default_factory=list)

    @classmethod
    def from_environ(cls) -> Env:
        url = os.environ.get("PULSAR_URL")
        if not url:
            raise SystemExit(
                "PULSAR_URL is not set: run through `make bench` (deploy/pulsar-standalone/"
                "with-broker.sh) or export PULSAR_URL / PULSAR_ADMIN_URL"
            )
        return cls(url, os.environ.get("PULSAR_ADMIN_URL", "http://127.0.0.1:8080"))

    @property
    def admin(self) -> PulsarAdmin:
        return PulsarAdmin(self.admin_url)

    def service_name(self, label: str) -> str:
        """A fresh service (hence topic) name, unique to this run and this measure."""
        name = f"Bench{label}-{self.run_id}-{uuid.uuid4().hex[:6]}"
        self.created_topics.append(service_topic(TENANT, NAMESPACE, name))
        return name

    def topic(self, label: str) -> str:
        topic = f"persistent://{TENANT}/{NAMESPACE}/bench-{label}-{self.run_id}-{uuid.uuid4().hex[:6]}"
        self.created_topics.append(topic)
        return topic

    def cleanup(self) -> int:
        """Force-delete the topics this run created (the bench broker keeps inactive topics)."""
        deleted = 0
        for topic in self.created_topics:
            domain, _, rest = topic.partition("://")
            tenant, namespace, local = rest.split("/", 2)
            path = (
                f"{self.admin_url.rstrip('/')}/admin/v2/{domain}/{tenant}/{namespace}/"
                f"{urllib.parse.quote(local, safe='')}?force=true"
            )
            request = urllib.request.Request(path, method="DELETE")
            try:
                with urllib.request.urlopen(request, timeout=10):
                    deleted += 1
            except (urllib.error.URLError, OSError):
                pass  # missing already, or the broker is busy: harmless for a bench topic
        self.created_topics.clear()
        return deleted


def native_logger() -> Any:
    """pulsar-client's native console logger at WARN: a Python logger is called from the
    client's C++ threads and can abort a process at exit (see transport/pulsar.py)."""
    return pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn)


def new_transport(env: Env, **options: Any) -> PulsarTransport:
    return PulsarTransport(env.url, **options)


# --------------------------------------------------------------------------- payloads


class Order(msgspec.Struct, frozen=True):
    """The argument of the bench task: a realistic small business object."""

    order_id: int
    customer: str
    amount_cents: int


def execute_task(service: str, method: str, i: int, reply_to: str | None = None) -> wire.ExecuteTask:
    now = wire.now()
    return wire.ExecuteTask(
        task_id=uuid.uuid4().hex,
        service=service,
        method=method,
        args=wire.encode_value((Order(i, f"customer-{i % 997}@example.com", 1000 + i),)),
        reply_to=reply_to,
        emitted_at=now,
        first_emitted_at=now,
    )


def outgoing(service: str, method: str, n: int) -> list[OutgoingMessage]:
    """``n`` encoded ExecuteTask messages with the properties the client sets (~170 bytes)."""
    out = []
    for i in range(n):
        task = execute_task(service, method, i)
        out.append(OutgoingMessage(wire.encode(task), wire.properties_for(task)))
    return out


async def prepublish(
    env: Env, topic: str, messages: Sequence[OutgoingMessage], subscription: str = WORKER_SUBSCRIPTION
) -> float:
    """Create ``subscription`` (Shared) first — a topic keeps nothing without one — then publish
    with the transport's batching producer, as ``many()`` does. Returns the publish seconds."""
    transport = new_transport(env)
    try:
        await transport.ensure_subscription(topic, subscription, SubscriptionType.SHARED)
        producer = await transport.create_producer(topic)
        started = time.perf_counter()
        for start in range(0, len(messages), PUBLISH_CHUNK):
            await producer.send_many(messages[start : start + PUBLISH_CHUNK])
        elapsed = time.perf_counter() - started
        await producer.close()
        return elapsed
    finally:
        await transport.close()


async def wait_drained(
    env: Env, topic: str, subscription: str = WORKER_SUBSCRIPTION, timeout: float = 30.0
) -> tuple[int, int]:
    """Poll the admin API until the subscription has no backlog and no unacked message (acks are
    flushed by the client every 100 ms). Returns the last ``(backlog, unacked)`` seen."""
    admin = env.admin
    deadline = time.monotonic() + timeout
    counts = (-1, -1)
    while time.monotonic() < deadline:
        counts = await asyncio.to_thread(admin.subscription_counts, topic, subscription)
        if counts == (0, 0):
            return counts
        await asyncio.sleep(0.1)
    return counts


async def runs_of(consumer: Consumer, n: int, size: int, started: list[float]
                  ) -> AsyncIterator[list[ReceivedMessage]]:
    """The first ``n`` messages of ``consumer`` in runs of ``size`` (the last may be shorter), as
    ``receive_many`` hands them out; ``started`` gets the time of the first one."""
    pending: list[ReceivedMessage] = []
    got = 0
    while got < n:
        msgs = await consumer.receive_many(10_000)
        if not started:
            started.append(time.perf_counter())
        got += len(msgs)
        pending.extend(msgs)
        while len(pending) >= size or (got >= n and pending):
            run, pending = pending[:size], pending[size:]
            yield run


# --------------------------------------------------------------------------- measuring


class CountingConsumer(Consumer):
    """Wraps the consumer an executor gets, to time *from its first received message to its
    last acknowledged one* without touching product code. Costs one extra await per receive
    (per run of messages: the executor calls ``receive_many``)."""

    def __init__(self, inner: Consumer, expected: int) -> None:
        self.inner = inner
        self.expected = expected
        self.received = 0
        self.acked = 0
        self.nacked = 0
        self.first_receive: float | None = None
        self.last_ack: float | None = None
        self.all_acked = asyncio.Event()

    async def receive(self) -> ReceivedMessage:
        msg = await self.inner.receive()
        if self.first_receive is None:
            self.first_receive = time.perf_counter()
        self.received += 1
        return msg

    async def receive_many(self, max_messages: int) -> list[ReceivedMessage]:
        msgs = await self.inner.receive_many(max_messages)
        if self.first_receive is None:
            self.first_receive = time.perf_counter()
        self.received += len(msgs)
        return msgs

    async def acknowledge(self, messages: Sequence[ReceivedMessage]) -> None:
        await self.inner.acknowledge(messages)
        self.acked += len(messages)
        if self.acked >= self.expected:
            self.last_ack = time.perf_counter()
            self.all_acked.set()

    def negative_acknowledge(self, messages: Sequence[ReceivedMessage]) -> None:
        self.nacked += len(messages)
        self.inner.negative_acknowledge(messages)

    async def close(self) -> None:
        await self.inner.close()

    @property
    def elapsed(self) -> float:
        assert self.first_receive is not None and self.last_ack is not None
        return self.last_ack - self.first_receive


class CountingTransport(PulsarTransport):
    """A PulsarTransport whose ``subscribe`` to ``topic`` (the service's tasks; not its priority
    bands) returns a :class:`CountingConsumer`."""

    expected = 0
    topic: str | None = None
    counting: CountingConsumer | None = None

    async def subscribe(self, topic: str, subscription: str, settings: Any) -> Consumer:
        inner = await super().subscribe(topic, subscription, settings)
        if self.counting is not None or self.expected <= 0 or topic != self.topic:
            return inner
        self.counting = CountingConsumer(inner, self.expected)
        return self.counting


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")
