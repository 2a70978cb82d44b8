"""The native dialect's dead letters, as the operator tools read and replay them (pure).

A dead-letter topic (``task-executor-dlq:<Service>``) holds two kinds of messages:

- ``DeadLetter`` envelopes published by the worker (a task failed for good, could not be decoded,
  or named an unknown method): reason, error type and message, traceback, the original payload;
- the original task itself, moved there by Pulsar's own dead-letter policy after
  ``pulsar.consumer.max_redeliveries`` nacks (the worker could never settle it: its outcomes
  could not be published, or it was stopped holding it; a worker that dies holding a message
  does not count: Pulsar counts nacks). These read as reason
  ``max_redeliveries``.

Replaying a letter republishes its original task as a *new attempt*: retry index 0 (a fresh retry
budget), the next retry sequence (so no worker takes it for a copy of the attempt that failed),
no reply topic (the client that awaited it is gone; its response topic was deleted at close),
the trace context kept.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from infinitic_py.priority import band_of, band_service
from infinitic_py.topics import WORKER_SUBSCRIPTION, dead_letter_topic, service_topic
from infinitic_py.tracing import carried
from infinitic_py.transport.base import OutgoingMessage, ReceivedMessage
from infinitic_py.wire import Publish
from infinitic_py.wire import native as wire
from infinitic_py.wire.bulk import bulk_parts
from infinitic_py.wire.letters import KIND_NONE, LetterTopic, LetterView, format_time, jsonable

__all__ = [
    "REASON_MAX_REDELIVERIES",
    "REASON_UNREADABLE",
    "NativeLetters",
    "read_letter",
    "read_letters",
    "replay_message",
    "replay_topic",
]

REASON_MAX_REDELIVERIES = "max_redeliveries"
REASON_UNREADABLE = "unreadable"

_any = msgspec.msgpack.Decoder()

_MAX_REDELIVERIES_MESSAGE = (
    "nacked more than max_redeliveries times: no worker could settle it (outcomes not "
    "publishable, or the worker was stopped holding it)")


def _facts(task: wire.ExecuteTask | None) -> dict[str, Any]:
    if task is None:
        return {}
    return {  # its history: a replay keeps the first dispatch time
        "first_dispatched_at": format_time(task.first_emitted_at or task.emitted_at),
        "publishes": task.retry_sequence + 1,  # dispatch, retries and replays
    }


def _detail(task: wire.ExecuteTask | None) -> dict[str, Any]:
    return {
        "args": _args_of(task),
        "meta": jsonable(task.meta) if task is not None else None,
        "tags": list(task.tags) if task is not None else None,
    }


def _view(task: wire.ExecuteTask | None, **fields: Any) -> LetterView:
    return LetterView(**fields, task=task, facts=_facts(task), detail=_detail(task))


def read_letters(
    data: bytes, properties: Mapping[str, str], *, service: str, published_at: float | None
) -> list[LetterView]:
    """Decode one message of a dead-letter topic into its letters (never raises): one letter,
    or one ``max_redeliveries`` letter per task of an atomic bulk Pulsar dead-lettered whole."""
    parts = bulk_parts(data)
    if parts:
        tasks = [_task_of(part) for part in parts]
        if all(task is not None for task in tasks):
            when = published_at if published_at is not None else 0.0
            size = len(parts)
            message = (_MAX_REDELIVERIES_MESSAGE
                       + f"; one of an atomic bulk of {size} tasks (one message: replay or "
                       "purge selects all of them or none)")
            return [_max_redeliveries(task, message, when, dict(properties), size)
                    for task in tasks if task is not None]
    return [read_letter(data, properties, service=service, published_at=published_at)]


def _max_redeliveries(task: wire.ExecuteTask, message: str, when: float,
                      props: dict[str, str], bulk_size: int = 0) -> LetterView:
    return _view(
        task, reason=REASON_MAX_REDELIVERIES, error_type="MaxRedeliveries", message=message,
        traceback=None, retry_index=task.retry_index, task_id=task.task_id,
        service=task.service, method=task.method, batch_key=_key_of(task),
        failed_at=when, worker=None, properties=props, bulk_size=bulk_size,
    )


def read_letter(
    data: bytes, properties: Mapping[str, str], *, service: str, published_at: float | None
) -> LetterView:
    """Decode one message of a dead-letter topic, whichever kind it is (never raises)."""
    props = dict(properties)
    try:
        letter = wire.decode_dead_letter(data)
    except Exception:  # msgspec's errors, or RecursionError (hostile nesting)
        letter = None
    if letter is not None:
        task = _task_of(letter.payload)
        failure = {name: getattr(letter, name) for name in wire.Failure.__struct_fields__}
        return _view(task, **failure, batch_key=_key_of(task), properties=props)
    task = _task_of(data)
    when = published_at if published_at is not None else 0.0
    if props.get(wire.PROP_LETTER) == "payload-only":  # the worker's, too large for its failure
        return _payload_only(task, props, service, when)
    if task is not None:
        return _max_redeliveries(task, _MAX_REDELIVERIES_MESSAGE, when, props)
    return _view(
        None, reason=REASON_UNREADABLE, error_type="Unreadable",
        message=f"neither a dead letter nor a task ({len(data)} bytes)", traceback=None,
        retry_index=0, task_id=props.get(wire.PROP_TASK_ID), service=service,
        method=props.get(wire.PROP_METHOD), batch_key=props.get(wire.PROP_BATCH_KEY),
        failed_at=when, worker=None, properties=props, kind=KIND_NONE,
    )


def _payload_only(task: wire.ExecuteTask | None, props: dict[str, str], service: str,
                  when: float) -> LetterView:
    """A worker's dead letter sent as the task's bytes, the failure in properties
    (``wire.native.letter_message``)."""
    def number(key: str, default: float) -> float:
        try:
            return float(props[key])
        except (KeyError, ValueError):
            return default

    return _view(
        task,
        reason=props.get("reason", REASON_UNREADABLE), error_type=props.get("errorType", ""),
        message=props.get(wire.PROP_ERROR_MESSAGE, ""), traceback=None,
        retry_index=int(number(wire.PROP_RETRY_INDEX, task.retry_index if task else 0)),
        task_id=task.task_id if task else props.get(wire.PROP_TASK_ID),
        service=task.service if task else service,
        method=task.method if task else props.get(wire.PROP_METHOD),
        batch_key=_key_of(task), failed_at=number(wire.PROP_FAILED_AT, when),
        worker=props.get(wire.PROP_WORKER), properties=props)


def _task_of(payload: bytes) -> wire.ExecuteTask | None:
    try:
        return wire.decode_execute(payload)
    except Exception:  # msgspec's errors, or RecursionError (hostile nesting)
        return None


def _key_of(task: wire.ExecuteTask | None) -> str | None:
    if task is None:
        return None
    key = task.batch_key()
    return key.hex() if isinstance(key, bytes) else key


def _args_of(task: wire.ExecuteTask | None) -> Any:
    if task is None:
        return None
    try:
        return jsonable(_any.decode(task.args))
    except Exception:  # msgspec's errors, or RecursionError (hostile nesting)
        return None


# ---------------------------------------------------------------------------------------------
# Replay


def replay_message(
    letter: LetterView, *, to_service: str | None = None, now: float | None = None,
    service: str | None = None,
) -> tuple[wire.ExecuteTask, OutgoingMessage]:
    """The new attempt of a letter's task and its message (with the letter's trace). Its
    service is ``to_service``, else ``service`` (the service whose dead-letter topic holds the
    letter: a task dead-lettered because its envelope named another service is replayed where
    it was dead-lettered, as the command says), else the task's own. Its priority is kept:
    ``replay_topic`` is its band's topic. Raises ValueError when the letter holds no task to
    replay (an undecodable message)."""
    task = letter.task
    if not isinstance(task, wire.ExecuteTask):
        raise ValueError(f"dead letter of task {letter.task_id or '?'} ({letter.reason}) holds no "
                         "decodable task: it cannot be replayed (purge it)")
    emitted = time.time() if now is None else now
    attempt = msgspec.structs.replace(
        task,
        service=to_service or service or task.service,
        retry_index=0,
        retry_sequence=task.retry_sequence + 1,
        reply_to=None,
        emitted_at=emitted,
        first_emitted_at=task.first_emitted_at or task.emitted_at or emitted,
    )
    message = wire.task_message(attempt)
    trace = carried(letter.properties)
    if trace:
        message = msgspec.structs.replace(message, properties={**message.properties, **trace})
    return attempt, message


def replay_topic(tenant: str, namespace: str, attempt: wire.ExecuteTask) -> str:
    """The topic a replayed attempt goes to: its service's topic of its priority band (as a
    retry's), so a high-priority task is not replayed into the normal band."""
    return service_topic(tenant, namespace, band_service(attempt.service,
                                                         band_of(attempt.priority)))


