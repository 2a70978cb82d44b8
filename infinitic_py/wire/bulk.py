"""Atomic bulk dispatch on the wire: one message that carries many tasks.

Pulsar's Python client has no transactions, but a single message is persisted whole or not at
all. ``many(..., atomic=True)`` therefore publishes *one* message whose body is every task's own
encoded envelope (``BULK_MAGIC`` + a MessagePack array of byte strings). The worker expands it
(``expand``) into one ``ReceivedMessage`` per task before routing, so each task is routed,
batched, retried and dead-lettered exactly like a task dispatched alone. The bulk message itself
is acked once *every* task in it is settled (``BulkTracker``): if any of them was given back
(nacked: its outcome could not be made durable, or the worker stopped), the whole bulk is nacked
once the last one settles; the tasks already settled are then recognised by the worker's
duplicate memory (ledger) when the bulk comes back.

Limits (README "Atomic bulk dispatch"):
- the whole bulk must fit one broker message: ``MAX_BULK_BYTES`` by default (the broker's
  ``maxMessageSize`` of 5 MiB, minus room for the message metadata). Pulsar's chunking is not
  used: Pulsar documented chunking as unsupported on Shared / Key_Shared subscriptions (the
  chunks of one message must all reach one consumer), and those are the subscriptions a worker
  fleet uses;
- a bulk has one delivery delay and one partition key: it is delivered to ONE consumer, so all
  its tasks run on one worker. On a Key_Shared fleet, a bulk whose tasks share one batch key
  keeps batch affinity (it carries that key); a bulk of mixed keys is routed by none, and its
  tasks batch on whichever worker receives it, apart from other tasks of the same keys.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat
from operator import attrgetter

import msgspec

from infinitic_py.transport.base import OutgoingMessage, ReceivedMessage

# 0xc1 is the one byte MessagePack never uses: no single task envelope can start with it.
BULK_MAGIC = b"\xc1IPB1"
PROP_BULK = "bulk"  # message property: how many tasks the bulk carries
# The broker's default maxMessageSize is 5 MiB (5,242,880 bytes); keep room for the metadata.
MAX_BULK_BYTES = 5 * 1024 * 1024 - 64 * 1024

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(list[bytes])


class BulkTooLarge(ValueError):
    """The encoded bulk does not fit one broker message."""


def bulk_parts(data: bytes) -> list[bytes] | None:
    """The task envelopes of a bulk message; ``None`` when ``data`` is no readable bulk."""
    if data[:5] != BULK_MAGIC:
        return None
    try:
        return _decoder.decode(memoryview(data)[5:])
    except Exception:  # msgspec's errors, or RecursionError (hostile nesting)
        return None


def bulk_message(messages: Sequence[OutgoingMessage],
                 max_bytes: int = MAX_BULK_BYTES) -> OutgoingMessage:
    """The one message that carries ``messages`` (each a task message built by the dialect).
    They must share one ``deliver_after``; the bulk keeps a partition key only if they all have
    the same one. Raises ``BulkTooLarge`` (nothing is sent) and ``ValueError``."""
    if not messages:
        raise ValueError("an atomic bulk needs at least one task")
    delays = {m.deliver_after or 0.0 for m in messages}
    if len(delays) > 1:
        raise ValueError("every task of an atomic many() must have the same delay / run_at "
                         "(the bulk is one message, delivered once)")
    data = BULK_MAGIC + _encoder.encode([m.data for m in messages])
    if len(data) > max_bytes:
        raise BulkTooLarge(
            f"atomic many() of {len(messages)} tasks encodes to {len(data):,} bytes, over the "
            f"{max_bytes:,}-byte limit of one broker message; nothing was dispatched "
            "(split it into several atomic calls)")
    keys = {m.partition_key for m in messages}
    key = keys.pop() if len(keys) == 1 else None
    return OutgoingMessage(data, {PROP_BULK: str(len(messages))},
                           deliver_after=messages[0].deliver_after, partition_key=key)


class BulkTracker:
    """The settlement of one received bulk: acked when every part is acked, nacked (once the
    last part settles) if any part was nacked. Held by each part's ``handle``; never refers to
    a part (no cycle through ``ReceivedMessage.handle``)."""

    __slots__ = ("nacked", "parent", "remaining")

    def __init__(self, parent: ReceivedMessage, parts: int) -> None:
        self.parent = parent
        self.remaining = parts
        self.nacked = False

    def settle(self, ack: bool) -> bool | None:
        """One part settled. Returns None while parts remain, else whether to ack the bulk."""
        if self.remaining <= 0:  # settled twice: a bug upstream; never settle the parent twice
            return None
        self.remaining -= 1
        if not ack:
            self.nacked = True
        if self.remaining:
            return None
        return not self.nacked


class BulkPart(ReceivedMessage):
    """A task expanded from a bulk: its ``handle`` is the bulk's ``BulkTracker``, and its
    partition key is the bulk's (a retry keeps the key, or its ``key_spread`` sub-key)."""

    def _read_partition_key(self) -> str | None:
        tracker: BulkTracker = self.handle
        return tracker.parent.partition_key


