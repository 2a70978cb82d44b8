"""The compiled Avro writer writes fastavro's bytes and the compiled reader reads what fastavro reads: every outcome kind, client and workflow
engine envelopes, and random ExecuteTasks (hypothesis)."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("fastavro", reason="the `infinitic` extra (fastavro) is not installed")

from hypothesis import given
from hypothesis import strategies as st

from infinitic_py.wire.infinitic import envelopes as env
from infinitic_py.wire.infinitic import handler, outcomes, values
from infinitic_py.wire.infinitic.schemas import Envelope


def _same(envelope: Envelope, payload: bytes) -> None:
    record = env._read_fastavro(envelope, payload, None)
    assert env.write_envelope(envelope, record) == env.write_envelope_fastavro(envelope, record)
    assert env._read(envelope, payload, None) == record  # the compiled reader reads the same


def _workflow_task(**changes: Any) -> env.ExecuteTask:
    task = outcomes.client_task("S", "m", [values.encode_value("x")], "c",
                                parameter_types=["java.lang.String"], meta={"batchKey": b"k"})
    requester = env.WorkflowRequester(workflow_name="W", workflow_id="wid", workflow_version=0,
                                      workflow_method_name="run", workflow_method_id="mid")
    import msgspec

    return msgspec.structs.replace(task, requester=requester, client_waiting=False, **changes)


def test_every_outcome_and_relay_message_is_written_as_fastavro_writes_it() -> None:
    for task in (_workflow_task(),
                 outcomes.client_task("S", "m", [values.encode_value([1, "a"])], "c")):
        try:
            raise ValueError("bad")
        except ValueError as exc:
            error = outcomes.worker_error(task, exc, "py", seconds_before_retry=1.5)
        nxt, retried = outcomes.retry(task, error, 1.5, "py")
        _same(Envelope.TASK_EXECUTOR, env.encode_execute_task(task))
        _same(Envelope.TASK_EXECUTOR, env.encode_execute_task(nxt))
        events: list[env.AnyTaskEvent] = [
            outcomes.started(task, "py"), outcomes.completed(task, values.encode_value(3), "py"),
            outcomes.failed(task, error, "py"), retried]
        for event in events:
            _same(Envelope.TASK_EVENTS, env.encode_task_event(event))
            for out in handler.on_event(event, 123, "py"):
                kind = Envelope.WORKFLOW_ENGINE if out.prefix == "workflow-engine" \
                    else Envelope.CLIENT
                _same(kind, out.payload)


@given(meta=st.dictionaries(st.text(max_size=5), st.binary(max_size=5), max_size=3),
       tags=st.lists(st.text(max_size=5), max_size=3), retry=st.integers(0, 2**31 - 1),
       args=st.lists(st.one_of(st.none(), st.integers(), st.text(max_size=5)), max_size=3))
def test_random_execute_tasks(meta: dict[str, bytes], tags: list[str], retry: int,
                              args: list[Any]) -> None:
    task = _workflow_task(task_meta=meta, task_tags=tags, task_retry_index=retry,
                          method_parameters=[values.encode_value(a) for a in args])
    _same(Envelope.TASK_EXECUTOR, env.encode_execute_task(task))


def test_golden_messages_read_as_fastavro_reads_them() -> None:
    from pathlib import Path

    samples = Path(__file__).resolve().parents[2].parent / "shared" / "infinitic" / "samples"
    paths = sorted(samples.glob("task-*.bin"))
    if not paths:
        pytest.skip(f"no golden samples at {samples}")
    for path in paths:
        kind = Envelope.TASK_EXECUTOR if path.name.startswith("task-executor") \
            else Envelope.TASK_EVENTS
        _same(kind, path.read_bytes())
