"""The one reading of the token settings (``pulsar.auth_plugin`` / ``pulsar.auth_params``):
the broker connection, the admin API calls of the worker, the client and the tools, ``check``
and the credential checks all take the token from here."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable

from infinitic_py.errors import ConfigError

__all__ = ["bearer_token", "token_source"]


def bearer_token(auth_plugin: str | None, auth_params: object) -> str | None:
    """The token when the client authenticates with a token plugin, else ``None``: the one
    reading of the token settings (the broker connection, ``check``, the ops tools, the
    client's and the worker's admin calls). ``auth_params`` is ``token:XYZ``, ``XYZ``,
    ``file:///path`` (read now, surrounding whitespace stripped, as Pulsar's Java client does:
    a token file usually ends with a newline) or the JSON ``{"token": "XYZ"}``."""
    if not auth_params or "token" not in (auth_plugin or "").lower():
        return None
    params = str(auth_params).strip()
    if params.startswith("token:"):
        return params.removeprefix("token:").strip()
    if params.startswith("file:"):
        path = urllib.parse.unquote(urllib.parse.urlsplit(params).path)
        try:
            with open(path, encoding="utf-8") as f:
                return f.read().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read the token file {path} of pulsar.auth_params: "
                                 f"{exc.strerror or exc}") from None
    if params.startswith("{"):
        try:
            parsed = json.loads(params)
        except ValueError:
            return params
        if isinstance(parsed, dict) and isinstance(parsed.get("token"), str):
            return str(parsed["token"]).strip()
    return params


def token_source(auth_plugin: str | None,
                 auth_params: object) -> str | Callable[[], str | None] | None:
    """``PulsarAdmin(auth_token=...)`` for these settings: the token, or for a token file a
    function reading it at each request (a rotated file is picked up, as by the broker
    connection). An unreadable file raises ConfigError now."""
    token = bearer_token(auth_plugin, auth_params)
    if token is None or not str(auth_params).strip().startswith("file:"):
        return token

    def read() -> str | None:
        try:
            return bearer_token(auth_plugin, auth_params)
        except ConfigError:
            return None  # gone meanwhile: the call goes without, and says 401
    return read
