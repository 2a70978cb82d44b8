"""Dead letters as operators see them: decoded, filtered, shown, and turned into replays (pure).

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

import json
import math
import re
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec

from infinitic_py.priority import band_of, band_service
from infinitic_py.topics import service_topic
from infinitic_py.tracing import carried
from infinitic_py.transport.base import OutgoingMessage
from infinitic_py.wire import native as wire
from infinitic_py.wire.bulk import bulk_parts

__all__ = [
    "LetterFilter",
    "LetterView",
    "format_time",
    "parse_time",
    "read_letter",
    "read_letters",
    "render_show",
    "render_table",
    "replay_message",
    "replay_topic",
    "summary",
]

REASON_MAX_REDELIVERIES = "max_redeliveries"
REASON_UNREADABLE = "unreadable"

_any = msgspec.msgpack.Decoder()


class LetterView(wire.Failure, kw_only=True, frozen=True):
    """One dead letter, decoded: its ``Failure`` fields, and ``task``, the original task when its
    payload decodes."""

    batch_key: str | None
    task: wire.ExecuteTask | None
    properties: Mapping[str, str] = msgspec.field(default_factory=dict)
    redeliveries: int = 0  # how often the tools saw this letter before (informative)
    bulk_size: int = 0  # tasks of the atomic bulk this letter came in (0: not a bulk)

    def to_json(self, *, details: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "task_id": self.task_id,
            "service": self.service,
            "method": self.method,
            "reason": self.reason,
            "error_type": self.error_type,
            "message": self.message,
            "retry_index": self.retry_index,
            "batch_key": self.batch_key,
            "failed_at": format_time(self.failed_at),
            "worker": self.worker,
        }
        if self.bulk_size:
            out["bulk_size"] = self.bulk_size
        if self.task is not None:  # its history: a replay keeps the first dispatch time
            out["first_dispatched_at"] = format_time(
                self.task.first_emitted_at or self.task.emitted_at)
            out["publishes"] = self.task.retry_sequence + 1  # dispatch, retries and replays
        if details:
            out["traceback"] = self.traceback
            out["args"] = _args_of(self.task)
            out["meta"] = _jsonable(self.task.meta) if self.task is not None else None
            out["tags"] = list(self.task.tags) if self.task is not None else None
            out["properties"] = dict(self.properties)
        return out


_MAX_REDELIVERIES_MESSAGE = (
    "nacked more than max_redeliveries times: no worker could settle it (outcomes not "
    "publishable, or the worker was stopped holding it)")


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
    return LetterView(
        reason=REASON_MAX_REDELIVERIES, error_type="MaxRedeliveries", message=message,
        traceback=None, retry_index=task.retry_index, task_id=task.task_id,
        service=task.service, method=task.method, batch_key=_key_of(task),
        failed_at=when, worker=None, task=task, properties=props, bulk_size=bulk_size,
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
        return LetterView(**failure, batch_key=_key_of(task), task=task, properties=props)
    task = _task_of(data)
    when = published_at if published_at is not None else 0.0
    if props.get(wire.PROP_LETTER) == "payload-only":  # the worker's, too large for its failure
        return _payload_only(task, props, service, when)
    if task is not None:
        return _max_redeliveries(task, _MAX_REDELIVERIES_MESSAGE, when, props)
    return LetterView(
        reason=REASON_UNREADABLE, error_type="Unreadable",
        message=f"neither a dead letter nor a task ({len(data)} bytes)", traceback=None,
        retry_index=0, task_id=props.get(wire.PROP_TASK_ID), service=service,
        method=props.get(wire.PROP_METHOD), batch_key=props.get(wire.PROP_BATCH_KEY),
        failed_at=when, worker=None, task=None, properties=props,
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

    return LetterView(
        reason=props.get("reason", REASON_UNREADABLE), error_type=props.get("errorType", ""),
        message=props.get(wire.PROP_ERROR_MESSAGE, ""), traceback=None,
        retry_index=int(number(wire.PROP_RETRY_INDEX, task.retry_index if task else 0)),
        task_id=task.task_id if task else props.get(wire.PROP_TASK_ID),
        service=task.service if task else service,
        method=task.method if task else props.get(wire.PROP_METHOD),
        batch_key=_key_of(task), failed_at=number(wire.PROP_FAILED_AT, when),
        worker=props.get(wire.PROP_WORKER), task=task, properties=props)


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


# ---------------------------------------------------------------------------------------------
# Filters


@dataclass(frozen=True)
class LetterFilter:
    """Every given criterion must hold (``None`` = any)."""

    method: str | None = None
    error_type: str | None = None
    reason: str | None = None
    batch_key: str | None = None
    task_id: str | None = None
    since: float | None = None  # failed_at >= since (epoch seconds)
    until: float | None = None  # failed_at < until

    def matches(self, letter: LetterView) -> bool:
        return (
            (self.method is None or letter.method == self.method)
            and (self.error_type is None or letter.error_type == self.error_type)
            and (self.reason is None or letter.reason == self.reason)
            and (self.batch_key is None or letter.batch_key == self.batch_key)
            and (self.task_id is None or letter.task_id == self.task_id)
            and (self.since is None or letter.failed_at >= self.since)
            and (self.until is None or letter.failed_at < self.until)
        )

    def is_empty(self) -> bool:
        return all(v is None for v in (self.method, self.error_type, self.reason,
                                        self.batch_key, self.task_id, self.since, self.until))


_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_time(text: str, *, now: float | None = None) -> float:
    """``30m``, ``2h``, ``1d`` (that long ago), an ISO 8601 time (UTC unless it says otherwise)
    or epoch seconds. Raises ValueError with what is accepted."""
    value = text.strip()
    relative = _RELATIVE.match(value)
    if relative:
        ago = float(relative.group(1)) * _UNIT_SECONDS[relative.group(2)]
        return (time.time() if now is None else now) - ago
    try:
        epoch = float(value)
    except ValueError:
        pass
    else:
        if math.isfinite(epoch):
            return epoch
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"not a time: {text!r} (expected e.g. 30m, 2h, 1d, 2026-11-30T10:00:00Z or epoch "
            "seconds)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def format_time(epoch: float) -> str:
    if epoch <= 0:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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
    if task is None:
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


# ---------------------------------------------------------------------------------------------
# Output


def summary(letters: Sequence[LetterView]) -> dict[str, dict[str, int]]:
    """Counts by reason, error type and method."""
    return {
        "reason": dict(Counter(letter.reason for letter in letters).most_common()),
        "error_type": dict(Counter(letter.error_type for letter in letters).most_common()),
        "method": dict(Counter(letter.method or "-" for letter in letters).most_common()),
    }


_COLUMNS = ("FAILED_AT", "TASK_ID", "METHOD", "REASON", "ERROR", "RETRY", "BATCH_KEY", "MESSAGE")


def render_table(letters: Iterable[LetterView], *, width: int = 60) -> str:
    rows = [
        (format_time(x.failed_at), x.task_id or "-", x.method or "-", x.reason, x.error_type,
         str(x.retry_index), x.batch_key or "-", _shorten(x.message, width))
        for x in letters
    ]
    return _table(_COLUMNS, rows)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
              for r in rows]
    return "\n".join(lines)


def render_show(letter: LetterView) -> str:
    data = letter.to_json(details=True)
    lines = [f"{key:19} {_show_value(data[key])}" for key in (
        "task_id", "service", "method", "reason", "error_type", "message", "retry_index",
        "batch_key", "failed_at", "first_dispatched_at", "publishes", "worker", "args", "meta",
        "tags") if key in data]
    if letter.traceback:
        lines.append("traceback:")
        lines += ["  " + line for line in letter.traceback.rstrip().splitlines()]
    return "\n".join(lines)


def _show_value(value: Any) -> str:
    if isinstance(value, str) or value is None:
        return "-" if value is None else value
    return json.dumps(value, default=repr)


def _shorten(text: str, width: int) -> str:
    one = " ".join(text.split())
    return one if len(one) <= width else one[: width - 1] + "…"


def _args_of(task: wire.ExecuteTask | None) -> Any:
    if task is None:
        return None
    try:
        return _jsonable(_any.decode(task.args))
    except Exception:  # msgspec's errors, or RecursionError (hostile nesting)
        return None


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value
