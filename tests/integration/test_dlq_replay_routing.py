"""``dlq replay`` sends each task where the command says and in the band it came from: a
high-priority task back to its service's high band (as a retry is), and a task dead-lettered
because its envelope named another service to the service whose dead letters are replayed."""

from __future__ import annotations

import asyncio
import json
import time

from infinitic_py.admin import PulsarAdmin
from infinitic_py.topics import (
    DLQ_SUBSCRIPTION,
    WORKER_SUBSCRIPTION,
    dead_letter_topic,
    service_topic,
)
from infinitic_py.transport import create_transport
from infinitic_py.transport.base import ConsumerSettings, OutgoingMessage, SubscriptionType
from infinitic_py.wire import native as wire

from .conftest import BrokerInfo
from .test_dlq_cli import acli


def _letter(task: wire.ExecuteTask, reason: str) -> bytes:
    return wire.encode(wire.DeadLetter(
        reason=reason, error_type="ValueError", message="boom", traceback=None,
        retry_index=task.retry_index, task_id=task.task_id, service=task.service,
        method=task.method, failed_at=time.time(), worker="w", payload=wire.encode(task)))


async def test_replay_keeps_the_priority_band_and_the_dead_letters_service(
    pulsar_broker: BrokerInfo, admin: PulsarAdmin, unique_name: str
) -> None:
    service = f"Replay{unique_name}"
    other = f"Other{unique_name}"
    high = wire.ExecuteTask(task_id=f"{unique_name}-high", service=service, method="run",
                            args=wire.encode_value([1]), priority=9, retry_index=3)
    stray = wire.ExecuteTask(task_id=f"{unique_name}-stray", service=other, method="run",
                             args=wire.encode_value([2]))
    dlq = dead_letter_topic("public", "default", service)
    transport = create_transport(pulsar_broker.service_url)
    try:
        await transport.ensure_subscription(dlq, DLQ_SUBSCRIPTION, SubscriptionType.SHARED)
        producer = await transport.create_producer(dlq)
        await producer.send(OutgoingMessage(_letter(high, "retries_exhausted")))
        await producer.send(OutgoingMessage(_letter(stray, "invalid_envelope")))
        await producer.close()

        out = await acli(pulsar_broker, "dlq", "replay", service, "--json")
        assert out.returncode == 0, out.stderr
        result = json.loads(out.stdout)
        assert (result["replayed"], result["to_service"]) == (2, service)

        async def one(topic: str) -> wire.ExecuteTask:
            consumer = await transport.subscribe(topic, WORKER_SUBSCRIPTION, ConsumerSettings())
            try:
                msg = await asyncio.wait_for(consumer.receive(), 10)
                await consumer.acknowledge([msg])
                return wire.decode_execute(msg.data)
            finally:
                await consumer.close()

        replayed_high = await one(service_topic("public", "default", f"{service}:high"))
        assert (replayed_high.task_id, replayed_high.priority) == (high.task_id, 9)
        assert replayed_high.retry_index == 0
        replayed_stray = await one(service_topic("public", "default", service))
        assert (replayed_stray.task_id, replayed_stray.service) == (stray.task_id, service)
    finally:
        await transport.close()
    topics = await asyncio.to_thread(admin.topics, "public", "default")
    assert service_topic("public", "default", other) not in topics
