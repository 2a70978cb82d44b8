"""Dead letters on the wire seam: what the operator tools (``infinitic-py dlq``, ``status``) ask a
dialect about its dead letters, and the one view every dialect decodes them into (pure).

A dialect offers ``dead_letters()`` -> a ``DeadLetters``: which dead-letter topics a service of
it has (``letter_topics``: Infinitic has three, native one), how one message of such a topic
reads (``read``: ``None`` when it is no letter of this dialect, so the tools can try the next
one on a topic two dialects share by name), and how a letter is replayed (``replay``: the message
to publish and where, in the dialect's own format, with ``producer_schema`` and the subscription
to keep on that topic). The tools (``ops/``) never look inside a payload themselves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import msgspec

from infinitic_py.transport.base import ReceivedMessage
from infinitic_py.wire import Publish
from infinitic_py.wire.native import Failure

__all__ = [
    "KIND_EVENT",
    "KIND_NONE",
    "KIND_TASK",
    "DeadLetters",
    "LetterTopic",
    "LetterView",
    "format_time",
    "jsonable",
    "letters_of",
]

# What a letter holds (``LetterView.kind``): a task (replayed as a new attempt), an event of a
# task (replayed as is: Infinitic's task events), or nothing readable.
KIND_TASK = "task"
KIND_EVENT = "event"
KIND_NONE = "unreadable"


def format_time(epoch: float) -> str:
    if epoch <= 0:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def jsonable(value: Any, *, text: bool = False) -> Any:
    """``value`` as JSON can hold it: bytes as hex (``text``: as themselves when printable
    ASCII, e.g. an Infinitic meta value)."""
    if isinstance(value, bytes):
        if text and value.isascii() and value.decode("ascii").isprintable():
            return value.decode("ascii")
        return value.hex()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v, text=text) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v, text=text) for v in value]
    return value


class LetterView(Failure, kw_only=True, frozen=True):
    """One dead letter, decoded: its ``Failure`` fields, and ``task``, what the dialect decoded
    of its payload (its own envelope type; ``None`` when nothing decodes).

    ``wire``: the dialect that read it (and replays it); ``kind``: ``KIND_*``; ``topic``: the
    dead-letter topic it was read from; ``facts``: what ``list --json`` adds (e.g. first dispatch
    time, publishes, the waiting workflow); ``detail``: what ``show`` adds (arguments, meta,
    tags...), both JSON-ready."""

    batch_key: str | None
    task: Any
    properties: Mapping[str, str] = msgspec.field(default_factory=dict)
    redeliveries: int = 0  # how often the tools saw this letter before (informative)
    bulk_size: int = 0  # tasks of the atomic bulk this letter came in (0: not a bulk)
    wire: str = "native"
    kind: str = KIND_TASK
    topic: str = ""
    facts: Mapping[str, Any] = msgspec.field(default_factory=dict)
    detail: Mapping[str, Any] = msgspec.field(default_factory=dict)

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
        if self.wire != "native":
            out["wire"] = self.wire
            out["kind"] = self.kind
            out["topic"] = self.topic
        if self.bulk_size:
            out["bulk_size"] = self.bulk_size
        out.update(self.facts)
        if details:
            out["traceback"] = self.traceback
            out.update(self.detail)
            out["properties"] = dict(self.properties)
        return out


@dataclass(frozen=True)
class LetterTopic:
    """A dead-letter topic of a service: ``role`` says what lands there (``execute``: tasks,
    ``retry``: delayed retries, ``events``: task events); ``writer_schemas``: its messages carry
    a schema version the reader needs (``ReceivedMessage.writer_schema``)."""

    topic: str
    role: str = "execute"
    writer_schemas: bool = False


class DeadLetters(Protocol):
    """A dialect's dead letters, as the operator tools need them. Every method is pure."""

    wire: str

    def letter_topics(self, service: str) -> Sequence[LetterTopic]:
        """The dead-letter topics of ``service``, the main one (its tasks') first."""
        ...

    def read(self, message: ReceivedMessage, *, role: str, service: str,
             published_at: float | None) -> list[LetterView] | None:
        """The letters one message holds (several: a bulk dead-lettered whole), or ``None`` when
        it is no letter of this dialect. Never raises."""
        ...

    def replay(self, letter: LetterView, *, service: str, to_service: str | None = None,
               now: float | None = None) -> Publish:
        """The message that replays ``letter`` (read from ``service``'s topics) and its topic.
        Raises ValueError when the letter holds nothing to replay."""
        ...

    def producer_schema(self, topic: str) -> str | None:
        """The schema a producer of ``topic`` carries (None: raw bytes)."""
        ...

    def keep_subscription(self, topic: str) -> str | None:
        """The durable subscription a replay makes sure of on ``topic`` before publishing (so the
        replayed message is kept even when no worker runs), or None."""
        ...


def letters_of(readers: Sequence[DeadLetters], message: ReceivedMessage, *, role: str,
               service: str, published_at: float | None) -> list[LetterView] | None:
    """The first reading of ``message`` by one of ``readers`` (in order), or None."""
    for reader in readers:
        views = reader.read(message, role=role, service=service, published_at=published_at)
        if views is not None:
            return views
    return None