class NativeLetters:
    """``wire.letters.DeadLetters`` of the native dialect: one topic per service,
    ``task-executor-dlq:<S>`` (MessagePack)."""

    wire = "native"

    def __init__(self, tenant: str, namespace: str) -> None:
        self.tenant, self.namespace = tenant, namespace

    def letter_topics(self, service: str) -> Sequence[LetterTopic]:
        return (LetterTopic(dead_letter_topic(self.tenant, self.namespace, service)),)

    def read(self, message: ReceivedMessage, *, role: str, service: str,
             published_at: float | None) -> list[LetterView] | None:
        if role != "execute":
            return None
        views = read_letters(message.data, message.properties, service=service,
                             published_at=published_at)
        if len(views) == 1 and views[0].kind == KIND_NONE:
            return None  # maybe another dialect's letter on a topic of the same name
        return [msgspec.structs.replace(v, topic=message.topic) for v in views]

    def replay(self, letter: LetterView, *, service: str, to_service: str | None = None,
               now: float | None = None) -> Publish:
        attempt, message = replay_message(letter, to_service=to_service, now=now,
                                          service=service)
        return Publish(replay_topic(self.tenant, self.namespace, attempt), message)

    def producer_schema(self, topic: str) -> str | None:
        return None

    def keep_subscription(self, topic: str) -> str | None:
        # As the client does: the workers' subscription first, so the tasks are kept even
        # when no worker of that service runs yet.
        return WORKER_SUBSCRIPTION
