"""Client codecs: what the client needs from a message format (the client side of the wire
seam). ``NativeCodec``: infinitic-py's envelopes. ``InfiniticCodec`` (``wire="infinitic"``):
Infinitic 0.18's ``ExecuteTask`` with a ``ClientRequester`` and ``clientWaiting``, answered by
the JVM's event handler on ``response:<client>`` (``ClientEnvelope``).

A codec builds each task's message and reads replies into the native ``Reply`` shapes, so
``Deferred`` and the client core stay format-free.
"""

from __future__ import annotations

import datetime
import decimal
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, get_origin

import msgspec

from infinitic_py.priority import DEFAULT_PRIORITY
from infinitic_py.signatures import args_mismatch
from infinitic_py.topics import WORKER_SUBSCRIPTION, response_topic, service_topic
from infinitic_py.transport.base import OutgoingMessage, ReceivedMessage
from infinitic_py.wire import native as wire

if TYPE_CHECKING:
    from infinitic_py.client.stubs import Call
    from infinitic_py.service import MethodDefinition


class ClientCodec(Protocol):
    name: str
    writer_schemas: bool  # replies carry a schema version (resolve their writer schema)

    def task_topic(self, service: str) -> str: ...
    def worker_subscription(self) -> str: ...
    def response_topic(self, client: str) -> str: ...
    def topics_to_create(self, client: str) -> Mapping[str, int]: ...
    def service_topics(self, service: str) -> Mapping[str, int]:
        """Topics to create (partitions; 0: non-partitioned) before dispatching to ``service``
        where the broker does not create them."""
        ...
    def producer_schema(self, topic: str) -> str | None: ...

    def build(self, service: str, method: str, definition: MethodDefinition | None, call: Call,
              positional: tuple[Any, ...], meta: Mapping[str, Any], tags: tuple[str, ...],
              reply_to: str | None, client: str, delay: float | None,
              now: float, priority: int, *, spread: int = 1,
              spread_by: str | None = None) -> tuple[str, OutgoingMessage]:
        """(task id, the message); raises ``TypeError`` for arguments that cannot be sent."""
        ...

    def decode_reply(self, message: ReceivedMessage) -> wire.Reply | None:
        """The reply a message carries (None: a message of no interest). Raises when unreadable."""
        ...


class NativeCodec:
    name = "native"
    writer_schemas = False

    def __init__(self, tenant: str, namespace: str) -> None:
        self.tenant, self.namespace = tenant, namespace

    def task_topic(self, service: str) -> str:
        return service_topic(self.tenant, self.namespace, service)

    def worker_subscription(self) -> str:
        return WORKER_SUBSCRIPTION

    def response_topic(self, client: str) -> str:
        return response_topic(self.tenant, self.namespace, client)

    def topics_to_create(self, client: str) -> Mapping[str, int]:
        return {}

    def service_topics(self, service: str) -> Mapping[str, int]:
        return {}  # the broker creates them (auto topic creation)

    def producer_schema(self, topic: str) -> str | None:
        return None

    def build(self, service: str, method: str, definition: MethodDefinition | None, call: Call,
              positional: tuple[Any, ...], meta: Mapping[str, Any], tags: tuple[str, ...],
              reply_to: str | None, client: str, delay: float | None,
              now: float, priority: int, *, spread: int = 1,
              spread_by: str | None = None) -> tuple[str, OutgoingMessage]:
        try:
            encoded = wire.encode_value(positional)
        except (TypeError, msgspec.EncodeError) as exc:
            raise TypeError(f"{service}.{method}(): cannot encode arguments: {exc}") from None
        if definition is not None:
            try:
                definition.args_decoder.decode(encoded)  # exactly what the worker will decode
            except msgspec.ValidationError as exc:
                why = args_mismatch(definition.param_names, definition.param_types, encoded, exc)
                raise TypeError(f"{definition.qualified}(): {why}") from None
        task = wire.ExecuteTask(
            task_id=call.task_id or uuid.uuid4().hex, service=service, method=method,
            args=encoded, meta=dict(meta), tags=tags, priority=priority, reply_to=reply_to,
            emitted_at=now, first_emitted_at=now)
        try:
            message = wire.task_message(task, deliver_after=delay, spread=spread,
                                        spread_by=spread_by)
        except (TypeError, msgspec.EncodeError) as exc:  # the arguments are encoded: the meta
            raise TypeError(f"{service}.{method}(): cannot encode meta: {exc}") from None
        return task.task_id, message

    def decode_reply(self, message: ReceivedMessage) -> wire.Reply | None:
        return wire.decode_reply(message.data)


# Python hint -> the JVM's erased parameter class name (``methodParameterTypes``), used when a
# stub method declares no override. Ambiguous ones (int: int/long/Integer/Long...) take the
# common Kotlin/Java choice; override per method with ``parameter_types``.
JVM_TYPES: dict[Any, str] = {
    str: "java.lang.String",
    int: "long",
    float: "double",
    bool: "boolean",
    bytes: "byte[]",
    decimal.Decimal: "java.math.BigDecimal",
    uuid.UUID: "java.util.UUID",
    datetime.datetime: "java.time.Instant",
    datetime.date: "java.time.LocalDate",
    datetime.timedelta: "java.time.Duration",
    list: "java.util.List",
    tuple: "java.util.List",
    set: "java.util.Set",
    dict: "java.util.Map",
}


