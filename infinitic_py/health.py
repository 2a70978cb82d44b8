"""HealthServer: ``GET /metrics``, ``/healthz`` and ``/readyz`` on one port.

prometheus-client's WSGI app serves ``/metrics``; a small WSGI app in front of it answers the
two probes; the standard library's ``wsgiref`` serves both from daemon threads (one per request,
like prometheus-client's own ``start_wsgi_server``). No hand-written HTTP: request parsing,
malformed requests (400), oversized header lines (431) are the library's.

- ``/healthz``: 200 ``ok`` when ``alive()`` returns True (default: always), else 503. The check
  runs *on the event loop* (the server thread hands it over and waits at most
  ``request_timeout``): being answered 200 proves the loop is responsive; a loop stuck longer
  answers 503 ``event loop not responding``.
- ``/readyz``: 200 ``ready`` when ``ready()`` is true, else 503 ``not ready: <reason>``;
  ``ready()`` may return ``(bool, reason)``, or a ``ready_reason()`` callable gives the reason.
  Also run on the event loop (it reads the worker's state).
- ``/metrics``: the registry of ``metrics`` (404 when no metrics were given).
- Anything else 404; methods other than GET / HEAD 405. A client that does not send its request
  within ``request_timeout`` is dropped; other clients are served meanwhile.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import socketserver
import threading
from collections.abc import Callable, Iterable
from typing import Any, Final
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import prometheus_client

from infinitic_py.observability import Metrics, get_logger

ReadyCheck = Callable[[], "bool | tuple[bool, str]"]
StartResponse = Callable[..., Any]
_TEXT: Final = "text/plain; charset=utf-8"


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _Handler(WSGIRequestHandler):
    """``timeout`` (the socket timeout while reading a request) is set per server."""

    def log_message(self, format: str, *args: Any) -> None:
        """Requests are not logged (probes come every few seconds)."""


class HealthServer:
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
        self._metrics_app = (prometheus_client.make_wsgi_app(metrics.registry)
                             if metrics is not None else None)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._log = get_logger("infinitic_py.health")

    @property
    def port(self) -> int:
        """The bound port (the one picked by the OS when started with port 0)."""
        if self._server is None:
            return self._requested_port
        return int(self._server.server_address[1])

    @property
    def started(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        if self._server is not None:
            return
        self._loop = asyncio.get_running_loop()
        handler = type("Handler", (_Handler,), {"timeout": self._timeout})  # per server
        self._server = make_server(self.host, self._requested_port, self._app,
                                   server_class=_Server, handler_class=handler)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.2},
                                        name="infinitic-health", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        await asyncio.to_thread(server.shutdown)  # waits for serve_forever to return
        server.server_close()

    async def __aenter__(self) -> HealthServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- the WSGI app (runs in the server's threads) ------------------------------------------

    def _app(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            return _reply(start_response, "405 Method Not Allowed", b"method not allowed\n",
                          head=False, extra=[("Allow", "GET, HEAD")])
        path = environ.get("PATH_INFO", "")
        head = method == "HEAD"
        if path == "/healthz":
            ok, reason = self._on_loop(self._alive, None)
            if ok:
                return _reply(start_response, "200 OK", b"ok\n", head)
            body = b"not alive\n" if reason != _LOOP_STUCK else f"{reason}\n".encode()
            return _reply(start_response, "503 Service Unavailable", body, head)
        if path == "/readyz":
            ok, reason = self._on_loop(self._ready, self._ready_reason)
            if ok:
                return _reply(start_response, "200 OK", b"ready\n", head)
            return _reply(start_response, "503 Service Unavailable",
                          f"not ready: {reason or 'unknown'}\n".encode(), head)
        if path == "/metrics" and self._metrics_app is not None:
            body = b"".join(self._metrics_app(environ, start_response))
            return [b""] if head else [body]
        return _reply(start_response, "404 Not Found", b"not found\n", head)

    def _on_loop(self, check: Callable[[], Any] | None,
                 reason_of: Callable[[], str] | None) -> tuple[bool, str]:
        """Run a check on the event loop and wait for its answer (bounded)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return False, _LOOP_STUCK
        future: concurrent.futures.Future[tuple[bool, str]] = concurrent.futures.Future()

        def run() -> None:
            if not future.cancelled():
                future.set_result(_call_check(check, reason_of))

        try:
            loop.call_soon_threadsafe(run)
            return future.result(timeout=self._timeout)
        except (RuntimeError, concurrent.futures.TimeoutError):
            future.cancel()
            return False, _LOOP_STUCK


_LOOP_STUCK: Final = "event loop not responding"


def _reply(start_response: StartResponse, status: str, body: bytes, head: bool,
           extra: list[tuple[str, str]] | None = None) -> list[bytes]:
    start_response(status, [("Content-Type", _TEXT), ("Content-Length", str(len(body))),
                            ("Cache-Control", "no-store"), *(extra or [])])
    return [b""] if head else [body]


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


__all__ = ["HealthServer", "ReadyCheck"]
