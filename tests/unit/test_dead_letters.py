"""Pulsar's own dead-letter copies land on the same topic, kept by the same subscription, and read
with the same fields as the worker's letters (in-process broker, same semantics as Pulsar's), by
the one reader of dead letters (``ops.dlq.read_letter``, what ``infinitic-py dlq`` shows)."""

from __future__ import annotations

import uuid

import pytest

from infinitic_py.ops.dlq import REASON_MAX_REDELIVERIES as MAX_REDELIVERIES
from infinitic_py.ops.dlq import read_letter
from infinitic_py.topics import DLQ_SUBSCRIPTION, dead_letter_topic, service_topic
from infinitic_py.transport.base import ConsumerSettings, OutgoingMessage
from infinitic_py.transport.memory import MemoryTransport, get_broker, reset_broker
from infinitic_py.wire import native as wire


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
