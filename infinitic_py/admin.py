"""A small, dependency-free client of the Pulsar admin REST API (``/admin/v2``).

Used by the worker's ``check`` command and start-up checks, and by the integration tests. Standard
library only (``urllib``); every call is synchronous and bounded by ``timeout`` seconds, so call it
through ``asyncio.to_thread`` from async code.

Verified against a real Apache Pulsar 4.2.4 standalone broker (``deploy/pulsar-standalone``):

- ``GET /admin/v2/clusters`` -> ``["standalone"]``; ``GET /admin/v2/tenants`` -> list of names.
- ``PUT /admin/v2/tenants/{t}`` with ``{"adminRoles": [], "allowedClusters": [...]}`` -> 204,
  409 ``{"reason": "Tenant already exist"}`` when it does.
- ``PUT /admin/v2/namespaces/{t}/{ns}`` with ``{}`` -> 204, 409 when it exists.
  ``GET /admin/v2/namespaces/{t}`` -> ``["t/ns", ...]``, 404 when the tenant is missing.
- ``GET /admin/v2/{persistent|non-persistent}/{t}/{ns}/{local}/stats`` -> topic stats, 404
  ``{"reason": "Topic ... not found"}`` when the topic does not exist. The local name is sent
  percent-encoded (``task-executor%3AEmail``), as the Java admin client does; the broker decodes it.
  Per subscription: ``msgBacklog``, ``unackedMessages``, ``msgDelayed``,
  ``blockedSubscriptionOnUnackedMsgs``, ``consumers[].unackedMessages``.
- ``GET /admin/v2/namespaces/{t}/{ns}/maxUnackedMessagesPerConsumer`` -> an **empty body** (200)
  when the policy is unset, the integer when set (``POST`` the integer to set it); 404 when the
  namespace does not exist.
- ``maxUnackedMessagesPerConsumer`` of the broker: ``GET /admin/v2/brokers/configuration/runtime``
  returns every effective setting as a **string** (``"50000"``).
  ``GET /admin/v2/brokers/configuration/values`` returns only the dynamic overrides stored in
  the metadata store (``{}`` on a fresh broker), and ``maxUnackedMessagesPerConsumer`` is not a
  dynamic setting in 4.2.4 (absent from ``GET /admin/v2/brokers/configuration``). Both are read:
  an override, if one ever appears, wins over the runtime value.
- ``GET /admin/v2/brokers/health`` -> the text ``ok`` (200) although the content type says JSON.

Errors: HTTP errors and unreachable brokers raise :class:`PulsarAdminError` carrying the HTTP
status (``None`` when no response came) and the broker's ``reason`` when it sent one.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

from infinitic_py.errors import InfiniticError

__all__ = ["PulsarAdmin", "PulsarAdminError"]

_DOMAINS = ("persistent", "non-persistent")


class PulsarAdminError(InfiniticError):
    """A Pulsar admin call failed: HTTP error (``status``) or no answer at all (``status is None``)."""

    def __init__(
        self, message: str, *, status: int | None = None, url: str = "", reason: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.url = url
        self.reason = reason


class PulsarAdmin:
    """Thin synchronous client of a broker's admin API, e.g. ``PulsarAdmin("http://127.0.0.1:8080")``.

    ``auth_token`` is sent as ``Authorization: Bearer <token>``; a function is asked for the
    token at each request (``token_source``: a token file).
    """

    def __init__(
        self, admin_url: str, *, auth_token: str | Callable[[], str | None] | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.admin_url = admin_url.rstrip("/")
        self.timeout = timeout
        self._headers = {"Accept": "application/json"}
        self._token_source = auth_token if callable(auth_token) else None
        if auth_token and not callable(auth_token):
            self._headers["Authorization"] = f"Bearer {auth_token}"

    def auth_headers(self) -> dict[str, str]:
        """The headers of the next request (the token read now, for a token file)."""
        headers = dict(self._headers)
        token = self._token_source() if self._token_source is not None else None
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def __repr__(self) -> str:
        return f"PulsarAdmin({self.admin_url!r})"

    # -- raw HTTP --------------------------------------------------------------------------------

    def _request(
        self, method: str, path: str, body: Any = None, *, send_body: bool = False
    ) -> bytes:
        url = self.admin_url + (path if path.startswith("/") else "/" + path)
        headers = self.auth_headers()
        data: bytes | None = None
        if send_body:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                payload: bytes = response.read()
                return payload
        except urllib.error.HTTPError as exc:
            reason = _reason(exc)
            raise PulsarAdminError(
                f"{method} {url} -> HTTP {exc.code}: {reason or exc.reason}",
                status=exc.code,
                url=url,
                reason=reason,
            ) from exc
        except (urllib.error.URLError, OSError) as exc:  # refused, DNS, timeout
            detail = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            raise PulsarAdminError(f"{method} {url} failed: {detail}", url=url) from exc

    def get_json(self, path: str) -> Any:
        """GET ``path`` (e.g. ``"/admin/v2/clusters"``) and decode its JSON; ``None`` if empty."""
        raw = self._request("GET", path)
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise PulsarAdminError(
                f"GET {self.admin_url}{path}: not JSON: {raw[:200]!r}", url=self.admin_url + path
            ) from exc

    def put_json(self, path: str, body: Any) -> None:
        """PUT ``body`` as JSON to ``path``."""
        self._request("PUT", path, body, send_body=True)

    def post_json(self, path: str, body: Any) -> None:
        """POST ``body`` as JSON to ``path``."""
        self._request("POST", path, body, send_body=True)

    # -- cluster, tenants, namespaces ------------------------------------------------------------

    def clusters(self) -> list[str]:
        """Names of the clusters (``["standalone"]`` on a standalone broker)."""
        return [str(c) for c in self.get_json("/admin/v2/clusters") or []]

    def tenants(self) -> list[str]:
        return [str(t) for t in self.get_json("/admin/v2/tenants") or []]

    def namespaces(self, tenant: str) -> list[str]:
        """Namespaces of ``tenant`` as ``"tenant/ns"`` strings."""
        return [str(n) for n in self.get_json(f"/admin/v2/namespaces/{_seg(tenant)}") or []]

    def ensure_namespace(self, tenant: str, namespace: str) -> None:
        """Create the tenant (allowed on every cluster) and the namespace unless they exist."""
        if tenant not in self.tenants():
            body = {"adminRoles": [], "allowedClusters": self.clusters()}
            _ignore_conflict(lambda: self.put_json(f"/admin/v2/tenants/{_seg(tenant)}", body))
        if f"{tenant}/{namespace}" not in self.namespaces(tenant):
            path = f"/admin/v2/namespaces/{_seg(tenant)}/{_seg(namespace)}"
            _ignore_conflict(lambda: self.put_json(path, {}))

    # -- topics and subscriptions ----------------------------------------------------------------

    def ensure_topic(self, topic: str, partitions: int) -> None:
        """Create ``topic`` unless it exists: partitioned with ``partitions`` (> 0), else a
        non-partitioned one (for namespaces whose auto topic creation is off)."""
        path = _topic_path(topic)
        try:
            if partitions > 0:
                _ignore_conflict(lambda: self.put_json(f"{path}/partitions", partitions))
            else:
                _ignore_conflict(lambda: self.put_json(path, None))
        except PulsarAdminError as exc:
            # A role that may produce and consume but not administer the namespace is refused
            # the PUT even when the topic exists (the right is checked first): fine if it does.
            if exc.status != 403:
                raise
            if self._topic_exists(topic):
                return
            how = (f"pulsar-admin topics create-partitioned-topic {topic} -p {partitions}"
                   if partitions > 0 else f"pulsar-admin topics create {topic}")
            raise PulsarAdminError(
                f"{exc}: this role may not create topics; create {topic} with an admin role "
                f"({how}), or use a token of a role allowed to administer the namespace",
                status=exc.status, url=exc.url, reason=exc.reason) from None

    def _topic_exists(self, topic: str) -> bool:
        tenant, namespace = topic.partition("://")[2].split("/")[:2]
        listed = self.topics(tenant, namespace)
        partitioned = self.get_json(
            f"/admin/v2/persistent/{_seg(tenant)}/{_seg(namespace)}/partitioned") or []
        return topic in listed or topic in partitioned or any(
            t.startswith(topic + "-partition-") for t in listed)

    def topic_stats(self, topic: str) -> dict[str, Any]:
        """Stats of a non-partitioned topic (``persistent://t/ns/local``); ``{}`` if it is missing."""
        try:
            stats = self.get_json(_topic_path(topic) + "/stats")
        except PulsarAdminError as exc:
            if exc.status == 404:
                return {}
            raise
        return stats if isinstance(stats, dict) else {}

    def partitioned_topic_stats(self, topic: str) -> dict[str, Any]:
        """Stats of a partitioned topic, its partitions summed; ``{}`` if it is missing."""
        try:
            stats = self.get_json(_topic_path(topic) + "/partitioned-stats")
        except PulsarAdminError as exc:
            if exc.status == 404:
                return {}
            raise
        return stats if isinstance(stats, dict) else {}

    def subscription_counts(self, topic: str, subscription: str) -> tuple[int, int]:
        """``(msgBacklog, unackedMessages)`` of a subscription; ``(0, 0)`` if topic or it is missing."""
        sub = self.topic_stats(topic).get("subscriptions", {}).get(subscription)
        if not isinstance(sub, dict):
            return (0, 0)
        return (int(sub.get("msgBacklog", 0)), int(sub.get("unackedMessages", 0)))

    def topics(self, tenant: str, namespace: str) -> list[str]:
        """Persistent topics of a namespace (full names; partitions listed one by one)."""
        path = f"/admin/v2/persistent/{_seg(tenant)}/{_seg(namespace)}"
        return [str(t) for t in self.get_json(path) or []]

    def delete_topic(self, topic: str, *, force: bool = True) -> bool:
        """Delete a topic (``force``: even with subscriptions, producers or consumers attached).
        ``False`` when it did not exist."""
        suffix = "?force=true" if force else ""
        try:
            self._request("DELETE", _topic_path(topic) + suffix)
        except PulsarAdminError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    # -- limits that decide whether a consumer can stall -----------------------------------------

    def namespace_max_unacked_per_consumer(self, tenant: str, namespace: str) -> int | None:
        """The namespace's ``maxUnackedMessagesPerConsumer`` policy, ``None`` when unset."""
        return self._namespace_max_unacked(tenant, namespace, "Consumer")

    def namespace_max_unacked_per_subscription(self, tenant: str, namespace: str) -> int | None:
        """The namespace's ``maxUnackedMessagesPerSubscription`` policy, ``None`` when unset."""
        return self._namespace_max_unacked(tenant, namespace, "Subscription")

    def _namespace_max_unacked(self, tenant: str, namespace: str, per: str) -> int | None:
        value = self.get_json(
            f"/admin/v2/namespaces/{_seg(tenant)}/{_seg(namespace)}/maxUnackedMessagesPer{per}"
        )
        return _as_int(value)

    def broker_max_unacked_per_consumer(self) -> int | None:
        """The broker's effective ``maxUnackedMessagesPerConsumer``; ``None`` if it cannot be read."""
        return self._broker_setting("maxUnackedMessagesPerConsumer")

    def broker_max_unacked_per_subscription(self) -> int | None:
        """The broker's effective ``maxUnackedMessagesPerSubscription``; ``None`` if unreadable."""
        return self._broker_setting("maxUnackedMessagesPerSubscription")

    def _broker_setting(self, key: str) -> int | None:
        for path in (
            "/admin/v2/brokers/configuration/values",
            "/admin/v2/brokers/configuration/runtime",
        ):
            try:
                config = self.get_json(path)
            except PulsarAdminError:
                continue  # e.g. 401/403 without super-user rights: try the next one
            if isinstance(config, dict) and key in config:
                value = _as_int(config[key])
                if value is not None:
                    return value
        return None

    def healthy(self) -> bool:
        """``GET /admin/v2/brokers/health`` answered ``ok``; ``False`` on any error."""
        try:
            body = self._request("GET", "/admin/v2/brokers/health")
        except PulsarAdminError:
            return False
        return body.strip().strip(b'"').lower() == b"ok"


def _seg(value: str) -> str:
    """One percent-encoded path segment."""
    return urllib.parse.quote(value, safe="")


def _topic_path(topic: str) -> str:
    """``persistent://t/ns/local`` -> ``/admin/v2/persistent/t/ns/<encoded local>``."""
    domain, sep, rest = topic.partition("://")
    if not sep:
        domain, rest = "persistent", topic
    if domain not in _DOMAINS:
        raise ValueError(f"not a Pulsar topic name: {topic!r}")
    parts = rest.split("/", 2)
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"topic must be {domain}://tenant/namespace/name, got {topic!r}")
    tenant, namespace, local = parts
    return f"/admin/v2/{domain}/{_seg(tenant)}/{_seg(namespace)}/{_seg(local)}"


def _as_int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def _reason(exc: urllib.error.HTTPError) -> str | None:
    try:
        raw = exc.read()
    except OSError:
        return None
    try:
        body = json.loads(raw)
    except ValueError:
        text = raw.decode(errors="replace").strip()
        return text[:300] or None
    if isinstance(body, dict) and isinstance(body.get("reason"), str):
        return str(body["reason"])
    return None


def _ignore_conflict(call: Callable[[], None]) -> None:
    """Run a create call; 409 (created concurrently) is success."""
    try:
        call()
    except PulsarAdminError as exc:
        if exc.status != 409:
            raise
