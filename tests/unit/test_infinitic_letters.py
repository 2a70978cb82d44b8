"""Dead letters of a ``wire: infinitic`` service as the operator tools read and replay them
(``wire.infinitic.letters``, through the ``wire.letters`` seam), on golden JVM messages.

Before: the tools read every letter with the native (MessagePack) reader: an Infinitic task
moved to task-executor-dlq:S by Pulsar read as ``unreadable`` (no task id, no method, nothing to
replay), and task-retry-dlq:S / task-events-dlq:S were never read at all."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from infinitic_py.ops.dlq import render_show, render_table
from infinitic_py.transport.base import ReceivedMessage
from infinitic_py.wire import native as wire
from infinitic_py.wire.dialects import letter_readers
from infinitic_py.wire.infinitic import envelopes as env
from infinitic_py.wire.infinitic import values
from infinitic_py.wire.infinitic.dialect import InfiniticDialect
from infinitic_py.wire.infinitic.letters import InfiniticLetters
from infinitic_py.wire.infinitic.schemas import Envelope, definition
from infinitic_py.wire.letters import letters_of
from infinitic_py.wire.native_letters import NativeLetters

SAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "infinitic" / "samples"
NS = "persistent://public/infinitic"
DLQ = f"{NS}/task-executor-dlq:BenchService"


def _sample(name: str) -> bytes:
    path = SAMPLES / name
    if not path.is_file():
        pytest.skip(f"no Infinitic golden sample at {path}")
    return path.read_bytes()


def _task_bytes() -> bytes:
    return _sample("task-executor-BenchService-EXECUTE_TASK-1.bin")


def _received(data: bytes, topic: str = DLQ, props: dict[str, str] | None = None,
              writer: str | None = None) -> ReceivedMessage:
    return ReceivedMessage(data, props or {}, 0, topic, None, writer)


def _read(data: bytes, role: str = "execute", topic: str = DLQ,
          props: dict[str, str] | None = None) -> list:  # type: ignore[type-arg]
    readers = letter_readers("auto", "public", "infinitic")
    views = letters_of(readers, _received(data, topic, props), role=role,
                       service="BenchService", published_at=1_700_000_000.0)
    assert views is not None
    return views


def test_the_dialect_names_its_three_dead_letter_topics() -> None:
    letters = InfiniticDialect("public", "infinitic").dead_letters()
    assert [(t.topic, t.role) for t in letters.letter_topics("BenchService")] == [
        (DLQ, "execute"), (f"{NS}/task-retry-dlq:BenchService", "retry"),
        (f"{NS}/task-events-dlq:BenchService", "events")]
    assert all(t.writer_schemas for t in letters.letter_topics("BenchService"))


def test_a_task_moved_by_pulsar_reads_with_its_id_method_args_and_waiting_workflow() -> None:
    (view,) = _read(_task_bytes())
    task = env.decode_execute_task(_task_bytes())
    assert (view.wire, view.kind, view.reason, view.error_type) == (
        "infinitic", "task", "max_redeliveries", "MaxRedeliveries")
    assert (view.task_id, view.service, view.method, view.retry_index) == (
        task.task_id, "BenchService", "echo", task.task_retry_index)
    assert view.failed_at == 1_700_000_000.0
    data = view.to_json(details=True)
    assert data["args"] == ["m1"]
    assert data["topic"] == DLQ
    assert isinstance(task.requester, env.WorkflowRequester)
    assert data["requester"]["workflow_id"] == task.requester.workflow_id
    assert task.requester.workflow_id in view.message  # who waits for it
    shown = render_show(view)
    assert "args" in shown and '["m1"]' in shown and "waiting" in shown
    assert task.task_id in render_table([view])


def test_an_undecodable_letter_the_worker_wrote_keeps_its_reason_and_cannot_be_replayed() -> None:
    props = {"reason": "undecodable", "errorType": "WireDecodeError", "errorMessage": "bad",
             "worker": "w1"}
    (view,) = _read(b"\x02garbage", props=props)
    assert (view.wire, view.reason, view.error_type, view.message, view.worker, view.task) == (
        "infinitic", "undecodable", "WireDecodeError", "bad", "w1", None)
    with pytest.raises(ValueError, match="cannot be replayed"):
        InfiniticLetters("public", "infinitic").replay(view, service="BenchService")


def test_on_the_shared_topic_name_each_dialect_reads_its_own_letters() -> None:
    native = wire.ExecuteTask(task_id="t1", service="BenchService", method="send",
                              args=wire.encode_value(["a"]), meta={}, tags=(), retry_index=0,
                              retry_sequence=0, reply_to=None, emitted_at=1.0)
    (view,) = _read(wire.task_message(native).data)
    assert (view.wire, view.task_id, view.method) == ("native", "t1", "send")
    assert view.to_json(details=True)["args"] == ["a"]
    assert NativeLetters("public", "x").read(_received(_task_bytes()), role="execute",
                                             service="S", published_at=None) is None
    readers = letter_readers("auto", "public", "infinitic")
    assert letters_of(readers, _received(b"\x02garbage"), role="execute", service="S",
                      published_at=None) is None  # nobody's: the store shows it as unreadable


def test_replay_of_a_task_is_infinitics_manual_retry_on_task_executor() -> None:
    (view,) = _read(_task_bytes())
    original = env.decode_execute_task(_task_bytes())
    publish = InfiniticLetters("public", "infinitic").replay(view, service="BenchService")
    assert publish.topic == f"{NS}/task-executor:BenchService"
    attempt = env.decode_execute_task(publish.message.data)
    assert attempt.task_id == original.task_id
    assert attempt.requester == original.requester  # the waiting workflow is told
    assert (attempt.task_meta, attempt.task_tags, attempt.client_waiting) == (
        original.task_meta, original.task_tags, original.client_waiting)
    assert attempt.method_parameters == original.method_parameters
    assert attempt.task_retry_sequence == original.task_retry_sequence + 1
    assert attempt.task_retry_index == 0
    assert attempt.message_id != original.message_id
    # the worker decodes it (its name matches the topic it is served on)
    served = InfiniticDialect("public", "infinitic").decode(
        _received(publish.message.data, f"{NS}/task-executor:BenchService-partition-0"))
    assert isinstance(served, env.ExecuteTask)
    moved = InfiniticLetters("public", "infinitic").replay(view, service="BenchService",
                                                           to_service="BenchServiceV2")
    assert moved.topic == f"{NS}/task-executor:BenchServiceV2"
    assert env.decode_execute_task(moved.message.data).task_name == "BenchServiceV2"


def test_an_event_letter_reads_and_replays_unchanged_to_task_events() -> None:
    data = _sample("task-events-BenchService-TASK_COMPLETED-1.bin")
    event = env.decode_task_event(data)
    assert isinstance(event, env.TaskCompletedEvent)
    (view,) = _read(data, role="events", topic=f"{NS}/task-events-dlq:BenchService")
    assert (view.kind, view.task_id, view.method, view.reason) == (
        "event", event.task_id, event.method_name, "max_redeliveries")
    details = view.to_json(details=True)
    assert details["event"] == "TaskCompletedEvent"
    assert details["result"] == values.decode_value(event.return_value)
    publish = InfiniticLetters("public", "infinitic").replay(view, service="BenchService")
    assert publish.topic == f"{NS}/task-events:BenchService"
    assert env.decode_task_event(publish.message.data) == event


def test_producer_schemas_and_kept_subscriptions_are_the_jvms() -> None:
    letters = InfiniticLetters("public", "infinitic")
    assert letters.producer_schema(f"{NS}/task-executor:S") == definition(Envelope.TASK_EXECUTOR)
    assert letters.producer_schema(f"{NS}/task-events:S") == definition(Envelope.TASK_EVENTS)
    assert letters.keep_subscription(f"{NS}/task-executor:S") == "task-executor-subscription"
    assert letters.keep_subscription(f"{NS}/task-events:S") == "task-events-subscription"


def test_a_letter_written_with_another_schema_version_is_read_with_it() -> None:
    task = env.decode_execute_task(_task_bytes())
    view = InfiniticLetters("public", "infinitic").read(
        _received(_task_bytes(), writer=definition(Envelope.TASK_EXECUTOR)), role="retry",
        service="BenchService", published_at=None)
    assert view is not None and view[0].task_id == task.task_id
    assert "retry relay" in view[0].message
    assert msgspec.json.encode(view[0].to_json(details=True))  # JSON-ready
