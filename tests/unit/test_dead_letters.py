"""Pulsar's own dead-letter copies land on the same topic, kept by the same subscription, and read
with the same fields as the worker's letters (in-process broker, same semantics as Pulsar's), by
the one reader of dead letters (``wire.native_letters.read_letter``, what ``infinitic-py dlq`` shows)."""

from __future__ import annotations

import uuid

import msgspec
import pytest

from infinitic_py.ops.dlq_store import DeadLetterStore, whole_bulks
from infinitic_py.topics import (
    DLQ_SUBSCRIPTION,
    WORKER_SUBSCRIPTION,
    dead_letter_topic,
    service_topic,
)
from infinitic_py.transport.base import ConsumerSettings, OutgoingMessage, SubscriptionType
from infinitic_py.transport.memory import MemoryTransport, get_broker, reset_broker
from infinitic_py.wire import native as wire
from infinitic_py.wire.bulk import bulk_message
from infinitic_py.wire.native_letters import REASON_MAX_REDELIVERIES as MAX_REDELIVERIES
from infinitic_py.wire.native_letters import read_letter, read_letters


async def test_a_raw_copy_reads_as_a_dead_letter_with_a_reason() -> None:
    name = f"dl-{uuid.uuid4().hex[:6]}"
    transport = MemoryTransport(f"memory://{name}")
    topic, dlq = service_topic("public", "default", "Svc"), dead_letter_topic("public", "default", "Svc")
    task = wire.ExecuteTask(task_id="t-9", service="Svc", method="go", args=wire.encode_value([1]),
                            retry_index=2)
    settings = ConsumerSettings(max_redeliveries=0, dead_letter_topic=dlq,
                                dead_letter_subscription=DLQ_SUBSCRIPTION,
                                nack_redelivery_delay=0.01)
    try:
        consumer = await transport.subscribe(topic, "workers", settings)
        producer = await transport.create_producer(topic)
        await producer.send(OutgoingMessage(wire.encode(task), wire.properties_for(task)))
        consumer.negative_acknowledge([await consumer.receive()])
        assert get_broker(name).subscriptions(dlq) == [DLQ_SUBSCRIPTION]
        (kept,) = get_broker(name).peek(dlq, DLQ_SUBSCRIPTION)
        letter = read_letter(kept.data, kept.properties, service="Svc", published_at=None)
        assert (letter.reason, letter.task_id, letter.retry_index, letter.method) == (
            MAX_REDELIVERIES, "t-9", 2, "go")
        assert letter.properties["REAL_TOPIC"] == topic and letter.task == task
    finally:
        await transport.close()
        reset_broker(name)


def test_a_worker_letter_reads_as_itself() -> None:
    letter = wire.DeadLetter(reason="not_retryable", error_type="ValueError", message="no",
                             traceback=None, retry_index=0, task_id="t", service="Svc",
                             method="go", payload=b"x", failed_at=1.0)
    view = read_letter(wire.encode(letter), {"reason": "not_retryable"}, service="Svc",
                       published_at=None)
    assert (view.reason, view.error_type, view.message, view.retry_index, view.task_id,
            view.service, view.method, view.failed_at) == (
        letter.reason, letter.error_type, letter.message, letter.retry_index, letter.task_id,
        letter.service, letter.method, letter.failed_at)


@pytest.mark.parametrize("props", [{}, {"REAL_TOPIC": "x"}])
def test_garbage_still_reads(props: dict[str, str]) -> None:
    letter = read_letter(b"\xc1garbage", props, service="Svc", published_at=None)
    assert letter.service == "Svc" and letter.task is None and letter.reason


def _bulk_tasks(n: int) -> list[wire.ExecuteTask]:
    return [wire.ExecuteTask(task_id=f"b-{i}", service="Svc", method="go" if i else "first",
                             args=wire.encode_value([i]), retry_index=1) for i in range(n)]


