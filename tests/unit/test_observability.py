"""Logging setup, Prometheus metrics and the health/readiness HTTP server."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from infinitic_py.health import HealthServer
from infinitic_py.observability import (
    CONTENT_TYPE,
    Metrics,
    configure_logging,
    get_logger,
    mask_secrets,
)

# ------------------------------------------------------------------------------ logging


class TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    structlog.reset_defaults()


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_json_lines_carry_timestamp_level_event_and_bound_keys() -> None:
    out = io.StringIO()
    configure_logging("json", "info", stream=out)
    log = get_logger("infinitic_py.test", service="EmailService", worker="w-1")
    log.info("batch.flushed", size=42, reason="size")
    (record,) = lines(out)
    assert record["event"] == "batch.flushed"
    assert record["level"] == "info"
    assert record["logger"] == "infinitic_py.test"
    assert record["service"] == "EmailService" and record["worker"] == "w-1"
    assert record["size"] == 42 and record["reason"] == "size"
    assert record["timestamp"].endswith("Z") and "T" in record["timestamp"]


def test_auto_is_json_when_not_a_tty() -> None:
    out = io.StringIO()
    configure_logging("auto", stream=out)
    get_logger().warning("hello")
    assert lines(out)[0]["event"] == "hello"


def test_auto_is_console_on_a_tty() -> None:
    out = TTY()
    configure_logging("auto", stream=out)
    get_logger().info("hello", key="value")
    text = out.getvalue()
    assert "hello" in text and "key" in text and "value" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text.splitlines()[0])


def test_secrets_are_masked_even_nested() -> None:
    out = io.StringIO()
    configure_logging("json", stream=out)
    get_logger().info(
        "connecting",
        auth_params="token:SECRET1",
        token="SECRET2",
        password="SECRET3",
        config={"pulsar": {"auth_params": "SECRET4", "url": "pulsar://h:1"}},
        items=[{"api_key": "SECRET5"}],
        token_count=3,  # not a secret: the word is only part of the name
    )
    text = out.getvalue()
    for n in range(1, 6):
        assert f"SECRET{n}" not in text
    (record,) = lines(out)
    assert record["auth_params"] == "***"
    assert record["config"]["pulsar"] == {"auth_params": "***", "url": "pulsar://h:1"}
    assert record["token_count"] == 3


def test_mask_secrets_processor_alone() -> None:
    event: dict[str, Any] = {"event": "x", "access_token": "s", "n": 1, "password": None}
    assert mask_secrets(None, "info", event) == {
        "event": "x", "access_token": "***", "n": 1, "password": None,
    }


def test_stdlib_logging_is_routed_through_the_same_handler() -> None:
    out = io.StringIO()
    configure_logging("json", "info", stream=out)
    logging.getLogger("pulsar").warning("connection to %s lost", "broker:6650")
    (record,) = lines(out)
    assert record["event"] == "connection to broker:6650 lost"
    assert record["logger"] == "pulsar"
    assert record["level"] == "warning"
    assert "timestamp" in record


def test_level_filters_both_worlds() -> None:
    out = io.StringIO()
    configure_logging("json", "warning", stream=out)
    get_logger().info("dropped")
    logging.getLogger("pulsar").info("dropped too")
    get_logger().error("kept")
    assert [r["event"] for r in lines(out)] == ["kept"]


def test_exceptions_are_structured_in_json() -> None:
    out = io.StringIO()
    configure_logging("json", stream=out)
    try:
        raise ValueError("boom")
    except ValueError:
        get_logger().exception("failed")
    (record,) = lines(out)
    assert record["event"] == "failed"
    assert "ValueError" in json.dumps(record["exception"])


def test_reconfiguring_replaces_the_handler() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging("json", stream=first)
    configure_logging("json", stream=second)
    logging.getLogger("x").warning("once")
    assert first.getvalue() == ""
    assert len(lines(second)) == 1


def test_bad_level() -> None:
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        configure_logging("json", "loud", stream=io.StringIO())


# ------------------------------------------------------------------------------ metrics

METRIC_NAMES = [
    "infinitic_tasks_received_total",
    "infinitic_tasks_completed_total",
    "infinitic_tasks_failed_total",
    "infinitic_tasks_retried_total",
    "infinitic_tasks_dead_lettered_total",
    "infinitic_batch_size_bucket",
    "infinitic_batch_fill_ratio_bucket",
    "infinitic_batch_flush_total",
    "infinitic_accumulator_wait_seconds_bucket",
    "infinitic_handler_duration_seconds_bucket",
    "infinitic_batches_in_flight",
    "infinitic_buffered_messages",
    "infinitic_contract_errors_total",
    "infinitic_decode_errors_total",
]


def exercise(m: Metrics) -> None:
    m.tasks_received.labels("Email", "send").inc(3)
    m.tasks_completed.labels("Email", "send").inc(2)
    m.tasks_failed.labels("Email", "send", "ValueError").inc()
    m.tasks_retried.labels("Email", "send").inc()
    m.tasks_dead_lettered.labels("Email", "send", "retries_exhausted").inc()
    m.observe_flush("Email", "send", size=3, max_messages=4, reason="time", waits=[0.1, 0.2, 0.3])
    m.handler_duration_seconds.labels("Email", "send").observe(0.05)
    m.batches_in_flight.labels("Email").set(1)
    m.buffered_messages.labels("Email").set(7)
    m.contract_errors.labels("Email", "send").inc()
    m.decode_errors.labels("Email").inc()


def test_every_metric_renders_with_its_prefixed_name() -> None:
    m = Metrics()
    exercise(m)
    text = m.render().decode()
    for name in METRIC_NAMES:
        assert f"\n{name}{{" in text, name
    assert 'infinitic_tasks_received_total{method="send",service="Email"} 3.0' in text
    assert 'infinitic_batch_flush_total{method="send",reason="time",service="Email"} 1.0' in text
    assert 'infinitic_batch_fill_ratio_sum{method="send",service="Email"} 0.75' in text
    assert 'infinitic_accumulator_wait_seconds_count{method="send",service="Email"} 3.0' in text
    assert 'infinitic_batch_size_bucket{le="10000.0",method="send",service="Email"} 1.0' in text
    assert 'infinitic_buffered_messages{service="Email"} 7.0' in text


def test_registries_are_independent() -> None:
    a, b = Metrics(), Metrics()
    a.tasks_received.labels("S", "m").inc()
    assert "infinitic_tasks_received_total{" in a.render().decode()
    assert "infinitic_tasks_received_total{" not in b.render().decode()


def test_content_type_is_prometheus_text() -> None:
    assert CONTENT_TYPE.startswith("text/plain")


# ------------------------------------------------------------------------------ health server


async def http(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), timeout=5)
    writer.close()
    await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    return int(status_line.split(" ")[1]), headers, body


async def get(port: int, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    return await http(port, f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())


async def test_endpoints_on_a_free_port() -> None:
    metrics = Metrics()
    exercise(metrics)
    async with HealthServer(metrics, host="127.0.0.1", port=0) as server:
        assert server.port > 0
        status, headers, body = await get(server.port, "/healthz")
        assert (status, body) == (200, b"ok\n")
        # one request per connection: get() reads until the server closes it
        assert headers["content-length"] == "3"

        status, _, body = await get(server.port, "/readyz")
        assert (status, body) == (200, b"ready\n")

        status, headers, body = await get(server.port, "/metrics?x=1")
        assert status == 200
        # prometheus-client's app negotiates the exposition format (text without an Accept)
        assert headers["content-type"].startswith("text/plain; version=")
        assert b"infinitic_tasks_received_total" in body

        status, _, _ = await get(server.port, "/nope")
        assert status == 404

        status, headers, _ = await get(server.port, "/healthz", method="POST")
        assert status == 405 and headers["allow"] == "GET, HEAD"

        status, headers, body = await get(server.port, "/healthz", method="HEAD")
        assert (status, body) == (200, b"") and headers["content-length"] == "3"


async def test_readiness_toggles() -> None:
    state = {"ready": False, "reason": "connecting to broker"}

    def ready() -> tuple[bool, str]:
        return bool(state["ready"]), str(state["reason"])

    async with HealthServer(None, host="127.0.0.1", port=0, ready=ready) as server:
        status, _, body = await get(server.port, "/readyz")
        assert (status, body) == (503, b"not ready: connecting to broker\n")
        state["ready"] = True
        status, _, body = await get(server.port, "/readyz")
        assert (status, body) == (200, b"ready\n")
        state["ready"], state["reason"] = False, "draining"
        status, _, body = await get(server.port, "/readyz")
        assert (status, body) == (503, b"not ready: draining\n")
        status, _, _ = await get(server.port, "/metrics")  # no metrics given
        assert status == 404


async def test_bool_ready_with_reason_callable_and_liveness() -> None:
    alive = [True]
    async with HealthServer(
        None, host="127.0.0.1", port=0,
        alive=lambda: alive[0], ready=lambda: False, ready_reason=lambda: "no consumer",
    ) as server:
        assert (await get(server.port, "/readyz"))[2] == b"not ready: no consumer\n"
        assert (await get(server.port, "/healthz"))[0] == 200
        alive[0] = False
        assert (await get(server.port, "/healthz"))[0] == 503


async def test_a_failing_check_is_not_ready() -> None:
    def ready() -> bool:
        raise RuntimeError("oops")

    async with HealthServer(None, host="127.0.0.1", port=0, ready=ready) as server:
        status, _, body = await get(server.port, "/readyz")
        assert (status, body) == (503, b"not ready: check raised RuntimeError\n")


async def test_bad_requests() -> None:
    async with HealthServer(None, host="127.0.0.1", port=0) as server:
        # not HTTP/1.x: the library answers 400 the HTTP/0.9 way (no status line)
        for request in (b"garbage\r\n\r\n", b"GET /healthz SPDY/9\r\n\r\n"):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(request)
            raw = await asyncio.wait_for(reader.read(), timeout=5)
            writer.close()
            assert b"Error code: 400" in raw
        # the standard library's limit on a header line (64 KiB), and its status for it
        huge = b"GET /healthz HTTP/1.1\r\nX: " + b"a" * 70_000 + b"\r\n\r\n"
        status, _, _ = await http(server.port, huge)
        assert status == 431
        # a client that leaves mid-request does not disturb the server
        _, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /hea")
        writer.close()
        await writer.wait_closed()
        assert (await get(server.port, "/healthz"))[0] == 200


async def test_slow_client_times_out_and_others_are_served() -> None:
    async with HealthServer(None, host="127.0.0.1", port=0, request_timeout=0.2) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /healthz HTTP/1.1\r\n")  # never finishes its headers
        assert (await get(server.port, "/healthz"))[0] == 200  # served meanwhile
        raw = await asyncio.wait_for(reader.read(), timeout=5)
        assert raw == b""  # dropped after request_timeout (the library answers nothing)
        writer.close()
        await writer.wait_closed()


async def test_stop_drops_idle_connections_promptly() -> None:
    server = HealthServer(None, host="127.0.0.1", port=0, request_timeout=30)
    await server.start()
    _, writer = await asyncio.open_connection("127.0.0.1", server.port)
    await asyncio.sleep(0.05)
    await asyncio.wait_for(server.stop(), timeout=2)
    assert not server.started
    writer.close()
    await server.stop()  # idempotent


async def test_works_with_a_real_http_client() -> None:
    async with HealthServer(Metrics(), host="127.0.0.1", port=0) as server:
        url = f"http://127.0.0.1:{server.port}"

        def fetch(path: str) -> tuple[int, bytes]:
            try:
                with urllib.request.urlopen(url + path, timeout=5) as resp:
                    return resp.status, resp.read()
            except urllib.error.HTTPError as err:
                return err.code, err.read()

        assert await asyncio.to_thread(fetch, "/healthz") == (200, b"ok\n")
        status, body = await asyncio.to_thread(fetch, "/metrics")
        assert status == 200 and b"# HELP infinitic_" in body
        assert (await asyncio.to_thread(fetch, "/missing"))[0] == 404


def test_process_and_python_series_and_no_created_series() -> None:
    m = Metrics()
    exercise(m)
    text = m.render().decode()
    assert "\nprocess_resident_memory_bytes " in text
    assert "\npython_info{" in text and "\npython_gc_collections_total{" in text
    assert "_created" not in text
    assert ('infinitic_tasks_dead_lettered_total{method="send",reason="retries_exhausted",'
            'service="Email"} 1.0') in text


async def test_healthz_is_503_while_the_event_loop_is_stuck() -> None:
    """The probe's check runs on the event loop: a loop blocked longer than request_timeout is
    reported, not hidden by the server's own thread."""
    async with HealthServer(None, host="127.0.0.1", port=0, request_timeout=0.2) as server:
        url = f"http://127.0.0.1:{server.port}/healthz"
        got: list[tuple[int, bytes]] = []

        def fetch() -> None:
            try:
                with urllib.request.urlopen(url, timeout=5) as resp:
                    got.append((resp.status, resp.read()))
            except urllib.error.HTTPError as err:
                got.append((err.code, err.read()))

        thread = threading.Thread(target=fetch)
        thread.start()
        thread.join(timeout=5)  # blocks the event loop on purpose, until the probe answers
        assert got == [(503, b"event loop not responding\n")]
        assert await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).status) == 200


