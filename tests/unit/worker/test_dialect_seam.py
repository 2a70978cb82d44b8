"""The wire seam: a second dialect fits without touching the executor. A toy dialect (JSON
envelopes) consumes two topics per service, announces each task's start on an events topic,
publishes several messages per outcome on several topics, with its own keys and a producer
schema — the shapes Infinitic's Avro dialect needs (shared/infinitic/WIRE.md §1, §4, §6)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from infinitic_py import task
from infinitic_py.service import MethodDefinition, define_service
from infinitic_py.transport.base import OutgoingMessage, ReceivedMessage, SubscriptionType
from infinitic_py.transport.memory import MemoryTransport, get_broker, reset_broker
from infinitic_py.wire import Partitioner, Publish, Subscription, Undecodable
from infinitic_py.worker.executor import ServiceExecutor
from infinitic_py.worker.settings import ExecutorSettings


class JsonTask(msgspec.Struct, frozen=True):
    task_id: str
    method: str
    args: list[Any]
    meta: dict[str, Any] = {}
    tags: tuple[str, ...] = ()
    retry_index: int = 0
    retry_sequence: int = 0
    reply_to: str | None = None

    def batch_key(self) -> str | bytes | None:
        key = self.meta.get("batchKey")
        return key if isinstance(key, str | bytes | None) else str(key)


class ToyDialect:
    name = "toy"
    announces_start = True

    def __init__(self) -> None:
        self.schemas: list[str] = []

    def subscriptions(self, service: str) -> Sequence[Subscription]:
        return (Subscription(f"exec:{service}", "exec-sub"),
                Subscription(f"retry:{service}", "retry-sub"))

    def dead_letter_topic(self, service: str) -> str:
        return f"dlq:{service}"

    def partitioner(self, topic: str) -> Partitioner | None:
        return None

    def topics(self, service: str) -> Mapping[str, int]:
        return {}

    def relay(self, role: str, message: ReceivedMessage, worker: str) -> Sequence[Publish]:
        return ()

    def producer_schema(self, topic: str) -> str | None:
        self.schemas.append(topic)
        return '{"type": "record"}' if topic.startswith("events:") else None

    def decode(self, message: ReceivedMessage) -> JsonTask | Undecodable:
        try:
            return msgspec.json.decode(message.data, type=JsonTask)
        except msgspec.MsgspecError as exc:
            return Undecodable(exc)

    def decode_args(self, task: JsonTask, method: MethodDefinition) -> tuple[Any, ...]:
        return tuple(task.args)

    def started(self, task: JsonTask) -> Sequence[Publish]:
        return (Publish("events:Calc", OutgoingMessage(_event("started", task))),)

    def completes_silently(self, task: JsonTask) -> bool:
        return False

    def completed(self, task: JsonTask, output: Any, worker: str) -> Sequence[Publish]:
        return (Publish("events:Calc", OutgoingMessage(_event("completed", task, output),
                                                        partition_key=task.task_id)),
                Publish(f"response:{task.reply_to}",
                        OutgoingMessage(json.dumps(output).encode()), reply=True))

    def retried(self, task: JsonTask, error: BaseException, trace: str | None, delay: float,
                worker: str) -> Sequence[Publish]:
        raise AssertionError("not used")

    def failed(self, task: JsonTask, error: BaseException, trace: str | None, reason: str,
               payload: bytes, worker: str) -> Sequence[Publish]:
        return (Publish("events:Calc", OutgoingMessage(_event("failed", task, reason))),)

    def undecodable(self, message: ReceivedMessage, error: Exception, service: str,
                    worker: str) -> Sequence[Publish]:
        return (Publish(self.dead_letter_topic(service), OutgoingMessage(message.data)),)


def _event(kind: str, task: JsonTask, value: Any = None) -> bytes:
    return json.dumps({"event": kind, "task": task.task_id, "value": value}).encode()


class Calc:
    @task
    def add(self, a: int, b: int) -> int:
        return a + b


async def test_an_executor_runs_a_second_dialect() -> None:
    name = f"seam-{uuid.uuid4().hex[:8]}"
    broker = get_broker(name)
    transport = MemoryTransport(f"memory://{name}")
    for topic in ("events:Calc", "response:c1", "dlq:Calc"):
        await transport.ensure_subscription(topic, "test", SubscriptionType.SHARED)
    dialect = ToyDialect()
    executor = ServiceExecutor(define_service(Calc(), name="Calc"), transport,
                               ExecutorSettings(), dialect=dialect)
    await executor.start()
    producer = await transport.create_producer("exec:Calc")
    retry = await transport.create_producer("retry:Calc")
    await producer.send(OutgoingMessage(msgspec.json.encode(
        JsonTask("t1", "add", [1, 2], reply_to="c1"))))
    await retry.send(OutgoingMessage(msgspec.json.encode(
        JsonTask("t2", "add", [3, 4], retry_index=1, retry_sequence=1, reply_to="c1"))))
    await producer.send(OutgoingMessage(b"not json"))
    deadline = asyncio.get_running_loop().time() + 5
    while broker.subscription_counts("events:Calc", "test")[0] < 4 or \
            broker.subscription_counts("dlq:Calc", "test")[0] < 1:
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.01)
    await executor.stop()
    events = [json.loads(m.data) for m in broker.peek("events:Calc", "test")]
    assert sorted((e["event"], e["task"]) for e in events) == [
        ("completed", "t1"), ("completed", "t2"), ("started", "t1"), ("started", "t2")]
    replies = sorted(json.loads(m.data) for m in broker.peek("response:c1", "test"))
    assert replies == [3, 7]
    assert [m.data for m in broker.peek("dlq:Calc", "test")] == [b"not json"]
    assert "events:Calc" in dialect.schemas  # the transport was asked for a schema'd producer
    for sub in ("exec-sub", "retry-sub"):  # both consumed topics acked
        topic = "exec:Calc" if sub == "exec-sub" else "retry:Calc"
        assert broker.subscription_counts(topic, sub) == (0, 0)
    await transport.close()
    reset_broker(name)
