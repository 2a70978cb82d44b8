"""Infinitic 0.18 envelopes as typed records, and their Avro binary encoding (pure, no I/O).

The payload of every Infinitic message on Pulsar is the plain Avro binary of its envelope record
(no header, no fingerprint); the writer schema is named by the message's Pulsar schema version.
``decode_*`` take the writer schema's definition string when it is not the 0.18.4 one (an older
JVM), and resolve it to 0.18.4 the way Avro does; ``encode_*`` always write 0.18.4.

Records mirror the Avro records field for field (snake_case here, the Avro camelCase on the wire).
The ``requester`` union travels as a tagged record: ``ClientRequester`` or ``WorkflowRequester``.
"""

from __future__ import annotations

import functools
import io
import json
import struct
from collections.abc import Callable
from typing import Any, Literal

import fastavro
import msgspec

from infinitic_py.wire.infinitic.avro_reader import compile_reader
from infinitic_py.wire.infinitic.avro_writer import compile_writer
from infinitic_py.wire.infinitic.schemas import (
    Envelope,
    definition,
    normalize,
    parsed,
    reader_schema,
)

INFINITIC_VERSION = "0.18.4"  # what Python writes in the envelopes' `version` fields

SerializedDataType = Literal["NULL", "AVRO_WITH_SCHEMA", "JSON", "JSON_JACKSON", "JSON_KOTLIN"]


class WireDecodeError(ValueError):
    """A payload that is not a valid Infinitic envelope (the message cannot be served)."""


class SerializedData(msgspec.Struct, frozen=True):
    """An argument or a return value: JSON bytes the JVM decodes with the method's declared type."""

    data: bytes = msgspec.field(name="bytes")
    kind: SerializedDataType = msgspec.field(name="type")
    meta: dict[str, bytes] = msgspec.field(default_factory=dict)


class ClientRequester(
    msgspec.Struct, rename="camel", tag_field="-type", tag="io.infinitic.data.ClientRequester"
):
    client_name: str


class WorkflowRequester(
    msgspec.Struct, rename="camel", tag_field="-type", tag="io.infinitic.data.WorkflowRequester"
):
    workflow_name: str
    workflow_version: int | None
    workflow_id: str
    workflow_method_name: str
    workflow_method_id: str


Requester = ClientRequester | WorkflowRequester


class GenericException(msgspec.Struct, rename="camel"):
    """An exception as the JVM sees it: ``name`` is a class name (Python: ``module.QualName``)."""

    name: str
    message: str | None
    serialized_custom_properties: dict[str, SerializedData] = msgspec.field(default_factory=dict)
    cause: GenericException | None = None


class WorkerError(msgspec.Struct, rename="camel"):
    """Kotlin ``TaskFailure``: one failed attempt (``cause`` = the previous attempt's failure)."""

    worker_name: str
    retry_sequence: int | None = 0
    retry_index: int | None = 0
    seconds_before_retry: float | None = None
    stack_trace_to_string: str | None = None
    exception: GenericException | None = None
    cause: WorkerError | None = None
    name: str | None = None  # deprecated since 0.17: write null
    message: str | None = None  # deprecated since 0.17: write null


