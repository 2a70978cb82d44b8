"""The broker settings of the operator tools, read exactly like the worker's.

``dlq``, ``status`` and ``dispatch`` take ``-c/--config`` (or ``$INFINITIC_CONFIG``) and the
``INFINITIC_<SECTION>__<KEY>`` variables, so they reach a secured cluster with the worker's own
auth and TLS settings. ``pulsar`` says where the broker is; the file's ``services`` (a file
without them is fine) say where each declared service lives (its own ``tenant`` / ``namespace``
/ ``wire``, ``scopes``). Their classes are not imported (a tool need not have the service code),
except, best effort, to learn the name of an entry without ``name:`` (``scopes.scope_of``).

The admin API is the broker's own: unless ``pulsar.admin_url`` is given (flag, variable or file),
it follows the broker URL's host on Pulsar's default admin port (``http://HOST:8080``,
``https://HOST:8443`` for ``pulsar+ssl://``), as the client's does, so ``status --url
pulsar://other:6650`` never reads the admin API of the config default (127.0.0.1:8080).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from infinitic_py.config import PulsarConfig, ServiceConfig, load_config
from infinitic_py.config.sources import read_yaml_file
from infinitic_py.errors import ConfigError
from infinitic_py.ops.scopes import Flags, Scope, scope_of, status_namespaces
from infinitic_py.tokens import bearer_token
from infinitic_py.transport.urls import broker_addresses

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
    services: tuple[ServiceConfig, ...] = ()  # the config file's (none: no file, or none there)
    tenant_flag: bool = False  # --tenant given: it wins over a service's own
    namespace_flag: bool = False  # --namespace given

    def scope_of(self, service: str, *, wire: str | None = None) -> Scope:
        """Where ``service``'s topics are (``wire``: ``--wire`` when given); ConfigError when
        the config declares the name more than once in different places."""
        return scope_of(service, self.services, self._flags(wire), source=self.source,
                        name_of=_imported_name)

    def status_namespaces(self) -> list[tuple[str, str]]:
        """``pulsar``'s namespace (or the flags'), then those of the config's services."""
        return status_namespaces(self.services, self._flags(None))

    def _flags(self, wire: str | None) -> Flags:
        return Flags(self.tenant, self.namespace, tenant_flag=self.tenant_flag,
                     namespace_flag=self.namespace_flag, wire=wire)

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

    def tool_transport_options(self, connect_timeout: float, *, quiet: bool) -> dict[str, Any]:
        """``transport_options`` for a short-lived tool: every broker round trip bounded by
        ``connect_timeout``, and (``quiet``) pulsar-client's native log lines discarded, since the
        tool's failure is its own one line (``--debug`` keeps them)."""
        options = self.transport_options()
        if options:
            options["operation_timeout_seconds"] = max(1, math.ceil(connect_timeout))
            options["connection_timeout_ms"] = max(1, int(connect_timeout * 1000))
            if quiet:
                options["log_file"] = os.devnull
        return options

    def admin_token(self) -> str | None:
        return bearer_token(self.pulsar.auth_plugin, self.pulsar.auth_params_string())

    def refuse_bad_credentials(self, timeout: float) -> None:
        """ConfigError naming what to fix when the broker refuses these credentials (a wrong,
        expired or missing token: pulsar-client would only time out); see ``credentials``."""
        from infinitic_py.credentials import credentials_problem

        if self.url.startswith("memory://"):
            return
        problem = credentials_problem(self.pulsar.admin_url, self.pulsar.auth_plugin,
                                      self.pulsar.auth_params_string(), timeout=timeout)
        if problem:
            raise ConfigError(problem)

    @contextlib.contextmanager
    def refusals_named(self) -> Iterator[None]:
        """A broker or admin API refusal of this role (AuthorizationError, HTTP 401/403) becomes
        a ConfigError naming the right to grant, instead of "check --url / --admin-url"."""
        from infinitic_py.admin import PulsarAdminError
        from infinitic_py.credentials import authorization_problem
        from infinitic_py.ops.failures import BrokerFailure
        from infinitic_py.transport.base import TransportError

        try:
            yield
        except (TransportError, PulsarAdminError, BrokerFailure) as exc:
            if isinstance(exc, PulsarAdminError) and exc.status not in (401, 403):
                raise
            problem = authorization_problem(str(exc), self.pulsar.auth_plugin,
                                            self.pulsar.auth_params_string())
            if problem:
                raise ConfigError(problem) from None
            raise


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
    file = path or environ.get("INFINITIC_CONFIG") or None
    declared = bool(file and read_yaml_file(file).get("services"))
    # the file's services are checked like the worker's (not imported); none: a stand-in
    overrides: dict[str, Any] = {} if declared else {"services": _NO_SERVICES}
    flags = {f"pulsar.{key}": f"--{key.replace('_', '-')}"
             for key in ("url", "admin_url", "tenant", "namespace")}
    explicit_file = path is not None or bool(environ.get("INFINITIC_CONFIG"))
    if url is None and not explicit_file and "INFINITIC_PULSAR__URL" not in environ:
        url = environ.get(LEGACY_URL_ENV) or None
        flags["pulsar.url"] = f"${LEGACY_URL_ENV}"
    for key, value in (("url", url), ("admin_url", admin_url), ("tenant", tenant),
                       ("namespace", namespace)):
        if value is not None:
            overrides[f"pulsar.{key}"] = value
    config = load_config(path, env=environ, overrides=overrides, override_labels=flags)
    source = path or environ.get("INFINITIC_CONFIG") or "<env>"
    pulsar = config.pulsar
    if admin_url is None and not _admin_url_given(path or environ.get("INFINITIC_CONFIG"),
                                                  environ):
        pulsar = msgspec.structs.replace(pulsar, admin_url=default_admin_url(pulsar.url))
    return ToolSettings(pulsar, source, config.services if declared else (),
                        tenant_flag=tenant is not None, namespace_flag=namespace is not None)


def _imported_name(svc: ServiceConfig) -> str | None:
    """The name a worker gives ``svc`` (no ``name:``): its class's, imported; ``None`` when it
    cannot be imported here (a tool need not have the service code)."""
    from infinitic_py.service import service_name

    try:
        return service_name(svc.load_class())
    except Exception:  # ConfigError (import failed), or what a module raises at import
        return None


def _admin_url_given(path: str | None, environ: Mapping[str, str]) -> bool:
    """Whether the config file or the environment names ``pulsar.admin_url`` (null included)."""
    if any(var.upper() == "INFINITIC_PULSAR__ADMIN_URL" for var in environ):
        return True
    if not path:
        return False
    section = read_yaml_file(path).get("pulsar")  # already read once: it is valid
    return isinstance(section, dict) and "admin_url" in section


def default_admin_url(service_url: str) -> str | None:
    """``http://HOST:8080`` for ``pulsar://HOST:6650`` (``https://HOST:8443`` for
    ``pulsar+ssl://``; the first host of a multi-host URL): Pulsar's default ports; ``None`` for
    ``memory://``."""
    addresses = broker_addresses(service_url)
    if not addresses:
        return None
    host = addresses[0][0]
    if ":" in host:
        host = f"[{host}]"
    return f"https://{host}:8443" if service_url.startswith("pulsar+ssl:") else f"http://{host}:8080"
