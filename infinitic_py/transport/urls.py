"""Transport URLs: the one place the schemes are known. Pure (no transport imported)."""

from __future__ import annotations

import urllib.parse
from typing import Final, Literal

MEMORY_SCHEME: Final = "memory"
PULSAR_SCHEMES: Final = ("pulsar", "pulsar+ssl")
EXPECTED: Final = "pulsar://HOST:PORT, pulsar+ssl://HOST:PORT or memory://NAME"
REDACTED: Final = "***"

TransportKind = Literal["memory", "pulsar"]


def transport_kind(url: str) -> TransportKind | None:
    """Which transport ``url`` names, or None. Case-sensitive, like pulsar-client (which rejects
    ``PULSAR://``)."""
    scheme, separator, _ = url.partition("://")
    if not separator:
        return None
    if scheme == MEMORY_SCHEME:
        return "memory"
    if scheme in PULSAR_SCHEMES:
        return "pulsar"
    return None


def is_memory(url: str) -> bool:
    return transport_kind(url) == "memory"


def redact_url(url: str) -> str:
    """``scheme://user:pass@host/x`` -> ``scheme://***@host/x`` (the form for logs)."""
    scheme, sep, rest = url.partition("://")
    authority, slash, tail = rest.partition("/")
    if sep and "@" in authority:
        return f"{scheme}://{REDACTED}@{authority.rsplit('@', 1)[1]}{slash}{tail}"
    return url


def _broker_parts(url: str) -> tuple[int, list[tuple[str, urllib.parse.SplitResult]]] | None:
    """For a ``pulsar://`` / ``pulsar+ssl://`` URL: its scheme's default port, and each
    comma-separated ``host[:port]`` as written and parsed; None for other transports."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in PULSAR_SCHEMES:
        return None
    hosts = rest.split("/", 1)[0].rsplit("@", 1)[-1]
    return (6651 if scheme == "pulsar+ssl" else 6650,
            [(part, urllib.parse.urlsplit(f"//{part}")) for part in hosts.split(",")])


def broker_addresses(url: str) -> list[tuple[str, int]]:
    """``(host, port)`` of each broker a ``pulsar://`` / ``pulsar+ssl://`` URL names (several
    may be comma-separated); ``[]`` for other transports (nothing to probe)."""
    parts = _broker_parts(url)
    if parts is None:
        return []
    default, hosts = parts
    return [(parsed.hostname, parsed.port or default) for _, parsed in hosts if parsed.hostname]


def invalid_broker_address(url: str) -> str | None:
    """The first ``host[:port]`` of a ``pulsar://`` / ``pulsar+ssl://`` URL that names no host
    or no valid port (``127.0.0.1:notaport``, ``:6650``, ``h:99999``), or None when all are
    fine (and for other transports)."""
    parts = _broker_parts(url)
    for part, parsed in parts[1] if parts is not None else ():
        try:
            parsed.port  # noqa: B018 (parses the port: ValueError when it is not one)
        except ValueError:
            return part
        if not parsed.hostname:
            return part
    return None


def check_url(url: object) -> str:
    """``url`` if it names a transport (and, for Pulsar, at least one ``host[:port]`` with a
    numeric port), else a one-line ``ValueError`` naming it (``TypeError`` if it is no str):
    raised where a client or worker is made, not at its first use."""
    if not isinstance(url, str):
        raise TypeError(f"the transport URL must be a str ({EXPECTED}), got {type(url).__name__}")
    if transport_kind(url) is None:
        raise ValueError(f"unsupported transport URL {url!r}: expected {EXPECTED}")
    try:
        addresses = broker_addresses(url)
    except ValueError as exc:  # urllib: "Port could not be cast to integer value as 'x'"
        raise ValueError(f"invalid broker URL {url!r}: {exc}") from None
    if transport_kind(url) == "pulsar" and not addresses:
        raise ValueError(f"invalid broker URL {url!r}: it names no host (expected {EXPECTED})")
    return url
