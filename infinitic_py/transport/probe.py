"""Is anything listening at a broker URL? One bounded TCP connection per address: a wrong
address is then named as such, not as pulsar-client's late ``Timeout``."""

from __future__ import annotations

import asyncio
import os

from infinitic_py.transport.urls import broker_addresses, redact_url

__all__ = ["unreachable_reason"]


async def unreachable_reason(url: str, timeout: float = 2.0) -> str | None:
    """``None`` if one of the URL's brokers accepts a TCP connection within ``timeout`` (or the
    URL names no TCP address, e.g. ``memory://``), else ``cannot reach the broker at URL: why``."""
    addresses = broker_addresses(url)
    if not addresses:
        return None
    errors = []
    for host, port in addresses:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        except (OSError, TimeoutError) as exc:
            errno = getattr(exc, "errno", None)
            errors.append(os.strerror(errno) if errno else str(exc) or f"no answer within "
                          f"{timeout:g}s")
            continue
        writer.close()
        return None
    return f"cannot reach the broker at {redact_url(url)}: {'; '.join(errors)}"
