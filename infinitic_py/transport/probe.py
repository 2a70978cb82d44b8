"""Is anything listening at a broker URL? One bounded TCP connection per address: a wrong
address is then named as such, not as pulsar-client's late ``Timeout``."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence

from infinitic_py.transport.urls import broker_addresses, redact_url

__all__ = ["tcp_failures", "unreachable_reason"]


async def tcp_failures(addresses: Sequence[tuple[str, int]], timeout: float
                       ) -> list[tuple[str, int, str]] | None:
    """``None`` as soon as one of ``addresses`` accepts a TCP connection within ``timeout``
    seconds, else ``(host, port, why)`` for each of them."""
    failures = []
    for host, port in addresses:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        except (OSError, TimeoutError) as exc:
            errno = getattr(exc, "errno", None)
            failures.append((host, port, os.strerror(errno) if errno else str(exc)
                             or f"no answer within {timeout:g}s"))
            continue
        writer.close()
        return None
    return failures


async def unreachable_reason(url: str, timeout: float = 2.0) -> str | None:
    """``None`` if one of the URL's brokers accepts a TCP connection within ``timeout`` (or the
    URL names no TCP address, e.g. ``memory://``), else ``cannot reach the broker at URL: why``."""
    failures = await tcp_failures(broker_addresses(url), timeout)
    if not failures:  # reachable, or no TCP address to try
        return None
    return f"cannot reach the broker at {redact_url(url)}: {'; '.join(w for *_, w in failures)}"
