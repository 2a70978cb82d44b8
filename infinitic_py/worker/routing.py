"""Routing: a received message -> a ``Pending`` task on its named ``MethodRoute``, or a
``Rejection`` with its reason. Pure: the dialect decodes, the service definition says where a
method goes; no I/O, no clock, no duplicate memory (that is the ledger's).

One path for every message: ``route_many`` is what the executor calls for each run of received
messages (one call per run, not per message: the hot path).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from infinitic_py.batching import BatchLimits
from infinitic_py.errors import DecodeError
from infinitic_py.priority import DEFAULT_PRIORITY, NORMAL_RANGE, band_of
from infinitic_py.service import MethodDefinition, ServiceDefinition
from infinitic_py.transport.base import ReceivedMessage
from infinitic_py.wire import Dialect, Task, Undecodable
from infinitic_py.worker.envelope_rules import INVALID_ENVELOPE, EnvelopeRules

GroupKey = tuple[str, str | bytes | None]  # (method, batch key)
# One attempt of a task: its id for a first attempt (a str caches its hash), (task id, retry
# sequence) for the later ones.
AttemptKey = str | tuple[str, int]


def attempt_key(task: Task) -> AttemptKey:
    return task.task_id if not task.retry_sequence else (task.task_id, task.retry_sequence)


@dataclass(frozen=True, slots=True)
class MethodRoute:
    """Where the tasks of one method go: alone to execution, or into a batch group."""

    name: str
    method: MethodDefinition
    limits: BatchLimits | None  # None: a single (not batched) method
    unkeyed: GroupKey  # the group of its tasks without a batch key

    @property
    def batched(self) -> bool:
        return self.limits is not None


class Pending(msgspec.Struct, gc=False):
    """One routed task, from its routing to its settlement. Immutable by convention: no stage
    writes a field another one reads. A Struct the cyclic GC does not track: one per task."""

    msg: ReceivedMessage
    task: Any  # the dialect's task (``wire.Task``)
    args: tuple[Any, ...]
    key: AttemptKey
    route: MethodRoute
    group: GroupKey  # (method, batch key): the accumulator group of a batched method


@dataclass(frozen=True, slots=True)
class Rejection:
    """A message that can never run. ``reason``: ``undecodable``, ``invalid_envelope`` (a field
    the worker acts on is out of bounds: ``task`` is then ``EnvelopeRules.sanitized``: no reply
    topic the broker would refuse, this service's name), ``unknown_method`` or ``not_retryable`` (arguments that do not match the
    signature)."""

    msg: ReceivedMessage
    reason: str
    error: Exception
    task: Any = None  # the decoded task, if it decoded


class Router:
    def __init__(self, definition: ServiceDefinition, dialect: Dialect[Any],
                 rules: EnvelopeRules | None = None) -> None:
        self.service = definition.name
        self._dialect = dialect
        self.rules = rules if rules is not None else EnvelopeRules.of(definition.name, dialect)
        self.routes: dict[str, MethodRoute] = {
            name: MethodRoute(name, method, method.batch.limits if method.batch else None,
                              (name, None))
            for name, method in definition.methods.items()
        }

    def route_many(
        self, msgs: Sequence[ReceivedMessage]
    ) -> tuple[list[Pending], list[Rejection]]:
        """Route a run of messages, in order."""
        routed: list[Pending] = []
        rejected: list[Rejection] = []
        decode = self._dialect.decode
        decode_args = self._dialect.decode_args
        routes = self.routes
        rules = self.rules
        problem = rules.problem
        for msg in msgs:
            task = decode(msg)
            if isinstance(task, Undecodable):
                rejected.append(Rejection(msg, "undecodable", task.error))
                continue
            invalid = problem(task)
            if invalid is not None:
                rejected.append(Rejection(msg, INVALID_ENVELOPE, DecodeError(invalid),
                                          rules.sanitized(task)))
                continue
            route = routes.get(task.method)
            if route is None:
                rejected.append(Rejection(msg, "unknown_method", DecodeError(
                    f"service {self.service} has no task method {task.method!r}"), task))
                continue
            try:
                args = decode_args(task, route.method)
            except Exception as exc:  # msgspec errors, or whatever a type's __post_init__ raises
                rejected.append(Rejection(msg, "not_retryable", DecodeError(
                    f"arguments of {route.method.qualified} do not match its signature: {exc}"),
                    task))
                continue
            key = task.task_id if not task.retry_sequence else (task.task_id, task.retry_sequence)
            group = (task.method, task.batch_key()) if task.meta else route.unkeyed
            priority = getattr(task, "priority", DEFAULT_PRIORITY)
            if priority not in NORMAL_RANGE:  # another band: never batched with the normal one
                group = (task.method + band_of(priority).suffix, group[1])
            routed.append(Pending(msg, task, args, key, route, group))
        return routed, rejected
