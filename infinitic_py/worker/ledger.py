"""Ledger: what the worker holds, runs and has settled. The one owner of backpressure (messages
held and their payload bytes, against the two buffer caps: the receive loop stops pulling at
either; room is reserved before a receive, so receive loops sharing the ledger never cross the
message cap, except by a bulk's expansion; a run may cross the byte cap, its bytes known only
once received) and of duplicate memory (attempts running now, attempts settled recently with
the replies they sent).

A copy of an attempt that is running is parked until that attempt settles, then answered like a
copy of a settled one (nacked, it came back after every nack delay, and with ``max_redeliveries``
set the broker dead-lettered it while the attempt still ran: a dead letter for a task that
completed, its caller never answered); a copy of one settled recently is answered from memory
(``CopyAction``) instead of running again.
No I/O: the executor acks, nacks and publishes; the ledger only keeps the books (its one asyncio
object is the event the receive loop waits on at the cap).
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Sequence
from dataclasses import dataclass
from operator import attrgetter

from infinitic_py.wire import Publish
from infinitic_py.worker.recent import RecentOutcomes
from infinitic_py.worker.routing import AttemptKey, Pending

# Recently settled attempts kept to answer redelivered copies, and the replies kept with them
# (a larger reply is not kept: a copy then gets no second reply).
RECENT_CAPACITY = 10_000
RECENT_REPLY_BYTES = 16 * 1024 * 1024
KEEP_REPLY_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Settled:
    """What is remembered of a settled attempt: where its reply went, and the reply if kept."""

    reply_to: str | None
    replies: tuple[Publish, ...] | None


NO_REPLY = Settled(None, None)


class CopyAction(enum.Enum):
    ACK = "acked"  # settled, nothing to answer again
    REPLY = "replied"  # settled: publish the kept replies again, then ack
    RERUN = "rerun"  # settled but no reply kept for this caller: run it again
    WAIT = "wait"  # the same attempt runs right now: park it (``park``) until it settles


@dataclass(frozen=True, slots=True)
class CopyVerdict:
    action: CopyAction
    replies: tuple[Publish, ...] = ()  # for REPLY: addressed to the copy's reply topic


_key_of = attrgetter("key")  # Pending -> its AttemptKey


class Ledger:
    def __init__(
        self,
        max_held: int,
        max_bytes: int = 256 * 1024 * 1024,
        *,
        recent_capacity: int = RECENT_CAPACITY,
        recent_bytes: int = RECENT_REPLY_BYTES,
        keep_reply_bytes: int = KEEP_REPLY_BYTES,
    ) -> None:
        if max_held < 1:
            raise ValueError("max_buffered_messages must be >= 1")
        if max_bytes < 1:
            raise ValueError("max_buffered_bytes must be >= 1")
        self.max_held = max_held
        self.max_bytes = max_bytes
        self.held = 0  # messages received and not yet acked / nacked
        self.held_bytes = 0  # ... and their payload bytes
        self.reserved = 0  # room held by receives under way (not messages yet)
        self._room = asyncio.Event()
        self._room.set()
        self._running: set[AttemptKey] = set()
        # Copies of running attempts, held until their attempt settles (``settle`` returns them).
        self._parked: dict[AttemptKey, list[Pending]] = {}
        self._recent: RecentOutcomes[AttemptKey, Settled] = RecentOutcomes(
            recent_capacity, recent_bytes)
        self._keep_reply_bytes = keep_reply_bytes

    # ------------------------------------------------------------------ backpressure

    @property
    def room(self) -> int:
        """How many more messages may be taken in."""
        return self.max_held - self.held - self.reserved

    @property
    def full(self) -> bool:
        """At either cap: messages or bytes."""
        return self.room <= 0 or self.held_bytes >= self.max_bytes

    def hold(self, count: int, size: int = 0) -> None:
        """``count`` messages of ``size`` payload bytes in all were received."""
        self.held += count
        self.held_bytes += size

    def reserve(self, most: int) -> int:
        """Reserve room for up to ``most`` messages before a receive (0: none left); once
        it returns, the receive ``unreserve``s it all, then ``hold``s what its run took."""
        taken = max(0, min(self.room, most))
        self.reserved += taken
        return taken

    def unreserve(self, count: int) -> None:
        self.reserved -= count
        if not self._room.is_set() and not self.full:
            self._room.set()

    def release(self, count: int, size: int = 0) -> None:
        """``count`` messages of ``size`` bytes were acked or nacked."""
        self.held -= count
        self.held_bytes -= size
        if not self._room.is_set() and not self.full:
            self._room.set()

    async def wait_for_room(self) -> None:
        if self.full:
            self._room.clear()
            await self._room.wait()

    def open(self) -> None:
        """Wake a receive loop waiting for room (shutdown)."""
        self._room.set()

    # ------------------------------------------------------------------ duplicates

    def admit(self, routed: list[Pending]) -> tuple[list[Pending], list[Pending]]:
        """Split routed tasks into fresh attempts (now marked running) and copies of attempts
        running or settled (``verdict`` says what to do with each)."""
        running = self._running
        keys = set(map(_key_of, routed))
        if (len(keys) == len(routed) and running.isdisjoint(keys)
                and self._recent.isdisjoint(keys)):  # all fresh (the hot path: set operations)
            running |= keys
            return routed, []
        recent, previous = self._recent.generations()
        copies: list[Pending] = []
        fresh: list[Pending] = []
        for p in routed:
            key = p.key
            if key in recent or key in previous or key in running:
                copies.append(p)
            else:
                running.add(key)
                fresh.append(p)
        return (routed, copies) if not copies else (fresh, copies)

    def verdict(self, p: Pending) -> CopyVerdict:
        """What to do with a copy. A redelivered copy (same reply topic) gets the reply again,
        which the client ignores if it already has it; a re-dispatch of the same task id by
        another caller gets it too. When no reply was kept (too large, or the attempt was
        retried) and this copy asks for a reply on another topic than the settled one, it runs
        again (and is then marked running): better twice than a caller left waiting."""
        if p.key in self._running:
            return CopyVerdict(CopyAction.WAIT)
        settled = self._recent.get(p.key)
        reply_to = p.task.reply_to
        if not reply_to or (settled is not None and settled.replies is None
                            and settled.reply_to == reply_to):
            return CopyVerdict(CopyAction.ACK)
        if settled is not None and settled.replies is not None:
            return CopyVerdict(CopyAction.REPLY, tuple(
                Publish(reply_to, r.message, reply=True) for r in settled.replies))
        self._recent.discard(p.key)
        self._running.add(p.key)
        return CopyVerdict(CopyAction.RERUN)

    def park(self, copy: Pending) -> None:
        """Hold a copy whose verdict is WAIT until its attempt settles (it keeps its room)."""
        self._parked.setdefault(copy.key, []).append(copy)

    @property
    def parked(self) -> int:
        return sum(map(len, self._parked.values()))

    def settle(
        self,
        items: Sequence[Pending],
        *,
        ack: bool,
        replies: Sequence[Sequence[Publish] | None] | None = None,
    ) -> list[Pending]:
        """Close the books on ``items`` (acked or given back), and release their room. Returns
        the copies parked on them (``park``): the caller answers them now (acked: ``verdict``
        again; given back: give them back too).

        ``replies`` (acked only), one entry per item: the replies its outcome sent (empty: none),
        or None when the attempt was retried. None for the whole unit: nothing was published."""
        keys = list(map(_key_of, items))
        self._running.difference_update(keys)
        self.release(len(items), sum([len(p.msg.data) for p in items]))
        parked: list[Pending] = []
        if self._parked:
            for key in keys:
                parked += self._parked.pop(key, ())
        if not ack:
            return parked
        self._remember(items, keys, replies)
        return parked

    def _remember(self, items: Sequence[Pending], keys: list[AttemptKey],
                  replies: Sequence[Sequence[Publish] | None] | None) -> None:
        recent = self._recent
        if replies is None:
            recent.add_many(keys, NO_REPLY)
            return
        for p, sent in zip(items, replies, strict=True):
            reply_to = p.task.reply_to
            if not sent:
                recent.add(p.key, NO_REPLY if reply_to is None else Settled(reply_to, None))
                continue
            size = sum(len(r.message.data) for r in sent)
            if size <= self._keep_reply_bytes:
                recent.add(p.key, Settled(reply_to, tuple(sent)), size)
            else:
                recent.add(p.key, Settled(reply_to, None))