def jvm_type(hint: Any) -> str | None:
    """The JVM class name for a Python hint, or None when it cannot be guessed (a Struct:
    its JVM class name is not known from Python: declare it)."""
    origin = get_origin(hint) or hint
    return JVM_TYPES.get(origin)


class InfiniticCodec:
    """Infinitic 0.18 client requests. ``parameter_types``: ``{"Service.method": [JVM class
    names]}`` (needed whenever the JVM class overloads the method; a ``@Batch`` twin is an
    overload); else derived from the stub class's hints (``JVM_TYPES``), else none sent (the
    JVM then matches by name and arity)."""

    name = "infinitic"
    writer_schemas = True

    def __init__(self, tenant: str, namespace: str,
                 parameter_types: Mapping[str, Sequence[str]] | None = None) -> None:
        from infinitic_py.wire.infinitic import envelopes, outcomes, values
        from infinitic_py.wire.infinitic.dialect import InfiniticDialect

        self._env, self._outcomes, self._values = envelopes, outcomes, values
        self._dialect = InfiniticDialect(tenant, namespace)
        self._types = {k: list(v) for k, v in (parameter_types or {}).items()}
        self._json = msgspec.json.Decoder()

    def task_topic(self, service: str) -> str:
        return self._dialect.topic("task-executor", service)

    def worker_subscription(self) -> str:
        from infinitic_py.wire.infinitic.dialect import EXECUTOR_SUBSCRIPTION

        return EXECUTOR_SUBSCRIPTION

    def response_topic(self, client: str) -> str:
        return self._dialect.topic("response", client)

    def topics_to_create(self, client: str) -> Mapping[str, int]:
        return {self.response_topic(client): 0}  # auto topic creation is off in Infinitic's

    def service_topics(self, service: str) -> Mapping[str, int]:
        """The service's ``task-executor`` topic, partitioned as the JVM creates it: a JVM
        client's producer creates it too, so a task dispatched before any JVM worker of the
        service ever started waits for it instead of failing (``TopicNotFound``)."""
        return {self.task_topic(service): self._dialect.partitions}

    def producer_schema(self, topic: str) -> str | None:
        return self._dialect.producer_schema(topic)

    def parameter_types(self, service: str, method: str,
                        definition: MethodDefinition | None) -> list[str] | None:
        declared = self._types.get(f"{service}.{method}")
        if declared is not None:
            return declared
        if definition is None:
            return None
        guessed = [jvm_type(t) for t in definition.param_types]
        return None if any(g is None for g in guessed) else [g for g in guessed if g]

    def build(self, service: str, method: str, definition: MethodDefinition | None, call: Call,
              positional: tuple[Any, ...], meta: Mapping[str, Any], tags: tuple[str, ...],
              reply_to: str | None, client: str, delay: float | None,
              now: float, priority: int, *, spread: int = 1,
              spread_by: str | None = None) -> tuple[str, OutgoingMessage]:
        if priority != DEFAULT_PRIORITY:
            raise ValueError("priorities are a native-wire feature (Infinitic has none)")
        try:
            args = [self._values.encode_value(a) for a in positional]
        except (TypeError, msgspec.EncodeError) as exc:
            raise TypeError(f"{service}.{method}(): cannot encode arguments: {exc}") from None
        raw_meta: dict[str, bytes] = {}
        for key, value in meta.items():
            raw_meta[key] = value if isinstance(value, bytes) else str(value).encode()
        task = self._outcomes.client_task(
            service, method, args, client,
            parameter_types=self.parameter_types(service, method, definition),
            meta=raw_meta, tags=tags, task_id=call.task_id)
        if reply_to is None:
            task = msgspec.structs.replace(task, client_waiting=False)
        payload = self._env.encode_execute_task(task)
        return task.task_id, OutgoingMessage(payload, deliver_after=delay)

    def decode_reply(self, message: ReceivedMessage) -> wire.Reply | None:
        _, answer = self._env.decode_client_message(message.data, message.writer_schema)
        if isinstance(answer, self._env.ClientTaskCompleted):
            value = self._values.decode_value(answer.task_return_value)
            return wire.TaskCompleted(task_id=answer.task_id, service="", method="",
                                      output=wire.encode_value(value))
        if isinstance(answer, self._env.ClientTaskFailed):
            cause = answer.cause
            exc = cause.exception
            return wire.TaskFailedReply(
                task_id=answer.task_id, service="", method="",
                error_type=exc.name if exc else "UnknownError",
                message=(exc.message if exc else cause.message) or "",
                traceback=cause.stack_trace_to_string, worker=cause.worker_name,
                retry_index=cause.retry_index or 0)  # the attempt that failed for good
        return None


def make_codec(wire_name: str, tenant: str, namespace: str,
               parameter_types: Mapping[str, Sequence[str]] | None = None) -> ClientCodec:
    if wire_name == "native":
        return NativeCodec(tenant, namespace)
    if wire_name == "infinitic":
        return InfiniticCodec(tenant, namespace, parameter_types)
    raise ValueError(f"unknown wire {wire_name!r} (native or infinitic)")
