"""What the worker tells the outside world: structured logs, Prometheus metrics, health endpoints.

- :func:`configure_logging` / :func:`get_logger`: structlog on top of the stdlib ``logging`` root
  handler, so records of other libraries (pulsar-client, given a ``logging.Logger``) come out in
  the same format. JSON lines when the stream is not a TTY (or ``format="json"``), a coloured
  console renderer on a TTY. Keys named like secrets are masked in every record.
- :class:`Metrics`: every ``infinitic_*`` metric, on a registry of its own.
- :class:`HealthServer`: ``GET /metrics``, ``/healthz``, ``/readyz`` over a minimal asyncio
  HTTP/1.1 server (one request per connection).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sys
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any, Final, Literal, TextIO

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

# ops (issue 16): no `*_created` series (one per labelled counter and histogram: noise).
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

__all__ = [
    "CONTENT_TYPE",
    "FlushReason",
    "HealthServer",
    "LogFormat",
    "Metrics",
    "ReadyCheck",
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


def _is_secret_key(key: object) -> bool:
    return isinstance(key, str) and _SECRET_KEY_RE.search(key) is not None


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
    for key, value in list(event_dict.items()):
        if _is_secret_key(key) and value is not None:
            event_dict[key] = MASK
        elif isinstance(value, Mapping | list | tuple):
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
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        mask_secrets,
    ]
    renderer: structlog.typing.Processor
    final: list[structlog.typing.Processor] = [
        structlog.stdlib.ProcessorFormatter.remove_processors_meta
    ]
    if format == "json":
        final += [
            structlog.processors.dict_tracebacks,
            structlog.processors.UnicodeDecoder(),
        ]
        renderer = structlog.processors.JSONRenderer(default=repr)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=_colors_ok(out))
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[*final, renderer],
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
    root.setLevel(_level_number(level))

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        context_class=dict,
        cache_logger_on_first_use=True,
    )


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
            "unknown_method, undecodable); method is empty for an undecodable message.",
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
        self.decode_errors = Counter(
            p + "decode_errors_total", "Messages that could not be decoded.", ("service",),
            registry=r)
        self.duplicates = Counter(
            p + "duplicates_total",
            "Copies of recently settled task attempts (redeliveries, re-dispatched task ids), by "
            "what was done: acked, replied (the kept reply sent again) or rerun.",
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


# --------------------------------------------------------------------------------------------
# Health server

ReadyCheck = Callable[[], "bool | tuple[bool, str]"]

_REASONS: Final = {
    200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
    408: "Request Timeout", 413: "Content Too Large", 500: "Internal Server Error",
    503: "Service Unavailable",
}
_MAX_HEADER_BYTES: Final = 8192
_TEXT: Final = "text/plain; charset=utf-8"


class HealthServer:
    """``GET /metrics``, ``/healthz`` and ``/readyz`` on one port, served from the event loop.

    - ``/healthz``: 200 ``ok`` when ``alive()`` returns True (default: always), else 503. Being
      answered at all proves the event loop is responsive.
    - ``/readyz``: 200 ``ready`` when ``ready()`` is true, else 503 ``not ready: <reason>``;
      ``ready()`` may return ``(bool, reason)``, or a ``ready_reason()`` callable gives the reason.
    - ``/metrics``: ``metrics.render()`` (404 when no metrics were given).
    - Anything else 404; methods other than GET / HEAD 405. One request per connection; a client
      that does not send its request within ``request_timeout`` gets 408 and is dropped.
    """

    def __init__(
        self,
        metrics: Metrics | None = None,
        *,
        host: str = "0.0.0.0",
        port: int = 9090,
        alive: Callable[[], bool] | None = None,
        ready: ReadyCheck | None = None,
        ready_reason: Callable[[], str] | None = None,
        request_timeout: float = 5.0,
    ) -> None:
        self.metrics = metrics
        self.host = host
        self._requested_port = port
        self._alive = alive
        self._ready = ready
        self._ready_reason = ready_reason
        self._timeout = request_timeout
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._log = get_logger("infinitic_py.health")

    @property
    def port(self) -> int:
        """The bound port (the one picked by the OS when started with port 0)."""
        if self._server is None or not self._server.sockets:
            return self._requested_port
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def started(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        if self._server is not None:
            return
        self._server = await asyncio.start_server(
            self._on_connection, self.host, self._requested_port,
            limit=_MAX_HEADER_BYTES, reuse_address=True,
        )

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), timeout=self._timeout)

    async def __aenter__(self) -> HealthServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- request handling ---------------------------------------------------------------------

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        try:
            await self._serve_one(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass
        except Exception:
            self._log.exception("health server request failed")
        finally:
            writer.close()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(writer.wait_closed(), timeout=1.0)
            if task is not None:
                self._connections.discard(task)

    async def _serve_one(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=self._timeout)
        except TimeoutError:
            await self._respond(writer, 408, b"request timeout\n", head_only=False)
            return
        except asyncio.LimitOverrunError:
            await self._respond(writer, 413, b"request header too large\n", head_only=False)
            return
        except asyncio.IncompleteReadError:
            return  # the client went away before finishing its request
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = request_line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            await self._respond(writer, 400, b"bad request\n", head_only=False)
            return
        method, target, _ = parts
        if method not in ("GET", "HEAD"):
            await self._respond(writer, 405, b"method not allowed\n", head_only=False,
                                extra={"Allow": "GET, HEAD"})
            return
        path = target.split("?", 1)[0]
        status, body, content_type = await self._route(path)
        await self._respond(writer, status, body, head_only=method == "HEAD",
                            content_type=content_type)

    async def _route(self, path: str) -> tuple[int, bytes, str]:
        if path == "/healthz":
            ok, _ = _call_check(self._alive, None)
            return (200, b"ok\n", _TEXT) if ok else (503, b"not alive\n", _TEXT)
        if path == "/readyz":
            ok, reason = _call_check(self._ready, self._ready_reason)
            if ok:
                return 200, b"ready\n", _TEXT
            return 503, f"not ready: {reason or 'unknown'}\n".encode(), _TEXT
        if path == "/metrics" and self.metrics is not None:
            return 200, self.metrics.render(), CONTENT_TYPE
        return 404, b"not found\n", _TEXT

    async def _respond(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        body: bytes,
        *,
        head_only: bool,
        content_type: str = _TEXT,
        extra: Mapping[str, str] | None = None,
    ) -> None:
        headers = {
            "Content-Type": content_type,
            "Content-Length": str(len(body)),
            "Cache-Control": "no-store",
            "Connection": "close",
            **(extra or {}),
        }
        head = f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in headers.items()
        ) + "\r\n"
        writer.write(head.encode("latin-1") + (b"" if head_only else body))
        await asyncio.wait_for(writer.drain(), timeout=self._timeout)


def _call_check(
    check: Callable[[], bool | tuple[bool, str]] | None,
    reason_of: Callable[[], str] | None,
) -> tuple[bool, str]:
    """Run an alive/ready callable; an exception counts as "no" with its type as the reason."""
    if check is None:
        return True, ""
    try:
        result = check()
        if isinstance(result, tuple):
            ok, reason = bool(result[0]), str(result[1])
        else:
            ok, reason = bool(result), ""
        if not ok and not reason and reason_of is not None:
            reason = reason_of()
    except Exception as exc:
        return False, f"check raised {type(exc).__name__}"
    return ok, reason.replace("\n", " ")

