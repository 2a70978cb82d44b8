"""What the worker tells the outside world: structured logs, Prometheus metrics, health endpoints.

- :func:`configure_logging` / :func:`get_logger`: structlog on top of the stdlib ``logging`` root
  handler, so records of other libraries (pulsar-client, given a ``logging.Logger``) come out in
  the same format. JSON lines when the stream is not a TTY (or ``format="json"``), a coloured
  console renderer on a TTY. Keys named like secrets are masked in every record.
- :class:`Metrics`: every ``infinitic_*`` metric, on a registry of its own.
(The HTTP endpoint serving them, ``/metrics`` with ``/healthz`` and ``/readyz``, is
``infinitic_py.health``.)
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Mapping, MutableMapping
from typing import Any, Final, Literal, TextIO

import msgspec
import prometheus_client
import structlog
from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)
from structlog.typing import EventDict

# ops (issue 16): no `*_created` series (one per labelled counter and histogram: noise).
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

__all__ = [
    "CONTENT_TYPE",
    "FlushReason",
    "LogFormat",
    "Metrics",
    "configure_logging",
    "get_logger",
    "mask_secrets",
]

LogFormat = Literal["auto", "json", "console"]
FlushReason = Literal["size", "time", "shutdown", "memory"]

# --------------------------------------------------------------------------------------------
# Logging

MASK: Final = "***"
# A key is secret when it *ends* with one of these words: ``access_token`` is, ``token_count``
# is not.
_SECRET_KEY_RE: Final = re.compile(
    r"(?:^|_)(?:auth_?params|token|password|passwd|secret|api_?key|secret_?key|private_?key"
    r"|authorization|credentials?)$",
    re.IGNORECASE,
)
_HANDLER_MARK: Final = "_infinitic_py_handler"


_SCALARS: Final = frozenset({str, int, float, bool, type(None)})
# What _is_secret_key found of each key so far (log keys are a small set; at most 4096 kept).
_plain_keys: set[str] = set()
_secret_keys: set[str] = set()


def _is_secret_key(key: object) -> bool:
    if not isinstance(key, str) or key in _plain_keys:
        return False
    if key in _secret_keys:
        return True
    secret = _SECRET_KEY_RE.search(key) is not None
    if len(_plain_keys) + len(_secret_keys) < 4096:
        (_secret_keys if secret else _plain_keys).add(key)
    return secret


def _mask(value: Any, depth: int = 0) -> Any:
    if depth > 6:
        return value
    if isinstance(value, Mapping):
        return {
            k: (MASK if _is_secret_key(k) and v is not None else _mask(v, depth + 1))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(_mask(v, depth + 1) for v in value)
    return value


def mask_secrets(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: masks values whose key looks like a secret (``auth_params``,
    ``token``, ``password``, ``api_key``...), in nested mappings too."""
    if _plain_keys.issuperset(event_dict) and _SCALARS.issuperset(
            map(type, event_dict.values())):  # the usual line (C-level): nothing to mask
        return event_dict
    for key, value in list(event_dict.items()):
        if _is_secret_key(key):
            if value is not None:
                event_dict[key] = MASK
        elif type(value) not in _SCALARS and isinstance(value, Mapping | list | tuple):
            event_dict[key] = _mask(value)
    return event_dict


def _level_number(level: str | int) -> int:
    if isinstance(level, int):
        return level
    number = logging.getLevelNamesMapping().get(level.strip().upper())
    if number is None:
        raise ValueError(f"unknown log level {level!r} (debug, info, warning, error, critical)")
    return number


