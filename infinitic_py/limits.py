"""Unacked-message budgets against the broker's limits: pure arithmetic, no I/O.

The broker counts a message as *unacked* for a consumer from the moment it dispatches it until the
ack arrives. Once a consumer holds ``maxUnackedMessagesPerConsumer`` unacked messages (broker
default 50,000) the broker stops dispatching to it, and only resumes when acks bring the count
down to half the limit. Nothing is logged client-side: the consumer just goes quiet. The same
happens to a whole subscription (every worker of a service) at ``maxUnackedMessagesPerSubscription``
(broker default 200,000).

What one worker can hold unacked on one service's consumer (``unacked_demand``):

``prefetched``
    ``receiver_queue_size``: the client library asks the broker for that many messages ahead
    of ``receive()``; they are dispatched, hence unacked, while they wait in the client's queue.
``running``
    ``concurrency x max_messages``: one full batch per concurrency slot, handler running or
    outcomes being published. These messages are acked only after every outcome is durable.
``accumulating``
    Messages in open groups (one per method and batch key, each below ``max_messages``) and
    flushed batches waiting for a concurrency slot. The number of batch keys is unbounded, so
    only the buffer cap bounds this part.

The executor's contract (DESIGN §3.8) is that ``worker.max_buffered_messages`` caps *every*
message it has received and not yet acked or nacked (accumulating + waiting + running) and that
it stops calling ``receive()`` at the cap. So the worker-held part is at most
``max_buffered_messages``, of which up to ``concurrency x max_messages`` can be running and the rest
accumulating, and::

    demand = receiver_queue_size + max_buffered_messages

``concurrency`` and ``max_messages`` only decide how that cap splits between running and
accumulating (see :class:`UnackedBudget`); ``buffer_findings`` flags caps too small to fill
the slots. The executor applies the cap per service (one consumer each); were it shared across
services, the worst case would still be all of it on one consumer, so the demand is the same.

Not counted (kept as headroom, which is why the check wants demand strictly below the limit):
acks queued in the client (flushed every 100 ms), and retries re-published with
``deliver_after`` (acked before they come back). Topics are assumed non-partitioned; on a
partitioned topic each partition's consumer has its own receiver queue and its own limit.

The effective limit is the most specific one set: topic policy, then namespace policy, then the
broker's ``maxUnackedMessagesPerConsumer``. ``0`` means unlimited at every level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final, Literal, Required, TypedDict, Unpack

__all__ = [
    "DEFAULT_BROKER_MAX_UNACKED_PER_CONSUMER",
    "DEFAULT_BROKER_MAX_UNACKED_PER_SUBSCRIPTION",
    "FindingLevel",
    "LimitFinding",
    "LimitScope",
    "LimitSource",
    "UnackedBudget",
    "buffer_findings",
    "byte_findings",
    "check_slots_against_limit",
    "check_subscription_unacked_limit",
    "check_unacked_limit",
    "effective_limit",
    "suggested_limit",
    "unacked_budget",
    "unacked_demand",
]

DEFAULT_BROKER_MAX_UNACKED_PER_CONSUMER: Final = 50_000
DEFAULT_BROKER_MAX_UNACKED_PER_SUBSCRIPTION: Final = 200_000
DEFAULT_BROKER_MAX_MESSAGE_BYTES: Final = 5 * 1024 * 1024  # the broker's maxMessageSize

FindingLevel = Literal["ok", "warn", "error"]
LimitSource = Literal["topic", "namespace", "broker", "assumed broker default"]


@dataclass(frozen=True, slots=True)
class LimitFinding:
    """One result of a check: ``level``, a one-line ``message`` naming the numbers compared,
    and ``suggestions`` (each a complete, actionable sentence; empty when level is ``ok``)."""

    level: FindingLevel
    code: str
    message: str
    suggestions: tuple[str, ...] = ()

    def __str__(self) -> str:
        if not self.suggestions:
            return f"{self.level}: {self.message}"
        return f"{self.level}: {self.message} Fix: " + " Or: ".join(self.suggestions)


@dataclass(frozen=True, slots=True)
class UnackedBudget:
    """Worst-case unacked messages of one worker on one service's consumer, by where they sit.

    ``prefetched + running + accumulating == demand``; ``running + accumulating`` never exceeds
    ``max_buffered_messages``.
    """

    receiver_queue_size: int
    concurrency: int
    max_messages: int
    max_buffered_messages: int

    @property
    def prefetched(self) -> int:
        """Dispatched by the broker, waiting in the client's receiver queue."""
        return self.receiver_queue_size

    @property
    def running(self) -> int:
        """In batches holding a concurrency slot: ``concurrency x max_messages``, capped."""
        return min(self.concurrency * self.max_messages, self.max_buffered_messages)

    @property
    def accumulating(self) -> int:
        """In open groups or flushed batches waiting for a slot: the rest of the buffer cap."""
        return self.max_buffered_messages - self.running

    @property
    def held_by_worker(self) -> int:
        return self.running + self.accumulating

    @property
    def demand(self) -> int:
        return self.prefetched + self.held_by_worker

    def describe(self) -> str:
        return (
            f"{self.demand} = receiver_queue_size {self.prefetched} "
            f"+ running {self.running} (concurrency {self.concurrency} x max_messages "
            f"{self.max_messages}, capped by max_buffered_messages) "
            f"+ accumulating {self.accumulating} (rest of max_buffered_messages "
            f"{self.max_buffered_messages})"
        )


