"""What a client asks of the broker's admin API: create the topics a wire needs where the broker
does not, delete its response topic at close, and say once when it dispatches to a service no
worker consumes.

Why delete rather than let the topic expire: a persistent response topic with a durable
subscription is what makes a reply survive a client reconnect, but it would stay on the broker
forever (Pulsar's inactive-topic deletion is off by default for topics with subscriptions, and a
non-persistent topic loses the replies sent while the client reconnects). So the client keeps a
persistent topic while it lives and deletes it (``?force=true``) when it closes. The admin URL
is ``AsyncClient(admin_url=...)``; by default Pulsar's default admin port on the broker's host
(``http://HOST:8080``, ``https://HOST:8443`` for ``pulsar+ssl``). A failed delete is logged once
(``client.response_topic_left``) and never raises: the topic is then left for ``infinitic-py
status`` to show. Both calls are bounded by a short timeout.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any, Final

from infinitic_py.admin import PulsarAdmin, PulsarAdminError
from infinitic_py.priority import split_band
from infinitic_py.tokens import token_source
from infinitic_py.topics import WORKER_SUBSCRIPTION

__all__ = ["AUTO", "ClientAdmin", "resolve_admin_url"]

AUTO: Final = "auto"
_TIMEOUT = 3.0
# The stdlib logger, not structlog's default (which prints to stdout): a client lives inside the
# caller's program, whose stdout is its own. configure_logging() formats these records too.
log = logging.getLogger("infinitic_py.client")


def resolve_admin_url(url: str, admin_url: str | None) -> str | None:
    """``admin_url`` as given, or derived from the service URL when it is ``"auto"``."""
    if admin_url != AUTO:
        return admin_url
    from infinitic_py.ops.settings import default_admin_url

    return default_admin_url(url)


def left_topic_fix(exc: BaseException) -> str:
    """What to do about a response topic the admin API did not delete: an answer (an HTTP
    status) means the URL is right and the call was refused; no answer means it is unreachable
    or not the admin API."""
    status = exc.status if isinstance(exc, PulsarAdminError) else None
    if status in (401, 403):
        return ("give the client credentials allowed to delete topics "
                "(meanwhile: pulsar-admin topics delete -f TOPIC)")
    if status is not None:
        return f"the admin API answered HTTP {status} (meanwhile: pulsar-admin topics delete -f TOPIC)"
    return ("check that the admin API is reachable at this URL, or pass "
            "AsyncClient(admin_url=...) (the broker's admin REST URL) if it lives elsewhere")


class ClientAdmin:
    """The admin calls of one client (all best effort, bounded, off the event loop)."""

    def __init__(self, admin_url: str, transport_options: Mapping[str, Any]) -> None:
        token = token_source(transport_options.get("auth_plugin"),
                             transport_options.get("auth_params"))
        self._auth = (transport_options.get("auth_plugin"), transport_options.get("auth_params"))
        self._admin = PulsarAdmin(admin_url, auth_token=token, timeout=_TIMEOUT)
        self._creator = PulsarAdmin(admin_url, auth_token=token)  # its default timeout: 10 s
        self._warned: set[str] = set()

    async def ensure_topics(self, topics: Mapping[str, int]) -> None:
        """Create ``topics`` (partitions; 0: non-partitioned) where missing, for a wire whose
        namespaces have auto topic creation off. Not best effort: raises PulsarAdminError."""
        for topic, partitions in topics.items():
            await asyncio.to_thread(self._creator.ensure_topic, topic, partitions)

    async def credentials_problem(self) -> str | None:
        """Why the broker refuses the client's credentials (``infinitic_py.credentials``), or
        ``None``: asked when a dispatch failed without reaching the broker."""
        from infinitic_py.credentials import credentials_problem

        try:
            return await asyncio.wait_for(asyncio.to_thread(
                credentials_problem, self._admin.admin_url, *self._auth, timeout=_TIMEOUT,
                setting="transport_options['auth_params']",
                plugin_setting="transport_options auth_plugin and auth_params"), 2 * _TIMEOUT)
        except TimeoutError:
            return None

    async def delete_topic(self, topic: str, client: str) -> None:
        try:
            await asyncio.wait_for(asyncio.to_thread(self._admin.delete_topic, topic), 2 * _TIMEOUT)
        except (PulsarAdminError, TimeoutError, OSError) as exc:
            log.warning(
                "client.response_topic_left client=%s topic=%s admin_url=%s error=%s fix=%s",
                client, topic, self._admin.admin_url, str(exc) or "timeout", left_topic_fix(exc))

    async def check_workers(self, topic: str, service: str, client: str) -> None:
        """Log once per service when no worker is connected to its topic (tasks then wait).
        ``service`` may name a priority band's topic (``S:high``): the warning names ``S``."""
        service = split_band(service)[0]
        if service in self._warned:
            return
        self._warned.add(service)
        try:
            stats = await asyncio.wait_for(
                asyncio.to_thread(self._admin.topic_stats, topic), 2 * _TIMEOUT)
        except (PulsarAdminError, TimeoutError, OSError):
            return
        sub = (stats.get("subscriptions") or {}).get(WORKER_SUBSCRIPTION)
        consumers = sub.get("consumers") if isinstance(sub, dict) else None
        if not consumers:
            log.warning(
                "client.no_worker client=%s service=%s: no worker consumes this service now; its "
                "tasks wait on %s until one starts (a mistyped service name? `infinitic-py "
                "status` lists services)", client, service, topic)
