"""Is it the credentials? One clear line when the broker refuses who we are.

pulsar-client does not say why a broker refused a connection: with a wrong, expired or missing
token its requests end in ``Timeout`` after the operation timeout (30 s each), which the worker,
the client and the tools reported as an unreachable broker ("check --url"). So, where that would
happen, the credentials are checked first:

- a JWT whose ``exp`` is past is named as expired (read locally: no signature check);
- otherwise one bounded ``GET /admin/v2/clusters`` with the same token: an HTTP 401 means the
  broker requires authentication and did not accept this (or no) token. Any other answer (200,
  403 of a role without that right, no answer at all) says nothing against the credentials.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
import time
from datetime import UTC, datetime

from infinitic_py.admin import PulsarAdmin, PulsarAdminError
from infinitic_py.errors import ConfigError
from infinitic_py.tokens import bearer_token, token_source
from infinitic_py.transport.urls import is_memory

__all__ = [
    "CONFIG_SETTING", "BrokerCredentials", "authorization_problem", "credentials_problem", "expired_token_problem",
    "token_expiry", "token_role",
]

_TOPIC = re.compile(r"(?:persistent|non-persistent)://(?P<tenant>[^/\s]+)/(?P<namespace>[^/\s]+)"
                    r"/[^\s\]\)'\"]+")
_NAMESPACE = re.compile(r"namespace \[([^/\]\s]+/[^/\]\s]+)\]")

CONFIG_SETTING = "pulsar.auth_params (or INFINITIC_PULSAR__AUTH_PARAMS)"
_CONFIG_PLUGIN = "pulsar.auth_plugin and pulsar.auth_params (or INFINITIC_PULSAR__AUTH_PLUGIN " \
                 "and INFINITIC_PULSAR__AUTH_PARAMS)"


def _claims(token: str) -> dict[str, object] | None:
    """The claims of a JWT, read without checking its signature; ``None`` if not a JWT."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (ValueError, binascii.Error):
        return None
    return claims if isinstance(claims, dict) else None


def token_expiry(token: str) -> float | None:
    """The ``exp`` claim (epoch seconds) of a JWT; ``None`` when ``token`` is not a JWT or has
    no expiry."""
    claims = _claims(token)
    exp = claims.get("exp") if claims else None
    if isinstance(exp, int | float) and not isinstance(exp, bool):
        return float(exp)
    return None


def expired_token_problem(auth_plugin: str | None, auth_params: object, *, now: float,
                          setting: str = CONFIG_SETTING) -> str | None:
    """What to fix when the configured token has expired, else ``None``."""
    token = bearer_token(auth_plugin, auth_params)
    exp = token_expiry(token) if token else None
    if exp is None or exp > now:
        return None
    when = datetime.fromtimestamp(exp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return (f"the token in {setting} expired at {when}: the broker refuses it; "
            "give a token that is still valid")


def credentials_problem(admin_url: str | None, auth_plugin: str | None, auth_params: object, *,
                        timeout: float = 5.0, setting: str = CONFIG_SETTING,
                        plugin_setting: str = _CONFIG_PLUGIN) -> str | None:
    """Why the broker refuses these credentials, as one line naming what to fix; ``None`` when
    nothing says they are wrong. Synchronous (one HTTP request, at most ``timeout`` s)."""
    expired = expired_token_problem(auth_plugin, auth_params, now=time.time(), setting=setting)
    if expired or not admin_url:
        return expired
    token = bearer_token(auth_plugin, auth_params)
    if auth_plugin is not None and token is None:
        return None  # another plugin (TLS, OAuth2): the admin API cannot be asked the same way
    try:
        PulsarAdmin(admin_url, auth_token=token, timeout=timeout).get_json("/admin/v2/clusters")
    except PulsarAdminError as exc:
        if exc.status != 401:
            return None
    else:
        return None
    if auth_plugin is None:
        return (f"the broker requires authentication and none is configured "
                f"(its admin API {admin_url} answered HTTP 401): set {plugin_setting}")
    return (f"the broker refused the token in {setting} (its admin API {admin_url} answered "
            "HTTP 401): it is not signed for this cluster or is malformed; give a token the "
            "cluster issued")


def token_role(auth_plugin: str | None, auth_params: object) -> str | None:
    """The ``sub`` claim of the configured JWT (the Pulsar role), ``None`` when unknown."""
    try:
        token = bearer_token(auth_plugin, auth_params)
    except ConfigError:
        return None
    claims = _claims(token) if token else None
    sub = claims.get("sub") if claims else None
    return sub if isinstance(sub, str) else None


def authorization_problem(error: str, auth_plugin: str | None, auth_params: object,
                          namespace: str | None = None) -> str | None:
    """What to fix when ``error`` (a broker or admin API error's text) says the broker refused
    this role a right it needs; ``None`` when it says nothing of the kind. ``namespace``
    (``tenant/ns``): what was asked of, when the error does not name it."""
    if "AuthorizationError" not in error and "Unauthorized to" not in error \
            and "not authorized" not in error:
        return None
    role = token_role(auth_plugin, auth_params)
    who = f"role {role!r}" if role else "the client's role"
    topic = _TOPIC.search(error)
    named = _NAMESPACE.search(error)
    space = (f"{topic['tenant']}/{topic['namespace']}" if topic
             else named[1] if named else namespace or "TENANT/NAMESPACE")
    where = (f" on {topic[0].rstrip(':')}" if topic
             else f" on {space}" if named or namespace else "")
    detail = " ".join(error.split())
    return (f"the broker does not allow {who} what was asked{where} ({detail}): grant it "
            f"produce and consume on its namespace (pulsar-admin namespaces grant-permission "
            f"{space} --role {role or 'ROLE'} --actions produce,consume), or use a token of a "
            "role that has them")


class BrokerCredentials:
    """A worker's broker credentials (``pulsar.auth_plugin`` / ``auth_params``) and what the
    broker says of them: the admin API client that carries them (topic creation, limit checks,
    backlog gauges: a broker with authentication refuses tokenless calls), and the one-line
    problems above, for the connection's retries and ``/readyz``."""

    def __init__(self, url: str, admin_url: str | None, auth_plugin: str | None,
                 auth_params: object) -> None:
        self.url = url
        self.admin_url = admin_url
        self.auth_plugin = auth_plugin
        self.auth_params = auth_params

    @property
    def configured(self) -> bool:
        return bool(self.auth_plugin)

    def admin(self, *, timeout: float) -> PulsarAdmin:
        assert self.admin_url is not None
        return PulsarAdmin(self.admin_url, timeout=timeout,
                           auth_token=token_source(self.auth_plugin, self.auth_params))

    async def problem(self) -> str | None:
        """Why the broker refuses these credentials: an expired token, or the admin API's 401
        when there is one; ``None`` when nothing says so (bounded: 10 s)."""
        if is_memory(self.url):
            return None
        try:
            return await asyncio.wait_for(asyncio.to_thread(
                credentials_problem, self.admin_url, self.auth_plugin, self.auth_params,
                timeout=5.0), 10.0)
        except TimeoutError:
            return None

    def expired_note(self) -> str:
        """``: <the token expired at ...>`` when that is why the broker dropped us, else ``""``."""
        try:
            problem = expired_token_problem(self.auth_plugin, self.auth_params, now=time.time())
        except ConfigError as exc:  # a token file gone meanwhile
            problem = str(exc)
        return f": {problem}" if problem else ""

    def refusal(self, error: str) -> str | None:
        """What to fix when the broker refused this role a right it needs."""
        return authorization_problem(error, self.auth_plugin, self.auth_params)