def unacked_budget(
    receiver_queue_size: int, concurrency: int, max_messages: int, max_buffered_messages: int
) -> UnackedBudget:
    for name, value in (
        ("receiver_queue_size", receiver_queue_size),
        ("concurrency", concurrency),
        ("max_messages", max_messages),
        ("max_buffered_messages", max_buffered_messages),
    ):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    return UnackedBudget(receiver_queue_size, concurrency, max_messages, max_buffered_messages)


def unacked_demand(
    receiver_queue_size: int, concurrency: int, max_messages: int, max_buffered_messages: int
) -> int:
    """Most messages one worker can hold unacked on one service's consumer (see module doc).

    Non-decreasing in every argument.
    """
    return unacked_budget(receiver_queue_size, concurrency, max_messages, max_buffered_messages).demand


def effective_limit(
    broker_limit: int | None,
    namespace_limit: int | None,
    topic_limit: int | None = None,
    *,
    default: int = DEFAULT_BROKER_MAX_UNACKED_PER_CONSUMER,
) -> tuple[int, LimitSource]:
    """The limit the broker applies and where it comes from; ``0`` means unlimited.

    ``None`` at a level means "not set / not known": the next level applies. With nothing known,
    Pulsar's default broker setting is assumed.
    """
    if topic_limit is not None:
        return topic_limit, "topic"
    if namespace_limit is not None:
        return namespace_limit, "namespace"
    if broker_limit is not None:
        return broker_limit, "broker"
    return default, "assumed broker default"


def suggested_limit(demand: int) -> int:
    """A policy value comfortably above ``demand``: +25 % headroom, rounded up to 1,000."""
    return max(demand + 1, math.ceil(demand * 1.25 / 1000) * 1000)


class LimitScope(TypedDict, total=False):
    """The keywords of the limit checks: the limit as set on the broker, the namespace and the
    topic (``None``: not set / not known; the most specific one set applies, see
    ``effective_limit``), the tenant and namespace the fix commands name (default
    ``public/default``), and the service the messages name (none by default)."""

    broker_limit: Required[int | None]
    namespace_limit: Required[int | None]
    topic_limit: int | None
    tenant: str
    namespace: str
    service: str | None