def configure_logging(
    format: LogFormat = "auto",
    level: str | int = "info",
    *,
    stream: TextIO | None = None,
) -> None:
    """Route structlog and stdlib ``logging`` to one handler on ``stream`` (default stderr).

    ``auto`` picks the console renderer when ``stream`` is a TTY and JSON lines otherwise.
    A JSON line holds ``timestamp`` (ISO 8601, UTC), ``level``, ``event``, ``logger`` and every
    bound key. Calling it again replaces the previous setup (idempotent, test friendly).
    """
    out = stream if stream is not None else sys.stderr
    if format == "auto":
        isatty = getattr(out, "isatty", None)
        format = "console" if callable(isatty) and isatty() else "json"
    number = _level_number(level)
    stamp: list[structlog.typing.Processor] = [_iso_utc_timestamp, mask_secrets]
    renderer: structlog.typing.Processor
    final: list[structlog.typing.Processor] = []
    if format == "json":
        final += [_dict_tracebacks, _decode_bytes]
        renderer = structlog.processors.JSONRenderer(serializer=_json_line)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=_colors_ok(out))

    # Records of other libraries (stdlib logging: pulsar-client, asyncio...) go through one
    # root handler, formatted by the same processors.
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.stdlib.ExtraAdder(),
            *stamp,
        ],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final,
                    renderer],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    setattr(handler, _HANDLER_MARK, True)

    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, _HANDLER_MARK, False):
            root.removeHandler(old)
            old.close()
    root.addHandler(handler)
    root.setLevel(number)

    # structlog's own events (every line of this package) are rendered by structlog and written
    # to the stream in one call, without a stdlib LogRecord, handler lock and formatter on the
    # way: a worker logs a line per batch, and that detour cost ~90 us a line (~10 us now).
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.stdlib.add_logger_name,  # the name this package's loggers were given
            structlog.processors.StackInfoRenderer(),
            *stamp,
            *final,
            renderer,
        ],
        logger_factory=_LineWriterFactory(out),
        wrapper_class=structlog.make_filtering_bound_logger(number),
        context_class=dict,
        cache_logger_on_first_use=True,
    )


# Processors with a fast path for the usual line (a worker logs one per batch): nothing to do
# is found out with C-level checks, else structlog's own processor does the work.
_tracebacks = structlog.processors.dict_tracebacks
_unicode = structlog.processors.UnicodeDecoder()


def _dict_tracebacks(logger: Any, name: str, event_dict: EventDict) -> EventDict:
    """structlog's ``dict_tracebacks``, for a line that carries ``exc_info``."""
    if "exc_info" not in event_dict:
        return event_dict
    return _tracebacks(logger, name, event_dict)


def _decode_bytes(logger: Any, name: str, event_dict: EventDict) -> EventDict:
    """structlog's ``UnicodeDecoder`` (bytes values -> str), for a line that has bytes."""
    if bytes not in set(map(type, event_dict.values())):
        return event_dict
    return _unicode(logger, name, event_dict)


_stamped_second = -1
_stamped_prefix = ""


def _iso_utc_timestamp(logger: Any, name: str, event_dict: EventDict) -> EventDict:
    """``timestamp``: the time in ISO 8601, UTC, as structlog's ``TimeStamper(fmt="iso",
    utc=True)`` writes it (``2026-01-31T12:34:56.789012Z``, no fraction on a whole second),
    its date and time formatted once a second."""
    global _stamped_second, _stamped_prefix
    second, micro = divmod(int(time.time() * 1_000_000), 1_000_000)
    if second != _stamped_second:
        _stamped_prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _stamped_second = second
    event_dict["timestamp"] = (f"{_stamped_prefix}.{micro:06d}Z" if micro
                               else f"{_stamped_prefix}Z")
    return event_dict


def _json_line(event: Any, **_: Any) -> str:
    """One JSON object, msgspec-encoded (a value it cannot encode is written as its repr);
    the standard library's encoder for what msgspec refuses (e.g. a mapping with non-str keys)."""
    try:
        return msgspec.json.encode(event, enc_hook=repr).decode()
    except (TypeError, ValueError, msgspec.EncodeError):
        return json.dumps(event, default=repr)


class _LineWriter:
    """The logger structlog writes through: one ``write`` of the rendered line and a flush (a
    line is out when it is logged). ``name`` is what ``add_logger_name`` reports."""

    def __init__(self, out: TextIO, name: str) -> None:
        self.name = name
        self._out = out

    def msg(self, message: str) -> None:
        out = self._out
        out.write(message + "\n")
        out.flush()

    log = debug = info = warn = warning = error = critical = exception = fatal = msg


class _LineWriterFactory:
    def __init__(self, out: TextIO) -> None:
        self._out = out

    def __call__(self, *args: Any) -> _LineWriter:
        return _LineWriter(self._out, str(args[0]) if args else "infinitic_py")


def _colors_ok(out: TextIO) -> bool:
    isatty = getattr(out, "isatty", None)
    return bool(callable(isatty) and isatty())


def get_logger(name: str = "infinitic_py", **bound: Any) -> structlog.stdlib.BoundLogger:
    """A structlog logger carrying ``bound`` keys (e.g. ``service=...``, ``worker=...``).

    The logger is lazy: it picks up the configuration in force when it first logs, so a
    module-level ``log = get_logger(...)`` is fine before :func:`configure_logging` runs.
    """
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name, **bound)
    return logger


# --------------------------------------------------------------------------------------------
# Metrics

CONTENT_TYPE: Final[str] = prometheus_client.CONTENT_TYPE_LATEST

