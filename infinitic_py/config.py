"""The worker's configuration: typed msgspec Structs loaded from YAML, then environment overrides.

Precedence, lowest first: the YAML file, ``INFINITIC_<SECTION>__<KEY>`` environment variables,
then ``overrides`` passed by the caller (the CLI's flags). Every problem is reported as a
:class:`~infinitic_py.errors.ConfigError` whose ``str()`` is one line naming the source, the key
path and what was expected, e.g.::

    worker.yaml: unknown key 'concurency' at services[0] (did you mean 'concurrency'?)
    worker.yaml: services[0].concurrency: expected int >= 1, got 'ten'
    worker.yaml: worker.http_port: expected int from 0 to 65535, got 'abc' (set by INFINITIC_WORKER__HTTP_PORT)

Environment variables: ``INFINITIC_PULSAR__URL``, ``INFINITIC_WORKER__HTTP_PORT=9100``,
``INFINITIC_PULSAR__CONSUMER__RECEIVER_QUEUE_SIZE=500``, ``INFINITIC_SERVICES__0__CONCURRENCY=4``.
Segments are separated by a double underscore and matched case-insensitively against the YAML
keys; values are read as YAML scalars (``9100`` is an int, ``true`` a bool, ``null`` nothing)
except where the key is a string, where the text is taken as is. A variable that starts with
``INFINITIC_`` and contains ``__`` but names no key is an error; variables without ``__``
(``INFINITIC_CONFIG``, the config file path) are not overrides and are left alone, unless they
look like a misspelt override (``INFINITIC_WORKER_HTTP_PORT``).

``pulsar.auth_params`` is a secret: it never shows in ``repr()`` / ``str()`` of the config and
is masked by :meth:`WorkerConfig.redacted`, the form meant for logs.
"""

from __future__ import annotations

import copy
import difflib
import importlib
import json
import os
import re
import socket
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Final, Literal

import msgspec
import msgspec.inspect as mi
import yaml

from infinitic_py.errors import ConfigError

__all__ = [
    "CONFIG_PATH_ENV",
    "ENV_PREFIX",
    "REDACTED",
    "BatchConfig",
    "Compression",
    "ConsumerConfig",
    "LogFormat",
    "LogLevel",
    "ProducerConfig",
    "PulsarConfig",
    "RetryConfig",
    "ServiceConfig",
    "SubscriptionTypeName",
    "WorkerConfig",
    "WorkerSettings",
    "config_from_dict",
    "load_config",
]

ENV_PREFIX: Final = "INFINITIC_"
CONFIG_PATH_ENV: Final = "INFINITIC_CONFIG"
"""When ``load_config`` gets no path, it reads the file this variable names (if set)."""
REDACTED: Final = "***"

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

_DOTTED = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
_CLASS_PATH_RE: Final = re.compile(rf"{_DOTTED}:{_DOTTED}")
_DOTTED_RE: Final = re.compile(_DOTTED)
_IDENTIFIER_RE: Final = re.compile(r"[A-Za-z_]\w*")
_SERVICE_NAME_RE: Final = re.compile(r"[\w.\-]+")
_URL_SCHEMES: Final = ("pulsar://", "pulsar+ssl://", "memory://")


