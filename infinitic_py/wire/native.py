"""The native dialect: infinitic-py's own envelopes, msgspec Structs encoded as MessagePack, on
``task-executor:<Service>`` (subscription ``infinitic-py-worker``), replies on the caller's
``response:<client>`` topic, dead letters on ``task-executor-dlq:<Service>``.

MessagePack rather than JSON: ``batchKey`` and other meta may be bytes (JSON would need base64),
the encoded envelope is smaller, and msgspec encodes/decodes it faster (``make bench`` prints the
measured ratio). Arguments and outputs are nested as ``msgspec.Raw`` so the envelope decodes without
knowing the method's types; the executor then decodes ``args`` with the method's own types, making a
wrong argument type a clean per-task failure instead of a crash.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from operator import attrgetter
from typing import TYPE_CHECKING, Any

import msgspec

from infinitic_py.keys import routing_key
from infinitic_py.priority import BANDS, DEFAULT_PRIORITY, band_of, band_service
from infinitic_py.topics import (
    RESPONSE_TOPIC_PREFIX,
    WORKER_SUBSCRIPTION,
    dead_letter_topic,
    service_topic,
)
from infinitic_py.transport.base import OutgoingMessage, Partitioner, ReceivedMessage
from infinitic_py.wire import (
    Publish,
    Subscription,
    Undecodable,
    error_text,
    key_text,
    writable_text,
)
from infinitic_py.wire.bulk import MAX_BULK_BYTES

if TYPE_CHECKING:
    from infinitic_py.service import MethodDefinition
    from infinitic_py.wire.letters import DeadLetters

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
    priority: int = DEFAULT_PRIORITY  # 0-9 (infinitic_py.priority); absent on the wire if 5

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


class Failure(msgspec.Struct, kw_only=True, frozen=True):
    """Why and when a task failed for good: what a ``DeadLetter`` says, and what the ops tools
    show of one (``wire.letters.LetterView``)."""

    reason: str  # "retries_exhausted" | "not_retryable" | "undecodable" | "unknown_method" |
    # "invalid_envelope" | "reply_unpublishable"
    error_type: str
    message: str
    traceback: str | None
    retry_index: int
    task_id: str | None
    service: str
    method: str | None
    failed_at: float
    worker: str | None = None


class DeadLetter(Failure, kw_only=True, frozen=True):
    """What lands on ``task-executor-dlq:<Service>``: enough to understand and replay the task."""

    payload: bytes  # the original message, byte for byte


_reply_to_of = attrgetter("reply_to")
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
    key = key_text(task.batch_key())
    if key is not None:
        props[PROP_BATCH_KEY] = key
    if task.retry_index:
        props[PROP_RETRY_INDEX] = str(task.retry_index)
    return props


def task_message(task: ExecuteTask, deliver_after: float | None = None, *,
                 spread: int = 1, spread_by: str | None = None) -> OutgoingMessage:
    """The message that carries ``task`` (a dispatch or a retry): properties, and the batch key
    as partition key (Key_Shared affinity), or with ``spread`` > 1 one of the key's ``spread``
    sub-keys (a client's ``key_spread``: infinitic_py/keys.py), chosen by the task id or by
    ``spread_by`` (an atomic bulk's tasks share the first one's sub-key, so a one-key bulk keeps
    a key). The one place a task becomes a message. (A retry keeps the key its message came
    with: worker/outcomes.py.)"""
    return OutgoingMessage(encode(task), properties_for(task), deliver_after=deliver_after,
                           partition_key=routing_key(task.batch_key(), spread_by or task.task_id,
                                                     spread))


class NativeDialect:
    """The ``Dialect`` of infinitic-py's own envelopes (see ``infinitic_py.wire``)."""

    name = "native"

    def __init__(self, tenant: str = "public", namespace: str = "default") -> None:
        self.tenant = tenant
        self.namespace = namespace
        # What every reply topic a task may name starts with (the worker's envelope rules
        # dead-letter a task whose reply_to is no such topic: the broker would refuse it).
        self.reply_prefix = f"persistent://{tenant}/{namespace}/{RESPONSE_TOPIC_PREFIX}"

    def subscriptions(self, service: str) -> Sequence[Subscription]:
        """The normal band's topic first (``task-executor:<S>``), then the high and low ones."""
        dlq = self.dead_letter_topic(service)
        bands = sorted(BANDS, key=lambda b: b.suffix != "")  # normal first, then high, low
        return tuple(Subscription(service_topic(self.tenant, self.namespace,
                                                band_service(service, band)),
                                  WORKER_SUBSCRIPTION, dead_letter_topic=dlq)
                     for band in bands)

    def dead_letter_topic(self, service: str) -> str:
        return dead_letter_topic(self.tenant, self.namespace, service)

    def dead_letters(self) -> DeadLetters:
        """How the operator tools read and replay this dialect's dead letters."""
        from infinitic_py.wire.native_letters import NativeLetters

        return NativeLetters(self.tenant, self.namespace)

    def partitioner(self, topic: str) -> Partitioner | None:
        return None  # the transport's own (Key_Shared affinity needs no given partitioning)

    def topics(self, service: str) -> Mapping[str, int]:
        return {}  # the broker creates them (auto topic creation)

    def relay(self, role: str, message: ReceivedMessage, worker: str) -> Sequence[Publish]:
        raise ValueError(f"the native dialect has no {role!r} subscription")

    def producer_schema(self, topic: str) -> str | None:
        return None

    def decode(self, message: ReceivedMessage) -> ExecuteTask | Undecodable:
        try:
            return _execute_decoder.decode(message.data)
        except Exception as exc:  # msgspec's errors, or RecursionError (hostile nesting)
            return Undecodable(exc)

    def decode_args(self, task: ExecuteTask, method: MethodDefinition) -> tuple[Any, ...]:
        args: tuple[Any, ...] = method.args_decoder.decode(task.args)
        return args

    task_struct = ExecuteTask  # the receive hot path decodes a checked subclass of it

    def raw_args_decoder(self, method: MethodDefinition) -> Callable[[msgspec.Raw], tuple[Any, ...]]:
        """What ``decode_args`` does, from the task's ``args`` (the hot path: no call more)."""
        return method.args_decoder.decode

    def struct_decoder(self, struct: type[ExecuteTask]) -> Callable[[bytes], ExecuteTask]:
        """A decoder of ``struct`` (a subclass of ``ExecuteTask``) from this dialect's bytes;
        it raises what msgspec raises."""
        return msgspec.msgpack.Decoder(struct).decode

    announces_start = False

    def started(self, task: ExecuteTask) -> Sequence[Publish]:
        return ()

    def completes_silently(self, task: ExecuteTask) -> bool:
        return not task.reply_to

    def all_complete_silently(self, tasks: Iterable[ExecuteTask]) -> bool:
        return not any(map(_reply_to_of, tasks))  # C-level: no call per task

    def completed(self, task: ExecuteTask, output: Any, worker: str) -> Sequence[Publish]:
        if not task.reply_to:  # nobody waits for it: nothing to encode or send
            return ()
        reply = encode(TaskCompleted(
            task_id=task.task_id, service=task.service, method=task.method,
            output=encode_value(output), retry_index=task.retry_index, worker=worker))
        return (Publish(task.reply_to, OutgoingMessage(reply), reply=True),)

    def retried(self, task: ExecuteTask, error: BaseException, trace: str | None, delay: float,
                worker: str) -> Sequence[Publish]:
        retry = msgspec.structs.replace(
            task, retry_index=task.retry_index + 1, retry_sequence=task.retry_sequence + 1,
            emitted_at=now())
        topic = service_topic(self.tenant, self.namespace,
                              band_service(task.service, band_of(task.priority)))
        return (Publish(topic, task_message(retry, deliver_after=delay)),)

    def failed(self, task: ExecuteTask, error: BaseException, trace: str | None, reason: str,
               payload: bytes, worker: str) -> Sequence[Publish]:
        error_type = type(error).__name__
        message = error_text(error)
        trace = None if trace is None else writable_text(trace)
        out: list[Publish] = []
        if task.reply_to:
            out.append(Publish(task.reply_to, OutgoingMessage(encode(TaskFailedReply(
                task_id=task.task_id, service=task.service, method=task.method,
                error_type=error_type, message=message, traceback=trace,
                retry_index=task.retry_index, worker=worker))), reply=True))
        letter = DeadLetter(
            reason=reason, error_type=error_type, message=message, traceback=trace,
            retry_index=task.retry_index, task_id=task.task_id, service=task.service,
            method=task.method, payload=payload, failed_at=now(), worker=worker)
        out.append(Publish(self.dead_letter_topic(task.service), letter_message(
            letter, {"reason": reason, "taskId": task.task_id, "errorType": error_type})))
        return out

    def undecodable(self, message: ReceivedMessage, error: Exception, service: str,
                    worker: str) -> Sequence[Publish]:
        letter = DeadLetter(
            reason="undecodable", error_type=type(error).__name__, message=error_text(error),
            traceback=None, retry_index=0, task_id=message.properties.get(PROP_TASK_ID),
            service=service, method=message.properties.get(PROP_METHOD),
            payload=message.data, failed_at=now(), worker=worker)
        properties = {"reason": "undecodable", "errorType": type(error).__name__}
        if letter.task_id is not None:
            properties["taskId"] = letter.task_id
        return (Publish(self.dead_letter_topic(service), letter_message(letter, properties)),)


# A dead letter must fit one broker message: the same bound as an atomic bulk (the broker's
# default maxMessageSize, room kept for the metadata).
MAX_LETTER_BYTES = MAX_BULK_BYTES
PROP_LETTER = "deadLetter"  # on a letter too large to carry its task: "payload-only"
PROP_ERROR_MESSAGE = "errorMessage"
PROP_FAILED_AT = "failedAt"
PROP_WORKER = "worker"
_PROPERTY_CHARS = 2048


def letter_message(letter: DeadLetter, properties: Mapping[str, str],
                   max_bytes: int = MAX_LETTER_BYTES) -> OutgoingMessage:
    """The message of a dead letter. One whose task is too close to the broker's size limit to
    travel with its failure is sent as the task's own bytes (they fitted one message) with the
    failure in properties, as Pulsar's own dead-letter copies are; ``wire.native_letters.read_letter`` reads
    both. (Otherwise the publish failed, and with it every task of the unit: nacked, run again.)"""
    data = encode(letter)
    if len(data) <= max_bytes:
        return OutgoingMessage(data, properties)
    extra = {PROP_LETTER: "payload-only", PROP_RETRY_INDEX: str(letter.retry_index),
             PROP_ERROR_MESSAGE: letter.message[:_PROPERTY_CHARS],
             PROP_FAILED_AT: repr(letter.failed_at)}
    if letter.method:
        extra[PROP_METHOD] = letter.method
    if letter.worker:
        extra[PROP_WORKER] = letter.worker
    return OutgoingMessage(letter.payload, {**properties, **extra})
