"""Infinitic 0.18 envelopes and values: golden JVM messages, round trips, properties."""

from __future__ import annotations

import base64
import datetime as dt
import enum
import json
import uuid
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from infinitic_py.wire.infinitic import envelopes as env
from infinitic_py.wire.infinitic import outcomes, values
from infinitic_py.wire.infinitic.schemas import Envelope, definition, reader_schema

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "infinitic"
SAMPLES = SHARED / "samples"
needs_samples = pytest.mark.skipif(
    not SAMPLES.is_dir(), reason=f"no Infinitic golden samples at {SAMPLES}"
)


def _samples(prefix: str) -> list[tuple[dict[str, Any], bytes, str]]:
    out = []
    for meta_path in sorted(SAMPLES.glob(f"{prefix}-*-[0-9].json")):
        meta = json.loads(meta_path.read_text())
        payload = meta_path.with_suffix(".bin").read_bytes()
        assert payload == base64.b64decode(meta["payloadBase64"])
        writer = json.loads((SAMPLES / meta["schemaFile"]).read_text())["schema"]
        out.append((meta, payload, json.dumps(writer, separators=(",", ":"))))
    assert out, f"no {prefix} samples in {SAMPLES}"
    return out


def _task(**changes: Any) -> env.ExecuteTask:
    base = env.ExecuteTask(
        version="0.18.4",
        message_id="m-1",
        task_name="BenchService",
        task_id="t-1",
        emitter_name="w-1",
        task_retry_sequence=0,
        task_retry_index=0,
        requester=env.WorkflowRequester(
            workflow_name="BenchWorkflow",
            workflow_version=0,
            workflow_id="wf-1",
            workflow_method_name="run",
            workflow_method_id="wf-1",
        ),
        task_tags=["a"],
        task_meta={"batchKey": b"k1"},
        client_waiting=False,
        method_name="echo",
        method_parameter_types=["java.lang.String"],
        method_parameters=[values.encode_value("m1")],
    )
    return msgspec.structs.replace(base, **changes)


@needs_samples
def test_definitions_are_the_shared_avsc_and_the_jvm_registered_ones() -> None:
    for envelope in Envelope:
        avsc = SHARED / "avsc" / f"{envelope.value}-0.18.4.avsc"
        shipped = SHARED / "avsc" / f"{envelope.value}-0.18.4.pulsar-def.json"
        assert json.loads(definition(envelope)) == json.loads(avsc.read_text())
        assert definition(envelope) == shipped.read_text()
    for prefix, envelope in (("task-executor", Envelope.TASK_EXECUTOR), ("task-events", Envelope.TASK_EVENTS)):
        for _meta, _payload, writer in _samples(prefix):
            assert writer == definition(envelope)  # what the real JVM registered, byte for byte


@needs_samples
def test_golden_execute_tasks_decode_and_reencode_byte_for_byte() -> None:
    for meta, payload, writer in _samples("task-executor"):
        task = env.decode_execute_task(payload, writer)
        assert task.task_name == "BenchService" and task.method_name == "echo"
        assert isinstance(task.requester, env.WorkflowRequester)
        assert task.requester.workflow_name == "BenchWorkflow"
        assert task.client_waiting is False and task.last_error is None
        assert task.method_parameter_types == ["java.lang.String"]
        assert values.decode_args(task.method_parameters, [str])[0].startswith("m")
        assert meta["key"] is None and meta["properties"] == {}
        assert env.encode_execute_task(task) == payload


@needs_samples
def test_golden_task_events_decode_and_reencode_byte_for_byte() -> None:
    kinds = set()
    for meta, payload, writer in _samples("task-events"):
        event = env.decode_task_event(payload, writer)
        kinds.add(type(event).__name__)
        assert meta["type"] == {"TaskStartedEvent": "TASK_STARTED", "TaskCompletedEvent": "TASK_COMPLETED"}[type(event).__name__]
        if isinstance(event, env.TaskCompletedEvent):
            assert values.decode_value(event.return_value, str).startswith("m")
        assert env.encode_task_event(event) == payload
    assert kinds == {"TaskStartedEvent", "TaskCompletedEvent"}


