"""The errors of a failed dispatch, worded for the caller: what failed, what exists, what to fix."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from infinitic_py.client.stubs import Deferred
from infinitic_py.errors import DispatchFailed
from infinitic_py.transport.base import OutgoingMessage, TransportError


def caller_failure(exc: TransportError, closed: bool,
                   messages: Sequence[OutgoingMessage]) -> TransportError | None:
    """``exc`` (a failed send) with its cause named when the caller, not the broker, caused it
    (None otherwise)."""
    if closed:  # close() ran meanwhile
        return TransportError(f"{exc}: the client was closed during the dispatch")
    if "MessageTooBig" in str(exc):  # the caller's data is too large
        largest = max(len(message.data) for message in messages)
        return TransportError(
            f"{exc}: the largest task's message is {largest:,} bytes, over the broker's "
            "maxMessageSize (5 MiB by default): pass large data by reference (e.g. an object "
            "store key) instead")
    return None


def dispatch_failed(exc: TransportError, ids: Sequence[str], sent: set[int],
                     deferreds: Sequence[Deferred[Any]], atomic: bool) -> DispatchFailed:
    """The one error of a failed dispatch, naming what exists and what does not."""
    done = [ids[i] for i in sorted(sent)]
    rest = [task_id for i, task_id in enumerate(ids) if i not in sent]
    if atomic:
        what = f"atomic dispatch of {len(ids)} tasks failed: nothing was dispatched"
    elif not done:
        what = f"dispatch of {len(ids)} task(s) failed: none was confirmed by the broker"
    else:
        what = (f"dispatch of {len(ids)} tasks failed part-way: {len(done)} were sent "
                f"(error.sent / error.deferreds), {len(rest)} were not confirmed (error.unsent)")
    return DispatchFailed(f"{what} ({exc})", done, rest,
                          [deferreds[i] for i in sorted(sent)])


def response_topic_taken(exc: TransportError, name: str, topic: str) -> TransportError:
    """Another consumer holds the response topic: the cause is the client name, say so."""
    if "ConsumerBusy" not in str(exc) and "already has a consumer" not in str(exc):
        return exc
    return TransportError(f"another client named {name!r} is connected to its response topic "
                          f"{topic} (or one that died is not dropped by the broker yet): give "
                          "each client its own name (AsyncClient(name=...); unset: a unique one)")
