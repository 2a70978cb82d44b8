"""``infinitic-py status``: a namespace's services from the broker's topic stats (pure).

Input: the namespace's persistent topic names and each relevant topic's admin stats
(``GET /admin/v2/persistent/{t}/{ns}/{topic}/stats``). Per service (``task-executor:<S>``):

- ``ready``: ``msgBacklogNoDelayed`` of the workers' subscription (deliverable now, received
  by a worker or not); ``delayed``: ``msgBacklog - msgBacklogNoDelayed`` (retries and
  ``delay=`` tasks not yet due; the broker counts them only once a consumer has connected);
  ``backlog``: ``msgBacklog`` (both); ``unacked``: held by workers right now;
- ``workers``: the subscription's consumers with their own unacked counts and rates;
- ``dead_letters``: the backlog of ``DLQ_SUBSCRIPTION`` on the service's dead-letter topics
  (``dlq_prefixes``, what the dialects name them: ``task-executor-dlq:<S>``, and for a ``wire:
  infinitic`` service ``task-retry-dlq:<S>`` and ``task-events-dlq:<S>`` too), in broker
  entries: the worker writes each letter as its own entry (``producers.dialect_producers``), so
  it counts letters, except an atomic bulk Pulsar dead-lettered whole (one entry, all its tasks);
  ``None`` when none of them has such a subscription (then dead letters are not kept);
- a partitioned topic (Infinitic's ``task-executor:<S>``) is one topic: its partitions, listed
  one by one by the admin API, are folded into it (``base_topics``; its stats are the
  partitioned-stats); the workers' subscription is the first of ``worker_subscriptions`` the
  topic has (the native worker's ``infinitic-py-worker``, Infinitic's
  ``task-executor-subscription``);
- priority bands (``task-executor:<S>:high`` / ``:low``, ``priority.py``) are folded into their
  service: its ready / delayed / backlog / unacked and rates are the sums over its band topics
  (as the backlog gauges are), ``bands`` holds each band's own counts when it has more than one
  topic, and ``workers`` are those of its normal-band topic (a worker consumes every band);
- ``state``: ``no worker subscription`` (tasks sent there are not kept), ``no worker
  connected`` (tasks wait), ``ok``, or ``blocked`` (a consumer reached the broker's unacked limit).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from infinitic_py.priority import BANDS, Band, band_service, split_band
from infinitic_py.topics import (
    DLQ_SUBSCRIPTION,
    DLQ_TOPIC_PREFIX,
    RESPONSE_TOPIC_PREFIX,
    SERVICE_TOPIC_PREFIX,
    WORKER_SUBSCRIPTION,
    unpartitioned,
)

DLQ_PREFIXES: tuple[str, ...] = (DLQ_TOPIC_PREFIX,)
WORKER_SUBSCRIPTIONS: tuple[str, ...] = (WORKER_SUBSCRIPTION,)

__all__ = [
    "BandStatus",
    "ConsumerStatus",
    "NamespaceStatus",
    "ServiceStatus",
    "base_topics",
    "build_status",
    "render_status",
    "service_topic_names",
    "statuses_json",
]


@dataclass(frozen=True)
class ConsumerStatus:
    name: str
    unacked: int
    rate_out: float
    blocked: bool


@dataclass(frozen=True)
class BandStatus:
    topic: str
    backlog: int
    ready: int
    delayed: int
    unacked: int


@dataclass(frozen=True)
class ServiceStatus:
    service: str
    topic: str
    state: str
    worker_subscription: bool
    subscription_type: str | None
    backlog: int
    ready: int
    delayed: int
    unacked: int
    rate_in: float
    rate_out: float
    dead_letters: int | None
    workers: list[ConsumerStatus] = field(default_factory=list)
    bands: dict[str, BandStatus] = field(default_factory=dict)  # by band name, if several


@dataclass(frozen=True)
class NamespaceStatus:
    tenant: str
    namespace: str
    services: list[ServiceStatus]
    response_topics: list[str]
    missing: list[str] = field(default_factory=list)  # services asked for (--service) not found

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def statuses_json(statuses: Sequence[NamespaceStatus]) -> dict[str, Any]:
    """``status --json`` of one or more namespaces (``pulsar``'s first, then those of the
    config's services): the first's ``tenant`` / ``namespace``, ``namespaces`` (every one read),
    and every namespace's services (each naming its ``tenant`` / ``namespace``), response topics
    and missing services."""
    first = statuses[0]
    return {
        "tenant": first.tenant,
        "namespace": first.namespace,
        "namespaces": [f"{s.tenant}/{s.namespace}" for s in statuses],
        "services": [{**asdict(row), "tenant": s.tenant, "namespace": s.namespace}
                     for s in statuses for row in s.services],
        "response_topics": [topic for s in statuses for topic in s.response_topics],
        "missing": [name for s in statuses for name in s.missing],
    }


def local_name(topic: str) -> str:
    return topic.rsplit("/", 1)[-1]


def base_topics(topics: Sequence[str]) -> tuple[list[str], set[str]]:
    """``topics`` with each partitioned topic once (its partitions folded), and the set of
    those that are partitioned."""
    bases: dict[str, None] = {}
    partitioned: set[str] = set()
    for topic in topics:
        base = unpartitioned(topic)
        bases[base] = None
        if base != topic:
            partitioned.add(base)
    return list(bases), partitioned


def relevant_topics(topics: Sequence[str],
                    dlq_prefixes: Sequence[str] = DLQ_PREFIXES) -> list[str]:
    """The topics whose stats ``build_status`` needs (service and dead-letter topics)."""
    return [t for t in topics
            if local_name(t).startswith((SERVICE_TOPIC_PREFIX, *dlq_prefixes))]


def service_topic_names(service: str) -> list[str]:
    """The local names of a service's topics: one per priority band, normal first."""
    return [SERVICE_TOPIC_PREFIX + band_service(service, band)
            for band in sorted(BANDS, key=lambda b: b.suffix != "")]


def build_status(
    tenant: str,
    namespace: str,
    topics: Sequence[str],
    stats: Mapping[str, Mapping[str, Any]],
    *,
    dlq_prefixes: Sequence[str] = DLQ_PREFIXES,
    worker_subscriptions: Sequence[str] = WORKER_SUBSCRIPTIONS,
) -> NamespaceStatus:
    """``topics``: the namespace's topics (partitions are folded); ``stats`` by topic (a
    partitioned one's: its partitioned-stats)."""
    by_local = {local_name(t): t for t in base_topics(topics)[0]}
    services = sorted({
        split_band(name[len(SERVICE_TOPIC_PREFIX):])[0] for name in by_local
        if name.startswith(SERVICE_TOPIC_PREFIX)
    })
    # A dead-letter topic whose service topics are gone still shows (its letters need care).
    services += sorted({
        name[len(prefix):] for name in by_local for prefix in dlq_prefixes
        if name.startswith(prefix) and name[len(prefix):] not in services
    })
    rows = []
    for service in services:
        dead = _dead_letters([stats.get(by_local[prefix + service], {})
                              for prefix in dlq_prefixes if prefix + service in by_local])
        parts = [(name, by_local[name]) for name in service_topic_names(service)
                 if name in by_local]
        if not parts:
            rows.append(_service_status(service, "", {}, dead, worker_subscriptions))
            continue
        bands = [(split_band(name[len(SERVICE_TOPIC_PREFIX):])[1],
                  _service_status(service, topic, stats.get(topic, {}), dead,
                                  worker_subscriptions))
                 for name, topic in parts]
        rows.append(_fold(bands))
    responses = sorted(t for name, t in by_local.items() if name.startswith(RESPONSE_TOPIC_PREFIX))
    return NamespaceStatus(tenant, namespace, rows, responses)


def _fold(bands: list[tuple[Band, ServiceStatus]]) -> ServiceStatus:
    """One service row from its band topics' rows (the first one is the primary: normal band
    when it exists)."""
    first = bands[0][1]
    if len(bands) == 1:
        return first
    rows = [row for _, row in bands]
    blocked = any(row.state == "blocked" for row in rows)
    return dataclasses.replace(
        first,
        state="blocked" if blocked else first.state,
        worker_subscription=all(row.worker_subscription for row in rows),
        backlog=sum(r.backlog for r in rows), ready=sum(r.ready for r in rows),
        delayed=sum(r.delayed for r in rows), unacked=sum(r.unacked for r in rows),
        rate_in=round(sum(r.rate_in for r in rows), 2),
        rate_out=round(sum(r.rate_out for r in rows), 2),
        bands={band.name.lower(): BandStatus(row.topic, row.backlog, row.ready, row.delayed,
                                             row.unacked) for band, row in bands},
    )


def _dead_letters(dlq_stats: Sequence[Mapping[str, Any]]) -> int | None:
    """Letters kept on ``DLQ_SUBSCRIPTION`` of a service's dead-letter topics; None when none
    of them has that subscription."""
    dead: int | None = None
    for one in dlq_stats:
        dlq_sub = (one.get("subscriptions") or {}).get(DLQ_SUBSCRIPTION)
        if isinstance(dlq_sub, Mapping):
            dead = (dead or 0) + _int(dlq_sub.get("msgBacklog"))
    return dead


def _service_status(
    service: str,
    topic: str,
    topic_stats: Mapping[str, Any],
    dead: int | None,
    worker_subscriptions: Sequence[str] = WORKER_SUBSCRIPTIONS,
) -> ServiceStatus:
    subs = topic_stats.get("subscriptions") or {}
    sub = next((subs[name] for name in worker_subscriptions if name in subs), None)
    if not isinstance(sub, Mapping):
        return ServiceStatus(
            service=service, topic=topic,
            state="no worker subscription" if topic else "no service topic",
            worker_subscription=False, subscription_type=None, backlog=0, ready=0, delayed=0,
            unacked=0, rate_in=_float(topic_stats.get("msgRateIn")), rate_out=0.0,
            dead_letters=dead,
        )
    backlog = _int(sub.get("msgBacklog"))
    ready = _int(sub.get("msgBacklogNoDelayed", backlog))
    workers = [
        ConsumerStatus(
            name=str(c.get("consumerName") or "?"),
            unacked=_int(c.get("unackedMessages")),
            rate_out=round(_float(c.get("msgRateOut")), 2),
            blocked=bool(c.get("blockedConsumerOnUnackedMsgs", False)),
        )
        for c in sub.get("consumers") or [] if isinstance(c, Mapping)
    ]
    blocked = bool(sub.get("blockedSubscriptionOnUnackedMsgs")) or any(w.blocked for w in workers)
    state = "blocked" if blocked else "ok" if workers else "no worker connected"
    return ServiceStatus(
        service=service, topic=topic, state=state, worker_subscription=True,
        subscription_type=str(sub["type"]) if sub.get("type") else None,
        backlog=backlog, ready=ready, delayed=max(0, backlog - ready),
        unacked=_int(sub.get("unackedMessages")),
        rate_in=round(_float(topic_stats.get("msgRateIn")), 2),
        rate_out=round(_float(sub.get("msgRateOut")), 2),
        dead_letters=dead, workers=workers,
    )


# The broker tells a delayed message apart only once its dispatcher has read it for a connected
# consumer: with no worker connected (or behind a ready backlog longer than what it reads ahead
# for the workers), delayed tasks count as ready. Seen: 5 tasks delay=3600 + 3 ready, no worker:
# msgBacklogNoDelayed 8, msgDelayed 0.
UNSORTED_NOTE = ("READY of a service with no worker connected includes its delayed tasks: the "
                 "broker sorts them out only as it dispatches to a worker")


def render_status(status: NamespaceStatus) -> str:
    header = ("SERVICE", "WORKERS", "READY", "DELAYED", "UNACKED", "DEAD", "IN/s", "OUT/s",
              "STATE")
    rows = [
        (s.service, str(len(s.workers)), str(s.ready), str(s.delayed), str(s.unacked),
         "not kept" if s.dead_letters is None else str(s.dead_letters),
         f"{s.rate_in:.1f}", f"{s.rate_out:.1f}", s.state)
        for s in status.services
    ]
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(header)]
    lines = [f"namespace {status.tenant}/{status.namespace}: {len(status.services)} service(s)"]
    lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
              for r in rows]
    for s in status.services:
        for w in s.workers:
            lines.append(f"  {s.service} <- {w.name}: unacked {w.unacked}, "
                         f"out {w.rate_out:.1f}/s{' BLOCKED on unacked limit' if w.blocked else ''}")
    for name in status.missing:
        lines.append(f"no service {name} in {status.tenant}/{status.namespace}: no "
                     f"{SERVICE_TOPIC_PREFIX}{name} or {DLQ_TOPIC_PREFIX}{name} topic (a mistyped "
                     "name? `infinitic-py status` lists the services)")
    if any(s.ready and not s.workers for s in status.services):
        lines.append(UNSORTED_NOTE)
    if status.response_topics:
        lines.append(f"{len(status.response_topics)} client response topic(s): open clients' "
                     "own, or left behind (a killed client's, or recreated empty by a reply sent "
                     "after its client closed; README \"Client response topics\")")
    return "\n".join(lines)


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _float(value: Any) -> float:
    try:
        return float(value or 0.0)
    except (TypeError, ValueError):
        return 0.0