class ExecuteTask(msgspec.Struct, rename="camel"):
    """The task itself (``task-executor:<S>``, ``task-retry:<S>``)."""

    version: str | None
    message_id: str | None
    task_name: str
    task_id: str
    emitter_name: str
    task_retry_sequence: int
    task_retry_index: int
    requester: Requester | None
    task_tags: list[str]
    task_meta: dict[str, bytes]
    client_waiting: bool
    method_name: str
    method_parameter_types: list[str] | None
    method_parameters: list[SerializedData]
    last_error: WorkerError | None = None
    workflow_name: str | None = None  # deprecated: write null
    workflow_id: str | None = None
    method_run_id: str | None = None
    workflow_version: int | None = None

    # --- the executor's view (``infinitic_py.wire.Task``): no second object per task ---------

    def batch_key(self) -> bytes | None:
        """The Infinitic batch key (``taskMeta["batchKey"]``, bytes), if the dispatcher set one."""
        return self.task_meta.get("batchKey")

    @property
    def method(self) -> str:
        return self.method_name

    @property
    def meta(self) -> dict[str, bytes]:
        return self.task_meta

    @property
    def tags(self) -> list[str]:
        return self.task_tags

    @property
    def retry_index(self) -> int:
        return self.task_retry_index

    @property
    def retry_sequence(self) -> int:
        """Unique per attempt, as the seam requires ((task id, retry sequence) names one attempt:
        the worker's ledger tells copies from new attempts by it). Infinitic keeps the task id
        and ``taskRetrySequence`` over automatic retries and bumps ``taskRetryIndex`` (reset by
        a manual retry, which bumps the sequence): both, packed."""
        return (self.task_retry_sequence << 20) | self.task_retry_index

    @property
    def reply_to(self) -> str | None:
        """Always None: in Infinitic the executor never answers a caller directly; the event
        handler turns its events into the caller's reply (``response:<client>``)."""
        return None


class TaskEvent(msgspec.Struct, rename="camel", kw_only=True):
    """Fields common to the four task events, copied from the ``ExecuteTask`` they report on."""

    version: str
    message_id: str
    service_name: str
    method_name: str
    task_id: str
    emitter_name: str
    task_retry_sequence: int
    task_retry_index: int
    requester: Requester
    client_waiting: bool | None
    task_tags: list[str]
    task_meta: dict[str, bytes]


class TaskStartedEvent(TaskEvent, kw_only=True):
    pass


class TaskCompletedEvent(TaskEvent, kw_only=True):
    is_delegated: bool
    return_value: SerializedData


class TaskFailedEvent(TaskEvent, kw_only=True):
    execution_error: WorkerError
    deferred_error: Any = None  # non-null only for Infinitic DeferredExceptions (never from Python)


class TaskRetriedEvent(TaskEvent, kw_only=True):
    task_retry_delay: int  # milliseconds
    last_error: WorkerError


AnyTaskEvent = TaskStartedEvent | TaskCompletedEvent | TaskFailedEvent | TaskRetriedEvent

# envelope `type` and field of each event
_EVENT_SLOTS: dict[type[TaskEvent], tuple[str, str]] = {
    TaskStartedEvent: ("TASK_STARTED", "taskStartedEvent"),
    TaskRetriedEvent: ("TASK_RETRIED", "taskRetried"),
    TaskFailedEvent: ("TASK_FAILED", "taskFailedEvent"),
    TaskCompletedEvent: ("TASK_COMPLETED", "taskCompletedEvent"),
}


class ClientTaskCompleted(msgspec.Struct, rename="camel"):
    message_id: str
    emitter_name: str
    recipient_name: str
    task_id: str
    task_return_value: SerializedData
    task_meta: dict[str, bytes]


class ClientTaskFailed(msgspec.Struct, rename="camel"):
    message_id: str
    recipient_name: str
    task_id: str
    cause: WorkerError
    emitter_name: str


_CLIENT_SLOTS: dict[type[Any], tuple[str, str]] = {
    ClientTaskCompleted: ("TASK_COMPLETED", "taskCompleted"),
    ClientTaskFailed: ("TASK_FAILED", "taskFailed"),
}


# --- Avro binary <-> plain dicts and Structs ---------------------------------------------------

# Records read and written as their Struct (``avro_schema``): the reader builds them positionally
# (``ExecuteTask`` straight from the payload), the writer reads their attributes (no dict).
READ_RECORDS: dict[str, type] = {
    "io.infinitic.tasks.executor.ExecuteTask": ExecuteTask,
    "io.infinitic.data.ClientRequester": ClientRequester,
    "io.infinitic.data.WorkflowRequester": WorkflowRequester,
    "io.infinitic.data.SerializedData": SerializedData,
    "io.infinitic.tasks.executor.WorkerError": WorkerError,
    "io.infinitic.tasks.executor.GenericException": GenericException,
}
WRITE_RECORDS: dict[str, type] = {  # kw_only Structs are written, not built by the reader
    **READ_RECORDS,
    "io.infinitic.tasks.events.TaskStartedEvent": TaskStartedEvent,
    "io.infinitic.tasks.events.TaskCompletedEvent": TaskCompletedEvent,
    "io.infinitic.tasks.events.TaskFailedEvent": TaskFailedEvent,
    "io.infinitic.tasks.events.TaskRetriedEvent": TaskRetriedEvent,
}


