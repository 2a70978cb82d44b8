"""The hot path of the Infinitic wire writes and reads the bytes the generic codec does: the
started / completed events written straight from the task (``events``) are
``encode_task_event`` of ``outcomes.started`` / ``completed``, and an ExecuteTask read straight
into its Struct is what fastavro's dict converts to (random tasks, golden JVM messages)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastavro", reason="the `infinitic` extra (fastavro) is not installed")

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from infinitic_py.wire.infinitic import envelopes as env
from infinitic_py.wire.infinitic import outcomes, values
from infinitic_py.wire.infinitic.events import EVENTS
from infinitic_py.wire.infinitic.schemas import Envelope

SAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "infinitic" / "samples"

_texts = st.text(max_size=80)  # past 63 bytes, a length takes two bytes
_requesters = st.one_of(
    st.builds(env.ClientRequester, client_name=_texts),
    st.builds(env.WorkflowRequester, workflow_name=_texts,
              workflow_version=st.one_of(st.none(), st.integers(-(2**31), 2**31 - 1)),
              workflow_id=_texts, workflow_method_name=_texts, workflow_method_id=_texts),
)
_errors = st.builds(
    env.WorkerError, worker_name=_texts, retry_sequence=st.integers(0, 5),
    retry_index=st.integers(0, 5), stack_trace_to_string=st.one_of(st.none(), _texts),
    exception=st.one_of(st.none(), st.builds(env.GenericException, name=_texts,
                                             message=st.one_of(st.none(), _texts))),
    cause=st.one_of(st.none(), st.builds(env.WorkerError, worker_name=_texts)),  # recursive
)
_tasks = st.builds(
    env.ExecuteTask,
    version=st.one_of(st.none(), st.just("0.18.4")),
    message_id=st.one_of(st.none(), _texts),
    task_name=st.text(min_size=1, max_size=80),
    task_id=_texts,
    emitter_name=_texts,
    task_retry_sequence=st.integers(0, 2**31 - 1),
    task_retry_index=st.integers(0, 2**31 - 1),
    requester=_requesters,
    task_tags=st.lists(_texts, max_size=3),
    task_meta=st.dictionaries(_texts, st.binary(max_size=80), max_size=3),
    client_waiting=st.booleans(),
    method_name=_texts,
    method_parameter_types=st.one_of(st.none(), st.lists(_texts, max_size=2)),
    method_parameters=st.lists(st.builds(values.encode_value, st.one_of(
        st.none(), st.integers(), _texts)), max_size=3),
    last_error=st.one_of(st.none(), _errors),
)


@given(task=_tasks, emitter=_texts, output=st.one_of(st.none(), st.integers(), _texts))
def test_started_and_completed_events_are_the_generic_codecs_bytes(
    task: env.ExecuteTask, emitter: str, output: Any
) -> None:
    started = outcomes.started(task, emitter)
    assert EVENTS.started(task, started.message_id, emitter) == env.encode_task_event(started)
    value = values.encode_value(output)
    completed = outcomes.completed(task, value, emitter)
    assert EVENTS.completed(task, completed.message_id, emitter, value) == \
        env.encode_task_event(completed)  # with the parts its started event kept
    assert EVENTS.completed(task, completed.message_id, emitter, value) == \
        env.encode_task_event(completed)  # without them
    other = msgspec.structs.replace(task, task_id=task.task_id + "x", task_retry_index=0)
    EVENTS.started(task, started.message_id, emitter)
    other_completed = outcomes.completed(other, value, emitter)  # another task: not task's parts
    assert EVENTS.completed(other, other_completed.message_id, emitter, value) == \
        env.encode_task_event(other_completed)
    EVENTS.forget(task)
    assert env.decode_task_event(env.encode_task_event(completed)) == completed


def test_a_task_without_requester_has_no_events() -> None:
    task = outcomes.client_task("S", "m", [], "c")
    task = msgspec.structs.replace(task, requester=None)
    with pytest.raises(ValueError, match="no requester"):
        EVENTS.started(task, outcomes.uuid7(), "py")


def _as_fastavro_reads(payload: bytes) -> env.ExecuteTask:
    inner = env._read_fastavro(Envelope.TASK_EXECUTOR, payload, None)["executeTask"]
    inner["requester"] = env._untag(inner["requester"])
    task: env.ExecuteTask = msgspec.convert(inner, env.ExecuteTask)
    return task


@given(task=_tasks)
def test_execute_task_read_as_its_struct_is_what_fastavro_reads(task: env.ExecuteTask) -> None:
    payload = env.encode_execute_task(task)
    decoded = env.decode_execute_task(payload)
    assert type(decoded) is env.ExecuteTask
    assert decoded == _as_fastavro_reads(payload) == task


def test_golden_execute_tasks_read_as_their_struct() -> None:
    paths = sorted(SAMPLES.glob("task-executor-*.bin"))
    if not paths:
        pytest.skip(f"no golden samples at {SAMPLES}")
    for path in paths:
        payload = path.read_bytes()
        decoded = env.decode_execute_task(payload)
        assert decoded == _as_fastavro_reads(payload)
        assert env.encode_execute_task(decoded) == payload
