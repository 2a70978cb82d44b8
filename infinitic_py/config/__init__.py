"""The worker's configuration: typed msgspec Structs loaded from YAML, then environment overrides.

- ``schema``: the Structs (the YAML file's shape, defaults, documented keys);
- ``sources``: the YAML file, ``INFINITIC_*`` variables and explicit overrides;
- ``errors``: the one-line messages users read.

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
import os
from collections.abc import Mapping
from typing import Any

import msgspec

from infinitic_py.config.errors import locate, message, origin, semantic_problem
from infinitic_py.config.schema import (
    BatchConfig,
    Compression,
    ConsumerConfig,
    LogFormat,
    LogLevel,
    ProducerConfig,
    PulsarConfig,
    RetryConfig,
    ServiceConfig,
    SubscriptionTypeName,
    WorkerConfig,
    WorkerSettings,
)
from infinitic_py.config.sources import (
    CONFIG_PATH_ENV,
    ENV_PREFIX,
    Path,
    apply_env,
    apply_overrides,
    format_path,
    read_yaml_file,
    show,
)
from infinitic_py.errors import ConfigError
from infinitic_py.transport.urls import REDACTED

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


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    override_labels: Mapping[str, str] | None = None,
) -> WorkerConfig:
    """Read a worker config: the YAML file, then ``INFINITIC_*`` variables, then ``overrides``
    (named in errors by ``override_labels``, e.g. ``{"pulsar.url": "--url"}``).

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
        data = read_yaml_file(source)
    provenance: dict[Path, str] = {}
    apply_env(data, environ, source, provenance)
    if overrides:
        apply_overrides(data, overrides, source, provenance, override_labels)
    return _build(data, source, provenance)


def config_from_dict(
    data: Mapping[str, Any],
    source: str = "<dict>",
    *,
    overrides: Mapping[str, Any] | None = None,
) -> WorkerConfig:
    """Validate already-parsed data (no file, no environment); errors name ``source``."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a mapping at top level, got {show(data)}")
    copied: dict[str, Any] = copy.deepcopy(dict(data))
    provenance: dict[Path, str] = {}
    if overrides:
        apply_overrides(copied, overrides, source, provenance)
    return _build(copied, source, provenance)


def _build(data: dict[str, Any], source: str, provenance: dict[Path, str]) -> WorkerConfig:
    try:
        config = msgspec.convert(data, WorkerConfig)
    except msgspec.ValidationError as exc:
        raise ConfigError(message(locate(data), source, provenance, str(exc))) from None
    problem = semantic_problem(config)
    if problem is not None:
        path, text = problem
        raise ConfigError(f"{source}: {format_path(path)}: {text}{origin(path, provenance)}")
    return config
