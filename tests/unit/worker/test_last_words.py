"""A task the broker is about to dead-letter (its outcomes could never be made durable, and this
nack is its last: redelivery count = ``max_redeliveries``) is first told to the waiting JVM
workflow with a ``TaskFailedEvent``, as Infinitic 0.18.4's worker does in its ``beforeDlq``
hook (``acknowledge.kt``: ``sentToDeadLetterQueue`` -> ``sendTaskFailed``).

Before: the nack alone; the workflow waited for ever for a task sitting in
task-executor-dlq:S."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest
import structlog

from infinitic_py.transport.base import OutgoingMessage, ReceivedMessage, TransportError
from infinitic_py.wire import native
from infinitic_py.wire.infinitic import envelopes as env
from infinitic_py.wire.infinitic.dialect import InfiniticDialect
from infinitic_py.worker.routing import MethodRoute, Pending
from infinitic_py.worker.settle import Settler

SAMPLE = (Path(__file__).resolve().parents[3].parent / "shared" / "infinitic" / "samples"
          / "task-executor-BenchService-EXECUTE_TASK-1.bin")
NS = "persistent://public/infinitic"


class Producers:
    def __init__(self, fail: bool = False) -> None:
        self.sent: dict[str, list[OutgoingMessage]] = {}
        self.fail = fail

    async def publish(self, by_topic: dict[str, list[OutgoingMessage]]) -> None:
        if self.fail:
            raise TransportError("broker gone")
        for topic, messages in by_topic.items():
            self.sent.setdefault(topic, []).extend(messages)


class Consumers:
    def __init__(self) -> None:
        self.settled: list[tuple[int, bool]] = []
        self.max_redeliveries: int | None = 3

    def at_last_delivery(self, msg: ReceivedMessage) -> bool:
        limit = self.max_redeliveries
        return limit is not None and msg.redelivery_count >= limit

    async def settle(self, msgs: list[ReceivedMessage], *, ack: bool) -> None:
        self.settled.append((len(msgs), ack))


class Ledger:
    def settle(self, items: Any, *, ack: bool) -> list[Pending]:
        return []


def _pending(redeliveries: int) -> Pending:
    if not SAMPLE.is_file():
        pytest.skip(f"no Infinitic golden sample at {SAMPLE}")
    data = SAMPLE.read_bytes()
    task = env.decode_execute_task(data)
    msg = ReceivedMessage(data, {}, redeliveries, f"{NS}/task-executor:BenchService", None)
    return Pending(msg, task, ("m1",), task.task_id, cast(Any, MethodRoute), ("echo", None))


def _settler(dialect: Any, producers: Producers, consumers: Consumers,
             max_redeliveries: int | None = 3) -> Settler:
    consumers.max_redeliveries = max_redeliveries  # the consumers' dead-letter policy
    return Settler(cast(Any, producers), cast(Any, consumers), cast(Any, Ledger()),
                   cast(Any, None), dialect, "BenchService", "py-w", structlog.get_logger("t"))


async def test_the_last_nack_is_preceded_by_a_task_failed_event() -> None:
    producers, consumers = Producers(), Consumers()
    settler = _settler(InfiniticDialect("public", "infinitic"), producers, consumers)
    last, earlier = _pending(3), _pending(2)
    await settler.give_back([last, earlier], TransportError("cannot publish outcomes"))
    (events,) = producers.sent.values()
    assert list(producers.sent) == [f"{NS}/task-events:BenchService"]
    (event,) = [env.decode_task_event(m.data) for m in events]  # the last one only
    assert isinstance(event, env.TaskFailedEvent)
    assert event.task_id == last.task.task_id
    assert event.requester == last.task.requester  # the workflow that waits is told
    assert event.execution_error.exception is not None
    assert "cannot publish outcomes" in (event.execution_error.exception.message or "")
    assert consumers.settled == [(2, False)]  # both nacked all the same


async def test_no_last_words_without_a_limit_a_dialect_that_has_none_or_a_broker() -> None:
    producers, consumers = Producers(), Consumers()
    await _settler(InfiniticDialect("public", "infinitic"), producers, consumers,
                   max_redeliveries=None).give_back([_pending(9)], TransportError("x"))
    await _settler(native.NativeDialect(), producers, consumers).give_back(
        [_pending(9)], TransportError("x"))
    await _settler(InfiniticDialect("public", "infinitic"), producers, consumers).give_back(
        [_pending(9)])  # a give-back at shutdown: no error, nothing dead-lettered by it
    assert producers.sent == {}
    failing = Producers(fail=True)
    await _settler(InfiniticDialect("public", "infinitic"), failing, consumers).give_back(
        [_pending(3)], TransportError("x"))  # the broker refuses the words too: still nacked
    assert consumers.settled == [(1, False)] * 4
