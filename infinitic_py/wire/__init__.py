"""The wire seam: what the worker (and the client) need from a message format.

A *dialect* knows one format end to end: which topics a service's worker consumes (and with which
subscription), how a received message becomes a task, how a task's arguments are decoded with the
method's types, and which messages each outcome produces, on which topics, with which keys.
The executor only ever talks to a ``Dialect``; it never sees an envelope.

- ``wire.native``: infinitic-py's own MessagePack envelopes (the default).
- a second dialect (Infinitic 0.18's Avro envelopes, JSON arguments) fits the same protocol: it
  consumes more than one topic per service (``Subscription``), emits a "started" event per task
  (``started``), several messages per outcome on several topics (``Publish`` lists), and its
  producers carry an Avro schema (``producer_schema``).

Pure: no I/O here or in a dialect. The transport's data classes (``OutgoingMessage``,
``ReceivedMessage``) are the only things imported from ``transport/``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import msgspec

from infinitic_py.transport.base import OutgoingMessage, Partitioner, ReceivedMessage

if TYPE_CHECKING:
    from infinitic_py.service import MethodDefinition

__all__ = [
    "Dialect",
    "Partitioner",
    "Publish",
    "Subscription",
    "Task",
    "Undecodable",
    "error_text",
    "key_text",
    "writable_text",
]


# The sizes a worker accepts in a task's envelope (worker/envelope_rules.py dead-letters one
# beyond them as invalid_envelope): a client refuses them at the call site.
MAX_ID_CHARS = 256
MAX_TAGS = 256


def key_text(key: str | bytes | None) -> str | None:
    """A batch / partition key as text: bytes keys are shown (and routed) as their hex.
    The one place this rule lives."""
    if key is None or isinstance(key, str):
        return key
    return key.hex()


# What a reply, a dead letter or an event keeps of an error's text: an exception message may
# echo a large input (and its traceback repeats it), and a dead letter must fit one broker message
# with the task it carries. The head and the tail are kept.
MAX_ERROR_CHARS = 16 * 1024
MAX_TRACE_CHARS = 64 * 1024


def writable_text(text: str, limit: int = MAX_TRACE_CHARS) -> str:
    """``text`` as UTF-8 can carry it (a lone surrogate, from a file name read with
    ``surrogateescape`` say, becomes its ``\\udcff`` escape instead of failing the encoder of
    the message that reports it), at most about ``limit`` characters (its middle cut)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(text) > limit:
        half = limit // 2
        text = f"{text[:half]}\n... [{len(text) - 2 * half} characters cut] ...\n{text[-half:]}"
    return text


def error_text(error: BaseException) -> str:
    """An error's message for a reply, a dead letter or an event: ``str(error)``, or its
    ``repr`` (then its type) when the user's ``__str__`` itself fails; writable as UTF-8, at
    most about ``MAX_ERROR_CHARS``."""
    for describe in (str, repr):
        try:
            return writable_text(describe(error), MAX_ERROR_CHARS)
        except Exception:
            continue
    return f"<{type(error).__name__} whose str() and repr() fail>"


class Task(Protocol):
    """What the worker reads of a decoded task, whatever the dialect (a dialect's own envelope
    type provides these as attributes: no second object is built per task)."""

    @property
    def task_id(self) -> str: ...
    @property
    def method(self) -> str: ...
    @property
    def meta(self) -> Mapping[str, Any]: ...
    @property
    def tags(self) -> Sequence[str]: ...
    @property
    def retry_index(self) -> int: ...
    @property
    def retry_sequence(self) -> int: ...
    @property
    def reply_to(self) -> str | None: ...  # where a waiting caller wants its reply, if any

    def batch_key(self) -> str | bytes | None: ...


T = TypeVar("T", bound=Task)


@dataclass(frozen=True, slots=True)
class Undecodable:
    """A received message that is not a task of this dialect (it is dead-lettered)."""

    error: Exception


@dataclass(frozen=True, slots=True)
class Subscription:
    """One topic a service's worker consumes. ``role`` tells the executor what arrives there:
    ``"execute"`` (tasks to run, by the executor); any other role is a *relay* (e.g. Infinitic's
    ``task-retry`` / ``task-events`` handlers): each message becomes ``Dialect.relay``'s messages
    (``worker/relay.py``)."""

    topic: str
    subscription: str
    role: str = "execute"
    dead_letter_topic: str | None = None  # where the broker moves a message nacked too often
    # Messages here carry a schema version: the consumer resolves each one's writer schema
    # (``ReceivedMessage.writer_schema``) for ``decode`` / ``relay``.
    writer_schemas: bool = False
    # The Avro definition the consumer attaches (a topic of a schema registry): the broker's
    # dead-letter move writes with the consumer's schema, and a schemaless producer is refused
    # on a dead-letter topic that has one (the message would then be stuck, never moved).
    schema: str | None = None


