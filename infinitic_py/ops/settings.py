"""The broker settings of the operator tools, read exactly like the worker's.

``dlq``, ``status`` and ``dispatch`` take ``-c/--config`` (or ``$INFINITIC_CONFIG``) and the
``INFINITIC_<SECTION>__<KEY>`` variables, so they reach a secured cluster with the worker's own
auth and TLS settings. Only ``pulsar`` is used: the file's ``services`` are not imported (a tool
need not have the service code), and a file without ``services`` is fine.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from infinitic_py.admin import bearer_token
from infinitic_py.config import PulsarConfig, load_config

__all__ = ["ToolSettings", "default_admin_url", "load_tool_settings"]

# Stands in for the services a tool does not load (load_config requires at least one).
_NO_SERVICES = [{"class": "infinitic_py.ops.settings:NoService"}]
LEGACY_URL_ENV = "PULSAR_URL"


class NoService:
    """Placeholder service class: never imported by a tool."""


@dataclass(frozen=True)
class ToolSettings:
    pulsar: PulsarConfig
    source: str

    @property
    def url(self) -> str:
        return self.pulsar.url

    @property
    def tenant(self) -> str:
        return self.pulsar.tenant

    @property
    def namespace(self) -> str:
        return self.pulsar.namespace

    def transport_options(self) -> dict[str, Any]:
        """Client options for ``create_transport`` (``PulsarConfig.transport_options``)."""
        return self.pulsar.transport_options()

    def admin_token(self) -> str | None:
        return bearer_token(self.pulsar.auth_plugin, self.pulsar.auth_params_string())


def load_tool_settings(
    path: str | None,
    *,
    url: str | None = None,
    admin_url: str | None = None,
    tenant: str | None = None,
    namespace: str | None = None,
    env: Mapping[str, str] | None = None,
) -> ToolSettings:
    """Precedence, lowest first: defaults, the config file, ``INFINITIC_*`` variables, the legacy
    ``PULSAR_URL`` (only when nothing else set the URL), command-line flags. Raises ConfigError."""
    environ = os.environ if env is None else env
    overrides: dict[str, Any] = {"services": _NO_SERVICES}
    explicit_file = path is not None or bool(environ.get("INFINITIC_CONFIG"))
    if url is None and not explicit_file and "INFINITIC_PULSAR__URL" not in environ:
        url = environ.get(LEGACY_URL_ENV) or None
    for key, value in (("url", url), ("admin_url", admin_url), ("tenant", tenant),
                       ("namespace", namespace)):
        if value is not None:
            overrides[f"pulsar.{key}"] = value
    config = load_config(path, env=environ, overrides=overrides)
    source = path or environ.get("INFINITIC_CONFIG") or "<env>"
    return ToolSettings(config.pulsar, source)


def default_admin_url(service_url: str) -> str | None:
    """``http://HOST:8080`` for ``pulsar://HOST:6650`` (``https://HOST:8443`` for
    ``pulsar+ssl://``): Pulsar's default ports; ``None`` for ``memory://``."""
    parts = urllib.parse.urlsplit(service_url)
    if parts.scheme not in ("pulsar", "pulsar+ssl") or not parts.hostname:
        return None
    host = parts.hostname.split(",")[0]
    if ":" in host:
        host = f"[{host}]"
    return f"https://{host}:8443" if parts.scheme == "pulsar+ssl" else f"http://{host}:8080"