def test_metric_help_and_readme_name_every_reason_and_action() -> None:
    from pathlib import Path

    from prometheus_client import CollectorRegistry

    from infinitic_py.observability import Metrics
    from infinitic_py.worker.envelope_rules import INVALID_ENVELOPE
    from infinitic_py.worker.ledger import CopyAction
    from infinitic_py.worker.outcomes import REPLY_UNPUBLISHABLE

    metrics = Metrics(CollectorRegistry())
    readme = Path(__file__).parents[2].joinpath("README.md").read_text()
    rows = {line.split("|")[1].strip(" `"): line for line in readme.splitlines()
            if line.startswith("| `infinitic_")}
    reasons = ("retries_exhausted", "not_retryable", "unknown_method", "undecodable",
               INVALID_ENVELOPE, REPLY_UNPUBLISHABLE)
    for reason in reasons:
        assert reason in metrics.tasks_dead_lettered._documentation, reason
        assert f"`{reason}`" in rows["infinitic_tasks_dead_lettered_total"], reason
    for action in CopyAction:
        assert action.value in metrics.duplicates._documentation, action
        assert f"`{action.value}`" in rows["infinitic_duplicates_total"], action


def test_json_lines_keep_structlogs_formats_on_the_fast_paths(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import datetime

    out = io.StringIO()
    configure_logging("json", "info", stream=out)
    log = get_logger("infinitic_py.test")
    log.info("plain", n=1)
    log.info("bytes", key=b"caf\xc3\xa9", api_token="x")  # decoded; a secret masked
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    monkeypatch.setattr("infinitic_py.observability.time.time", lambda: 1_800_000_000.0)
    log.info("whole second")
    monkeypatch.setattr("infinitic_py.observability.time.time", lambda: 1_800_000_001.25)
    log.info("fraction")
    plain, with_bytes, failed, whole, fraction = lines(out)
    stamp = plain["timestamp"]
    parsed = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert abs(parsed - datetime.datetime.now(datetime.UTC)).total_seconds() < 60
    assert with_bytes["key"] == "café" and with_bytes["api_token"] == "***"
    assert failed["exception"][0]["exc_type"] == "ValueError"
    assert whole["timestamp"] == "2027-01-15T08:00:00Z"  # as isoformat(): no fraction
    assert fraction["timestamp"] == "2027-01-15T08:00:01.250000Z"
    assert whole["timestamp"] == datetime.datetime.fromtimestamp(
        1_800_000_000, datetime.UTC).isoformat().replace("+00:00", "Z")