class Publish(msgspec.Struct, frozen=True, gc=False):
    """One message of an outcome. ``reply``: it answers the caller, so a redelivered copy of an
    already settled task is answered with it again (kept by the ledger, if small)."""

    topic: str
    message: OutgoingMessage
    reply: bool = False


class Dialect(Protocol[T]):
    """A message format, as the executor sees it. Every method is pure.

    Optional attribute ``reply_prefix: str``: what every reply topic of this dialect starts
    with; the worker then dead-letters a task whose ``reply_to`` is no such topic
    (``worker.envelope_rules``) instead of publishing where the broker would refuse it.

    Optional, for the receive hot path: ``task_struct`` (the msgspec Struct its tasks decode
    to) and ``struct_decoder(struct) -> Callable[[bytes], task]`` (a decoder of a subclass of
    it, raising on what it refuses): the router then decodes with a subclass that checks the
    envelope rules while decoding (``EnvelopeRules.plain_struct``), and routes the general way
    (``decode``) only the messages it refuses; with ``raw_args_decoder(method)`` too (a
    callable: the task's ``args`` -> what ``decode_args`` returns), it decodes arguments
    without a call more. ``all_complete_silently(tasks) -> bool``: ``completes_silently`` of
    a whole unit at once.

    Optional, for the operator tools: ``dead_letters() -> wire.letters.DeadLetters`` (how its
    dead letters are read and replayed by ``infinitic-py dlq`` / ``status``).

    Optional: ``last_words(task, error, worker) -> Sequence[Publish]``: what to tell (best
    effort) before the nack after which the broker dead-letters a task whose outcomes could
    not be made durable (Infinitic: a ``TaskFailedEvent``, as the JVM's ``beforeDlq``)."""

    name: str

    # --- topics -----------------------------------------------------------------------------
    def subscriptions(self, service: str) -> Sequence[Subscription]:
        """What a worker of ``service`` consumes (first: the tasks to execute)."""
        ...

    def dead_letter_topic(self, service: str) -> str:
        """Where tasks of ``service`` that failed for good (or never decoded) are kept."""
        ...

    def producer_schema(self, topic: str) -> str | None:
        """The schema definition (Avro JSON) producers of ``topic`` must carry; None for raw
        bytes."""
        ...

    def partitioner(self, topic: str) -> Partitioner | None:
        """How keyed messages of ``topic`` must be spread over its partitions (when its readers
        expect one partitioning); None: the transport's own."""
        ...

    def topics(self, service: str) -> Mapping[str, int]:
        """Topics a worker of ``service`` needs to exist -> partitions (0: non-partitioned).
        Created where missing (over the admin API) for brokers with auto topic creation off;
        empty: the broker creates topics itself."""
        ...

    # --- in ---------------------------------------------------------------------------------
    def decode(self, message: ReceivedMessage) -> T | Undecodable:
        """The task a received message carries, or why it carries none."""
        ...

    def decode_args(self, task: T, method: MethodDefinition) -> tuple[Any, ...]:
        """The task's positional arguments, decoded with the method's types. Raises (any
        exception) when they do not match the signature."""
        ...

    # --- out (each returns the messages to publish, in order) -------------------------------
    announces_start: bool  # whether ``started`` ever returns anything (skipped if not)

    def started(self, task: T) -> Sequence[Publish]:
        """Published when the task starts running (empty: nothing to say)."""
        ...

    def completes_silently(self, task: T) -> bool:
        """True when ``completed`` publishes nothing for this task (the hot path skips it)."""
        ...

    def completed(self, task: T, output: Any, worker: str) -> Sequence[Publish]:
        """Raises if ``output`` cannot be encoded (``TypeError``, ``OverflowError``,
        ``UnicodeEncodeError``...: the task then fails instead)."""
        ...

    def retried(self, task: T, error: BaseException, trace: str | None, delay: float,
                worker: str) -> Sequence[Publish]:
        """The next attempt (delivered after ``delay`` seconds) and whatever tells of it."""
        ...

    def failed(self, task: T, error: BaseException, trace: str | None, reason: str,
               payload: bytes, worker: str) -> Sequence[Publish]:
        """A task failed for good: its failure reply (if anyone waits) and its dead letter."""
        ...

    def undecodable(self, message: ReceivedMessage, error: Exception, service: str,
                    worker: str) -> Sequence[Publish]:
        """The dead letter of a message that is not a task."""
        ...

    # --- relays (subscriptions whose role is not "execute") --------------------------------
    def relay(self, role: str, message: ReceivedMessage, worker: str) -> Sequence[Publish]:
        """What a message received on a relay subscription becomes (empty: nothing, it is
        acked). Raises when it cannot be read (it is then nacked, and dead-lettered by the
        broker's policy)."""
        ...