def test_a_bulk_moved_by_pulsars_dead_letter_policy_reads_as_one_letter_per_task() -> None:
    tasks = _bulk_tasks(3)
    bulk = bulk_message([OutgoingMessage(wire.encode(t)) for t in tasks])
    views = read_letters(bulk.data, {"traceparent": "00-x"}, service="Svc", published_at=9.0)
    assert [(v.reason, v.task_id, v.bulk_size, v.failed_at) for v in views] == [
        (MAX_REDELIVERIES, f"b-{i}", 3, 9.0) for i in range(3)]
    assert [v.task for v in views] == tasks and views[0].to_json()["bulk_size"] == 3
    (single,) = read_letters(wire.encode(tasks[0]), {}, service="Svc", published_at=None)
    assert single.bulk_size == 0 and single.task == tasks[0]


async def test_a_dead_lettered_bulk_is_replayed_whole_or_left_alone() -> None:
    name = f"dlb-{uuid.uuid4().hex[:6]}"
    transport = MemoryTransport(f"memory://{name}")
    topic, dlq = service_topic("public", "default", "Svc"), dead_letter_topic("public", "default", "Svc")
    tasks = _bulk_tasks(3)
    try:
        await transport.ensure_subscription(dlq, DLQ_SUBSCRIPTION, SubscriptionType.SHARED)
        producer = await transport.create_producer(dlq)
        await producer.send(bulk_message([OutgoingMessage(wire.encode(t)) for t in tasks]))
        async with DeadLetterStore(transport, "public", "default", "Svc", idle=0.3) as store:
            letters = await store.read()
            assert [x.view.task_id for x in letters] == ["b-0", "b-1", "b-2"]
            some = [x for x in letters if x.view.method == "go"]
            assert whole_bulks(some) == ([], some)  # acking would delete b-0 too
            whole, partial = whole_bulks(letters)
            assert (whole, partial) == (letters, [])
            assert await store.replay(whole) == 3
        replayed = [wire.decode_execute(m.data)
                    for m in get_broker(name).peek(topic, WORKER_SUBSCRIPTION)]
        assert [(t.task_id, t.retry_index, t.retry_sequence) for t in replayed] == [
            (f"b-{i}", 0, 1) for i in range(3)]
        assert get_broker(name).peek(dlq, DLQ_SUBSCRIPTION) == []
    finally:
        await transport.close()
        reset_broker(name)


async def test_a_native_letter_read_with_wire_infinitic_replays_as_native() -> None:
    """``dlq replay S --wire infinitic`` on a topic holding a native task (the fallback reader
    shows it as one). Before: the replay asked the Infinitic dialect, which refused it with
    'holds no readable Infinitic message: ... (purge it)', advising to delete a good task."""
    from infinitic_py.wire.dialects import letter_readers

    pytest.importorskip("fastavro")
    name = f"dlw-{uuid.uuid4().hex[:6]}"
    transport = MemoryTransport(f"memory://{name}")
    topic, dlq = service_topic("public", "default", "Svc"), dead_letter_topic("public", "default", "Svc")
    task = wire.ExecuteTask(task_id="t-1", service="Svc", method="go", args=wire.encode_value([1]))
    try:
        await transport.ensure_subscription(dlq, DLQ_SUBSCRIPTION, SubscriptionType.SHARED)
        producer = await transport.create_producer(dlq)
        await producer.send(OutgoingMessage(wire.encode(task), wire.properties_for(task)))
        readers = letter_readers("infinitic", "public", "default")
        async with DeadLetterStore(transport, "public", "default", "Svc", idle=0.3,
                                   readers=readers) as store:
            letters = await store.read()
            assert [(x.view.wire, x.view.task_id) for x in letters] == [("native", "t-1")]
            assert await store.replay(letters) == 1
        (replayed,) = [wire.decode_execute(m.data)
                       for m in get_broker(name).peek(topic, WORKER_SUBSCRIPTION)]
        assert (replayed.task_id, replayed.retry_sequence) == ("t-1", 1)
        assert get_broker(name).peek(dlq, DLQ_SUBSCRIPTION) == []
    finally:
        await transport.close()
        reset_broker(name)


