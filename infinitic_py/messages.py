"""Wire format: msgspec Structs encoded as MessagePack.

MessagePack rather than JSON: ``batchKey`` and other meta may be bytes (JSON would need base64),
the encoded envelope is smaller, and msgspec encodes/decodes it faster (``make bench`` prints the
measured ratio). Arguments and outputs are nested as ``msgspec.Raw`` so the envelope decodes without
knowing the method's types; the executor then decodes ``args`` with the method's own types, making a
wrong argument type a clean per-task failure instead of a crash.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec

# Message properties (Pulsar string properties) set on every ExecuteTask.
PROP_BATCH_KEY = "batchKey"
PROP_TASK_ID = "taskId"
PROP_METHOD = "method"
PROP_RETRY_INDEX = "retryIndex"
META_BATCH_KEY = "batchKey"

Meta = dict[str, Any]


class ExecuteTask(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    """A request to run one task of a service."""

    task_id: str
    service: str
    method: str
    args: msgspec.Raw  # MessagePack array of the positional arguments, in signature order
    meta: Meta = msgspec.field(default_factory=dict)
    tags: tuple[str, ...] = ()
    retry_index: int = 0  # retries already made
    retry_sequence: int = 0  # bumped on each republish; (task_id, retry_sequence) is unique
    reply_to: str | None = None  # response topic of the dispatching client, if it awaits
    emitted_at: float = 0.0  # epoch seconds when the client (or the retry) emitted it
    first_emitted_at: float = 0.0  # epoch seconds of the very first dispatch

    def batch_key(self) -> str | bytes | None:
        value = self.meta.get(META_BATCH_KEY)
        if value is None or isinstance(value, str | bytes):
            return value
        return str(value)


class TaskCompleted(msgspec.Struct, tag="completed", kw_only=True):
    task_id: str
    service: str
    method: str
    output: msgspec.Raw
    retry_index: int = 0
    batch_id: str | None = None
    worker: str | None = None


class TaskFailedReply(msgspec.Struct, tag="failed", kw_only=True):
    task_id: str
    service: str
    method: str
    error_type: str
    message: str
    traceback: str | None = None
    retry_index: int = 0
    worker: str | None = None


Reply = TaskCompleted | TaskFailedReply


class DeadLetter(msgspec.Struct, kw_only=True):
    """What lands on ``task-executor-dlq:<Service>``: enough to understand and replay the task."""

    reason: str  # "retries_exhausted" | "not_retryable" | "undecodable" | "unknown_method" |
    # "invalid_envelope" | "reply_unpublishable"
    error_type: str
    message: str
    traceback: str | None
    retry_index: int
    task_id: str | None
    service: str
    method: str | None
    payload: bytes  # the original message, byte for byte
    failed_at: float
    worker: str | None = None


_envelope_encoder = msgspec.msgpack.Encoder()
_execute_decoder = msgspec.msgpack.Decoder(ExecuteTask)
_reply_decoder: msgspec.msgpack.Decoder[Reply] = msgspec.msgpack.Decoder(Reply)
_dead_letter_decoder = msgspec.msgpack.Decoder(DeadLetter)


def encode(message: ExecuteTask | TaskCompleted | TaskFailedReply | DeadLetter) -> bytes:
    return _envelope_encoder.encode(message)


def encode_value(value: Any) -> msgspec.Raw:
    """Encode arguments or an output for nesting into an envelope."""
    return msgspec.Raw(_envelope_encoder.encode(value))


def decode_execute(data: bytes) -> ExecuteTask:
    """Raises ``msgspec.DecodeError`` / ``msgspec.ValidationError`` on a bad envelope."""
    return _execute_decoder.decode(data)


def decode_reply(data: bytes) -> Reply:
    return _reply_decoder.decode(data)


def decode_dead_letter(data: bytes) -> DeadLetter:
    return _dead_letter_decoder.decode(data)


def now() -> float:
    return time.time()


def properties_for(task: ExecuteTask) -> dict[str, str]:
    """Pulsar message properties of an ExecuteTask (the batch key travels here too)."""
    props = {PROP_TASK_ID: task.task_id, PROP_METHOD: task.method}
    key = task.batch_key()
    if key is not None:
        props[PROP_BATCH_KEY] = key if isinstance(key, str) else key.hex()
    if task.retry_index:
        props[PROP_RETRY_INDEX] = str(task.retry_index)
    return props
