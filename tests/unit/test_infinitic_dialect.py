"""The InfiniticDialect on golden JVM messages: topics, schemas, decode, outcomes."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import msgspec
import pytest

from infinitic_py.transport.base import ReceivedMessage
from infinitic_py.wire import Undecodable
from infinitic_py.wire.infinitic import envelopes as env
from infinitic_py.wire.infinitic import values
from infinitic_py.wire.infinitic.dialect import InfiniticDialect
from infinitic_py.wire.infinitic.schemas import Envelope, definition
from infinitic_py.worker.routing import attempt_key

SAMPLE = (
    Path(__file__).resolve().parents[2].parent
    / "shared" / "infinitic" / "samples" / "task-executor-BenchService-EXECUTE_TASK-1.bin"
)
NS = "persistent://public/infinitic"


def _received(data: bytes, writer: str | None = None,
              topic: str = f"{NS}/task-executor:BenchService-partition-1") -> ReceivedMessage:
    return ReceivedMessage(data, {}, 0, topic, None, writer)


def _golden() -> bytes:
    if not SAMPLE.is_file():
        pytest.skip(f"no Infinitic golden sample at {SAMPLE}")
    return SAMPLE.read_bytes()


def test_topics_subscriptions_and_schemas() -> None:
    dialect = InfiniticDialect("public", "infinitic", handlers=True)
    subs = dialect.subscriptions("BenchService")
    assert [(s.topic, s.subscription, s.role) for s in subs] == [
        (f"{NS}/task-executor:BenchService", "task-executor-subscription", "execute"),
        (f"{NS}/task-retry:BenchService", "task-retry-subscription", "retry"),
        (f"{NS}/task-events:BenchService", "task-events-subscription", "events"),
    ]
    assert subs[0].dead_letter_topic == f"{NS}/task-executor-dlq:BenchService"
    assert len(InfiniticDialect("public", "infinitic").subscriptions("S")) == 1
    assert dialect.producer_schema(f"{NS}/task-retry:S") == definition(Envelope.TASK_EXECUTOR)
    assert dialect.producer_schema(f"{NS}/task-events:S") == definition(Envelope.TASK_EVENTS)
    assert dialect.producer_schema("response:c") == definition(Envelope.CLIENT)
    assert dialect.producer_schema(f"{NS}/other") is None


def test_decode_reads_with_the_writer_schema_and_decodes_args_with_the_method_types() -> None:
    dialect = InfiniticDialect("public", "infinitic")
    assert all(s.writer_schemas for s in dialect.subscriptions("BenchService"))
    task = dialect.decode(_received(_golden(), definition(Envelope.TASK_EXECUTOR)))
    assert isinstance(task, env.ExecuteTask)
    assert (task.method, task.retry_index, task.reply_to, task.batch_key()) == ("echo", 0, None, None)
    assert dialect.decode_args(task, cast(Any, SimpleNamespace(param_types=(str,)))) == ("m1",)
    with pytest.raises(TypeError, match="argument 0"):
        dialect.decode_args(task, cast(Any, SimpleNamespace(param_types=(int,))))


def test_garbage_and_unusable_writer_schemas_are_undecodable() -> None:
    dialect = InfiniticDialect("public", "infinitic")
    assert isinstance(dialect.decode(_received(b"garbage")), Undecodable)
    assert isinstance(dialect.decode(_received(_golden(), '{"type": "record"')), Undecodable)
    letters = dialect.undecodable(_received(b"garbage"), ValueError("x"), "BenchService", "w")
    assert [(p.topic, p.message.data) for p in letters] == [(f"{NS}/task-executor-dlq:BenchService", b"garbage")]


def _task() -> env.ExecuteTask:
    dialect = InfiniticDialect("public", "infinitic")
    task = dialect.decode(_received(_golden()))
    assert isinstance(task, env.ExecuteTask)
    return task


def _events(publishes: Any) -> list[env.AnyTaskEvent]:
    return [env.decode_task_event(p.message.data) for p in publishes]


def test_started_completed_failed_outcomes_are_task_events() -> None:
    dialect, task = InfiniticDialect("public", "infinitic"), _task()
    (started,) = dialect.started(task)
    assert started.topic == f"{NS}/task-events:BenchService"
    assert isinstance(_events([started])[0], env.TaskStartedEvent)
    assert not dialect.completes_silently(task)
    (done,) = _events(dialect.completed(task, "m1", "py-worker"))
    assert isinstance(done, env.TaskCompletedEvent) and done.emitter_name == "py-worker"
    assert values.decode_value(done.return_value, str) == "m1"
    with pytest.raises(TypeError):
        dialect.completed(task, object(), "py-worker")
    (failed,) = _events(dialect.failed(task, KeyError("k"), "trace", "not_retryable", b"", "w"))
    assert isinstance(failed, env.TaskFailedEvent)
    assert failed.execution_error.exception is not None
    assert failed.execution_error.exception.name == "builtins.KeyError"
    assert failed.execution_error.stack_trace_to_string == "trace"


def test_retried_sends_the_next_attempt_then_the_retried_event() -> None:
    dialect, task = InfiniticDialect("public", "infinitic"), _task()
    retry, event = dialect.retried(task, ValueError("v"), None, 2.0, "w")
    assert retry.topic == f"{NS}/task-retry:BenchService" and retry.message.deliver_after == 2.0
    next_attempt = env.decode_execute_task(retry.message.data)
    assert next_attempt.task_retry_index == 1 and next_attempt.task_id == task.task_id
    assert next_attempt.last_error is not None and next_attempt.last_error.seconds_before_retry == 2.0
    (retried,) = _events([event])
    assert isinstance(retried, env.TaskRetriedEvent) and retried.task_retry_delay == 2000
    now, _ = dialect.retried(task, ValueError("v"), None, 0.0, "w")
    assert now.topic == f"{NS}/task-executor:BenchService" and not now.message.deliver_after


def test_a_retried_attempt_is_a_new_attempt_for_the_ledger() -> None:
    """Infinitic keeps the task id over retries: the attempt key must still differ, or the
    worker's ledger takes the retry for a copy of the settled attempt (and drops it)."""
    dialect, task = InfiniticDialect("public", "infinitic"), _task()
    retry, _ = dialect.retried(task, ValueError("v"), None, 1.0, "w")
    again = dialect.decode(_received(retry.message.data))
    assert isinstance(again, env.ExecuteTask) and again.task_id == task.task_id
    assert attempt_key(again) != attempt_key(task)
    manual = msgspec.structs.replace(task, task_retry_sequence=1, task_retry_index=0)
    assert len({attempt_key(t) for t in (task, again, manual)}) == 3