_SIZE_BUCKETS: Final = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
_RATIO_BUCKETS: Final = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)
_WAIT_BUCKETS: Final = (
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)
_DURATION_BUCKETS: Final = (
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
)


class Metrics:
    """Every metric of a worker, registered on ``self.registry`` (not the global registry).

    Attributes are the prometheus_client objects (counters without their ``_total`` suffix, as
    prometheus_client names them); use ``.labels(...)`` with the label names below.
    """

    def __init__(self, registry: CollectorRegistry | None = None, *, prefix: str = "infinitic") -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        p = prefix.rstrip("_") + "_"
        sm = ("service", "method")
        self.tasks_received = Counter(
            p + "tasks_received_total", "Tasks decoded from the service topic.", sm, registry=r)
        self.tasks_completed = Counter(
            p + "tasks_completed_total", "Tasks whose result was published and acked.", sm,
            registry=r)
        self.tasks_failed = Counter(
            p + "tasks_failed_total",
            "Failed task attempts, by error type: one per attempt, whether it is then retried or "
            "dead-lettered (a task retried twice then completed counts 2).",
            (*sm, "error_type"), registry=r)
        self.tasks_retried = Counter(
            p + "tasks_retried_total", "Tasks republished for a retry.", sm, registry=r)
        self.tasks_dead_lettered = Counter(
            p + "tasks_dead_lettered_total",
            "Tasks sent to the dead-letter topic, by reason (retries_exhausted, not_retryable, "
            "unknown_method, undecodable, invalid_envelope, reply_unpublishable); method is "
            "empty for an undecodable message.",
            ("service", "method", "reason"), registry=r)
        self.batch_size = Histogram(
            p + "batch_size", "Messages per flushed batch.", sm, buckets=_SIZE_BUCKETS,
            registry=r)
        self.batch_fill_ratio = Histogram(
            p + "batch_fill_ratio", "Batch size divided by max_messages at flush.", sm,
            buckets=_RATIO_BUCKETS, registry=r)
        self.batch_flush = Counter(
            p + "batch_flush_total", "Batches flushed, by reason (size, time, shutdown, memory).",
            (*sm, "reason"), registry=r)
        self.accumulator_wait_seconds = Histogram(
            p + "accumulator_wait_seconds",
            "Time from a task's arrival to the flush of its batch.", sm, buckets=_WAIT_BUCKETS,
            registry=r)
        self.handler_duration_seconds = Histogram(
            p + "handler_duration_seconds", "Duration of one batch (or single task) handler call.",
            sm, buckets=_DURATION_BUCKETS, registry=r)
        self.batches_in_flight = Gauge(
            p + "batches_in_flight", "Batches holding a concurrency slot.", ("service",),
            registry=r)
        self.buffered_messages = Gauge(
            p + "buffered_messages", "Messages received and not yet acked or nacked.",
            ("service",), registry=r)
        self.contract_errors = Counter(
            p + "contract_errors_total", "Unknown task ids returned by a batch method (dropped).",
            sm, registry=r)
        self.units_started = Counter(
            p + "units_started_total",
            "Units (a single task, or a batch) that took a concurrency slot, by priority band "
            "(high / normal / low: each band is its own topic).", ("service", "band"), registry=r)
        self.decode_errors = Counter(
            p + "decode_errors_total", "Messages that could not be decoded.", ("service",),
            registry=r)
        self.duplicates = Counter(
            p + "duplicates_total",
            "Copies of recently settled task attempts (redeliveries, re-dispatched task ids), by "
            "what was done: acked, replied (the kept reply sent again), rerun, or wait (the "
            "same attempt is running: held until it settles, then answered).",
            ("service", "action"), registry=r)
        if registry is None:  # ops (issue 16): process_* and python_* series of this process
            for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
                r.register(collector)

    def observe_flush(
        self,
        service: str,
        method: str,
        *,
        size: int,
        max_messages: int,
        reason: FlushReason,
        waits: list[float] | tuple[float, ...] = (),
    ) -> None:
        """Record one flushed batch: size, fill ratio, reason and each task's wait."""
        self.batch_size.labels(service, method).observe(size)
        self.batch_fill_ratio.labels(service, method).observe(
            min(1.0, size / max_messages) if max_messages > 0 else 1.0)
        self.batch_flush.labels(service, method, reason).inc()
        wait = self.accumulator_wait_seconds.labels(service, method)
        for seconds in waits:
            wait.observe(max(0.0, seconds))

    def render(self) -> bytes:
        """The registry in Prometheus text exposition format (serve with ``CONTENT_TYPE``)."""
        return prometheus_client.generate_latest(self.registry)
