"""Reads what ``status`` shows from the admin API (one topic list, one stats call per topic;
a partitioned topic's are its partitioned-stats)."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from infinitic_py.admin import PulsarAdmin
from infinitic_py.ops.status import (
    NamespaceStatus,
    base_topics,
    build_status,
    local_name,
    relevant_topics,
    service_topic_names,
)
from infinitic_py.wire.dialects import status_names

__all__ = ["read_status"]


def read_status(
    admin: PulsarAdmin, tenant: str, namespace: str, *, only: Sequence[str] | None = None
) -> NamespaceStatus:
    dlq_prefixes, worker_subscriptions = status_names(tenant, namespace)
    topics, partitioned = base_topics(admin.topics(tenant, namespace))
    wanted = relevant_topics(topics, dlq_prefixes)
    if only:
        # A service's topics: one per priority band, and its dead-letter topics.
        names = {n for s in only
                 for n in (*service_topic_names(s), *(p + s for p in dlq_prefixes))}
        wanted = [t for t in wanted if local_name(t) in names]

    def stats_of(topic: str) -> dict[str, Any]:
        if topic in partitioned:
            return admin.partitioned_topic_stats(topic)
        return admin.topic_stats(topic)

    with ThreadPoolExecutor(max_workers=8) as pool:
        stats: dict[str, Any] = dict(zip(wanted, pool.map(stats_of, wanted), strict=True))
    status = build_status(tenant, namespace, topics if not only else wanted, stats,
                          dlq_prefixes=dlq_prefixes, worker_subscriptions=worker_subscriptions)
    if only:
        found = {service.service for service in status.services}
        status.missing.extend(dict.fromkeys(s for s in only if s not in found))
    return status