async def test_a_replay_the_broker_refuses_part_way_deletes_exactly_the_letters_replayed() -> None:
    """Letters replayed to two topics (two priority bands); the broker refuses the second.
    Before: nothing was acked, so the letter already republished stayed in the dead-letter
    topic and the next ``replay`` ran its task twice. Now: it is deleted, the other kept, and
    the error says how many went."""
    from infinitic_py.transport.base import TransportError

    class Refusing(MemoryTransport):
        async def create_producer(self, topic: str, **kwargs: object):  # type: ignore[no-untyped-def]
            if topic.endswith(":high"):
                raise TransportError("refused", refused=True)
            return await super().create_producer(topic, **kwargs)  # type: ignore[arg-type]

    name = f"dlp-{uuid.uuid4().hex[:6]}"
    transport = Refusing(f"memory://{name}")
    topic, dlq = service_topic("public", "default", "Svc"), dead_letter_topic("public", "default", "Svc")
    normal = wire.ExecuteTask(task_id="t-n", service="Svc", method="go", args=wire.encode_value([]))
    high = msgspec.structs.replace(normal, task_id="t-h", priority=9)
    try:
        await transport.ensure_subscription(dlq, DLQ_SUBSCRIPTION, SubscriptionType.SHARED)
        producer = await transport.create_producer(dlq)
        for task in (normal, high):
            await producer.send(OutgoingMessage(wire.encode(task), wire.properties_for(task)))
        async with DeadLetterStore(transport, "public", "default", "Svc", idle=0.3) as store:
            letters = await store.read()
            with pytest.raises(TransportError, match="1 of 2"):
                await store.replay(letters)
        assert [wire.decode_execute(m.data).task_id
                for m in get_broker(name).peek(topic, WORKER_SUBSCRIPTION)] == ["t-n"]
        kept = [read_letter(m.data, m.properties, service="Svc", published_at=None).task_id
                for m in get_broker(name).peek(dlq, DLQ_SUBSCRIPTION)]
        assert kept == ["t-h"]
    finally:
        await transport.close()
        reset_broker(name)


async def test_a_partition_that_stopped_delivering_to_the_tool_says_incomplete() -> None:
    """A partitioned dead-letter topic (the JVM's): the broker's summed stats merge the
    consumers of every partition by position (one name, one flag kept), so a partition whose
    consumer hit the unacked limit showed only in its own stats. Before: not read, so a list
    cut short by one partition said ``complete``."""
    from infinitic_py.wire.letters import LetterTopic

    def consumer(name: str, blocked: bool) -> dict[str, object]:
        return {"consumerName": name, "blockedConsumerOnUnackedMsgs": blocked}

    def sub(*consumers: dict[str, object]) -> dict[str, object]:
        return {"subscriptions": {DLQ_SUBSCRIPTION: {"consumers": list(consumers)}}}

    dlq = dead_letter_topic("public", "default", "Svc")

    class Admin:
        def topic_stats(self, topic: str) -> dict[str, object]:
            return {}  # partitioned: no stats under its own name

        def partitioned_topic_stats(self, topic: str) -> dict[str, object]:
            merged = sub(consumer("infinitic-py-worker", False))  # as the broker merges them
            merged["partitions"] = {
                f"{dlq}-partition-0": sub(consumer("infinitic-py-worker", False),
                                          consumer("infinitic-py-dlq-tool", False)),
                f"{dlq}-partition-1": sub(consumer("infinitic-py-dlq-tool", True)),
            }
            return merged

    store = DeadLetterStore(MemoryTransport(f"memory://blk-{uuid.uuid4().hex[:6]}"), "public",
                            "default", "Svc", admin=Admin())  # type: ignore[arg-type]
    store._consumers = [(LetterTopic(dlq), None)]  # type: ignore[list-item]
    assert await store._blocked()