@dataclass(frozen=True, slots=True)
class _Scoped:
    """A ``LimitScope`` resolved for one setting (``maxUnackedMessagesPer{per}``)."""

    per: str
    limit: int
    source: LimitSource
    ns: str  # tenant/namespace
    who: str  # "service 'S': " or ""

    @property
    def where(self) -> str:
        setting = f"maxUnackedMessagesPer{self.per}"
        if self.source == "assumed broker default":
            return f"{setting} (Pulsar's default, assumed: the admin API was not consulted)"
        return f"the {self.source} {setting}"

    def below(self, code: str, demand: int, what: str, unlimited: str = "") -> list[LimitFinding]:
        """The ``ok`` finding when the limit is 0 (unlimited) or ``demand`` (``what``) is below
        it; empty otherwise."""
        if self.limit <= 0:
            return [LimitFinding("ok", f"{code}-unlimited",
                                 f"{self.who}{self.where} is 0 (unlimited){unlimited}.")]
        if demand < self.limit:
            return [LimitFinding("ok", f"{code}-ok",
                                 f"{self.who}{what} {demand} < {self.where} {self.limit}.")]
        return []

    def raise_namespace_policy(self, target: int) -> str:
        return (
            f"raise the namespace policy to {target}: pulsar-admin namespaces "
            f"set-max-unacked-messages-per-{self.per.lower()} {self.ns} -c {target} "
            f"(REST: POST /admin/v2/namespaces/{self.ns}/maxUnackedMessagesPer{self.per} "
            f"with body {target})."
        )


def _scoped(scope: LimitScope, per: str,
            default: int = DEFAULT_BROKER_MAX_UNACKED_PER_CONSUMER) -> _Scoped:
    limit, source = effective_limit(scope["broker_limit"], scope["namespace_limit"],
                                    scope.get("topic_limit"), default=default)
    ns = f"{scope.get('tenant', 'public')}/{scope.get('namespace', 'default')}"
    return _Scoped(per, limit, source, ns, _who(scope.get("service")))


def _who(service: str | None) -> str:
    return f"service {service!r}: " if service else ""


def check_unacked_limit(
    receiver_queue_size: int,
    concurrency: int,
    max_messages: int,
    max_buffered_messages: int,
    **scope: Unpack[LimitScope],
) -> list[LimitFinding]:
    """Compare one worker's demand on one service's consumer with maxUnackedMessagesPerConsumer.

    Returns exactly one finding (a list, so callers can concatenate checks):

    - ``ok`` when the limit is unlimited (0) or ``demand < limit``;
    - ``error`` when even ``receiver_queue_size`` plus one full batch reaches the limit: no
      batch can fill by size, every one is cut by ``max_seconds`` and the consumer keeps stalling;
    - ``warn`` otherwise when ``demand >= limit``: the consumer stalls whenever the buffer fills,
      until acks bring it down to half the limit.
    """
    budget = unacked_budget(receiver_queue_size, concurrency, max_messages, max_buffered_messages)
    demand = budget.demand
    at = _scoped(scope, "Consumer")
    limit, who, where = at.limit, at.who, at.where
    ok = at.below("unacked", demand, "worst-case unacked messages per consumer",
                  f"; worst-case demand is {demand}")
    if ok:
        return ok

    one_batch = receiver_queue_size + min(max_messages, max_buffered_messages)
    level: FindingLevel = "error" if one_batch >= limit else "warn"
    consequence = (
        "not even one full batch fits: every batch will be cut by max_seconds and the consumer "
        "will keep stalling"
        if level == "error"
        else "the broker will stop dispatching to this consumer whenever the worker's buffer "
        f"fills, until acks bring it down to {limit // 2}"
    )
    message = (
        f"{who}worst-case unacked messages per consumer {budget.describe()} >= {where} {limit}; "
        f"{consequence}."
    )

    suggestions: list[str] = []
    # 1. Lower the worker's buffer cap, keeping the prefetch as is.
    buffer_room = limit - 1 - receiver_queue_size
    if buffer_room >= 1:
        text = f"set worker.max_buffered_messages <= {buffer_room}"
        full = concurrency * max_messages
        if buffer_room < max_messages:
            text += (
                f" (below max_messages {max_messages}: also lower max_messages to "
                f"<= {buffer_room} so batches can still fill)"
            )
        elif buffer_room < full:
            text += (
                f" (below concurrency x max_messages = {full}: also lower concurrency to "
                f"<= {buffer_room // max_messages} so every slot can run a full batch)"
            )
        suggestions.append(text + ".")
    # 2. Lower the prefetch, keeping the buffer cap as is.
    queue_room = limit - 1 - max_buffered_messages
    if queue_room >= 1 and queue_room < receiver_queue_size:
        suggestions.append(f"set pulsar.consumer.receiver_queue_size <= {queue_room}.")
    # 3. Raise the limit where it is decided.
    target = suggested_limit(demand)
    if at.source == "topic":
        suggestions.append(
            f"raise the topic policy: pulsar-admin topicPolicies "
            f"set-max-unacked-messages-per-consumer persistent://{at.ns}/<topic> -m {target}."
        )
    else:
        suggestions.append(at.raise_namespace_policy(target))
    return [LimitFinding(level, "unacked-per-consumer", message, tuple(suggestions))]