def test_every_event_kind_round_trips() -> None:
    task = _task(last_error=env.WorkerError(worker_name="w0"))
    try:
        try:
            raise KeyError("inner")
        except KeyError as inner:
            raise ValueError("bad input") from inner
    except ValueError as exc:
        error = outcomes.worker_error(task, exc, "py-worker", seconds_before_retry=2.5)
    assert error.exception is not None
    assert error.exception.name == "builtins.ValueError" and error.exception.message == "bad input"
    assert error.exception.cause is not None and error.exception.cause.name == "builtins.KeyError"
    assert error.stack_trace_to_string and "ValueError: bad input" in error.stack_trace_to_string
    assert error.cause == task.last_error and error.name is None and error.message is None
    next_attempt, retried = outcomes.retry(task, error, 2.5, "py-worker")
    assert next_attempt.task_retry_index == 1 and next_attempt.last_error == error
    assert retried.task_retry_delay == 2500 and retried.task_retry_index == 0
    events: list[env.AnyTaskEvent] = [
        outcomes.started(task, "py-worker"),
        outcomes.completed(task, values.encode_value({"a": [1, 2]}), "py-worker"),
        outcomes.failed(task, error, "py-worker"),
        retried,
    ]
    for event in events:
        assert env.decode_task_event(env.encode_task_event(event)) == event
    assert env.decode_execute_task(env.encode_execute_task(next_attempt)) == next_attempt


def test_client_task_and_client_responses_round_trip() -> None:
    task = outcomes.client_task("BenchService", "echo", [values.encode_value("x")], "py-client")
    back = env.decode_execute_task(env.encode_execute_task(task))
    assert back == task and back.client_waiting is True
    assert back.requester == env.ClientRequester(client_name="py-client")
    done = env.ClientTaskCompleted("m", "jvm", "py-client", task.task_id, values.encode_value("x"), {})
    assert env.decode_client_message(env.encode_client_message("py-client", done)) == ("TASK_COMPLETED", done)
    fail = env.ClientTaskFailed("m", "py-client", task.task_id, env.WorkerError(worker_name="w"), "jvm")
    assert env.decode_client_message(env.encode_client_message("py-client", fail)) == ("TASK_FAILED", fail)


def test_older_writer_schema_is_resolved_to_ours() -> None:
    # a writer without the trailing optional field (as an older JVM would have): Avro resolution
    writer = json.loads(definition(Envelope.TASK_EXECUTOR))
    execute = writer["fields"][2]["type"][1]
    execute["fields"] = [f for f in execute["fields"] if f["name"] != "workflowVersion"]
    writer_text = json.dumps(writer, separators=(",", ":"))
    import io

    import fastavro

    from infinitic_py.wire.infinitic.schemas import parsed

    record = msgspec.to_builtins(_task(), builtin_types=(bytes,))
    del record["workflowVersion"]
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, parsed(writer_text), {"taskName": "BenchService", "type": "EXECUTE_TASK", "executeTask": record})
    assert env.decode_execute_task(buf.getvalue(), writer_text) == _task()
    assert reader_schema(Envelope.TASK_EXECUTOR) is not parsed(writer_text)


@pytest.mark.parametrize("payload", [b"", b"\x00", b"garbage-garbage", env.encode_execute_task(_task()) + b"x"])
def test_garbage_is_a_decode_error(payload: bytes) -> None:
    with pytest.raises(env.WireDecodeError):
        env.decode_execute_task(payload)


def test_batch_key_is_read_from_the_meta() -> None:
    assert _task().batch_key() == b"k1"
    assert _task(task_meta={}).batch_key() is None


# --- values ---------------------------------------------------------------------------------


class Color(enum.Enum):
    RED = "RED"


class Point(msgspec.Struct, rename="camel"):
    x_value: int
    label: str | None
    tags: list[str] = []


class Shape(msgspec.Struct, tag_field="#klass", tag="com.acme.Circle"):
    radius: float


