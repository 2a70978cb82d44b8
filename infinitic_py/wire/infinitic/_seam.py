"""Stand-ins for the wire seam's data classes (``infinitic_py.wire`` of the worker redesign,
issue 13), so the draft dialect is testable before the merge. Same names and fields; at merge,
import them from ``infinitic_py.wire`` instead and delete this module."""

from __future__ import annotations

from dataclasses import dataclass

from infinitic_py.transport.base import OutgoingMessage


@dataclass(frozen=True, slots=True)
class Undecodable:
    error: Exception


@dataclass(frozen=True, slots=True)
class Subscription:
    topic: str
    subscription: str
    role: str = "execute"
    dead_letter_topic: str | None = None


@dataclass(frozen=True, slots=True)
class Publish:
    topic: str
    message: OutgoingMessage
    reply: bool = False
