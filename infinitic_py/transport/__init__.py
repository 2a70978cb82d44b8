"""Transports: ``base`` (the protocol), ``pulsar`` (``pulsar://``, ``pulsar+ssl://``), ``memory``
(``memory://NAME``, in-process); ``urls`` knows the schemes."""

from __future__ import annotations

from typing import Any

from infinitic_py.transport.base import Transport
from infinitic_py.transport.urls import EXPECTED, redact_url, transport_kind

__all__ = ["create_transport", "redact_url"]


def create_transport(url: str, **options: Any) -> Transport:
    """The transport for ``url``.

    - ``memory://NAME``: a ``MemoryTransport``; ``options`` (Pulsar client options) are ignored, so
      one configuration can switch between the in-process broker and Pulsar by URL alone.
    - ``pulsar://host:port`` / ``pulsar+ssl://host:port``: a ``PulsarTransport(url, **options)``;
      its module (and the pulsar-client library) is imported only then.

    Raises ``ValueError`` for any other URL.
    """
    kind = transport_kind(url)
    if kind == "memory":
        from infinitic_py.transport.memory import MemoryTransport

        return MemoryTransport(url)
    if kind == "pulsar":
        from infinitic_py.transport.pulsar import PulsarTransport

        return PulsarTransport(url, **options)
    raise ValueError(f"unsupported transport URL {url!r}: expected {EXPECTED}")