def test_relays_forward_retries_and_turn_events_into_workflow_engine_messages() -> None:
    dialect, task = InfiniticDialect("public", "infinitic", handlers=True), _task()
    retry, _ = dialect.retried(task, ValueError("v"), None, 1.0, "w")
    (forward,) = dialect.relay("retry", _received(retry.message.data,
                                                  topic=f"{NS}/task-retry:BenchService-partition-2"), "w")
    assert forward.topic == f"{NS}/task-executor:BenchService"
    assert forward.message.data == retry.message.data and not forward.message.deliver_after
    (completed,) = dialect.completed(task, "m1", "w")
    relayed = dialect.relay("events", _received(completed.message.data), "w")
    requester = task.requester
    if isinstance(requester, env.WorkflowRequester):
        (out,) = relayed
        assert out.topic == f"{NS}/workflow-engine:{requester.workflow_name}"
        assert out.message.partition_key == requester.workflow_id
        assert dialect.partitioner(out.topic) is not None
    assert dialect.partitioner(f"{NS}/task-events:BenchService") is None
    assert dialect.topics("S") == {f"{NS}/task-executor:S": 3, f"{NS}/task-retry:S": 3,
                                   f"{NS}/task-events:S": 3, f"{NS}/task-executor-dlq:S": 0,
                                   f"{NS}/task-retry-dlq:S": 0, f"{NS}/task-events-dlq:S": 0}
    assert InfiniticDialect("public", "infinitic").topics("S") == {
        f"{NS}/task-executor:S": 3, f"{NS}/task-retry:S": 3, f"{NS}/task-events:S": 3,
        f"{NS}/task-executor-dlq:S": 0}


