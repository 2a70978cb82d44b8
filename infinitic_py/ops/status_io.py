"""Reads what ``status`` shows from the admin API (one topic list, one stats call per topic)."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from infinitic_py.admin import PulsarAdmin
from infinitic_py.ops.status import (
    NamespaceStatus,
    build_status,
    local_name,
    relevant_topics,
    service_topic_names,
)
from infinitic_py.topics import DLQ_TOPIC_PREFIX

__all__ = ["read_status"]


def read_status(
    admin: PulsarAdmin, tenant: str, namespace: str, *, only: Sequence[str] | None = None
) -> NamespaceStatus:
    topics = admin.topics(tenant, namespace)
    wanted = relevant_topics(topics)
    if only:
        # A service's topics: one per priority band, and its dead-letter topic.
        names = {n for s in only for n in (*service_topic_names(s), DLQ_TOPIC_PREFIX + s)}
        wanted = [t for t in wanted if local_name(t) in names]
    with ThreadPoolExecutor(max_workers=8) as pool:
        stats: dict[str, Any] = dict(zip(wanted, pool.map(admin.topic_stats, wanted), strict=True))
    status = build_status(tenant, namespace, topics if not only else wanted, stats)
    if only:
        found = {service.service for service in status.services}
        status.missing.extend(dict.fromkeys(s for s in only if s not in found))
    return status
