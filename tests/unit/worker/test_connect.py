"""connect: broker addresses from a URL, backoff until a deadline (pure parts, no broker)."""

from __future__ import annotations

import pytest
import structlog

from infinitic_py.transport.base import TransportError
from infinitic_py.worker.connect import BrokerUnreachable, broker_addresses, connect_with_backoff


@pytest.mark.parametrize(("url", "expected"), [
    ("pulsar://127.0.0.1:6650", [("127.0.0.1", 6650)]),
    ("pulsar+ssl://broker.example", [("broker.example", 6651)]),
    ("pulsar://a:1,b:2", [("a", 1), ("b", 2)]),
    ("memory://x", []),
])
def test_broker_addresses(url: str, expected: list[tuple[str, int]]) -> None:
    assert broker_addresses(url) == expected


async def test_retries_transport_errors_then_gives_up_with_one_line() -> None:
    calls = 0

    async def attempt() -> None:
        nonlocal calls
        calls += 1
        raise TransportError("broker says no")

    with structlog.testing.capture_logs() as logs, pytest.raises(BrokerUnreachable) as info:
        await connect_with_backoff(attempt, url="memory://x", timeout=1.2, log=structlog.get_logger())
    assert "\n" not in str(info.value) and "broker says no" in str(info.value)
    # both ways to set it: a Worker built in code has no config key
    assert "(pulsar.connect_timeout_seconds, or Worker(connect_timeout=...) in code)" in str(
        info.value)
    assert calls >= 2 and len([e for e in logs if e["event"] == "worker.connecting"]) == calls - 1


async def test_returns_the_first_success() -> None:
    failures = [TransportError("not yet")]

    async def attempt() -> str:
        if failures:
            raise failures.pop()
        return "ok"

    assert await connect_with_backoff(attempt, url="memory://x", timeout=10,
                                      log=structlog.get_logger()) == "ok"


async def test_a_refusal_is_final_and_a_timeout_with_credentials_hints_at_them() -> None:
    """A role the broker refuses: no retry changes it (it was retried for the whole connect
    timeout). With credentials configured, pulsar-client's 'Timeout' may be a refused token
    that nothing could name: the final line says so."""
    from infinitic_py.errors import ConfigError

    calls = 0

    async def refused() -> None:
        nonlocal calls
        calls += 1
        raise TransportError("8 AuthorizationError")

    with pytest.raises(ConfigError, match="grant it"):
        await connect_with_backoff(refused, url="memory://x", timeout=30,
                                   log=structlog.get_logger(),
                                   refusal=lambda e: "grant it" if "Authorization" in e else None)
    assert calls == 1

    async def timeout() -> None:
        raise TransportError("3 Timeout")

    with pytest.raises(BrokerUnreachable, match=r"refuses the credentials: check pulsar\.auth_"):
        await connect_with_backoff(timeout, url="memory://x", timeout=0.3,
                                   log=structlog.get_logger(), authenticated=True)

    async def no() -> str | None:
        return "the token expired"

    with pytest.raises(ConfigError, match="the token expired"):
        await connect_with_backoff(timeout, url="memory://x", timeout=30,
                                   log=structlog.get_logger(), credentials=no)