def test_value_mapping_table_examples() -> None:
    cases: list[tuple[Any, bytes]] = [
        ("s", b'"s"'),
        (3, b"3"),
        (True, b"true"),
        ([1, 2], b"[1,2]"),
        ({"k": 1}, b'{"k":1}'),
        (Point(1, None), b'{"xValue":1,"label":null,"tags":[]}'),
        (Color.RED, b'"RED"'),
        (b"\x00\x01", b'"AAE="'),
        (dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC), b'"2024-01-02T03:04:05Z"'),
        (dt.date(2024, 1, 2), b'"2024-01-02"'),
        (dt.timedelta(seconds=90), b'"PT90S"'),
        (uuid.UUID(int=1), b'"00000000-0000-0000-0000-000000000001"'),
        (Shape(1.5), b'{"#klass":"com.acme.Circle","radius":1.5}'),
    ]
    for value, expected in cases:
        data = values.encode_value(value)
        assert (data.kind, data.data, data.meta) == ("JSON", expected, {})
        assert values.decode_value(data, type(value)) == value
    assert values.encode_value(None) == values.NULL == env.SerializedData(b"", "NULL", {})


def test_jvm_json_reads_with_defaults_unknown_fields_and_nanoseconds() -> None:
    jvm = env.SerializedData(b'{"xValue":1,"label":"a","extra":true}', "JSON", {})
    assert values.decode_value(jvm, Point) == Point(1, "a", [])
    instant = env.SerializedData(b'"2024-01-02T03:04:05.123456789Z"', "JSON", {})
    assert values.decode_value(instant, dt.datetime).microsecond == 123457
    assert values.decode_value(values.NULL, str | None) is None


@pytest.mark.parametrize(
    ("data", "hint", "message"),
    [
        (env.SerializedData(b'"x"', "JSON", {}), int, "cannot read"),
        (values.NULL, int, "got null"),
        (env.SerializedData(b"\x01", "AVRO_WITH_SCHEMA", {}), str, "AVRO_WITH_SCHEMA"),
        (env.SerializedData(b"{", "JSON", {}), str, "cannot read"),
    ],
)
def test_unmappable_values_raise_the_per_task_error(data: env.SerializedData, hint: Any, message: str) -> None:
    with pytest.raises(values.ValueMappingError, match=message):
        values.decode_value(data, hint)


def test_unencodable_results_and_arity_raise_the_per_task_error() -> None:
    with pytest.raises(values.ValueMappingError, match="cannot send"):
        values.encode_value(object())
    with pytest.raises(values.ValueMappingError, match="2 argument"):
        values.decode_args([values.NULL, values.NULL], [str])


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text()
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(_json_values)
def test_values_round_trip(value: Any) -> None:
    assert values.decode_value(values.encode_value(value)) == value


_bytes_maps = st.dictionaries(st.text(max_size=8), st.binary(max_size=8), max_size=3)


@given(
    task_id=st.text(min_size=1, max_size=20),
    meta=_bytes_maps,
    tags=st.lists(st.text(max_size=8), max_size=3),
    retry=st.integers(0, 2**31 - 1),
    args=st.lists(_json_values, max_size=3),
    client=st.booleans(),
)
def test_execute_task_round_trips(
    task_id: str, meta: dict[str, bytes], tags: list[str], retry: int, args: list[Any], client: bool
) -> None:
    requester: env.Requester = (
        env.ClientRequester(client_name="c") if client else _task().requester  # type: ignore[assignment]
    )
    task = _task(
        task_id=task_id,
        task_meta=meta,
        task_tags=tags,
        task_retry_index=retry,
        requester=requester,
        client_waiting=client,
        method_parameters=[values.encode_value(a) for a in args],
    )
    assert env.decode_execute_task(env.encode_execute_task(task)) == task


def test_uuid7_is_a_time_ordered_version_7_uuid() -> None:
    first, second = outcomes.uuid7(), outcomes.uuid7()
    assert uuid.UUID(first).version == 7 and uuid.UUID(first).variant == uuid.RFC_4122
    assert first[:13] <= second[:13]