def check_subscription_unacked_limit(
    demand_per_consumer: int, consumers: int, **scope: Unpack[LimitScope]
) -> list[LimitFinding]:
    """Compare a fleet of ``consumers`` workers with maxUnackedMessagesPerSubscription.

    Reaching it blocks the whole subscription (every worker of the service), until acks bring it
    down to half. ``ok`` iff the limit is unlimited (0) or the fleet's demand is below it;
    ``warn`` otherwise.
    """
    if demand_per_consumer < 0 or consumers < 1:
        raise ValueError("demand_per_consumer must be >= 0 and consumers >= 1")
    demand = demand_per_consumer * consumers
    at = _scoped(scope, "Subscription", DEFAULT_BROKER_MAX_UNACKED_PER_SUBSCRIPTION)
    ok = at.below("subscription", demand,
                  f"worst-case unacked messages of {consumers} worker(s)")
    if ok:
        return ok
    most = max(1, (at.limit - 1) // max(1, demand_per_consumer))
    suggestions = (
        f"run at most {most} worker(s) with this configuration, or lower their "
        f"max_buffered_messages / receiver_queue_size.",
        at.raise_namespace_policy(suggested_limit(demand)),
    )
    return [LimitFinding(
        "warn", "unacked-per-subscription",
        f"{at.who}{consumers} worker(s) x {demand_per_consumer} = {demand} worst-case unacked "
        f"messages >= {at.where} {at.limit}; the broker will stop dispatching to every worker "
        f"of the service whenever that is reached.",
        suggestions,
    )]


def buffer_findings(
    concurrency: int,
    max_messages: int,
    max_buffered_messages: int,
    *,
    service: str | None = None,
    method: str | None = None,
) -> list[LimitFinding]:
    """Whether the buffer cap lets batches fill: ``warn`` if a single batch cannot reach
    ``max_messages`` (every flush is a memory flush), ``ok`` otherwise (with a note when not every
    concurrency slot can run a full batch at once)."""
    who = ".".join(p for p in (service, method) if p)
    who = f"{who}: " if who else ""
    if max_buffered_messages < max_messages:
        return [LimitFinding(
            "warn", "buffer-below-batch",
            f"{who}worker.max_buffered_messages {max_buffered_messages} < max_messages "
            f"{max_messages}: no batch can reach its size; each will be flushed by the memory cap.",
            (f"set worker.max_buffered_messages >= {concurrency * max_messages} "
             f"(concurrency x max_messages), or max_messages <= {max_buffered_messages}.",),
        )]
    full = concurrency * max_messages
    if max_buffered_messages < full:
        return [LimitFinding(
            "ok", "buffer-below-slots",
            f"{who}worker.max_buffered_messages {max_buffered_messages} < concurrency x "
            f"max_messages {full}: at most {max_buffered_messages // max_messages} full batches "
            f"run at once.",
        )]
    return [LimitFinding(
        "ok", "buffer-ok",
        f"{who}worker.max_buffered_messages {max_buffered_messages} >= concurrency x "
        f"max_messages {full}.",
    )]


def byte_findings(
    receiver_queue_size: int,
    max_buffered_bytes: int,
    *,
    max_message_bytes: int = DEFAULT_BROKER_MAX_MESSAGE_BYTES,
    service: str | None = None,
) -> list[LimitFinding]:
    """Payload memory per service: the worker holds at most ``max_buffered_bytes`` (plus one run
    of received messages), and pulsar-client prefetches ``receiver_queue_size`` messages whatever
    their size (its consumer has no byte cap), so the worst case adds ``receiver_queue_size x
    max_message_bytes``. ``warn`` when that prefetch alone can exceed the byte cap by 4x or more
    and the cap was lowered below the default: the cap would then not bound memory."""
    who = _who(service)
    prefetch = receiver_queue_size * max_message_bytes
    mib = 1024 * 1024
    text = (f"{who}payload memory <= worker.max_buffered_bytes {max_buffered_bytes // mib} MiB "
            f"+ receiver_queue_size {receiver_queue_size} x message size (at most "
            f"{max_message_bytes // mib} MiB, the broker's maxMessageSize: "
            f"{prefetch // mib} MiB)")
    if max_buffered_bytes < 256 * mib and prefetch >= 4 * max_buffered_bytes:
        fit = max(1, max_buffered_bytes // max_message_bytes)
        return [LimitFinding(
            "warn", "prefetch-over-byte-cap", text + ": the prefetch, bounded by count only, "
            "can hold more than the byte cap.",
            (f"for large messages set pulsar.consumer.receiver_queue_size <= {max(fit, 4)}",),
        )]
    return [LimitFinding("ok", "bytes-ok", text + ".")]


def check_slots_against_limit(
    receiver_queue_size: int,
    concurrency: int,
    max_messages: int,
    max_buffered_messages: int,
    **scope: Unpack[LimitScope],
) -> list[LimitFinding]:
    """The operator's formula, checked as written: ``receiver_queue_size + concurrency ×
    max_messages`` against maxUnackedMessagesPerConsumer.

    When it reaches the limit the configuration asks for more than the broker allows: without the
    worker's buffer cap the consumer would stall; with the cap below the limit it does not stall,
    but the concurrency slots can never all run full batches. Either way it is a ``warn`` naming
    both numbers; ``ok`` otherwise (or when the limit is 0, unlimited).
    """
    at = _scoped(scope, "Consumer")
    limit, who, where = at.limit, at.who, at.where
    slots = concurrency * max_messages
    asked = receiver_queue_size + slots
    if limit <= 0 or asked < limit:
        return [LimitFinding(
            "ok", "slots-ok",
            f"{who}receiver_queue_size {receiver_queue_size} + concurrency {concurrency} x "
            f"max_messages {max_messages} = {asked} < {where} {limit}"
            + (" (unlimited)." if limit <= 0 else "."),
        )]
    capped = receiver_queue_size + max_buffered_messages < limit
    consequence = (
        f"worker.max_buffered_messages {max_buffered_messages} keeps the consumer below the limit, "
        f"so it will not stall, but at most {max(1, max_buffered_messages // max_messages)} of the "
        f"{concurrency} slots can run a full batch at once"
        if capped
        else "the broker will stop dispatching to this consumer (it stalls until acks catch up)"
    )
    fit = (limit - 1 - receiver_queue_size) // max(1, max_messages)
    queue_fit = limit - 1 - concurrency * max_messages
    if fit >= 1:  # lowering concurrency is enough
        lower = (f"lower concurrency to <= {fit} (or max_messages) so concurrency x max_messages "
                 f"+ receiver_queue_size < {limit}")
    elif queue_fit >= 1:  # the receiver queue alone leaves no room for one batch
        lower = (f"lower pulsar.consumer.receiver_queue_size to <= {queue_fit} so "
                 f"receiver_queue_size + concurrency x max_messages < {limit}")
    else:
        lower = (f"lower pulsar.consumer.receiver_queue_size, concurrency and max_messages so "
                 f"that receiver_queue_size + concurrency x max_messages < {limit}")
    return [LimitFinding(
        "warn", "slots-over-limit",
        f"{who}receiver_queue_size {receiver_queue_size} + concurrency {concurrency} x "
        f"max_messages {max_messages} = {asked} >= {where} {limit}: {consequence}.",
        (
            lower,
            f"raise the limit to {suggested_limit(asked)}: pulsar-admin namespaces "
            f"set-max-unacked-messages-per-consumer {at.ns} -c {suggested_limit(asked)}",
        ),
    )]
