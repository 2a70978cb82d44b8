"""Envelope validation: which decoded tasks this worker may act on (pure, no I/O).

Every field of a decoded task the worker acts on is checked when the message is routed
(``routing.Router.route_many``), so a bad envelope is dead-lettered alone (reason
``invalid_envelope``) instead of failing later, where it would share a batch with good tasks:

- ``service`` (if the dialect's task names one) is the service whose topic the message came from;
- ``method`` is a non-empty name (whether the service has it is the router's business);
- ``reply_to``, when set and the dialect gives its reply topics' prefix (``reply_prefix``, the
  native dialect: ``persistent://T/NS/response:``), is that prefix plus a name in Pulsar's
  topic-name alphabet: a reply the broker would refuse (another tenant, not a topic name) can
  then never poison a batch;
- ``retry_index`` and ``retry_sequence`` are >= 0;
- ``task_id``, ``reply_to``, the tags and the encoded arguments stay within the sizes below.

``EnvelopeRules.problem(task)`` returns ``None`` for a valid task, else a one-line reason for the
dead letter. It is on the receive hot path: an accepted reply topic is remembered (bounded), so a
client's thousands of tasks cost one regex match, not thousands.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Annotated, Any, Final, Literal

import msgspec

from infinitic_py.priority import NORMAL_RANGE
from infinitic_py.topics import MAX_TOPIC_CHARS, RESPONSE_TOPIC_PREFIX, TOPIC_LOCAL_NAME
from infinitic_py.wire import MAX_ID_CHARS, MAX_TAGS, Task

__all__ = [
    "INVALID_ENVELOPE",
    "MAX_ARGS_BYTES",
    "MAX_ID_CHARS",
    "PLAIN_CHECKS",
    "EnvelopeRules",
    "native_reply_prefix",
]

INVALID_ENVELOPE: Final = "invalid_envelope"  # the dead letter's reason
MAX_ARGS_BYTES: Final = 64 * 1024 * 1024
_REMEMBERED_REPLY_TOPICS: Final = 4096
_LOCAL_NAME = TOPIC_LOCAL_NAME  # Pulsar's alphabet for a topic's local name
_SIZED: Final = (bytes, msgspec.Raw)  # encoded arguments whose size is checked
# The fields a dialect's task struct must have for ``EnvelopeRules.plain_struct``.
PLAIN_CHECKS: Final = ("task_id", "service", "method", "tags", "retry_index", "retry_sequence",
                       "reply_to", "priority", "args")


class EnvelopeRules:
    """The checks for one service. ``reply_prefix``: what every reply topic starts with (None:
    the dialect's reply topics are not checked for shape, only for size)."""

    __slots__ = ("_accepted", "_reply", "reply_prefix", "service")

    def __init__(self, service: str, reply_prefix: str | None = None) -> None:
        self.service = service
        self.reply_prefix = reply_prefix
        self._reply = (re.compile(re.escape(reply_prefix) + _LOCAL_NAME)
                       if reply_prefix is not None else None)
        self._accepted: set[str] = set()

    @classmethod
    def native(cls, service: str, tenant: str, namespace: str) -> EnvelopeRules:
        """The rules of the native dialect: replies on ``response:`` topics of the namespace."""
        return cls(service, native_reply_prefix(tenant, namespace))

    @classmethod
    def of(cls, service: str, dialect: object) -> EnvelopeRules:
        """The rules for a dialect: its ``reply_prefix`` attribute, if it has one."""
        prefix = getattr(dialect, "reply_prefix", None)
        return cls(service, prefix if isinstance(prefix, str) else None)

    def problem(self, task: Task) -> str | None:
        """``None`` if the worker may act on ``task``, else why not (one line)."""
        # The hot path: one expression for a valid task (whose reply topic was seen before).
        reply_to = task.reply_to
        args = getattr(task, "args", b"")
        if ((reply_to is None or reply_to in self._accepted)
                and task.retry_index >= 0 and task.retry_sequence >= 0
                and 0 < len(task.task_id) <= MAX_ID_CHARS and task.method
                and len(task.tags) <= MAX_TAGS
                and getattr(task, "service", self.service) == self.service
                and (not isinstance(args, _SIZED) or len(args) <= MAX_ARGS_BYTES)):
            return None
        return self._problem(task)

    def _problem(self, task: Task) -> str | None:
        service = getattr(task, "service", self.service)
        if service != self.service:
            return f"the envelope names service {service!r}, this topic serves {self.service!r}"
        if not task.method:
            return "the envelope names no method"
        if not task.task_id or len(task.task_id) > MAX_ID_CHARS:
            return f"task_id must be 1 to {MAX_ID_CHARS} characters"
        if task.retry_index < 0 or task.retry_sequence < 0:
            return (f"retry_index ({task.retry_index}) and retry_sequence "
                    f"({task.retry_sequence}) must be >= 0")
        reply_to = task.reply_to
        if reply_to is not None and reply_to not in self._accepted:
            reason = self.reply_problem(reply_to)
            if reason is not None:
                return reason
            if len(self._accepted) >= _REMEMBERED_REPLY_TOPICS:
                self._accepted.clear()
            self._accepted.add(reply_to)
        if len(task.tags) > MAX_TAGS:
            return f"{len(task.tags)} tags (at most {MAX_TAGS})"
        args = getattr(task, "args", b"")
        if isinstance(args, _SIZED) and len(args) > MAX_ARGS_BYTES:
            return f"arguments of {len(args)} bytes (at most {MAX_ARGS_BYTES})"
        return None

    @property
    def accepted_replies(self) -> set[str]:
        """Reply topics seen valid (bounded): a plain task's ``reply_to`` must be one of them,
        or None (else the router checks it with ``problem``, which remembers it)."""
        return self._accepted

    def plain_struct(self, struct: type[msgspec.Struct]) -> type[msgspec.Struct] | None:
        """For a dialect whose tasks decode to the msgspec ``struct``: a subclass of it whose
        decoding enforces these rules as msgspec constraints (in C, while decoding: the receive
        hot path), all but two the router checks itself: the reply topic's shape (against the
        remembered ones, ``accepted_replies``) and the size of the arguments (bounded by the
        message's). It also takes only the normal priority band. A message it refuses is
        routed the general way (``problem`` then says what is wrong, if anything). None when
        ``struct`` lacks a field of ``PLAIN_CHECKS``."""
        if not set(PLAIN_CHECKS) <= set(struct.__struct_fields__):
            return None
        checked: dict[str, Any] = {
            "task_id": Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_CHARS)],
            "service": Literal[self.service],
            "method": Annotated[str, msgspec.Meta(min_length=1)],
            "tags": Annotated[tuple[str, ...], msgspec.Meta(max_length=MAX_TAGS)],
            "retry_index": Annotated[int, msgspec.Meta(ge=0)],
            "retry_sequence": Annotated[int, msgspec.Meta(ge=0)],
            "reply_to": Annotated[str, msgspec.Meta(max_length=MAX_TOPIC_CHARS)] | None,
            "priority": Annotated[int, msgspec.Meta(ge=NORMAL_RANGE.start,
                                                    le=NORMAL_RANGE.stop - 1)],
        }
        fields: list[tuple[str, Any, Any]] = []
        for f in msgspec.structs.fields(struct):  # in order: an encoded retry keeps its layout
            default = (f.default if f.default is not msgspec.NODEFAULT
                       else msgspec.field(default_factory=f.default_factory)
                       if f.default_factory is not msgspec.NODEFAULT else msgspec.NODEFAULT)
            fields.append((f.name, checked.get(f.name, f.type), default))
        # A subclass inherits the struct's options (kw_only, omit_defaults, gc, ...).
        return msgspec.defstruct(
            struct.__name__,
            [(name, kind) if default is msgspec.NODEFAULT else (name, kind, default)
             for name, kind, default in fields],
            bases=(struct,), module=struct.__module__)

    def reply_problem(self, reply_to: str) -> str | None:
        """Why ``reply_to`` is not a reply topic this worker may publish to, or ``None``."""
        if len(reply_to) > MAX_TOPIC_CHARS or (
                self._reply is not None and self._reply.fullmatch(reply_to) is None):
            shown = reply_to if len(reply_to) <= 120 else reply_to[:117] + "..."
            return (f"reply_to {shown!r} is not a reply topic of this namespace "
                    f"({self.reply_prefix}<name>)")
        return None

    def sanitized(self, task: Any) -> Any:
        """``task`` itself, or a copy the worker may safely answer and dead-letter: without its
        ``reply_to`` if that is no reply topic of ours (the broker would refuse it), and naming
        this service if it named another (its dead letter goes to this service's dead-letter
        topic, where it arrived; the original bytes stay in the letter's payload)."""
        changes: dict[str, Any] = {}
        if task.reply_to is not None and self.reply_problem(task.reply_to) is not None:
            changes["reply_to"] = None
        if getattr(task, "service", self.service) != self.service:
            changes["service"] = self.service
        if not changes:
            return task
        if isinstance(task, msgspec.Struct):
            return msgspec.structs.replace(task, **changes)
        return dataclasses.replace(task, **changes)


def native_reply_prefix(tenant: str, namespace: str) -> str:
    """What the native dialect's reply topics start with."""
    return f"persistent://{tenant}/{namespace}/{RESPONSE_TOPIC_PREFIX}"
