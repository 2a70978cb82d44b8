"""The two task events of every task (``TaskStartedEvent``, ``TaskCompletedEvent``) written
straight from its ``ExecuteTask`` (pure; the hot path of the dialect).

The bytes are ``envelopes.encode_task_event(outcomes.started(task, ...))``'s and
``...completed(...)``'s (checked for random tasks in ``tests/unit/test_infinitic_events.py``),
but no event Struct is built and nothing constant is encoded per task: a service's envelope head
(service name, type, the empty slots before the event, the version) and tail (the empty slots
after it) are encoded once; per task, only its fields are (``_parts``, in the event records'
order, which the constructor checks against the schema), once for both of its events.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from infinitic_py.wire.infinitic.avro_writer import field_writers, write_long, write_string
from infinitic_py.wire.infinitic.envelopes import (
    INFINITIC_VERSION,
    WRITE_RECORDS,
    ExecuteTask,
    SerializedData,
    schema_of,
)
from infinitic_py.wire.infinitic.schemas import Envelope

_EVENTS = "io.infinitic.tasks.events."
_COMMON = ("version", "messageId", "serviceName", "methodName", "taskId", "emitterName",
           "taskRetrySequence", "taskRetryIndex", "requester", "clientWaiting", "taskTags",
           "taskMeta")  # the common fields, in the order written here
_KEPT_MAX = 4096  # tasks started and not completed or forgotten (past that: all are dropped)


class _Slot:
    """Where one event goes in ``TaskEventEnvelope``: the bytes before and after its record."""

    def __init__(self, envelope: Any, kind: str, slot: str) -> None:
        fields = envelope["fields"]
        if [f["name"] for f in fields[:2]] != ["serviceName", "type"]:
            raise ValueError("unexpected TaskEventEnvelope layout")
        symbols = fields[1]["type"]["symbols"]
        self.type_byte = bytearray()
        write_long(self.type_byte, symbols.index(kind))
        self.before, self.after = bytearray(), bytearray()
        seen = False
        for f in fields[2:]:
            branches = [b if isinstance(b, str) else "record" for b in f["type"]]
            if len(branches) != 2 or "null" not in branches:
                raise ValueError(f"TaskEventEnvelope slot {f['name']} is not [null, event]")
            if f["name"] == slot:
                write_long(self.before, 1 - branches.index("null"))  # the record's branch
                seen = True
            else:
                write_long(self.after if seen else self.before, branches.index("null"))
        if not seen:
            raise ValueError(f"no slot {slot} in TaskEventEnvelope")
        self.heads: dict[str, bytes] = {}

    def head(self, service: str) -> bytes:
        """Service name, type, empty slots before the event, the event's branch, its version."""
        head = self.heads.get(service)
        if head is None:
            out = bytearray()
            write_string(out, service)
            out += self.type_byte + self.before
            write_string(out, INFINITIC_VERSION)
            head = bytes(out)
            if len(self.heads) < 256:  # the services of a worker: a handful
                self.heads[service] = head
        return head


class EventWriter:
    """``started`` / ``completed`` payloads of a task (one per process: ``EVENTS``)."""

    def __init__(self) -> None:
        schema = schema_of(Envelope.TASK_EVENTS)
        started = field_writers(schema, _EVENTS + "TaskStartedEvent", WRITE_RECORDS)
        completed = field_writers(schema, _EVENTS + "TaskCompletedEvent", WRITE_RECORDS)
        if tuple(started) != _COMMON or tuple(completed) != (*_COMMON, "isDelegated", "returnValue"):
            raise ValueError("TaskEventEnvelope events are not in the order written here")
        self._requester = started["requester"]
        self._client_waiting = started["clientWaiting"]
        self._tags = started["taskTags"]
        self._meta = started["taskMeta"]
        self._is_delegated = completed["isDelegated"]
        self._return_value: Callable[[bytearray, Any], None] = completed["returnValue"]
        self._started = _Slot(schema, "TASK_STARTED", "taskStartedEvent")
        self._completed = _Slot(schema, "TASK_COMPLETED", "taskCompletedEvent")
        self._kept: dict[int, tuple[ExecuteTask, bytes, bytes]] = {}

    def _parts(self, task: ExecuteTask) -> tuple[bytes, bytes]:
        """The task's own fields around the emitter: names and id before it, retry counters,
        requester, client flag, tags and meta after it. ``started`` keeps them for the task's
        ``completed`` (one entry per running task; dropped when taken, and all of them if a
        worker's tasks ended otherwise and they pile up)."""
        kept = self._kept.pop(id(task), None)
        if kept is not None and kept[0] is task:
            return kept[1], kept[2]
        if task.requester is None:  # only in messages from before Infinitic 0.13
            raise ValueError(f"task {task.task_id} has no requester: the JVM would not accept its events")
        names = bytearray()
        write_string(names, task.task_name)
        write_string(names, task.method_name)
        write_string(names, task.task_id)
        rest = bytearray()
        write_long(rest, task.task_retry_sequence)
        write_long(rest, task.task_retry_index)
        self._requester(rest, task.requester)
        self._client_waiting(rest, task.client_waiting)
        self._tags(rest, task.task_tags)
        self._meta(rest, task.task_meta)
        return bytes(names), bytes(rest)

    def forget(self, task: ExecuteTask) -> None:
        """``task`` ends without a ``completed`` event (it failed, or is retried)."""
        self._kept.pop(id(task), None)

    def started(self, task: ExecuteTask, message_id: str, emitter: str) -> bytes:
        """``TaskStartedEvent`` of ``task`` (as ``outcomes.started(task, emitter)``)."""
        slot = self._started
        names, rest = self._parts(task)
        kept = self._kept
        if len(kept) >= _KEPT_MAX:
            kept.clear()
        kept[id(task)] = (task, names, rest)  # the task, held, keeps its id unique
        out = bytearray(slot.head(task.task_name))
        write_string(out, message_id)
        out += names
        write_string(out, emitter)
        out += rest
        out += slot.after
        return bytes(out)

    def completed(self, task: ExecuteTask, message_id: str, emitter: str,
                  value: SerializedData) -> bytes:
        """``TaskCompletedEvent`` of ``task`` returning ``value`` (as ``outcomes.completed``)."""
        slot = self._completed
        names, rest = self._parts(task)
        out = bytearray(slot.head(task.task_name))
        write_string(out, message_id)
        out += names
        write_string(out, emitter)
        out += rest
        self._is_delegated(out, False)
        self._return_value(out, value)
        out += slot.after
        return bytes(out)


EVENTS = EventWriter()
