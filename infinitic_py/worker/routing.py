"""Routing: a received message -> a ``Pending`` task on its named ``MethodRoute``, or a
``Rejection`` with its reason. Pure: the dialect decodes, the service definition says where a
method goes; no I/O, no clock, no duplicate memory (that is the ledger's).

One path for every message: ``route_many`` is what the executor calls for each run of received
messages (one call per run, not per message: the hot path).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from infinitic_py.batching import BatchLimits
from infinitic_py.errors import DecodeError
from infinitic_py.priority import DEFAULT_PRIORITY, NORMAL_RANGE, band_of
from infinitic_py.service import MethodDefinition, ServiceDefinition
from infinitic_py.signatures import args_mismatch
from infinitic_py.transport.base import ReceivedMessage
from infinitic_py.wire import Dialect, Task, Undecodable
from infinitic_py.worker.envelope_rules import INVALID_ENVELOPE, MAX_ARGS_BYTES, EnvelopeRules

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
    # The dialect's decoder of a plain task's ``args`` (``Dialect.raw_args_decoder``), if any.
    raw_args: Callable[[Any], tuple[Any, ...]] | None = None

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
        raw_args = getattr(dialect, "raw_args_decoder", None)
        self.routes: dict[str, MethodRoute] = {
            name: MethodRoute(name, method, method.batch.limits if method.batch else None,
                              (name, None), raw_args(method) if raw_args is not None else None)
            for name, method in definition.methods.items()
        }
        # A decoder of plainly valid tasks (``EnvelopeRules.plain_struct``), if the dialect's
        # tasks are msgspec Structs it can decode as a subclass (``Dialect``'s optional
        # ``task_struct`` / ``struct_decoder``).
        self._plain: Callable[[Any], Any] | None = None
        struct = getattr(dialect, "task_struct", None)
        if struct is not None:
            checked = self.rules.plain_struct(struct)
            if checked is not None:
                self._plain = dialect.struct_decoder(checked)  # type: ignore[attr-defined]

    def route_many(
        self, msgs: Sequence[ReceivedMessage]
    ) -> tuple[list[Pending], list[Rejection]]:
        """Route a run of messages, in order."""
        routed: list[Pending] = []
        rejected: list[Rejection] = []
        plain = self._plain
        if plain is None:
            for msg in msgs:
                self._route(msg, routed, rejected)
            return routed, rejected
        # The hot path: a task the plain decoder takes passes the envelope rules but two,
        # checked here (its reply topic was seen valid before; its arguments' size is bounded
        # by its message's). Anything else is routed the general way (decoded again).
        routes = self.routes
        accepted = self.rules.accepted_replies
        decode_args = self._dialect.decode_args
        append = routed.append
        for msg in msgs:
            data = msg.data
            try:
                task = plain(data)
            except Exception:
                self._route(msg, routed, rejected)
                continue
            route = routes.get(task.method)
            reply_to = task.reply_to
            if (route is None or len(data) > MAX_ARGS_BYTES
                    or (reply_to is not None and reply_to not in accepted)):
                self._route(msg, routed, rejected)
                continue
            try:
                raw = route.raw_args
                args = raw(task.args) if raw is not None else decode_args(task, route.method)
            except Exception:
                self._route(msg, routed, rejected)
                continue
            append(Pending(msg, task, args, task.task_id if not task.retry_sequence
                           else (task.task_id, task.retry_sequence), route,
                           (task.method, task.batch_key()) if task.meta else route.unkeyed))
        return routed, rejected

    def _route(self, msg: ReceivedMessage, routed: list[Pending],
               rejected: list[Rejection]) -> None:
        """The general path: one message, whatever it holds. Whatever fails here concerns this
        message alone (raised, it would give back the whole run with it, at every delivery)."""
        try:
            self._route_one(msg, routed, rejected)
        except Exception as exc:
            rejected.append(Rejection(msg, "undecodable", exc))

    def _route_one(self, msg: ReceivedMessage, routed: list[Pending],
                   rejected: list[Rejection]) -> None:
        task = self._dialect.decode(msg)
        if isinstance(task, Undecodable):
            rejected.append(Rejection(msg, "undecodable", task.error))
            return
        rules = self.rules
        invalid = rules.problem(task)
        if invalid is not None:
            rejected.append(Rejection(msg, INVALID_ENVELOPE, DecodeError(invalid),
                                      rules.sanitized(task)))
            return
        route = self.routes.get(task.method)
        if route is None:
            rejected.append(Rejection(msg, "unknown_method", DecodeError(
                f"service {self.service} has no task method {task.method!r}"), task))
            return
        try:
            args = self._dialect.decode_args(task, route.method)
        except Exception as exc:  # msgspec errors, or whatever a type's __post_init__ raises
            why = str(exc)
            encoded = getattr(task, "args", None)  # a MessagePack array (the native wire)
            if isinstance(exc, msgspec.ValidationError) and isinstance(encoded, msgspec.Raw):
                method = route.method
                why = args_mismatch(method.param_names, method.param_types, encoded, exc)
            rejected.append(Rejection(msg, "not_retryable", DecodeError(
                f"arguments of {route.method.qualified} do not match its signature: {why}"),
                task))
            return
        key = task.task_id if not task.retry_sequence else (task.task_id, task.retry_sequence)
        group = (task.method, task.batch_key()) if task.meta else route.unkeyed
        priority = getattr(task, "priority", DEFAULT_PRIORITY)
        if priority not in NORMAL_RANGE:  # another band: never batched with the normal one
            group = (task.method + band_of(priority).suffix, group[1])
        routed.append(Pending(msg, task, args, key, route, group))