def schema_of(envelope: Envelope) -> Any:
    """The normalized schema (plain JSON) of ``envelope``, as the compiled codecs take it."""
    return normalize(json.loads(definition(envelope)))


@functools.cache
def _writer(envelope: Envelope) -> Callable[[Any], bytes]:
    return compile_writer(schema_of(envelope), WRITE_RECORDS)


def write_envelope(envelope: Envelope, record: dict[str, Any]) -> bytes:
    """Avro binary of an envelope record (plain dicts with the Avro field names, or the Structs
    of ``WRITE_RECORDS``), with the compiled writer (``avro_writer``: fastavro's bytes, without
    its per-union validation)."""
    try:
        return _writer(envelope)(record)
    except (ValueError, TypeError, KeyError, AttributeError, struct.error) as exc:  # a bug here
        raise ValueError(f"cannot encode {envelope.value}: {exc}") from exc


def write_envelope_fastavro(envelope: Envelope, record: dict[str, Any]) -> bytes:
    """The same with fastavro (the reference the compiled writer is checked against)."""
    out = io.BytesIO()
    fastavro.schemaless_writer(out, reader_schema(envelope), record)
    return out.getvalue()


@functools.cache
def _reader(envelope: Envelope, structs: bool = False) -> Callable[[bytes], Any]:
    return compile_reader(schema_of(envelope), READ_RECORDS if structs else None)


def _read(envelope: Envelope, payload: bytes, writer_definition: str | None,
          structs: bool = False) -> dict[str, Any]:
    """The envelope record of ``payload``: plain dicts, or the Structs of ``READ_RECORDS`` when
    ``structs`` and the payload is written with our own schema (else dicts from fastavro)."""
    if writer_definition is None or writer_definition == definition(envelope):
        try:  # the usual case: written with our own schema (compiled reader)
            record = _reader(envelope, structs)(payload)
        except Exception as exc:  # EOFError, IndexError, ValueError, UnicodeDecodeError ...
            raise WireDecodeError(f"not a {envelope.value} payload: {exc!r}") from exc
        if not isinstance(record, dict):
            raise WireDecodeError(f"not a {envelope.value} payload")
        return record
    return _read_fastavro(envelope, payload, writer_definition)


def _read_fastavro(envelope: Envelope, payload: bytes,
                   writer_definition: str | None) -> dict[str, Any]:
    """The same with fastavro (another writer schema: Avro schema resolution)."""
    reader = reader_schema(envelope)
    writer = reader
    if writer_definition is not None and writer_definition != definition(envelope):
        writer = parsed(writer_definition)
    buf = io.BytesIO(payload)
    try:
        record = fastavro.schemaless_reader(
            buf, writer, reader, return_record_name=True, return_record_name_override=True
        )
    except Exception as exc:  # fastavro raises EOFError, IndexError, SchemaResolutionError, ...
        raise WireDecodeError(f"not a {envelope.value} payload: {exc!r}") from exc
    if buf.tell() != len(payload):
        raise WireDecodeError(
            f"not a {envelope.value} payload: {len(payload) - buf.tell()} trailing bytes"
        )
    if not isinstance(record, dict):
        raise WireDecodeError(f"not a {envelope.value} payload")
    return record


def _untag(value: Any) -> Any:
    """fastavro's ``(record name, record)`` for multi-record unions -> a ``-type`` tagged dict."""
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], dict):
        return {**value[1], "-type": value[0]}
    return value


def to_record(record: msgspec.Struct) -> Any:
    """A Struct as the plain dict fastavro writes (Avro field names, bytes kept)."""
    return msgspec.to_builtins(record, builtin_types=(bytes,))


def _convert(value: Any, kind: type[Any]) -> Any:
    try:
        return msgspec.convert(value, kind)
    except msgspec.ValidationError as exc:
        raise WireDecodeError(f"invalid {kind.__name__}: {exc}") from exc