@dataclass(frozen=True, slots=True)
class ParentSettlement:
    parent: ReceivedMessage
    ack: bool


_data = attrgetter("data")


def _has_bulk(msgs: list[ReceivedMessage]) -> bool:
    """Whether a run holds a bulk (a C-level scan: this runs for every run received)."""
    try:
        return any(map(bytes.startswith, map(_data, msgs), repeat(BULK_MAGIC)))
    except TypeError:  # a payload that is not ``bytes`` (a transport's own buffer type)
        return any(bytes(m.data[:5]) == BULK_MAGIC for m in msgs)


def expand(msgs: list[ReceivedMessage]) -> list[ReceivedMessage]:
    """The run of messages with every bulk replaced, in place, by its tasks (the same list when
    it holds no bulk: the hot path). An empty or unreadable bulk stays as it is (the dialect
    then dead-letters it as undecodable)."""
    if not _has_bulk(msgs):
        return msgs
    out: list[ReceivedMessage] = []
    for msg in msgs:
        parts = bulk_parts(msg.data)
        if not parts:
            out.append(msg)
            continue
        tracker = BulkTracker(msg, len(parts))
        count = msg.redelivery_count
        # Each task inherits the bulk's other properties (the caller's trace context, issue 16).
        props = {k: v for k, v in msg.properties.items() if k != PROP_BULK}
        out.extend(BulkPart(part, props, count, msg.topic, tracker) for part in parts)
    return out


def expand_sized(msgs: list[ReceivedMessage]) -> tuple[list[ReceivedMessage], int]:
    """``expand(msgs)`` and the payload bytes of what it returns. The hot path: the run's
    payloads are joined once (C-level): their size, and no bulk in the run when the magic is
    nowhere in them (found somewhere, each message is checked: a payload may hold it)."""
    try:
        joined = b"".join(map(_data, msgs))
    except TypeError:  # a payload that is not bytes-like
        joined = BULK_MAGIC
    if BULK_MAGIC not in joined:
        return msgs, len(joined)
    tasks = expand(msgs)
    return tasks, sum([len(m.data) for m in tasks])


def split_settlement(
    msgs: Sequence[ReceivedMessage], ack: bool
) -> tuple[list[ReceivedMessage], list[ParentSettlement]]:
    """Messages to settle as they are, and the bulks whose last part this settles."""
    if BulkPart not in set(map(type, msgs)):  # no part of a bulk (the hot path, C-level)
        return list(msgs), []
    plain: list[ReceivedMessage] = []
    parents: list[ParentSettlement] = []
    for msg in msgs:
        tracker = msg.handle
        if type(tracker) is not BulkTracker:
            plain.append(msg)
            continue
        verdict = tracker.settle(ack)
        if verdict is not None:
            parents.append(ParentSettlement(tracker.parent, verdict))
    return plain, parents
