"""Backlog gauges: counts from topic stats, and a failing admin API (infinitic_py/backlog.py)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry

from infinitic_py.admin import PulsarAdmin, PulsarAdminError
from infinitic_py.backlog import BacklogCounts, BacklogGauges, backlog_counts


def test_counts_from_stats() -> None:
    stats = {"subscriptions": {"w": {"msgBacklog": 12, "msgBacklogNoDelayed": 5, "msgDelayed": 7}}}
    assert backlog_counts(stats, "w") == BacklogCounts(5, 7)
    assert backlog_counts(stats, "other") is None
    assert backlog_counts({}, "w") is None
    older = {"subscriptions": {"w": {"msgBacklog": 12, "msgDelayed": 7}}}
    assert backlog_counts(older, "w") == BacklogCounts(5, 7)


class FlakyAdmin(PulsarAdmin):
    def __init__(self) -> None:
        super().__init__("http://127.0.0.1:1")
        self.fail = True

    def topic_stats(self, topic: str) -> dict[str, Any]:
        if self.fail:
            raise PulsarAdminError("no answer")
        return {"subscriptions": {"w": {"msgBacklogNoDelayed": 3, "msgDelayed": 4}}}


async def test_a_failed_poll_counts_an_error_and_keeps_going() -> None:
    registry = CollectorRegistry()
    admin = FlakyAdmin()
    gauges = BacklogGauges(admin, {"Email": "persistent://public/default/x"}, "w", registry)
    await gauges.poll_once()
    labels = {"service": "Email"}
    assert registry.get_sample_value("infinitic_backlog_poll_errors_total", labels) == 1
    assert registry.get_sample_value("infinitic_backlog_ready_messages", labels) is None
    admin.fail = False
    await gauges.poll_once()
    assert registry.get_sample_value("infinitic_backlog_ready_messages", labels) == 3
    assert registry.get_sample_value("infinitic_backlog_delayed_messages", labels) == 4
    # A second set of gauges on the same registry (another worker in the process) reuses them.
    BacklogGauges(admin, {"Other": "persistent://public/default/y"}, "w", registry)


class BandAdmin(PulsarAdmin):
    """Stats per topic: the normal band and the high band hold work; the low band's topic was
    never created (the admin API's 404: ``{}``)."""

    def __init__(self, fail_on: str | None = None) -> None:
        super().__init__("http://127.0.0.1:1")
        self.fail_on = fail_on

    def topic_stats(self, topic: str) -> dict[str, Any]:
        if topic == self.fail_on:
            raise PulsarAdminError("no answer")
        counts = {"t": (3, 4), "t:high": (10, 1)}.get(topic)
        if counts is None:
            return {}
        ready, delayed = counts
        return {"subscriptions": {"w": {"msgBacklogNoDelayed": ready, "msgDelayed": delayed}}}


async def test_a_service_gauge_sums_its_priority_band_topics() -> None:
    registry = CollectorRegistry()
    gauges = BacklogGauges(BandAdmin(), {"Email": ["t", "t:high", "t:low"]}, "w", registry)
    await gauges.poll_once()
    labels = {"service": "Email"}
    assert registry.get_sample_value("infinitic_backlog_ready_messages", labels) == 13
    assert registry.get_sample_value("infinitic_backlog_delayed_messages", labels) == 5
    # One band's call failing keeps the service's last values (never a partial sum).
    gauges.admin = BandAdmin(fail_on="t:high")
    await gauges.poll_once()
    assert registry.get_sample_value("infinitic_backlog_ready_messages", labels) == 13
    assert registry.get_sample_value("infinitic_backlog_poll_errors_total", labels) == 1
