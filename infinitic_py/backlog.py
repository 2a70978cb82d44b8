"""Backlog gauges: each service's work that is *due* and its delayed work, for autoscalers.

Pulsar's subscription ``msgBacklog`` counts delayed messages too (retry backoffs, ``delay=`` /
``run_at=`` dispatches): an autoscaler on it starts pods for work that is not due and that those
pods cannot receive yet. The worker therefore exports, per service, from the topic stats of its
subscription (admin API), summed over the service's topics (one per priority band)::

    infinitic_backlog_ready_messages{service}     msgBacklogNoDelayed (not acked, not known to be
                                                  delayed: the broker sorts a delayed message out
                                                  only once it has read it for a worker)
    infinitic_backlog_delayed_messages{service}   msgDelayed (held back by deliver_after)
    infinitic_backlog_poll_errors_total{service}  admin calls that failed (last values are kept)

Every worker polls (not one elected worker): nothing to elect or fail over, and the gauge is
there as long as one pod of the service runs. Scalers aggregate with ``max by (service)`` (every
pod reports the same subscription). The cost is one admin GET per topic (three per service: its
priority bands) per pod per ``interval`` (15 s by default, started at a random offset so a fleet
does not poll in step): 100 pods on one service make ~20 cheap requests per second. A fleet scaled to zero exports nothing: scale from zero on the broker's own
backlog (KEDA's pulsar trigger) and above it on these gauges (see the README).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge

from infinitic_py.admin import PulsarAdmin, PulsarAdminError

__all__ = ["BacklogCounts", "BacklogGauges", "backlog_counts"]

log = structlog.get_logger("infinitic_py.backlog")

DEFAULT_INTERVAL = 15.0
_CALL_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class BacklogCounts:
    ready: int
    delayed: int


def backlog_counts(stats: Mapping[str, Any], subscription: str) -> BacklogCounts | None:
    """Ready and delayed counts of ``subscription`` in a topic's stats; ``None`` when the topic
    or the subscription is missing. A broker without ``msgBacklogNoDelayed`` (before Pulsar 2.8)
    gives ``msgBacklog - msgDelayed``."""
    subscriptions = stats.get("subscriptions")
    sub = subscriptions.get(subscription) if isinstance(subscriptions, Mapping) else None
    if not isinstance(sub, Mapping):
        return None
    delayed = int(sub.get("msgDelayed", 0) or 0)
    if "msgBacklogNoDelayed" in sub:
        ready = int(sub["msgBacklogNoDelayed"] or 0)
    else:
        ready = max(0, int(sub.get("msgBacklog", 0) or 0) - delayed)
    return BacklogCounts(ready, delayed)


class _Instruments:
    def __init__(self, registry: CollectorRegistry, prefix: str) -> None:
        p = prefix.rstrip("_") + "_"
        self.ready = Gauge(
            p + "backlog_ready_messages",
            "Entries of the service's worker subscription not yet acked and not known to be "
            "delayed (msgBacklogNoDelayed, admin API): received-unacked ones included, and "
            "delayed ones the broker has not read yet for a worker (README \"Autoscaling on "
            "due work\").", ("service",), registry=registry)
        self.delayed = Gauge(
            p + "backlog_delayed_messages",
            "Messages of the service's worker subscription held back by a delivery delay "
            "(msgDelayed: retry backoffs, delay= / run_at= dispatches).", ("service",),
            registry=registry)
        self.errors = Counter(
            p + "backlog_poll_errors_total",
            "Backlog polls of the admin API that failed (the gauges keep their last values).",
            ("service",), registry=registry)


_instruments: weakref.WeakKeyDictionary[CollectorRegistry, _Instruments] = (
    weakref.WeakKeyDictionary())


def _instruments_for(registry: CollectorRegistry, prefix: str) -> _Instruments:
    found = _instruments.get(registry)
    if found is None:
        found = _instruments[registry] = _Instruments(registry, prefix)
    return found


class BacklogGauges:
    """Polls the admin API every ``interval`` seconds for the backlog of ``subscription`` on each
    service's topics (``{service: topic}``, or ``{service: [topic, ...]}`` for a service whose
    priority bands are topics of their own: summed) and sets the gauges on ``registry``.

        gauges = BacklogGauges.start(admin, {"Email": topic}, "infinitic-py-worker", registry)
        ...
        await gauges.stop()
    """

    def __init__(
        self,
        admin: PulsarAdmin,
        topics: Mapping[str, str | Sequence[str]],
        subscription: str,
        registry: CollectorRegistry,
        *,
        interval: float = DEFAULT_INTERVAL,
        prefix: str = "infinitic",
    ) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be > 0, got {interval}")
        self.admin = admin
        # service -> its topics (one, or one per priority band: the gauges sum them)
        self.topics = {service: (t,) if isinstance(t, str) else tuple(t)
                       for service, t in topics.items()}
        self.subscription = subscription
        self.interval = interval
        self._instruments = _instruments_for(registry, prefix)
        self._task: asyncio.Task[None] | None = None
        self._failing: set[str] = set()
        self.polls = 0  # completed polling rounds (tests wait on it)

    @classmethod
    def start(
        cls, admin: PulsarAdmin, topics: Mapping[str, str | Sequence[str]], subscription: str,
        registry: CollectorRegistry, *, interval: float = DEFAULT_INTERVAL,
        first_delay: float | None = None,
    ) -> BacklogGauges:
        """Create and start polling: the first poll after ``first_delay`` seconds (default: a
        random offset within one interval), then every ``interval``."""
        gauges = cls(admin, topics, subscription, registry, interval=interval)
        delay = random.uniform(0, interval) if first_delay is None else first_delay
        gauges._task = asyncio.get_running_loop().create_task(
            gauges._run(delay), name="infinitic-backlog-gauges")
        return gauges

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self, first_delay: float) -> None:
        await asyncio.sleep(first_delay)
        while True:
            await self.poll_once()
            await asyncio.sleep(self.interval)

    async def poll_once(self) -> None:
        """One round: every topic of every service (one admin call each, bounded in time); a
        service's gauges are the sums over its topics (its priority bands), kept as they were
        when one of its calls fails."""
        for service, topics in self.topics.items():
            total = BacklogCounts(0, 0)
            try:
                for topic in topics:
                    stats = await asyncio.wait_for(
                        asyncio.to_thread(self.admin.topic_stats, topic), _CALL_TIMEOUT)
                    counts = backlog_counts(stats, self.subscription) or BacklogCounts(0, 0)
                    total = BacklogCounts(total.ready + counts.ready,
                                          total.delayed + counts.delayed)
            except (PulsarAdminError, TimeoutError, OSError, ValueError) as exc:
                self._instruments.errors.labels(service).inc()
                if service not in self._failing:  # log a failure once, not every interval
                    self._failing.add(service)
                    log.warning("backlog.poll_failed", service=service, error=str(exc))
                continue
            if service in self._failing:
                self._failing.discard(service)
                log.info("backlog.poll_recovered", service=service)
            self._instruments.ready.labels(service).set(total.ready)
            self._instruments.delayed.labels(service).set(total.delayed)
        self.polls += 1