class _Section(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of every config Struct: immutable, keyword-only, unknown keys rejected."""


class ConsumerConfig(_Section, frozen=True):
    """``pulsar.consumer``: how each service's consumer subscribes."""

    subscription_type: SubscriptionTypeName = "shared"
    receiver_queue_size: _PositiveInt = 2000
    nack_redelivery_delay_seconds: _NonNegativeFloat = 1.0
    max_redeliveries: _PositiveInt | None = 10
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
    consumer: ConsumerConfig = msgspec.field(default_factory=ConsumerConfig)
    producer: ProducerConfig = msgspec.field(default_factory=ProducerConfig)

    def auth_params_string(self) -> str | None:
        """``auth_params`` as the single string Pulsar's authentication plugins take."""
        if self.auth_params is None or isinstance(self.auth_params, str):
            return self.auth_params
        return json.dumps(self.auth_params, sort_keys=True)

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
                f"{type(exc).__name__}: {_one_line(str(exc))}"
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
                pulsar[key] = _redact_userinfo(pulsar[key])
        return data


def _redact_userinfo(url: str) -> str:
    """``scheme://user:pass@host`` → ``scheme://***@host``."""
    scheme, sep, rest = url.partition("://")
    authority, slash, tail = rest.partition("/")
    if sep and "@" in authority:
        return f"{scheme}://{REDACTED}@{authority.rsplit('@', 1)[1]}{slash}{tail}"
    return url


# --------------------------------------------------------------------------------------------
# Entry points


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> WorkerConfig:
    """Read a worker config: the YAML file, then ``INFINITIC_*`` variables, then ``overrides``.

    ``path=None`` reads the file named by ``$INFINITIC_CONFIG`` when set, else starts from an
    empty document (then the services must come from ``overrides``). ``env=None`` means
    ``os.environ``; pass ``{}`` to ignore the environment. ``overrides`` maps dotted key paths
    (``"worker.http_port"``, ``"services.0.concurrency"``) or whole sections to values.
    Raises :class:`ConfigError` (one line) for every problem.
    """
    environ: Mapping[str, str] = os.environ if env is None else env
    if path is None and environ.get(CONFIG_PATH_ENV):
        path = environ[CONFIG_PATH_ENV]
    if path is None:
        source = "<env>"
        data: dict[str, Any] = {}
    else:
        source = os.fspath(path)
        data = _read_yaml_file(source)
    provenance: dict[tuple[str | int, ...], str] = {}
    _apply_env(data, environ, source, provenance)
    if overrides:
        _apply_overrides(data, overrides, source, provenance)
    return _build(data, source, provenance)


def config_from_dict(
    data: Mapping[str, Any],
    source: str = "<dict>",
    *,
    overrides: Mapping[str, Any] | None = None,
) -> WorkerConfig:
    """Validate already-parsed data (no file, no environment); errors name ``source``."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a mapping at top level, got {_show(data)}")
    copied: dict[str, Any] = copy.deepcopy(dict(data))
    provenance: dict[tuple[str | int, ...], str] = {}
    if overrides:
        _apply_overrides(copied, overrides, source, provenance)
    return _build(copied, source, provenance)


# --------------------------------------------------------------------------------------------
# YAML


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys instead of silently keeping the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:  # unhashable key: SafeLoader reports it itself
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _read_yaml_file(source: str) -> dict[str, Any]:
    try:
        with open(source, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        raise ConfigError(f"{source}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{source}: is a directory, not a config file") from None
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read config file: {exc.strerror or exc}") from None
    try:
        data = yaml.load(raw, Loader=_StrictLoader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        raise ConfigError(f"{source}: {_describe_yaml_error(exc)}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML: {_one_line(str(exc))}") from None
    if data is None:
        raise ConfigError(f"{source}: file is empty (expected a mapping with a 'services' list)")
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at top level, got {_show(data)}")
    return data


def _describe_yaml_error(exc: yaml.MarkedYAMLError) -> str:
    mark = exc.problem_mark or exc.context_mark
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    problem = _one_line(exc.problem or "syntax error")
    context = f" ({_one_line(exc.context)})" if exc.context else ""
    return f"invalid YAML{where}: {problem}{context}"


# --------------------------------------------------------------------------------------------
# Schema walking (shared by env overrides, explicit overrides and error messages)

_Path = tuple[str | int, ...]
_ROOT_TYPE: Final[mi.Type] = mi.type_info(WorkerConfig)


def _strip_optional(t: mi.Type) -> mi.Type:
    """The non-null member of ``X | None``; unions of several others are returned as is."""
    if isinstance(t, mi.UnionType):
        members = [m for m in t.types if not isinstance(m, mi.NoneType)]
        if len(members) == 1:
            return members[0]
    return t


def _container(t: mi.Type) -> mi.Type:
    """The struct / list / dict member of a type (ignoring null and scalars in unions)."""
    t = _strip_optional(t)
    if isinstance(t, mi.UnionType):
        for member in t.types:
            if isinstance(member, mi.StructType | mi.ListType | mi.TupleType |
                          mi.VarTupleType | mi.DictType):
                return member
    return t


def _field(struct: mi.StructType, key: str) -> mi.Field | None:
    for f in struct.fields:
        if f.encode_name == key:
            return f
    return None


def _field_names(struct: mi.StructType) -> list[str]:
    return [f.encode_name for f in struct.fields]


def _suggest(key: str, candidates: Sequence[str]) -> str:
    matches = difflib.get_close_matches(key, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {matches[0]!r}?)" if matches else ""


def _format_path(path: Sequence[str | int]) -> str:
    out = ""
    for seg in path:
        if isinstance(seg, int):
            out += f"[{seg}]"
        elif _IDENTIFIER_RE.fullmatch(seg):
            out += f".{seg}" if out else seg
        else:
            out += f"[{seg!r}]"
    return out


def _where(path: Sequence[str | int]) -> str:
    return _format_path(path) if path else "top level"


# --------------------------------------------------------------------------------------------
# Environment variables and explicit overrides


def _apply_env(
    data: dict[str, Any],
    environ: Mapping[str, str],
    source: str,
    provenance: dict[_Path, str],
) -> None:
    sections = [f.encode_name for f in _root_struct().fields]
    for var in sorted(environ):
        if not var.upper().startswith(ENV_PREFIX):
            continue
        rest = var[len(ENV_PREFIX):]
        if "__" not in rest:
            lowered = rest.lower()
            for section in sections:
                if lowered.startswith(section + "_") and len(lowered) > len(section) + 1:
                    fixed = f"{ENV_PREFIX}{section.upper()}__{rest[len(section) + 1:]}"
                    raise ConfigError(
                        f"{var}: not a config override; separate the section with a double "
                        f"underscore (did you mean {fixed}?)"
                    )
            continue
        segments = [seg.lower() for seg in rest.split("__")]
        path, leaf = _resolve_path(var, segments, env_style=True)
        value = _parse_env_value(var, environ[var], leaf)
        _set_path(data, path, value, where=var, source=source)
        provenance[path] = var


def _root_struct() -> mi.StructType:
    assert isinstance(_ROOT_TYPE, mi.StructType)
    return _ROOT_TYPE


def _resolve_path(
    var: str, segments: list[str], *, env_style: bool
) -> tuple[_Path, mi.Type]:
    """Map ``["services", "0", "concurrency"]`` onto the schema; errors name ``var``."""
    t: mi.Type = _ROOT_TYPE
    path: list[str | int] = []
    for n, seg in enumerate(segments):
        here = _container(t)
        if not seg:
            raise ConfigError(f"{var}: empty key segment (a triple underscore?)")
        if isinstance(here, mi.StructType):
            f = _field(here, seg)
            if f is None:
                names = _field_names(here)
                hint = _suggest(seg, names)
                matches = difflib.get_close_matches(seg, names, n=1, cutoff=0.6)
                if matches and env_style:
                    fixed = [*(str(p) for p in path), matches[0], *segments[n + 1:]]
                    fixed = [part.upper() for part in fixed]
                    hint = f" (did you mean {ENV_PREFIX}{'__'.join(fixed)}?)"
                raise ConfigError(f"{var}: unknown key {seg!r} at {_where(path)}{hint}")
            path.append(f.encode_name)
            t = f.type
        elif isinstance(here, mi.ListType | mi.VarTupleType | mi.TupleType):
            if not seg.isdigit():
                raise ConfigError(
                    f"{var}: {_format_path(path)} is a list; expected an index, got {seg!r}"
                )
            path.append(int(seg))
            t = here.item_types[0] if isinstance(here, mi.TupleType) else here.item_type
        elif isinstance(here, mi.DictType):
            path.append(seg)
            t = here.value_type
        else:
            raise ConfigError(
                f"{var}: {_format_path(path)} is a single value; it has no key {seg!r}"
            )
    return tuple(path), t


def _accepts(t: mi.Type, kinds: tuple[type[mi.Type], ...]) -> bool:
    members = t.types if isinstance(t, mi.UnionType) else (t,)
    return any(isinstance(m, kinds) for m in members)


def _parse_env_value(var: str, raw: str, leaf: mi.Type) -> Any:
    nullable = _accepts(leaf, (mi.NoneType,))
    if nullable and raw.strip() in ("", "null", "~", "None"):
        return None
    if _accepts(leaf, (mi.StrType,)) or (
        isinstance(_strip_optional(leaf), mi.LiteralType)
    ):
        return raw  # strings are taken verbatim: a tenant named "no" stays "no"
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{var}: cannot read {raw!r} as a YAML value: "
                          f"{_one_line(str(exc))}") from None
    if isinstance(value, str) and _accepts(leaf, (mi.IntType, mi.FloatType)):
        for convert in (int, float):
            try:
                return convert(value)
            except ValueError:
                pass
    return value


def _apply_overrides(
    data: dict[str, Any],
    overrides: Mapping[str, Any],
    source: str,
    provenance: dict[_Path, str],
) -> None:
    for key, value in overrides.items():
        label = f"override {key!r}"
        path, _ = _resolve_path(label, str(key).split("."), env_style=False)
        _set_path(data, path, copy.deepcopy(value), where=label, source=source)
        provenance[path] = label


def _set_path(
    data: dict[str, Any], path: _Path, value: Any, *, where: str, source: str
) -> None:
    node: Any = data
    for i, seg in enumerate(path[:-1]):
        nxt = path[i + 1]
        if isinstance(seg, int):
            if not isinstance(node, list) or seg >= len(node):
                size = len(node) if isinstance(node, list) else 0
                raise ConfigError(
                    f"{where}: {source} has {size} entr{'y' if size == 1 else 'ies'} in "
                    f"{_format_path(path[:i]) or 'top level'}; index {seg} does not exist"
                )
            node = node[seg]
        else:
            if not isinstance(node, dict):
                raise ConfigError(f"{where}: {_format_path(path[:i])} is not a mapping")
            child = node.get(seg)
            if child is None:
                if isinstance(nxt, int):
                    raise ConfigError(
                        f"{where}: {source} has no {_format_path(path[: i + 1])} list to index"
                    )
                child = node[seg] = {}
            node = child
    last = path[-1]
    if isinstance(last, int):
        if not isinstance(node, list) or last >= len(node):
            raise ConfigError(f"{where}: index {last} of {_format_path(path[:-1])} does not exist")
        node[last] = value
    elif not isinstance(node, dict):
        raise ConfigError(f"{where}: {_format_path(path[:-1])} is not a mapping")
    elif isinstance(value, Mapping) and isinstance(node.get(last), dict):
        node[last] = _deep_merge(node[last], value)
    else:
        node[last] = value


def _deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


# --------------------------------------------------------------------------------------------
# Validation and error messages


def _build(data: dict[str, Any], source: str, provenance: dict[_Path, str]) -> WorkerConfig:
    try:
        config = msgspec.convert(data, WorkerConfig)
    except msgspec.ValidationError as exc:
        raise ConfigError(_translate(str(exc), data, source, provenance)) from None
    problem = _semantic_problem(config)
    if problem is not None:
        path, text = problem
        raise ConfigError(f"{source}: {_format_path(path)}: {text}{_origin(path, provenance)}")
    return config


_MSG_RE: Final = re.compile(r"^(?P<body>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_SEG_RE: Final = re.compile(r"\.([^.\[]+)|\[(\d+|\.\.\.)\]")


def _translate(
    message: str, data: dict[str, Any], source: str, provenance: dict[_Path, str]
) -> str:
    m = _MSG_RE.match(message)
    body = m.group("body") if m else message
    raw_path = (m.group("path") if m else None) or ""
    path, value, t, found = _walk(raw_path, data)
    origin = _origin(path, provenance)

    unknown = re.match(r"Object contains unknown field `(.+)`$", body)
    if unknown:
        key = unknown.group(1)
        container = _container(t) if t is not None else None
        names = _field_names(container) if isinstance(container, mi.StructType) else []
        return (f"{source}: unknown key {key!r} at {_where(path)}{_suggest(key, names)}"
                f"{_origin((*path, key), provenance)}")
    missing = re.match(r"Object missing required field `(.+)`$", body)
    if missing:
        return f"{source}: missing required key {missing.group(1)!r} at {_where(path)}{origin}"
    if (body.startswith(("Expected", "Invalid enum value"))) and t is not None:
        got = f", got {_show(value)}" if found else ""
        return f"{source}: {_where(path)}: expected {_describe(t)}{got}{origin}"
    return f"{source}: {_where(path)}: {_one_line(body)}{origin}"


def _walk(
    raw_path: str, data: Any
) -> tuple[_Path, Any, mi.Type | None, bool]:
    """Follow a msgspec error path through the raw data and the schema together.

    msgspec writes dict keys as ``[...]``; the offending key is found again by re-validating
    each entry of that dict (the first one that fails is the one msgspec stopped at).
    """
    path: list[str | int] = []
    value: Any = data
    found = True
    t: mi.Type | None = _ROOT_TYPE
    for name, index in _SEG_RE.findall(raw_path):
        here = _container(t) if t is not None else None
        if name:
            path.append(name)
            f = _field(here, name) if isinstance(here, mi.StructType) else None
            t = f.type if f is not None else None
            if found and isinstance(value, dict) and name in value:
                value = value[name]
            else:
                found = False
        elif index == "...":
            t = here.value_type if isinstance(here, mi.DictType) else None
            key = _failing_key(value, t) if found else None
            if key is None:
                path.append("...")
                found = False
            else:
                path.append(key)
                value = value[key]
        else:
            i = int(index)
            path.append(i)
            t = here.item_type if isinstance(here, mi.ListType | mi.VarTupleType) else None
            if found and isinstance(value, list) and i < len(value):
                value = value[i]
            else:
                found = False
    return tuple(path), value, t, found


def _failing_key(value: Any, t: mi.Type | None) -> str | None:
    if not isinstance(value, dict) or not value:
        return None
    target: Any = t.cls if isinstance(t, mi.StructType) else None
    if target is None:
        return str(next(iter(value)))
    for key, item in value.items():
        try:
            msgspec.convert(item, target)
        except msgspec.ValidationError:
            return str(key)
    return str(next(iter(value)))


def _origin(path: Sequence[str | int], provenance: Mapping[_Path, str]) -> str:
    """`` (set by VAR)`` when the key (or a section holding it) came from the environment."""
    for n in range(len(path), 0, -1):
        label = provenance.get(tuple(path[:n]))
        if label is not None:
            return f" (set by {label})"
    return ""


def _describe(t: mi.Type) -> str:
    """What a schema type accepts, in words: ``int >= 1``, ``number > 0 or null``..."""
    if isinstance(t, mi.UnionType):
        members = [m for m in t.types if not isinstance(m, mi.NoneType)]
        words = [_describe(m) for m in members]
        if len(members) < len(t.types):
            words.append("null")
        return " or ".join(words)
    if isinstance(t, mi.IntType | mi.FloatType):
        return _describe_number("int" if isinstance(t, mi.IntType) else "number", t)
    if isinstance(t, mi.BoolType):
        return "true or false"
    if isinstance(t, mi.StrType):
        return "a string"
    if isinstance(t, mi.NoneType):
        return "null"
    if isinstance(t, mi.LiteralType):
        return "one of " + ", ".join(repr(v) for v in t.values)
    if isinstance(t, mi.StructType):
        return "a mapping"
    if isinstance(t, mi.DictType):
        return "a mapping"
    if isinstance(t, mi.ListType | mi.VarTupleType):
        if t.min_length:
            return "a non-empty list" if t.min_length == 1 else f"a list of >= {t.min_length}"
        return "a list"
    return "a valid value"


def _describe_number(kind: str, t: mi.IntType | mi.FloatType) -> str:
    low = (t.ge, ">=") if t.ge is not None else (t.gt, ">") if t.gt is not None else None
    high = (t.le, "<=") if t.le is not None else (t.lt, "<") if t.lt is not None else None
    if low and high and low[1] == ">=" and high[1] == "<=":
        return f"{kind} from {_num(low[0])} to {_num(high[0])}"
    bounds = [f"{op} {_num(v)}" for v, op in (b for b in (low, high) if b is not None)]
    return f"{kind} {' and '.join(bounds)}" if bounds else kind


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else str(v)


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list" if value else "an empty list"
    return f"a {type(value).__name__}"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _semantic_problem(config: WorkerConfig) -> tuple[_Path, str] | None:
    """Checks msgspec's constraints cannot express; the first problem found, or None."""
    p = config.pulsar
    if not p.url.startswith(_URL_SCHEMES) or p.url.partition("://")[2] in ("", "/"):
        return ("pulsar", "url"), (
            f"expected pulsar://HOST:PORT, pulsar+ssl://HOST:PORT or memory://NAME, got {p.url!r}"
        )
    if p.admin_url is not None and not re.match(r"https?://[^/]", p.admin_url):
        return ("pulsar", "admin_url"), (
            f"expected http://HOST:PORT or https://HOST:PORT (or null), got {p.admin_url!r}"
        )
    for key in ("tenant", "namespace"):
        value = getattr(p, key)
        if not _SERVICE_NAME_RE.fullmatch(value):
            return ("pulsar", key), f"expected a name of letters, digits, '_', '-', '.', got {value!r}"
    if p.auth_params is not None and p.auth_plugin is None:
        return ("pulsar", "auth_params"), "is set but pulsar.auth_plugin is null"
    w = config.worker
    if w.name is not None and not w.name.strip():
        return ("worker", "name"), "expected a non-empty string or null"
    if not w.http_host.strip():
        return ("worker", "http_host"), "expected a host name or address"
    seen: dict[str, int] = {}
    for i, svc in enumerate(config.services):
        if not _CLASS_PATH_RE.fullmatch(svc.class_path):
            return ("services", i, "class"), (
                f"expected a 'module:Class' import path, got {svc.class_path!r}"
            )
        if svc.name is not None and not _SERVICE_NAME_RE.fullmatch(svc.name):
            return ("services", i, "name"), (
                f"expected a name of letters, digits, '_', '-', '.', got {svc.name!r}"
            )
        identity = svc.name or svc.class_path
        if identity in seen:
            return ("services", i), (
                f"duplicates services[{seen[identity]}] ({identity!r}); give one a distinct name"
            )
        seen[identity] = i
        if svc.retry is not None:
            r = svc.retry
            if r.maximum_seconds < r.minimum_seconds:
                return ("services", i, "retry", "maximum_seconds"), (
                    f"expected >= minimum_seconds ({_num(r.minimum_seconds)}), "
                    f"got {_num(r.maximum_seconds)}"
                )
            for j, name in enumerate(r.ignored_exceptions):
                if not _DOTTED_RE.fullmatch(name):
                    return ("services", i, "retry", "ignored_exceptions", j), (
                        f"expected an exception name (ValueError or pkg.module.Error), got {name!r}"
                    )
        for method in svc.batch:
            if not _IDENTIFIER_RE.fullmatch(method):
                return ("services", i, "batch"), f"expected method names as keys, got {method!r}"
    return None


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
                f"{_one_line(str(exc))}"
            ) from exc
    if not (isinstance(obj, type) and issubclass(obj, BaseException)):
        raise ConfigError(f"ignored_exceptions: {name!r} is not an exception class")
    return obj
