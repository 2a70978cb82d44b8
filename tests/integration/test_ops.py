"""Operations (issue 7): metrics move while tasks flow, readiness follows the broker,
`infinitic-py check` against the real broker."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import textwrap
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest

from infinitic_py import AsyncClient, BatchLimits, Worker

from .conftest import BrokerInfo
from .harness import Harness, poll
from .test_client import Doubler, Job

ROOT = Path(__file__).resolve().parents[2]
PULSAR_SH = ROOT / "deploy" / "pulsar-standalone" / "pulsar.sh"


def http_get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


async def get(port: int, path: str) -> tuple[int, str]:
    return await asyncio.to_thread(http_get, port, path)


def metric(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_metrics_move_while_tasks_flow(harness: Harness) -> None:
    name = f"Svc{uuid.uuid4().hex[:10]}"
    worker = Worker(harness.url, name="metrics-worker", http_host="127.0.0.1", http_port=0)
    worker.add_service(Doubler(), name=name, batch={"double": BatchLimits(50, 0.2)})
    await worker.start()
    try:
        assert worker.http_server is not None
        port = worker.http_server.port
        assert (await get(port, "/healthz"))[0] == 200
        assert (await get(port, "/readyz"))[0] == 200
        _, before = await get(port, "/metrics")
        assert metric(before, "infinitic_tasks_completed_total", service=name) == 0
        async with AsyncClient(harness.url) as client:
            stub = client.service(Doubler, name=name)
            ds = await stub.double.many(Job(i) for i in range(500))
            await asyncio.gather(*(d.result(timeout=60) for d in ds))
        _, after = await get(port, "/metrics")
        assert metric(after, "infinitic_tasks_received_total", service=name) == 500
        assert metric(after, "infinitic_tasks_completed_total", service=name) == 500
        assert metric(after, "infinitic_batch_size_count", service=name) >= 10
        assert metric(after, "infinitic_batch_size_sum", service=name) == 500
        flushed = metric(after, "infinitic_batch_flush_total", service=name)
        assert flushed == metric(after, "infinitic_batch_size_count", service=name)
        assert metric(after, "infinitic_handler_duration_seconds_count", service=name) == flushed
        assert metric(after, "infinitic_batches_in_flight", service=name) == 0
    finally:
        await worker.stop()


async def test_readiness_follows_an_in_process_broker_outage() -> None:
    from infinitic_py.transport.memory import get_broker, reset_broker

    broker_name = f"outage-{uuid.uuid4().hex[:6]}"
    url = f"memory://{broker_name}"
    worker = Worker(url, http_host="127.0.0.1", http_port=0)
    worker.add_service(Doubler(), name="Outage")
    await worker.start()
    try:
        assert worker.http_server is not None
        port = worker.http_server.port
        assert (await get(port, "/readyz"))[0] == 200
        get_broker(broker_name).set_available(False)
        status, body = await get(port, "/readyz")
        assert status == 503 and "broker" in body
        assert (await get(port, "/healthz"))[0] == 200  # alive, just not ready
        get_broker(broker_name).set_available(True)
        assert (await get(port, "/readyz"))[0] == 200
    finally:
        await worker.stop()
        reset_broker(broker_name)


def _write_config(tmp_path: Path, broker: BrokerInfo, concurrency: int, max_messages: int) -> Path:
    config = tmp_path / f"check-{concurrency}-{max_messages}.yaml"
    config.write_text(textwrap.dedent(f"""
        pulsar:
          url: "{broker.service_url}"
          admin_url: "{broker.admin_url}"
        worker:
          max_buffered_messages: 10000
        services:
          - class: "examples.email_service:EmailService"
            concurrency: {concurrency}
            batch:
              send: {{max_messages: {max_messages}}}
    """))
    return config


def _check(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "infinitic_py.cli", "check", "-c", str(config)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def test_check_passes_with_sane_settings(pulsar_broker: BrokerInfo, tmp_path: Path) -> None:
    out = _check(_write_config(tmp_path, pulsar_broker, concurrency=10, max_messages=50))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "broker" in out.stdout and "WARN" not in out.stdout and "ERROR" not in out.stdout
    assert "maxUnackedMessagesPerConsumer broker=50000" in out.stdout


def test_check_warns_when_slots_exceed_the_broker_limit(
    pulsar_broker: BrokerInfo, tmp_path: Path
) -> None:
    out = _check(_write_config(tmp_path, pulsar_broker, concurrency=100, max_messages=1000))
    assert out.returncode == 0, out.stdout + out.stderr  # a warning; --strict makes it fail
    warning = next(line for line in out.stdout.splitlines() if line.startswith("WARN"))
    assert "concurrency 100 x max_messages 1000" in warning
    assert "50000" in warning
    assert re.search(r"fix: lower concurrency to <= \d+", out.stdout)


def _suite_owns(broker: BrokerInfo) -> bool:
    """True when the broker is the local one that a test session started (with-broker.sh or the
    pulsar_broker fixture leave the auto-stop marker): only then may a test stop it."""
    run_dir = ROOT / ".cache" / "pulsar-run"
    if not ((run_dir / "auto-stop").exists() and (run_dir / "pulsar.pid").exists()):
        return False
    url = urllib.parse.urlsplit(broker.service_url)
    local_port = int(os.environ.get("PULSAR_BROKER_PORT", "6650"))
    return url.hostname in ("127.0.0.1", "localhost") and url.port == local_port


@pytest.mark.broker_outage
async def test_readiness_follows_the_real_broker(pulsar_broker: BrokerInfo) -> None:
    """Stops and restarts the suite's own broker: collected last (see tests/conftest.py)."""
    if not _suite_owns(pulsar_broker):
        pytest.skip("the broker was not started by this test session: not stopping it")
    worker = Worker(pulsar_broker.service_url, http_host="127.0.0.1", http_port=0)
    worker.add_service(Doubler(), name=f"Svc{uuid.uuid4().hex[:8]}")
    await worker.start()
    try:
        assert worker.http_server is not None
        port = worker.http_server.port
        assert (await get(port, "/readyz"))[0] == 200
        down = await asyncio.to_thread(subprocess.run, [str(PULSAR_SH), "down"],
                                       capture_output=True, timeout=120)
        assert down.returncode == 0
        status, _ = await poll(lambda: get(port, "/readyz"), lambda r: r[0] == 503, timeout=30)
        assert status == 503
        assert (await get(port, "/healthz"))[0] == 200
        up = await asyncio.to_thread(subprocess.run, [str(PULSAR_SH), "up"], capture_output=True,
                                     timeout=300, env={**os.environ, "PULSAR_AUTO_STOP": "1"})
        assert up.returncode == 0, up.stderr
        status, body = await poll(lambda: get(port, "/readyz"), lambda r: r[0] == 200, timeout=120)
        assert status == 200, body
    finally:
        await worker.stop(grace=5)


async def test_worker_warns_at_start_when_it_can_reach_the_unacked_limit(
    pulsar_broker: BrokerInfo,
) -> None:
    from structlog.testing import capture_logs

    worker = Worker(pulsar_broker.service_url, admin_url=pulsar_broker.admin_url,
                    max_buffered_messages=100_000)
    worker.add_service(Doubler(), name=f"Svc{uuid.uuid4().hex[:8]}", concurrency=100,
                       batch={"double": BatchLimits(1000, 1.0)})
    with capture_logs() as logs:
        await worker.start()
    await worker.stop(grace=5)
    warnings = [e for e in logs if e["event"] == "worker.unacked_limit"]
    assert warnings, [e["event"] for e in logs]
    assert any("50000" in e["message"] and "concurrency 100 x max_messages 1000" in e["message"]
               for e in warnings)