def test_unreadable_relay_messages_are_dead_lettered_once_with_their_reason() -> None:
    """Garbage on task-events / task-retry: a letter on the role's own dead-letter topic (which
    the worker creates: Infinitic namespaces cannot auto-create it), never an exception (the
    relay would nack it forever: the broker cannot move it to a topic that does not exist)."""
    dialect = InfiniticDialect("public", "infinitic", handlers=True)
    for role, prefix in (("events", "task-events"), ("retry", "task-retry")):
        topic = f"{NS}/{prefix}:BenchService-partition-0"
        (letter,) = dialect.relay(role, _received(b"\x02garbage", topic=topic), "py-w")
        assert letter.topic == f"{NS}/{prefix}-dlq:BenchService"
        assert letter.message.data == b"\x02garbage"
        props = letter.message.properties
        assert props["reason"] == "undecodable" and props["errorType"] == "WireDecodeError"
        assert "payload" in props["errorMessage"] and props["worker"] == "py-w"
        assert letter.topic in dialect.topics("BenchService")
        assert dialect.producer_schema(letter.topic) is not None  # the namespace enforces schemas
    (letter,) = dialect.undecodable(_received(b"garbage"), ValueError("bad"), "BenchService", "w")
    assert letter.message.properties["errorMessage"] == "bad"


def test_every_subscription_carries_its_avro_schema_and_its_dead_letter_topic() -> None:
    """Pulsar moves a message nacked too often with the consumer's schema: a schemaless consumer
    could not write to Infinitic's schema-enforced dead-letter topics."""
    subs = InfiniticDialect("public", "infinitic", handlers=True).subscriptions("S")
    assert [(s.role, s.schema, s.dead_letter_topic) for s in subs] == [
        ("execute", definition(Envelope.TASK_EXECUTOR), f"{NS}/task-executor-dlq:S"),
        ("retry", definition(Envelope.TASK_EXECUTOR), f"{NS}/task-retry-dlq:S"),
        ("events", definition(Envelope.TASK_EVENTS), f"{NS}/task-events-dlq:S"),
    ]


def test_a_retry_written_with_another_schema_version_is_re_encoded_for_0_18_4() -> None:
    """The retry relay's producer registers the 0.18.4 schema: bytes a JVM wrote with another
    version (here one with an added field) must be re-encoded, or the executor reading them as
    0.18.4 gets garbage."""
    import io
    import json

    import fastavro

    from infinitic_py.wire.infinitic.schemas import normalize

    dialect, task = InfiniticDialect("public", "infinitic", handlers=True), _task()
    retry, _ = dialect.retried(task, ValueError("v"), None, 1.0, "w")
    schema = json.loads(definition(Envelope.TASK_EXECUTOR))
    schema["fields"].insert(0, {"name": "futureField", "type": "string", "default": ""})
    newer = json.dumps(schema)
    record = env._read(Envelope.TASK_EXECUTOR, retry.message.data, None)
    record["futureField"] = "from a newer JVM"
    record["executeTask"] = env.to_record(record["executeTask"])
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(normalize(json.loads(newer))), record)
    topic = f"{NS}/task-retry:BenchService-partition-1"
    (forward,) = dialect.relay("retry", _received(out.getvalue(), newer, topic), "w")
    assert forward.topic == f"{NS}/task-executor:BenchService"
    assert env.decode_execute_task(forward.message.data) == env.decode_execute_task(retry.message.data)
    (same,) = dialect.relay("retry", _received(retry.message.data, definition(Envelope.TASK_EXECUTOR),
                                               topic), "w")
    assert same.message.data == retry.message.data  # our own schema: forwarded unchanged


def test_a_failure_whose_text_avro_cannot_write_is_still_an_event() -> None:
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("broken __str__")

    dialect, task = InfiniticDialect("public", "infinitic"), _task()
    names = []
    for error in (OSError("cannot open /data/\udcff.csv"), Unprintable()):
        (failed,) = _events(dialect.failed(task, error, "trace \udcff", "not_retryable", b"", "w"))
        assert isinstance(failed, env.TaskFailedEvent)
        exception = failed.execution_error.exception
        assert exception is not None and exception.message
        names.append(exception.name)
        assert failed.execution_error.stack_trace_to_string == "trace \\udcff"
    assert names[0] == "builtins.OSError" and names[1].endswith("Unprintable")


