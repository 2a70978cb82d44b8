"""Reaching the broker at start: retried with backoff until a deadline, one log line per attempt.

A worker may start before its broker (a deploy, a broker restart): it keeps trying, says so once
per attempt (``worker.connecting``), and gives up with ``BrokerUnreachable`` (a one-line error,
non-zero exit from the CLI) once ``timeout`` seconds have passed.

Each attempt first opens a TCP connection to the URL's host(s) (cheap, and quiet: pulsar-client
would log its own connection errors, and a subscribe it gives up on could still complete later,
leaving a consumer behind), then runs ``attempt`` (subscribing every service), whose
``TransportError`` is retried too. The deadline is checked between attempts: one that started
before it may finish after it (by at most the client's operation timeout).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from infinitic_py.errors import ConfigError, InfiniticError
from infinitic_py.transport.base import TransportError
from infinitic_py.transport.probe import tcp_failures
from infinitic_py.transport.urls import broker_addresses, redact_url

__all__ = ["BrokerUnreachable", "broker_addresses", "connect_with_backoff"]

T = TypeVar("T")
_FIRST_DELAY = 0.5
_MAX_DELAY = 10.0
_PROBE_TIMEOUT = 3.0


class BrokerUnreachable(InfiniticError):
    """The broker could not be reached before the connect deadline."""


async def _reachable(addresses: list[tuple[str, int]]) -> str | None:
    """``None`` if one of ``addresses`` accepts a TCP connection, else why not."""
    failures = await tcp_failures(addresses, _PROBE_TIMEOUT)
    if failures is None:
        return None
    return "; ".join(f"{host}:{port}: {why}" for host, port, why in failures)


async def connect_with_backoff(
    attempt: Callable[[], Awaitable[T]], *, url: str, timeout: float, log: Any,
    credentials: Callable[[], Awaitable[str | None]] | None = None,
    refusal: Callable[[str], str | None] | None = None,
    authenticated: bool = False,
) -> T:
    """``attempt()``'s result once the broker at ``url`` answers; retried (exponential backoff,
    ``_FIRST_DELAY`` to ``_MAX_DELAY`` s) on an unreachable broker or a ``TransportError``;
    ``BrokerUnreachable`` after ``timeout`` seconds. ``credentials()``, asked before each
    attempt on a reachable broker, says why the broker refuses who we are: then ``ConfigError``
    at once (pulsar-client would only time out, attempt after attempt); ``refusal(error)`` says
    what to fix when an attempt's error is a refusal that no retry changes (a role without the
    right): then ``ConfigError`` at once too. ``authenticated``: credentials are configured, so
    a last error of ``Timeout`` may be a refusal nothing could name (no admin API to ask)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    addresses = broker_addresses(url)
    shown = redact_url(url)
    delay = _FIRST_DELAY
    number = 0
    while True:
        number += 1
        problem = await _reachable(addresses) if addresses else None
        if problem is None and credentials is not None:
            refused = await credentials()
            if refused:
                raise ConfigError(refused)
        if problem is None:
            try:
                return await attempt()
            except TransportError as exc:
                problem = str(exc)
                refused = refusal(problem) if refusal is not None else None
                if refused:
                    raise ConfigError(refused) from None
        left = deadline - loop.time()
        if left <= 0:
            hint = ("; pulsar-client also says Timeout when the broker refuses the credentials: "
                    "check pulsar.auth_params, or set pulsar.admin_url so that a refusal is "
                    "named" if authenticated and "Timeout" in problem else "")
            raise BrokerUnreachable(
                f"broker {shown} not reachable within {timeout:g}s "
                f"(pulsar.connect_timeout_seconds, or Worker(connect_timeout=...) in code); "
                f"last error: {problem}{hint}")
        wait = min(delay, left)
        log.warning("worker.connecting", url=shown, attempt=number, error=problem,
                    retry_in=round(wait, 2))
        await asyncio.sleep(wait)  # the backoff itself, not a wait for an event
        delay = min(delay * 2, _MAX_DELAY)
