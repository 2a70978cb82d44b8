"""Infinitic's event-handler role in Python: events -> workflow-engine / response messages."""

from __future__ import annotations

import io

import fastavro
import msgspec
from hypothesis import given
from hypothesis import strategies as st

from infinitic_py.wire.infinitic import envelopes as env
from infinitic_py.wire.infinitic import handler, outcomes, values
from infinitic_py.wire.infinitic.schemas import Envelope, reader_schema

WF = env.WorkflowRequester(
    workflow_name="W", workflow_version=0, workflow_id="wf-1", workflow_method_name="run",
    workflow_method_id="run-1",
)  # fmt: skip


def _task(requester: env.Requester, waiting: bool = False) -> env.ExecuteTask:
    task = outcomes.client_task("S", "echo", [values.encode_value("x")], "c1", meta={"batchKey": b"k"})
    return msgspec.structs.replace(task, requester=requester, client_waiting=waiting)


def _engine_record(payload: bytes) -> dict[str, object]:
    record = fastavro.schemaless_reader(
        io.BytesIO(payload), reader_schema(Envelope.WORKFLOW_ENGINE), return_record_name=True,
        return_record_name_override=True,
    )  # fmt: skip
    assert isinstance(record, dict)
    return record


def test_java_string_hash_matches_java() -> None:
    # values printed by java.lang.String.hashCode on this machine's JDK 17
    assert handler.java_string_hash("") == 0
    assert handler.java_string_hash("hello") == 99162322
    assert handler.java_string_hash("01a22baf-9f6a-7f96-8f39-37420e615367") == -1414528424
    assert handler.java_string_hash("é😀") == 1996812  # a surrogate pair counts as two units
    assert handler.java_partition("01a22baf-9f6a-7f96-8f39-37420e615367", 3) == (-1414528424 & 0x7FFFFFFF) % 3


@given(st.text(), st.integers(1, 64))
def test_java_partition_is_in_range(key: str, partitions: int) -> None:
    assert 0 <= handler.java_partition(key, partitions) < partitions
    assert -(2**31) <= handler.java_string_hash(key) < 2**31


def test_completed_for_a_workflow_goes_to_its_engine_keyed_by_workflow_id() -> None:
    task = _task(WF)
    event = outcomes.completed(task, values.encode_value("x"), "py")
    (out,) = handler.on_event(event, 1234, "py-handler")
    assert (out.prefix, out.entity, out.key) == ("workflow-engine", "W", "wf-1")
    record = _engine_record(out.payload)
    assert record["workflowId"] == "wf-1" and record["type"] == "TASK_COMPLETED"
    done = record["taskCompleted"]
    assert isinstance(done, dict)
    assert done["methodRunId"] == "run-1" and done["emittedAt"] == 1234 and done["emitterName"] == "py-handler"
    assert done["taskReturnValue"]["returnValue"] == {"bytes": b'"x"', "type": "JSON", "meta": {}}
    assert done["taskReturnValue"]["taskMeta"] == {"batchKey": b"k"}


def test_failed_for_a_workflow_carries_the_worker_error() -> None:
    task = _task(WF)
    error = outcomes.worker_error(task, ValueError("bad"), "py")
    (out,) = handler.on_event(outcomes.failed(task, error, "py"), None, "py-handler")
    record = _engine_record(out.payload)
    assert record["type"] == "TASK_FAILED"
    failed = record["taskFailed"]
    assert isinstance(failed, dict)
    cause = failed["failedTaskError"]["cause"]
    assert cause["exception"]["name"] == "builtins.ValueError" and cause["exception"]["message"] == "bad"


def test_waiting_clients_get_a_response_and_others_nothing() -> None:
    waiting = _task(env.ClientRequester(client_name="c1"), waiting=True)
    (out,) = handler.on_event(outcomes.completed(waiting, values.encode_value(1), "py"), 1, "h")
    assert (out.prefix, out.entity, out.key) == ("response", "c1", None)
    kind, reply = env.decode_client_message(out.payload)
    assert kind == "TASK_COMPLETED" and isinstance(reply, env.ClientTaskCompleted)
    error = outcomes.worker_error(waiting, KeyError("k"), "py")
    (out,) = handler.on_event(outcomes.failed(waiting, error, "py"), 1, "h")
    assert env.decode_client_message(out.payload)[0] == "TASK_FAILED"
    not_waiting = _task(env.ClientRequester(client_name="c1"), waiting=False)
    assert handler.on_event(outcomes.completed(not_waiting, values.NULL, "py"), 1, "h") == []
    assert handler.on_event(outcomes.started(waiting, "py"), 1, "h") == []
    _, retried = outcomes.retry(waiting, error, 1.0, "py")
    assert handler.on_event(retried, 1, "h") == []
