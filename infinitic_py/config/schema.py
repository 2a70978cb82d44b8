"""The worker configuration's schema: typed msgspec Structs, their defaults and documented keys
(the YAML file's shape). ``sources`` fills them, ``errors`` words what is wrong."""

from __future__ import annotations

import importlib
import json
import socket
from typing import Annotated, Any, Literal

import msgspec

from infinitic_py.errors import ConfigError
from infinitic_py.transport.base import WORKER_MAX_REDELIVERIES
from infinitic_py.transport.urls import REDACTED, is_memory, redact_url

SubscriptionTypeName = Literal["shared", "key_shared"]
Compression = Literal["none", "lz4", "zlib", "zstd", "snappy"]
LogFormat = Literal["auto", "json", "console"]
LogLevel = Literal["debug", "info", "warning", "error", "critical"]

_PositiveInt = Annotated[int, msgspec.Meta(ge=1)]
_NonNegativeInt = Annotated[int, msgspec.Meta(ge=0)]
_PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]
_NonNegativeFloat = Annotated[float, msgspec.Meta(ge=0)]
_Ratio = Annotated[float, msgspec.Meta(ge=0, le=1)]
_Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]


class _Section(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of every config Struct: immutable, keyword-only, unknown keys rejected."""


class ConsumerConfig(_Section, frozen=True):
    """``pulsar.consumer``: how each service's consumer subscribes."""

    subscription_type: SubscriptionTypeName = "shared"
    receiver_queue_size: _PositiveInt = 2000
    nack_redelivery_delay_seconds: _NonNegativeFloat = 1.0
    max_redeliveries: _PositiveInt | None = WORKER_MAX_REDELIVERIES
    """Nacks before Pulsar moves a message to the dead-letter topic; ``None``: no DLQ policy."""


class ProducerConfig(_Section, frozen=True):
    """``pulsar.producer``: replies, retries and dead letters are published with these."""

    batching_max_messages: _PositiveInt = 1000
    batching_max_publish_delay_ms: _NonNegativeInt = 10
    send_timeout_seconds: _NonNegativeFloat = 30.0
    """0 means no timeout (Pulsar's convention)."""
    compression: Compression = "none"


class PulsarConfig(_Section, frozen=True):
    """``pulsar``: where the broker is and how to talk to it."""

    url: str = "pulsar://127.0.0.1:6650"
    """``pulsar://HOST:PORT``, ``pulsar+ssl://HOST:PORT`` or ``memory://NAME``."""
    admin_url: str | None = "http://127.0.0.1:8080"
    """Admin REST endpoint; ``None`` skips the admin checks done at start."""
    tenant: str = "public"
    namespace: str = "default"
    auth_plugin: str | None = None
    auth_params: str | dict[str, str] | None = None
    """SECRET. A mapping is handed to Pulsar as its JSON text (see :meth:`auth_params_string`)."""
    tls_trust_certs_file: str | None = None
    tls_allow_insecure_connection: bool = False
    tls_validate_hostname: bool = True
    connect_timeout_seconds: _PositiveFloat = 120.0
    """How long a starting worker keeps trying to reach the broker (with backoff, one log line per attempt) before it exits with a one-line error."""
    consumer: ConsumerConfig = msgspec.field(default_factory=ConsumerConfig)
    producer: ProducerConfig = msgspec.field(default_factory=ProducerConfig)

    def auth_params_string(self) -> str | None:
        """``auth_params`` as the single string Pulsar's authentication plugins take."""
        if self.auth_params is None or isinstance(self.auth_params, str):
            return self.auth_params
        return json.dumps(self.auth_params, sort_keys=True)

    def transport_options(self) -> dict[str, Any]:
        """Client options for ``create_transport`` (auth, TLS, producer tuning); none for
        ``memory://`` (the in-process transport takes none). The one place they are built: the
        worker (``worker.from_config``) and the CLI tools (``ops.settings``) use it."""
        if is_memory(self.url):
            return {}
        return {
            "auth_plugin": self.auth_plugin,
            "auth_params": self.auth_params_string(),
            "tls_trust_certs_file": self.tls_trust_certs_file,
            "tls_allow_insecure_connection": self.tls_allow_insecure_connection,
            "tls_validate_hostname": self.tls_validate_hostname,
            "batching_max_messages": self.producer.batching_max_messages,
            "batching_max_publish_delay_ms": self.producer.batching_max_publish_delay_ms,
            "send_timeout_seconds": self.producer.send_timeout_seconds,
            "compression": self.producer.compression,
        }

    def __repr__(self) -> str:
        parts = []
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if name == "auth_params" and value is not None:
                parts.append(f"{name}={REDACTED!r}")
            else:
                parts.append(f"{name}={value!r}")
        return f"PulsarConfig({', '.join(parts)})"

    def __rich_repr__(self) -> list[tuple[str, Any]]:
        return [
            (name, REDACTED if name == "auth_params" and getattr(self, name) is not None
             else getattr(self, name))
            for name in self.__struct_fields__
        ]


class WorkerSettings(_Section, frozen=True):
    """``worker``: the daemon itself."""

    name: str | None = None
    """Consumer name and log field; defaults to the hostname (see :meth:`resolved_name`)."""
    max_buffered_messages: _PositiveInt = 10000
    """Cap on messages the worker holds (received, not yet acked or nacked) per service, across all its groups (the broker limit is per consumer, one per service)."""
    max_buffered_bytes: _PositiveInt = 256 * 1024 * 1024
    """Cap on the bytes of those messages (their payloads) per service: the worker stops pulling at either cap."""
    max_hung_handlers: _NonNegativeInt | None = None
    """Sync handlers left running past their timeout whose threads a service replaces; beyond that it is not ready (/readyz 503). Default: max(8, 4 x concurrency)."""
    shutdown_grace_seconds: _NonNegativeFloat = 30.0
    http_host: str = "0.0.0.0"
    http_port: _Port = 9090
    """Port of /metrics, /healthz, /readyz; 0 disables the HTTP server."""
    log_format: LogFormat = "auto"
    log_level: LogLevel = "info"
    gc_gen0_threshold: _NonNegativeInt = 10000
    """Generation-0 threshold of Python's cyclic GC in the worker process (Python's default is 700); 0 keeps Python's. The worker also freezes its startup objects (see infinitic_py/gc_tuning.py)."""
    backlog_poll_seconds: _NonNegativeFloat = 15.0
    """How often the worker reads its services' ready and delayed backlog from the admin API (``pulsar.admin_url``) for the ``infinitic_backlog_*`` gauges autoscalers use; 0 disables it."""

    def resolved_name(self) -> str:
        return self.name if self.name else socket.gethostname()


class RetryConfig(_Section, frozen=True):
    """A service's retry policy; the names and defaults are ``RetryPolicy``'s."""

    maximum_retries: _NonNegativeInt = 11
    minimum_seconds: _NonNegativeFloat = 1.0
    maximum_seconds: _NonNegativeFloat = 1000.0
    backoff_coefficient: Annotated[float, msgspec.Meta(ge=1)] = 2.0
    random_factor: _Ratio = 0.5
    ignored_exceptions: tuple[str, ...] = ()
    """Exceptions never retried: builtin names (``ValueError``) or dotted paths (``pkg.mod.Error``)."""

    def exception_types(self) -> tuple[type[BaseException], ...]:
        """Import the classes named by ``ignored_exceptions`` (raises ConfigError naming one)."""
        return tuple(_import_exception(name) for name in self.ignored_exceptions)


class BatchConfig(_Section, frozen=True):
    """Overrides of one batch method's decorator defaults; ``None`` keeps the decorator's value."""

    max_messages: _PositiveInt | None = None
    max_seconds: _PositiveFloat | None = None


class ServiceConfig(_Section, frozen=True):
    """One entry of ``services``."""

    class_path: str = msgspec.field(name="class")
    """``module:Class`` import path of the service class (the YAML key is ``class``)."""
    name: str | None = None
    """Service name (topic suffix); ``None``: the class's ``@service(name=...)`` or its name."""
    concurrency: _PositiveInt = 10
    timeout_seconds: _PositiveFloat | None = None
    retry: RetryConfig | None = None
    """``None``: no retry (the default of a service)."""
    batch: dict[str, BatchConfig] = msgspec.field(default_factory=dict)
    """Per batched method (the task's name ``send`` or its twin's ``send_batch``), overrides of
    its decorator's ``max_messages`` / ``max_seconds``; the loader resolves the name."""
    wire: Literal["native", "infinitic"] = "native"
    """Message format: ``native`` (infinitic-py's) or ``infinitic`` (serve Infinitic 0.18 JVM workflows and clients on Infinitic's topics; needs the ``infinitic`` extra)."""
    tenant: str | None = None
    """Override of ``pulsar.tenant`` for this service (e.g. Infinitic's tenant)."""
    namespace: str | None = None
    """Override of ``pulsar.namespace`` for this service (e.g. Infinitic's namespace)."""
    event_handler: bool = False
    """``wire: infinitic`` only: also play Infinitic's task-event and task-retry handlers (no JVM worker of this service needed)."""

    def load_class(self) -> type[Any]:
        """Import the service class named by ``class`` (raises ConfigError when it cannot)."""
        module_name, _, attr_path = self.class_path.partition(":")
        try:
            obj: Any = importlib.import_module(module_name)
            for attr in attr_path.split("."):
                obj = getattr(obj, attr)
        except Exception as exc:  # ImportError, AttributeError, or whatever the module raises
            raise ConfigError(
                f"cannot import service class {self.class_path!r}: "
                f"{type(exc).__name__}: {one_line(str(exc))}"
            ) from exc
        if not isinstance(obj, type):
            raise ConfigError(f"service {self.class_path!r} is not a class")
        return obj


class WorkerConfig(_Section, frozen=True):
    """The whole worker configuration (the YAML file's top level)."""

    services: Annotated[tuple[ServiceConfig, ...], msgspec.Meta(min_length=1)]
    pulsar: PulsarConfig = msgspec.field(default_factory=PulsarConfig)
    worker: WorkerSettings = msgspec.field(default_factory=WorkerSettings)

    def to_dict(self) -> dict[str, Any]:
        """Plain data with the YAML keys, secrets included: for serializing, never for logs."""
        data: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(self))
        return data

    def redacted(self) -> dict[str, Any]:
        """Plain data with the YAML keys and every secret masked: the form to log."""
        data = self.to_dict()
        pulsar = data["pulsar"]
        if pulsar.get("auth_params") is not None:
            pulsar["auth_params"] = REDACTED
        for key in ("url", "admin_url"):
            if pulsar.get(key):
                pulsar[key] = redact_url(pulsar[key])
        return data



def one_line(text: str) -> str:
    return " ".join(text.split())


def _import_exception(name: str) -> type[BaseException]:
    import builtins

    if "." not in name:
        obj = getattr(builtins, name, None)
    else:
        module_name, _, attr = name.rpartition(".")
        try:
            obj = getattr(importlib.import_module(module_name), attr, None)
        except Exception as exc:
            raise ConfigError(
                f"ignored_exceptions: cannot import {name!r}: {type(exc).__name__}: "
                f"{one_line(str(exc))}"
            ) from exc
    if not (isinstance(obj, type) and issubclass(obj, BaseException)):
        raise ConfigError(f"ignored_exceptions: {name!r} is not an exception class")
    return obj
