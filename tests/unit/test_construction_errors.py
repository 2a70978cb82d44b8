"""Mistakes made where a client or a worker is built are refused there, in one line: a URL that
names no transport or a port that is no number (it failed at the first dispatch or at start, with
urllib's "Port could not be cast to integer value as 'x'" naming no URL), ``Worker.run()`` called
from async code (asyncio's "Cannot run the event loop while another loop is running", with
never-awaited coroutine warnings, the caller's event loop setting replaced)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from infinitic_py import AsyncClient, Client, Worker, task


class Svc:
    @task
    def m(self, x: int) -> int:
        return x


@pytest.mark.parametrize(("url", "error", "words"), [
    ("http://127.0.0.1:6650", ValueError, "unsupported transport URL 'http://127.0.0.1:6650'"),
    ("127.0.0.1:6650", ValueError, "unsupported transport URL"),
    ("pulsar://", ValueError, "invalid broker URL 'pulsar://': it names no host"),
    ("pulsar://127.0.0.1:port", ValueError,
     "invalid broker URL 'pulsar://127.0.0.1:port': Port could not be cast"),
    (None, TypeError, "the transport URL must be a str"),
])
def test_a_wrong_url_is_refused_where_it_is_given(url: Any, error: type[Exception],
                                                  words: str) -> None:
    with pytest.raises(error, match=words):
        AsyncClient(url)
    with pytest.raises(error, match=words):
        Worker(url)
    with pytest.raises(error, match=words):
        Client(url)


def test_usual_urls_pass() -> None:
    for url in ("pulsar://localhost", "pulsar+ssl://a:6651,b:6651", "memory://x", "memory://"):
        AsyncClient(url, admin_url=None)
        Worker(url)


async def test_run_from_async_code_says_to_use_start_and_stop() -> None:
    worker = Worker("memory://run-in-loop", http_port=0)
    worker.add_service(Svc())
    loop = asyncio.get_running_loop()
    with pytest.raises(RuntimeError, match=r"use `await worker.start\(\)`"):
        worker.run()
    assert asyncio.get_event_loop() is loop  # the caller's loop is left as it was


@pytest.mark.parametrize(("options", "words"), [
    ({"namespace": "public/default"}, "invalid namespace 'public/default': letters, digits and "
     r"_ - = : . only \(give it without its tenant: tenant='public', namespace='default'\)"),
    ({"tenant": ""}, "invalid tenant ''"),
    ({"namespace": "my ns"}, "invalid namespace 'my ns'"),
])
def test_a_tenant_or_namespace_pulsar_cannot_name_is_refused(options: dict[str, Any],
                                                               words: str) -> None:
    """It failed at the first dispatch: 'public/default' after pulsar-client's 30 s operation
    timeout ('3 Timeout'), '' with InvalidTopicName."""
    with pytest.raises(ValueError, match=words):
        AsyncClient("memory://ns", **options)
    with pytest.raises(ValueError, match=words):
        Worker("memory://ns", **options)
    if all(options.values()):  # add_service(tenant="") means the worker's, as name="" does
        with pytest.raises(ValueError, match=words):
            Worker("memory://ns").add_service(Svc(), **options)


@pytest.mark.parametrize(("options", "words"), [
    ({"max_producers": "8"}, "max_producers must be an int >= 1, got '8'"),  # was: "'<' not
    # supported between instances of 'str' and 'int'"
    ({"max_producers": 0}, "max_producers must be an int >= 1, got 0"),
    ({"max_bulk_bytes": 0}, "max_bulk_bytes must be an int >= 1, got 0"),  # was accepted: every
    # atomic many() then failed with BulkTooLarge
])
def test_client_limits_are_checked(options: dict[str, Any], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        AsyncClient("memory://limits", **options)


@pytest.mark.parametrize(("options", "words"), [
    ({"http_port": 99999}, "http_port must be a port from 0 to 65535"),  # was, at start:
    # "OverflowError: bind(): port must be 0-65535."
    ({"http_port": "9090"}, "http_port must be a port"),
    ({"shutdown_grace": -1}, "shutdown_grace must be a finite number of seconds >= 0"),
    ({"connect_timeout": float("nan")}, "connect_timeout must be a finite number"),
])
def test_worker_settings_are_checked_where_given(options: dict[str, Any], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        Worker("memory://settings", **options)
