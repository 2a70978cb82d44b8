"""The in-process transport keeps the semantics of ``transport.base`` (Pulsar's)."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infinitic_py.transport import create_transport
from infinitic_py.transport.base import (
    ConsumerClosed,
    ConsumerSettings,
    OutgoingMessage,
    ReceivedMessage,
    SubscriptionType,
    TransportError,
)
from infinitic_py.transport.memory import (
    MemoryBroker,
    MemoryConsumer,
    MemoryMessageId,
    MemoryTransport,
    get_broker,
    reset_broker,
)

TOPIC = "persistent://public/default/task-executor:Email"
SUB = "infinitic-py-worker"
WAIT = 2.0  # generous upper bound for anything that should happen "now"


def _unique_url() -> str:
    return f"memory://test-{uuid.uuid4().hex}"


@pytest.fixture
async def transport() -> AsyncIterator[MemoryTransport]:
    url = _unique_url()
    opened = MemoryTransport(url)
    yield opened
    await opened.close()
    reset_broker(opened.broker.name)


@pytest.fixture
def broker(transport: MemoryTransport) -> MemoryBroker:
    return transport.broker


def shared(**overrides: Any) -> ConsumerSettings:
    """Consumer settings for a shared subscription; nacks come back at once unless overridden."""
    return ConsumerSettings(**{"nack_redelivery_delay": 0.0, **overrides})


async def receive(consumer: MemoryConsumer, within: float = WAIT) -> ReceivedMessage:
    return await asyncio.wait_for(consumer.receive(), within)


async def publish(transport: MemoryTransport, topic: str, *payloads: bytes) -> None:
    producer = await transport.create_producer(topic)
    await producer.send_many([OutgoingMessage(payload) for payload in payloads])
    await producer.close()


async def is_waiting(task: Awaitable[object]) -> bool:
    """Yield a few times and tell whether ``task`` is still pending."""
    for _ in range(10):
        await asyncio.sleep(0)
    assert isinstance(task, asyncio.Task)
    return not task.done()


# ---- URLs and the registry ----------------------------------------------------------------------


async def test_same_url_shares_one_broker_and_names_are_isolated() -> None:
    name = f"test-{uuid.uuid4().hex}"
    first, second = MemoryTransport(f"memory://{name}"), MemoryTransport(f"memory://{name}/")
    other = MemoryTransport(_unique_url())
    assert first.broker is second.broker is get_broker(name)
    assert other.broker is not first.broker
    assert MemoryTransport("memory://").broker is get_broker() is get_broker("")
    for opened in (first, second, other):
        await opened.close()
    reset_broker(name)


def test_create_transport_picks_memory_and_rejects_unknown_schemes() -> None:
    url = _unique_url()
    created = create_transport(url, authentication="ignored")
    assert isinstance(created, MemoryTransport)
    assert created.url == url
    for bad in ("http://localhost", "localhost:6650", "kafka://x", "PULSAR://localhost:6650"):
        with pytest.raises(ValueError, match="unsupported transport URL"):
            create_transport(bad)
    with pytest.raises(ValueError, match="memory://"):
        MemoryTransport("pulsar://localhost:6650")


async def test_create_transport_routes_pulsar_urls_to_the_pulsar_transport() -> None:
    for url in ("pulsar://127.0.0.1:6650", "pulsar+ssl://127.0.0.1:6651"):
        created = create_transport(url)  # builds a client; connects only when used
        assert type(created).__name__ == "PulsarTransport"
        await created.close()


# ---- publish / receive / ack --------------------------------------------------------------------


async def test_message_carries_data_properties_topic_and_identity(
    transport: MemoryTransport, broker: MemoryBroker
) -> None:
    consumer = await transport.subscribe(TOPIC, SUB, shared())
    producer = await transport.create_producer(TOPIC)
    assert producer.topic == TOPIC
    await producer.send(OutgoingMessage(b"hello", {"batchKey": "t1", "taskId": "42"}))

    message = await receive(consumer)
    assert message.data == b"hello"
    assert message.properties == {"batchKey": "t1", "taskId": "42"}
    assert message.topic == TOPIC
    assert message.redelivery_count == 0
    assert message.handle == MemoryMessageId(TOPIC, 1)
    assert broker.subscription_counts(TOPIC, SUB) == (1, 1)

    await consumer.acknowledge([message])
    assert broker.subscription_counts(TOPIC, SUB) == (0, 0)
    await consumer.acknowledge([message])  # already acked: no-op
    await consumer.acknowledge([ReceivedMessage(b"", {}, 0, TOPIC, "not-a-handle")])
    assert broker.topics() == [TOPIC]


async def test_fifo_order_within_one_consumer(transport: MemoryTransport) -> None:
    consumer = await transport.subscribe(TOPIC, SUB, shared())
    await publish(transport, TOPIC, *(str(i).encode() for i in range(5)))
    received = [(await receive(consumer)).data for _ in range(5)]
    assert received == [b"0", b"1", b"2", b"3", b"4"]


async def test_shared_consumers_split_messages(
    transport: MemoryTransport, broker: MemoryBroker
) -> None:
    consumers = [await transport.subscribe(TOPIC, SUB, shared()) for _ in range(2)]
    payloads = sorted(f"m{i:02}".encode() for i in range(20))
    await publish(transport, TOPIC, *payloads)
    got: list[list[bytes]] = [[], []]
    all_received = asyncio.Event()

    async def drain(index: int) -> None:
        while True:
            try:
                message = await consumers[index].receive()
            except ConsumerClosed:
                return
            got[index].append(message.data)
            await consumers[index].acknowledge([message])
            if len(got[0]) + len(got[1]) == len(payloads):
                all_received.set()

    drains = [asyncio.create_task(drain(index)) for index in range(2)]
    await asyncio.wait_for(all_received.wait(), WAIT)
    for consumer in consumers:
        await consumer.close()  # ends the drain still waiting in receive
    await asyncio.wait_for(asyncio.gather(*drains), WAIT)

    assert got[0] and got[1]
    assert sorted(got[0] + got[1]) == payloads
    assert broker.subscription_counts(TOPIC, SUB) == (0, 0)


async def test_each_waiting_receive_gets_the_next_message(transport: MemoryTransport) -> None:
    first = await transport.subscribe(TOPIC, SUB, shared())
    second = await transport.subscribe(TOPIC, SUB, shared())
    waiting_first = asyncio.create_task(first.receive())
    assert await is_waiting(waiting_first)
    waiting_second = asyncio.create_task(second.receive())
    assert await is_waiting(waiting_second)

    await publish(transport, TOPIC, b"a", b"b")
    got_first = await asyncio.wait_for(waiting_first, WAIT)
    got_second = await asyncio.wait_for(waiting_second, WAIT)
    assert (got_first.data, got_second.data) == (b"a", b"b")


async def test_every_subscription_gets_its_own_copy(transport: MemoryTransport) -> None:
    workers = await transport.subscribe(TOPIC, "workers", shared())
    audit = await transport.subscribe(TOPIC, "audit", shared())
    await publish(transport, TOPIC, b"x")
    from_workers, from_audit = await receive(workers), await receive(audit)
    assert from_workers.data == from_audit.data == b"x"
    workers.negative_acknowledge([from_workers])
    assert (await receive(workers)).redelivery_count == 1
    await audit.acknowledge([from_audit])
    assert transport.broker.subscription_counts(TOPIC, "audit") == (0, 0)


async def test_no_subscription_means_dropped(
    transport: MemoryTransport, broker: MemoryBroker
) -> None:
    await publish(transport, TOPIC, b"lost")
    consumer = await transport.subscribe(TOPIC, SUB, shared())
    assert broker.subscription_counts(TOPIC, SUB) == (0, 0)
    await publish(transport, TOPIC, b"kept")
    assert (await receive(consumer)).data == b"kept"


async def test_ensure_subscription_keeps_messages_and_survives_consumers(
    transport: MemoryTransport, broker: MemoryBroker
) -> None:
    await transport.ensure_subscription(TOPIC, SUB, SubscriptionType.SHARED)
    await transport.ensure_subscription(TOPIC, SUB, SubscriptionType.SHARED)  # idempotent
    await publish(transport, TOPIC, b"early")
    assert broker.subscription_counts(TOPIC, SUB) == (1, 0)

    consumer = await transport.subscribe(TOPIC, SUB, shared())
    assert (await receive(consumer)).data == b"early"
    await consumer.close()
    await publish(transport, TOPIC, b"while-nobody-listens", b"more")
    # The unacked message came back; new ones accumulate as backlog.
    assert broker.subscription_counts(TOPIC, SUB) == (3, 0)
    assert [m.data for m in broker.peek(TOPIC, SUB)] == [b"early", b"while-nobody-listens", b"more"]
    assert broker.consumer_count(TOPIC, SUB) == 0
    assert broker.subscriptions(TOPIC) == [SUB]
    with pytest.raises(KeyError):
        broker.subscription_counts(TOPIC, "missing")


# ---- nack, redelivery, dead letters -------------------------------------------------------------


async def test_nack_redelivers_after_the_delay_with_count_plus_one(
    transport: MemoryTransport, broker: MemoryBroker
) -> None:
    delay = 0.15
    consumer = await transport.subscribe(TOPIC, SUB, shared(nack_redelivery_delay=delay))
    await publish(transport, TOPIC, b"retry-me")
    first = await receive(consumer)

    loop = asyncio.get_running_loop()
    nacked_at = loop.time()
    consumer.negative_acknowledge([first])
    assert broker.subscription_counts(TOPIC, SUB) == (1, 1)  # unacked during the delay, as Pulsar
    consumer.negative_acknowledge([first])  # already nacked: no-op
    again = await receive(consumer)
    elapsed = loop.time() - nacked_at

    assert delay <= elapsed < delay + WAIT
    assert again.redelivery_count == 1
    assert again.data == b"retry-me"
    assert again.handle == first.handle
    await consumer.acknowledge([again])
    assert broker.subscription_counts(TOPIC, SUB) == (0, 0)


async def test_ack_during_the_nack_delay_cancels_the_redelivery(
    transport: MemoryTransport, broker: MemoryBroker
) -> None:
    consumer = await transport.subscribe(TOPIC, SUB, shared(nack_redelivery_delay=0.05))
    await publish(transport, TOPIC, b"a", b"b")
    a = await receive(consumer)
    consumer.negative_acknowledge([a])
    await consumer.acknowledge([a])
    b = await receive(consumer)
    assert b.data == b"b"
    await consumer.acknowledge([b])
    with pytest.raises(TimeoutError):
        await receive(consumer, within=0.15)  # past the nack delay: nothing comes back
    assert broker.subscription_counts(TOPIC, SUB) == (0, 0)


async def test_dead_letter_after_max_redeliveries(
    transport: MemoryTransport, broker: MemoryBroker
) -> None:
    dlq = TOPIC + "-dlq"
    await transport.ensure_subscription(dlq, "dlq-reader", SubscriptionType.SHARED)
    consumer = await transport.subscribe(
        TOPIC, SUB, shared(max_redeliveries=2, dead_letter_topic=dlq)
    )
    producer = await transport.create_producer(TOPIC)
    await producer.send(OutgoingMessage(b"poison", {"taskId": "t-1"}, partition_key="k"))

    counts = []
    for _ in range(3):
        message = await receive(consumer)
        counts.append(message.redelivery_count)
        consumer.negative_acknowledge([message])
    assert counts == [0, 1, 2]
    assert broker.subscription_counts(TOPIC, SUB) == (0, 0)

    reader = await transport.subscribe(dlq, "dlq-reader", shared())
    dead = await receive(reader)
    assert dead.data == b"poison"
    assert dead.topic == dlq
    assert dead.properties["taskId"] == "t-1"
    assert dead.properties["REAL_TOPIC"] == TOPIC
    assert dead.properties["ORIGIN_MESSAGE_ID"] == str(message.handle)


async def test_dead_letter_topic_defaults_to_pulsars_name(
    transport: MemoryTransport, broker: MemoryBroker
) -> None:
    consumer = await transport.subscribe(TOPIC, SUB, shared(max_redeliveries=0))
    await publish(transport, TOPIC, b"x")
    consumer.negative_acknowledge([await receive(consumer)])
    assert f"{TOPIC}-{SUB}-DLQ" in broker.topics()
    assert broker.subscription_counts(TOPIC, SUB) == (0, 0)


# ---- deliver_after ------------------------------------------------------------------------------


async def test_deliver_after_is_never_early(
    transport: MemoryTransport, broker: MemoryBroker
) -> None:
    delay = 0.2
    consumer = await transport.subscribe(TOPIC, SUB, shared())
    producer = await transport.create_producer(TOPIC)
    loop = asyncio.get_running_loop()
    sent_at = loop.time()
    await producer.send(OutgoingMessage(b"later", deliver_after=delay))
    await producer.send(OutgoingMessage(b"now"))
    assert broker.subscription_counts(TOPIC, SUB) == (2, 0)

    assert (await receive(consumer)).data == b"now"
    later = await receive(consumer)
    elapsed = loop.time() - sent_at
    assert later.data == b"later"
    assert delay <= elapsed < delay + WAIT
    assert later.redelivery_count == 0


async def test_deliver_after_is_ignored_by_exclusive_subscriptions(
    transport: MemoryTransport,
) -> None:
    consumer = await transport.subscribe(
        TOPIC, SUB, ConsumerSettings(subscription_type=SubscriptionType.EXCLUSIVE)
    )
    producer = await transport.create_producer(TOPIC)
    await producer.send(OutgoingMessage(b"at-once", deliver_after=60.0))
    assert (await receive(consumer)).data == b"at-once"


# ---- close --------------------------------------------------------------------------------------


async def test_close_redelivers_unacked_to_another_consumer(
    transport: MemoryTransport, broker: MemoryBroker
) -> None:
    leaving = await transport.subscribe(TOPIC, SUB, shared())
    staying = await transport.subscribe(TOPIC, SUB, shared())
    await publish(transport, TOPIC, b"m")
    taken = await receive(leaving)
    waiting = asyncio.create_task(staying.receive())
    assert await is_waiting(waiting)

    await leaving.close()
    redelivered = await asyncio.wait_for(waiting, WAIT)
    assert redelivered.data == b"m"
    assert redelivered.redelivery_count == 1
    assert redelivered.handle == taken.handle
    with pytest.raises(ConsumerClosed):
        await leaving.acknowledge([taken])
    leaving.negative_acknowledge([taken])  # no-op on a closed consumer
    await staying.acknowledge([redelivered])
    assert broker.subscription_counts(TOPIC, SUB) == (0, 0)


async def test_close_wakes_a_waiting_receive_with_consumer_closed(
    transport: MemoryTransport,
) -> None:
    consumer = await transport.subscribe(TOPIC, SUB, shared())
    waiting = asyncio.create_task(consumer.receive())
    assert await is_waiting(waiting)
    await consumer.close()
    with pytest.raises(ConsumerClosed):
        await asyncio.wait_for(waiting, WAIT)
    with pytest.raises(ConsumerClosed):
        await consumer.receive()
    await consumer.close()  # idempotent


async def test_a_close_racing_a_delivery_gives_the_message_back_uncounted(
    transport: MemoryTransport,
) -> None:
    closing = await transport.subscribe(TOPIC, SUB, shared())
    waiting = asyncio.create_task(closing.receive())
    assert await is_waiting(waiting)
    await publish(transport, TOPIC, b"m")  # handed to the waiting receive, not yet returned
    await closing.close()
    with pytest.raises(ConsumerClosed):
        await asyncio.wait_for(waiting, WAIT)
    other = await transport.subscribe(TOPIC, SUB, shared())
    message = await receive(other)
    assert (message.data, message.redelivery_count) == (b"m", 0)


async def test_close_during_a_nack_delay_redelivers_at_once_counted_once(
    transport: MemoryTransport,
) -> None:
    slow_nacks = shared(nack_redelivery_delay=30.0)
    leaving = await transport.subscribe(TOPIC, SUB, slow_nacks)
    await publish(transport, TOPIC, b"m")
    leaving.negative_acknowledge([await receive(leaving)])
    await leaving.close()
    staying = await transport.subscribe(TOPIC, SUB, slow_nacks)
    message = await receive(staying)
    assert (message.data, message.redelivery_count) == (b"m", 1)


async def test_transport_close_closes_consumers_and_producers(
    transport: MemoryTransport, broker: MemoryBroker
) -> None:
    consumer = await transport.subscribe(TOPIC, SUB, shared())
    producer = await transport.create_producer(TOPIC)
    await producer.send(OutgoingMessage(b"m"))
    await receive(consumer)
    waiting = asyncio.create_task(consumer.receive())
    assert await is_waiting(waiting)

    await transport.close()
    with pytest.raises(ConsumerClosed):
        await asyncio.wait_for(waiting, WAIT)
    assert not transport.is_connected()
    with pytest.raises(TransportError):
        await producer.send(OutgoingMessage(b"x"))
    with pytest.raises(TransportError):
        await transport.create_producer(TOPIC)
    with pytest.raises(TransportError):
        await transport.subscribe(TOPIC, SUB, shared())
    assert broker.subscription_counts(TOPIC, SUB) == (1, 0)  # the unacked message went back
    assert broker.peek(TOPIC, SUB)[0].redelivery_count == 1


async def test_closed_producer_raises(transport: MemoryTransport) -> None:
    producer = await transport.create_producer(TOPIC)
    await producer.close()
    with pytest.raises(TransportError):
        await producer.send(OutgoingMessage(b"x"))
    with pytest.raises(TransportError):
        await producer.send_many([OutgoingMessage(b"x")])


@pytest.mark.parametrize("yields_before_publish", [0, 1, 3])
@pytest.mark.parametrize("yields_before_cancel", [0, 1, 2, 3])
async def test_a_cancelled_receive_never_loses_its_message(
    transport: MemoryTransport,
    broker: MemoryBroker,
    yields_before_publish: int,
    yields_before_cancel: int,
) -> None:
    consumer = await transport.subscribe(TOPIC, SUB, shared())
    producer = await transport.create_producer(TOPIC)
    task = asyncio.create_task(consumer.receive())
    for _ in range(yields_before_publish):
        await asyncio.sleep(0)
    await producer.send(OutgoingMessage(b"precious"))
    for _ in range(yields_before_cancel):
        await asyncio.sleep(0)
    task.cancel()
    try:
        message = await task
    except asyncio.CancelledError:
        message = await receive(consumer)
    assert message.data == b"precious"
    assert message.redelivery_count == 0
    await consumer.acknowledge([message])
    assert broker.subscription_counts(TOPIC, SUB) == (0, 0)


# ---- subscription types -------------------------------------------------------------------------


async def test_exclusive_rejects_a_second_consumer(transport: MemoryTransport) -> None:
    exclusive = ConsumerSettings(subscription_type=SubscriptionType.EXCLUSIVE)
    first = await transport.subscribe(TOPIC, SUB, exclusive)
    with pytest.raises(TransportError, match="exclusive"):
        await transport.subscribe(TOPIC, SUB, exclusive)
    with pytest.raises(TransportError, match="cannot subscribe as shared"):
        await transport.subscribe(TOPIC, SUB, shared())
    await first.close()
    second = await transport.subscribe(TOPIC, SUB, exclusive)
    await second.close()
    await transport.subscribe(TOPIC, SUB, shared())  # no consumer left: the type may change


async def test_failover_standby_takes_over_when_the_active_consumer_closes(
    transport: MemoryTransport,
) -> None:
    failover = ConsumerSettings(subscription_type=SubscriptionType.FAILOVER)
    active = await transport.subscribe(TOPIC, SUB, failover)
    standby = await transport.subscribe(TOPIC, SUB, failover)
    standby_waiting = asyncio.create_task(standby.receive())
    assert await is_waiting(standby_waiting)
    await publish(transport, TOPIC, b"1", b"2")
    assert (await receive(active)).data == b"1"
    assert await is_waiting(standby_waiting)

    await active.close()
    taken_over = await asyncio.wait_for(standby_waiting, WAIT)
    assert taken_over.data == b"1"
    assert taken_over.redelivery_count == 1
    assert (await receive(standby)).data == b"2"


async def test_key_shared_dispatches_like_shared(transport: MemoryTransport) -> None:
    key_shared = shared(subscription_type=SubscriptionType.KEY_SHARED)
    consumer = await transport.subscribe(TOPIC, SUB, key_shared)
    producer = await transport.create_producer(TOPIC)
    await producer.send(OutgoingMessage(b"k", partition_key="batch-1", deliver_after=0.01))
    assert (await receive(consumer)).data == b"k"


# ---- threads and outages ------------------------------------------------------------------------


async def test_a_producer_on_another_threads_loop_reaches_a_consumer_here(
    transport: MemoryTransport,
) -> None:
    consumer = await transport.subscribe(TOPIC, SUB, shared(nack_redelivery_delay=0.05))
    waiting = asyncio.create_task(consumer.receive())
    assert await is_waiting(waiting)

    async def produce_elsewhere() -> None:
        other = MemoryTransport(transport.url)
        producer = await other.create_producer(TOPIC)
        await producer.send(OutgoingMessage(b"from-thread"))
        await producer.send(OutgoingMessage(b"delayed-from-thread", deliver_after=0.05))
        await other.close()

    thread = threading.Thread(target=asyncio.run, args=(produce_elsewhere(),))
    thread.start()
    await asyncio.to_thread(thread.join, WAIT)
    message = await asyncio.wait_for(waiting, WAIT)
    assert message.data == b"from-thread"
    consumer.negative_acknowledge([message])  # the timer thread wakes this loop too
    received = {(await receive(consumer)).data for _ in range(2)}
    assert received == {b"from-thread", b"delayed-from-thread"}


async def test_a_consumer_on_another_threads_loop_gets_messages_sent_here(
    transport: MemoryTransport,
) -> None:
    ready = threading.Event()
    results: list[bytes] = []

    async def consume_elsewhere() -> None:
        other = MemoryTransport(transport.url)
        consumer = await other.subscribe(TOPIC, SUB, shared())
        ready.set()
        message = await asyncio.wait_for(consumer.receive(), WAIT)
        results.append(message.data)
        await consumer.acknowledge([message])
        await other.close()

    thread = threading.Thread(target=asyncio.run, args=(consume_elsewhere(),))
    thread.start()
    assert await asyncio.to_thread(ready.wait, WAIT)
    await publish(transport, TOPIC, b"to-thread")
    await asyncio.to_thread(thread.join, WAIT)
    assert results == [b"to-thread"]
    assert transport.broker.subscription_counts(TOPIC, SUB) == (0, 0)


async def test_consumers_on_three_loops_share_the_work_without_loss(
    transport: MemoryTransport, broker: MemoryBroker
) -> None:
    total = 300
    lock = threading.Lock()
    acked: list[bytes] = []
    done = threading.Event()
    consumers = [
        await transport.subscribe(TOPIC, SUB, shared(nack_redelivery_delay=0.01)) for _ in range(3)
    ]

    async def work(consumer: MemoryConsumer) -> None:
        while True:
            try:
                message = await consumer.receive()
            except ConsumerClosed:
                return
            if int(message.data) % 7 == 0 and message.redelivery_count == 0:
                consumer.negative_acknowledge([message])
                continue
            await consumer.acknowledge([message])
            with lock:
                acked.append(message.data)
                if len(acked) == total:
                    done.set()

    threads = [threading.Thread(target=asyncio.run, args=(work(c),)) for c in consumers[1:]]
    for thread in threads:
        thread.start()
    here = asyncio.create_task(work(consumers[0]))
    producer = await transport.create_producer(TOPIC)
    for start in range(0, total, 50):
        await producer.send_many(
            [OutgoingMessage(str(i).encode()) for i in range(start, start + 50)]
        )
        await asyncio.sleep(0)
    assert await asyncio.to_thread(done.wait, WAIT)

    for consumer in consumers:
        await consumer.close()  # from this loop, also for consumers waiting on other loops
    await asyncio.wait_for(here, WAIT)
    for thread in threads:
        await asyncio.to_thread(thread.join, WAIT)
        assert not thread.is_alive()
    assert sorted(acked) == sorted(str(i).encode() for i in range(total))
    assert broker.subscription_counts(TOPIC, SUB) == (0, 0)


async def test_outage_toggling(transport: MemoryTransport, broker: MemoryBroker) -> None:
    consumer = await transport.subscribe(TOPIC, SUB, shared())
    producer = await transport.create_producer(TOPIC)
    await producer.send(OutgoingMessage(b"before"))
    assert transport.is_connected()

    broker.set_available(False)
    assert not transport.is_connected()
    with pytest.raises(TransportError, match="unavailable"):
        await producer.send(OutgoingMessage(b"during"))
    with pytest.raises(TransportError):
        await producer.send_many([OutgoingMessage(b"during")])
    with pytest.raises(TransportError):
        await transport.subscribe(TOPIC, "other", shared())
    waiting = asyncio.create_task(consumer.receive())
    assert await is_waiting(waiting)  # a receive just waits

    broker.set_available(True)
    assert transport.is_connected()
    assert (await asyncio.wait_for(waiting, WAIT)).data == b"before"
    await producer.send(OutgoingMessage(b"after"))
    assert (await receive(consumer)).data == b"after"
    assert broker.subscription_counts(TOPIC, SUB) == (2, 2)


async def test_reset_closes_consumers_and_forgets_everything(
    transport: MemoryTransport, broker: MemoryBroker
) -> None:
    consumer = await transport.subscribe(TOPIC, SUB, shared())
    producer = await transport.create_producer(TOPIC)
    await producer.send(OutgoingMessage(b"delayed", deliver_after=30.0))
    waiting = asyncio.create_task(consumer.receive())
    assert await is_waiting(waiting)
    broker.set_available(False)

    broker.reset()
    with pytest.raises(ConsumerClosed):
        await asyncio.wait_for(waiting, WAIT)
    assert broker.topics() == []
    assert broker.available
    await producer.send(OutgoingMessage(b"into-a-fresh-broker"))  # producers stay usable
    assert broker.topics() == [TOPIC]


# ---- property: no loss, no duplicate beyond redeliveries ----------------------------------------


ACTIONS = st.sampled_from(["ack", "nack", "close", "cancel"])


async def _ack_nack_close_scenario(
    draw_action: Callable[[], str],
    draw_yields: Callable[[], int],
    message_count: int,
    max_redeliveries: int | None,
) -> None:
    url = _unique_url()
    transport = MemoryTransport(url)
    dlq = TOPIC + "-dlq"
    await transport.ensure_subscription(dlq, "dlq", SubscriptionType.SHARED)
    settings_ = shared(max_redeliveries=max_redeliveries, dead_letter_topic=dlq)
    consumers = [await transport.subscribe(TOPIC, SUB, settings_) for _ in range(2)]
    payloads = [str(i).encode() for i in range(message_count)]
    await publish(transport, TOPIC, *payloads)

    expected_count = dict.fromkeys(payloads, 0)
    acked: list[bytes] = []
    dead: list[bytes] = []
    steps = 0
    while len(acked) + len(dead) < message_count:
        steps += 1
        which = steps % 2
        consumer = consumers[which]
        action = draw_action() if steps < 40 else "ack"
        if action == "cancel":
            task = asyncio.create_task(consumer.receive())
            for _ in range(draw_yields()):
                await asyncio.sleep(0)
            task.cancel()
            try:
                message = await task
            except asyncio.CancelledError:
                continue
            action = "ack"
        else:
            message = await receive(consumer)
        assert message.redelivery_count == expected_count[message.data]
        if action == "ack":
            await consumer.acknowledge([message])
            acked.append(message.data)
        elif action == "nack":
            consumer.negative_acknowledge([message])
            if max_redeliveries is not None and expected_count[message.data] >= max_redeliveries:
                dead.append(message.data)
            else:
                expected_count[message.data] += 1
        else:
            await consumer.close()
            expected_count[message.data] += 1
            consumers[which] = await transport.subscribe(TOPIC, SUB, settings_)

    assert sorted(acked + dead) == sorted(payloads)  # each resolved exactly once
    broker = transport.broker
    assert broker.subscription_counts(TOPIC, SUB) == (0, 0)
    assert sorted(m.data for m in broker.peek(dlq, "dlq")) == sorted(dead)
    await transport.close()
    reset_broker(broker.name)


@settings(max_examples=60, deadline=None)
@given(
    data=st.data(),
    message_count=st.integers(min_value=1, max_value=6),
    max_redeliveries=st.none() | st.integers(min_value=0, max_value=3),
)
def test_ack_nack_close_cancel_never_lose_or_duplicate(
    data: st.DataObject, message_count: int, max_redeliveries: int | None
) -> None:
    asyncio.run(
        _ack_nack_close_scenario(
            lambda: data.draw(ACTIONS),
            lambda: data.draw(st.integers(min_value=0, max_value=3)),
            message_count,
            max_redeliveries,
        )
    )


async def test_receive_many_waits_for_one_then_takes_what_is_ready(
    transport: MemoryTransport,
) -> None:
    consumer = await transport.subscribe("t-many", "s", shared())
    waiting = asyncio.ensure_future(consumer.receive_many(3))
    await publish(transport, "t-many", b"0")
    first = await asyncio.wait_for(waiting, WAIT)
    assert [m.data for m in first] == [b"0"]
    await publish(transport, "t-many", b"1", b"2", b"3", b"4")
    got = await asyncio.wait_for(consumer.receive_many(3), WAIT)
    assert [m.data for m in got] == [b"1", b"2", b"3"]  # at most 3, in order
    rest = await asyncio.wait_for(consumer.receive_many(10), WAIT)
    assert [m.data for m in rest] == [b"4"]  # never waits for a second message
    await consumer.acknowledge([*first, *got, *rest])


def test_received_messages_are_identities_the_gc_does_not_track() -> None:
    import gc

    from infinitic_py.transport.base import ReceivedMessage

    a = ReceivedMessage(b"same", {}, 0, "t", None)
    b = ReceivedMessage(b"same", {}, 0, "t", None)
    assert a != b and a == a  # two deliveries of the same bytes are two messages
    assert len({a, b}) == 2  # hashable: usable as keys of in-flight bookkeeping
    assert not gc.is_tracked(a)