def test_python_events_for_the_golden_tasks_equal_the_jvm_events_byte_for_byte() -> None:
    """The JVM's recorded TaskStarted/TaskCompleted events of the golden tasks, and the ones this
    dialect writes for the same tasks (same emitter, result): equal bytes but the message id."""
    samples = SAMPLE.parent
    if not samples.is_dir():
        pytest.skip(f"no Infinitic golden samples at {samples}")
    dialect = InfiniticDialect("public", "infinitic")
    tasks: dict[str, env.ExecuteTask] = {}
    for path in sorted(samples.glob("task-executor-BenchService-EXECUTE_TASK-*.bin")):
        decoded = dialect.decode(_received(path.read_bytes()))
        assert isinstance(decoded, env.ExecuteTask)
        tasks[decoded.task_id] = decoded
    compared = 0
    for path in sorted(samples.glob("task-events-BenchService-TASK_*.bin")):
        jvm = env.decode_task_event(path.read_bytes())
        task = tasks.get(jvm.task_id)
        if task is None:  # the samples are the first 3 of each topic: not all of one task
            continue
        if isinstance(jvm, env.TaskCompletedEvent):
            (ours,) = dialect.completed(task, values.decode_value(jvm.return_value, str), jvm.emitter_name)
        else:
            (ours,) = dialect.started(task)
        mine = msgspec.structs.replace(env.decode_task_event(ours.message.data), message_id=jvm.message_id)
        assert env.encode_task_event(mine) == path.read_bytes(), path.name
        compared += 1
    assert compared >= 4


def test_a_result_too_large_for_a_pulsar_message_is_a_per_task_error() -> None:
    """Raised by ``completed`` (the executor then fails or retries that task alone), never
    handed to the broker, which would refuse it and get the unit re-run until dead-lettered."""
    dialect, task = InfiniticDialect("public", "infinitic"), _task()
    with pytest.raises(values.ValueMappingError, match="exceeds a Pulsar message"):
        dialect.completed(task, "x" * (6 * 1024 * 1024), "w")
    assert dialect.completed(task, "x" * (4 * 1024 * 1024), "w")  # below the bound: sent


def test_an_answer_to_a_waiting_client_is_a_reply_the_relay_may_drop() -> None:
    """Infinitic's handler drops sends to a missing ``response:`` topic: the relay may drop a
    refused reply, never a workflow-engine message."""
    dialect, task = InfiniticDialect("public", "infinitic", handlers=True), _task()
    asked = msgspec.structs.replace(task, requester=env.ClientRequester("c1"), client_waiting=True)
    (completed,) = dialect.completed(asked, "m1", "w")
    (answer,) = dialect.relay("events", _received(completed.message.data), "w")
    assert answer.topic == f"{NS}/response:c1" and answer.reply
    (completed,) = dialect.completed(task, "m1", "w")
    assert not any(p.reply for p in dialect.relay("events", _received(completed.message.data), "w"))


class _Published(ReceivedMessage):
    def _read_publish_time_ms(self) -> int | None:
        return 1_700_000_000_123


def test_emitted_at_is_the_publish_time_of_the_event_message() -> None:
    """WIRE.md §4.4: the JVM's handler stamps RemoteTaskCompleted.emittedAt with the publish time
    of the task-events message (the engine orders it against timeouts), not its own clock."""
    dialect, task = InfiniticDialect("public", "infinitic", handlers=True), _task()
    if not isinstance(task.requester, env.WorkflowRequester):
        pytest.skip("the golden task has no workflow requester")
    (completed,) = dialect.completed(task, "m1", "w")
    event = _Published(completed.message.data, {}, 0, f"{NS}/task-events:BenchService", None)
    (out,) = dialect.relay("events", event, "w")
    record = env._read(Envelope.WORKFLOW_ENGINE, out.message.data, None)
    assert record["taskCompleted"]["emittedAt"] == 1_700_000_000_123


def test_a_task_without_requester_is_undecodable_not_a_crashing_unit() -> None:
    """Valid Avro (the union allows null; Infinitic < 0.13 wrote it) but no event can be written
    for it: before, every unit holding it crashed ('has no requester') at each delivery."""
    dialect = InfiniticDialect("public", "infinitic")
    orphan = msgspec.structs.replace(_task(), requester=None)
    decoded = dialect.decode(_received(env.encode_execute_task(orphan)))
    assert isinstance(decoded, Undecodable) and "no requester" in str(decoded.error)


def test_a_task_naming_another_service_is_undecodable() -> None:
    """Its events would go to task-events:<other> (refused where auto topic creation is off:
    the unit nacked and re-run until dead-lettered): dead-lettered once instead."""
    dialect = InfiniticDialect("public", "infinitic")
    other = msgspec.structs.replace(_task(), task_name="OtherService")
    decoded = dialect.decode(_received(env.encode_execute_task(other)))
    assert isinstance(decoded, Undecodable) and "'OtherService'" in str(decoded.error)
    same = dialect.decode(_received(_golden(), topic=f"{NS}/task-executor:BenchService"))
    assert isinstance(same, env.ExecuteTask)  # a non-partitioned topic name too
