"""The broker facts infinitic-py relies on, checked against a real Pulsar broker.

- a Shared subscription delivers payload and properties unchanged;
- a nack redelivers the message with ``redelivery_count() == 1``;
- ``deliver_after`` holds a message back (never early on a strict broker; at most one tick early on
  a broker with the default ``isDelayedDeliveryDeliverAtTimeStrict=false``);
- with batch-index ack (broker ``acknowledgmentAtBatchIndexLevelEnabled=true`` and consumer
  ``batch_index_ack_enabled=True``) nacking one message of a producer batch redelivers only it;
- the admin endpoints of :class:`infinitic_py.admin.PulsarAdmin` answer as documented.

Receiving never cancels an awaited ``receive()`` (a cancelled receive strands its message): the
:class:`Inbox` keeps one receive outstanding and waits on it with a deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pulsar
import pytest
from pulsar.asyncio import Client

from infinitic_py.admin import PulsarAdmin

if TYPE_CHECKING:
    from tests.integration.conftest import BrokerInfo

pytestmark = pytest.mark.integration

NACK_DELAY_MS = 100


class Inbox:
    """Receives from a consumer with deadlines, without ever cancelling a ``receive()``."""

    def __init__(self, consumer: Any) -> None:
        self.consumer = consumer
        self._pending: asyncio.Future[Any] | None = None

    async def get(self, timeout: float) -> Any | None:
        """The next message, or ``None`` if none arrived within ``timeout`` seconds."""
        if self._pending is None:
            self._pending = asyncio.ensure_future(self.consumer.receive())
        done, _ = await asyncio.wait({self._pending}, timeout=timeout)
        if not done:
            return None
        future, self._pending = self._pending, None
        return future.result()

    async def expect(self, timeout: float) -> Any:
        msg = await self.get(timeout)
        assert msg is not None, f"no message within {timeout}s"
        return msg

    async def close(self) -> None:
        await self.consumer.close()
        if self._pending is not None:
            # Closing the consumer fails the outstanding receive; collect it while the loop runs.
            await asyncio.wait({self._pending}, timeout=5)
            if self._pending.done() and not self._pending.cancelled():
                self._pending.exception()


@pytest.fixture
async def client(pulsar_broker: BrokerInfo) -> AsyncIterator[Any]:
    c = Client(
        pulsar_broker.service_url,
        operation_timeout_seconds=30,
        logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn),
    )
    try:
        yield c
    finally:
        await c.close()


@pytest.fixture
def topic(unique_name: str) -> str:
    # The local name carries a ':' like the product's topics (task-executor:Email).
    return f"persistent://public/default/smoke:{unique_name}"


Subscribe = Callable[..., Awaitable[Inbox]]


@pytest.fixture
async def subscribe(client: Any) -> AsyncIterator[Subscribe]:
    """``await subscribe(topic)``: a Shared, batch-index-ack consumer wrapped in an Inbox.

    Every inbox is closed at teardown, inside the test's event loop, even when the test failed.
    """
    inboxes: list[Inbox] = []

    async def _subscribe(topic: str, **options: Any) -> Inbox:
        consumer = await client.subscribe(
            topic,
            "smoke",
            consumer_type=pulsar.ConsumerType.Shared,
            batch_index_ack_enabled=True,
            negative_ack_redelivery_delay_ms=NACK_DELAY_MS,
            **options,
        )
        inbox = Inbox(consumer)
        inboxes.append(inbox)
        return inbox

    try:
        yield _subscribe
    finally:
        for inbox in inboxes:
            await inbox.close()


async def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``check()`` until true or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"condition not met within {timeout}s"
        await asyncio.sleep(0.2)


async def test_produce_consume_with_properties(
    client: Any, subscribe: Subscribe, topic: str, admin: PulsarAdmin
) -> None:
    inbox = await subscribe(topic)  # subscribe first: nothing is retained otherwise
    producer = await client.create_producer(topic)
    sent = {f"m{i}".encode(): {"batchKey": "tenant-42", "index": str(i)} for i in range(5)}
    for payload, props in sent.items():
        await producer.send(payload, properties=props)

    received: dict[bytes, dict[str, str]] = {}
    for _ in sent:
        msg = await inbox.expect(10)
        received[msg.data()] = msg.properties()
        assert msg.redelivery_count() == 0
        await inbox.consumer.acknowledge(msg)
    assert received == sent
    assert await inbox.get(0.5) is None

    # Acks are flushed asynchronously (every 100 ms): the backlog drains shortly after.
    await eventually(lambda: admin.subscription_counts(topic, "smoke") == (0, 0))
    stats = admin.topic_stats(topic)
    assert stats["msgInCounter"] == 5
    assert stats["subscriptions"]["smoke"]["type"] == "Shared"


async def test_nack_redelivers_with_redelivery_count(
    client: Any, subscribe: Subscribe, topic: str
) -> None:
    inbox = await subscribe(topic)
    producer = await client.create_producer(topic)
    await producer.send(b"flaky", properties={"attempt": "x"})

    first = await inbox.expect(10)
    assert first.redelivery_count() == 0
    await inbox.consumer.negative_acknowledge(first)

    again = await inbox.expect(10)
    assert again.data() == b"flaky"
    assert again.properties() == {"attempt": "x"}
    assert again.redelivery_count() == 1
    assert again.message_id() == first.message_id()
    await inbox.consumer.acknowledge(again)
    assert await inbox.get(1.0) is None


async def test_deliver_after_is_not_delivered_early(
    client: Any, subscribe: Subscribe, topic: str, admin: PulsarAdmin
) -> None:
    runtime = admin.get_json("/admin/v2/brokers/configuration/runtime")
    strict = str(runtime.get("isDelayedDeliveryDeliverAtTimeStrict", "false")).lower() == "true"
    tick = int(runtime.get("delayedDeliveryTickTimeMillis", "1000")) / 1000
    delay = 2.0

    inbox = await subscribe(topic)
    producer = await client.create_producer(topic, batching_enabled=False)
    sent_at = time.monotonic()
    await producer.send(b"later", deliver_after=timedelta(seconds=delay))
    await producer.send(b"now")

    now_msg = await inbox.expect(5)
    assert now_msg.data() == b"now"  # the delayed one does not hold back the others
    await inbox.consumer.acknowledge(now_msg)

    later = await inbox.expect(delay + 3 * tick + 5)
    elapsed = time.monotonic() - sent_at
    assert later.data() == b"later"
    # Strict: never before deliverAt. Non-strict (broker default): up to one tick early.
    earliest = delay - (0.05 if strict else tick + 0.05)
    assert elapsed >= earliest, f"delivered after {elapsed:.3f}s, strict={strict}"
    assert elapsed <= delay + 2 * tick + 2.0, f"delivered only after {elapsed:.3f}s"
    await inbox.consumer.acknowledge(later)


async def test_batch_index_ack_redelivers_only_the_nacked_message(
    client: Any, subscribe: Subscribe, topic: str, admin: PulsarAdmin
) -> None:
    runtime = admin.get_json("/admin/v2/brokers/configuration/runtime")
    assert runtime["acknowledgmentAtBatchIndexLevelEnabled"] == "true"

    inbox = await subscribe(topic)
    producer = await client.create_producer(
        topic, batching_enabled=True, batching_max_messages=100, batching_max_publish_delay_ms=50
    )
    payloads = [f"b{i}".encode() for i in range(6)]
    ids = await asyncio.gather(*(producer.send(p) for p in payloads))
    # One producer batch = one entry: same ledger/entry, batch indexes 0..5.
    assert len({(i.ledger_id(), i.entry_id()) for i in ids}) == 1
    assert sorted(i.batch_index() for i in ids) == list(range(6))

    nacked = b"b3"
    for _ in payloads:
        msg = await inbox.expect(10)
        assert msg.redelivery_count() == 0
        if msg.data() == nacked:
            await inbox.consumer.negative_acknowledge(msg)
        else:
            await inbox.consumer.acknowledge(msg)

    again = await inbox.expect(10)
    assert again.data() == nacked
    assert again.redelivery_count() == 1
    await inbox.consumer.acknowledge(again)
    # No other member of the batch comes back.
    extra = await inbox.get(2.0)
    assert extra is None, f"unexpected redelivery of {extra.data()!r}"
    # Pulsar 4.0.7 fails this: its consumer unackedMessages went to -20 after the nack.
    await eventually(lambda: admin.subscription_counts(topic, "smoke") == (0, 0))


async def test_admin_endpoints(
    client: Any, subscribe: Subscribe, admin: PulsarAdmin, unique_name: str
) -> None:
    assert admin.healthy()
    assert admin.clusters()
    assert "public/default" in admin.namespaces("public")

    tenant, namespace = unique_name, "ns"
    admin.ensure_namespace(tenant, namespace)
    admin.ensure_namespace(tenant, namespace)  # idempotent
    assert f"{tenant}/{namespace}" in admin.namespaces(tenant)

    assert admin.namespace_max_unacked_per_consumer(tenant, namespace) is None
    admin.post_json(
        f"/admin/v2/namespaces/{tenant}/{namespace}/maxUnackedMessagesPerConsumer", 1234
    )
    assert admin.namespace_max_unacked_per_consumer(tenant, namespace) == 1234
    broker_limit = admin.broker_max_unacked_per_consumer()
    assert isinstance(broker_limit, int) and broker_limit > 0
    if admin.admin_url.startswith("http://127.0.0.1"):  # our standalone.conf keeps the default
        assert broker_limit == 50000

    topic = f"persistent://{tenant}/{namespace}/task-executor:{unique_name}"
    assert admin.topic_stats(topic) == {}
    assert admin.subscription_counts(topic, "smoke") == (0, 0)

    await subscribe(topic)  # a consumer that receives (prefetches) but never acks
    producer = await client.create_producer(topic)
    for i in range(3):
        await producer.send(f"x{i}".encode())
    await eventually(lambda: admin.subscription_counts(topic, "smoke") == (3, 3))
    assert admin.subscription_counts(topic, "missing") == (0, 0)
    consumers = admin.topic_stats(topic)["subscriptions"]["smoke"]["consumers"]
    assert [c["unackedMessages"] for c in consumers] == [3]
