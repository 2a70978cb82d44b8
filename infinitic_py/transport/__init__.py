"""Transports: the broker operations infinitic-py needs (``base``) and their implementations.

``create_transport(url)`` picks one from the URL: ``pulsar://`` / ``pulsar+ssl://`` for Apache
Pulsar, ``memory://NAME`` for the in-process broker shared by everything in the process that uses
the same URL.
"""

from __future__ import annotations

from typing import Any

from infinitic_py.transport.base import (
    Consumer,
    ConsumerClosed,
    ConsumerSettings,
    OutgoingMessage,
    Producer,
    ReceivedMessage,
    SubscriptionType,
    Transport,
    TransportError,
)

__all__ = [
    "Consumer",
    "ConsumerClosed",
    "ConsumerSettings",
    "OutgoingMessage",
    "Producer",
    "ReceivedMessage",
    "SubscriptionType",
    "Transport",
    "TransportError",
    "create_transport",
]

_PULSAR_SCHEMES = ("pulsar", "pulsar+ssl")


def create_transport(url: str, **options: Any) -> Transport:
    """The transport for ``url``.

    - ``memory://NAME``: a ``MemoryTransport``; ``options`` (Pulsar client options) are ignored, so
      one configuration can switch between the in-process broker and Pulsar by URL alone.
    - ``pulsar://host:port`` / ``pulsar+ssl://host:port``: a ``PulsarTransport(url, **options)``;
      its module (and the pulsar-client library) is imported only then.

    Raises ``ValueError`` for any other URL.
    """
    # Case-sensitive, like pulsar-client (which rejects "PULSAR://") and the config validation.
    scheme, separator, _ = url.partition("://")
    if separator and scheme == "memory":
        from infinitic_py.transport.memory import MemoryTransport

        return MemoryTransport(url)
    if separator and scheme in _PULSAR_SCHEMES:
        from infinitic_py.transport.pulsar import PulsarTransport

        return PulsarTransport(url, **options)
    raise ValueError(
        f"unsupported transport URL {url!r}: expected pulsar://HOST:PORT, "
        "pulsar+ssl://HOST:PORT or memory://NAME"
    )