# --- task-executor / task-retry ----------------------------------------------------------------


def encode_execute_task(task: ExecuteTask) -> bytes:
    """The ``TaskExecutorEnvelope`` payload of ``task``."""
    return write_envelope(
        Envelope.TASK_EXECUTOR,
        {"taskName": task.task_name, "type": "EXECUTE_TASK", "executeTask": task},
    )


def decode_execute_task(payload: bytes, writer_definition: str | None = None) -> ExecuteTask:
    """The ``ExecuteTask`` of a ``TaskExecutorEnvelope`` payload (raises ``WireDecodeError``)."""
    record = _read(Envelope.TASK_EXECUTOR, payload, writer_definition, structs=True)
    inner = record.get("executeTask")
    if record.get("type") == "EXECUTE_TASK" and type(inner) is ExecuteTask:
        return inner  # read as the Struct (our own schema: the usual case)
    if record.get("type") != "EXECUTE_TASK" or not isinstance(inner, dict):
        raise WireDecodeError(f"TaskExecutorEnvelope of type {record.get('type')!r} without task")
    inner["requester"] = _untag(inner.get("requester"))
    task: ExecuteTask = _convert(inner, ExecuteTask)
    return task


# --- task-events -------------------------------------------------------------------------------


def encode_task_event(event: AnyTaskEvent) -> bytes:
    """The ``TaskEventEnvelope`` payload of ``event`` (exactly one slot set, as the JVM requires)."""
    kind, slot = _EVENT_SLOTS[type(event)]
    record: dict[str, Any] = {"serviceName": event.service_name, "type": kind}
    for other in ("taskStartedEvent", "taskRetried", "taskFailedEvent", "taskCompletedEvent"):
        record[other] = None
    record[slot] = event
    return write_envelope(Envelope.TASK_EVENTS, record)


def decode_task_event(payload: bytes, writer_definition: str | None = None) -> AnyTaskEvent:
    """The event of a ``TaskEventEnvelope`` payload (raises ``WireDecodeError``)."""
    record = _read(Envelope.TASK_EVENTS, payload, writer_definition)
    for cls, (kind, slot) in _EVENT_SLOTS.items():
        if record.get("type") == kind:
            inner = record.get(slot)
            if not isinstance(inner, dict):
                break
            inner["requester"] = _untag(inner.get("requester"))
            if "deferredError" in inner:
                inner["deferredError"] = _untag(inner["deferredError"])
            event: AnyTaskEvent = _convert(inner, cls)
            return event
    raise WireDecodeError(f"TaskEventEnvelope of type {record.get('type')!r} without its event")


# --- response:<client> -------------------------------------------------------------------------

ClientMessage = ClientTaskCompleted | ClientTaskFailed


def encode_client_message(client_name: str, message: ClientMessage) -> bytes:
    """A ``ClientEnvelope`` payload (the task outcomes only; the workflow ones are not needed)."""
    kind, slot = _CLIENT_SLOTS[type(message)]
    record: dict[str, Any] = dict.fromkeys(_client_slots())
    record.update({"clientName": client_name, "type": kind, slot: to_record(message)})
    return write_envelope(Envelope.CLIENT, record)


def decode_client_message(
    payload: bytes, writer_definition: str | None = None
) -> tuple[str, ClientMessage | None]:
    """``(type, message)`` of a ``ClientEnvelope``; ``message`` is None for non-task types."""
    record = _read(Envelope.CLIENT, payload, writer_definition)
    kind = str(record.get("type"))
    for cls, (slot_kind, slot) in _CLIENT_SLOTS.items():
        if kind == slot_kind and isinstance(record.get(slot), dict):
            message: ClientMessage = _convert(record[slot], cls)
            return kind, message
    return kind, None


@functools.cache
def _client_slots() -> tuple[str, ...]:
    """The optional message fields of ``ClientEnvelope`` (all but clientName and type)."""
    fields = json.loads(definition(Envelope.CLIENT))["fields"]
    return tuple(str(f["name"]) for f in fields[2:])
