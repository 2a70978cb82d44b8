"""Starting without a broker (issue 14, 6): /healthz is served from the start, /readyz is 503
while connecting, each attempt logs one line, the worker connects once the broker answers, and a
broker that never comes gives a one-line error and a non-zero exit at the configured deadline."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from structlog.testing import capture_logs

from infinitic_py import AsyncClient, Worker

from .conftest import BrokerInfo
from .harness import poll, wait_for_condition
from .test_client import Doubler, Job

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def http_get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:
        return 0, str(exc)


async def get(port: int, path: str) -> tuple[int, str]:
    return await asyncio.to_thread(http_get, port, path)


@contextlib.asynccontextmanager
async def tcp_proxy(listen_port: int, target: tuple[str, int]) -> AsyncIterator[None]:
    """Forwards 127.0.0.1:listen_port to ``target`` while the context is open."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*target)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(handle, "127.0.0.1", listen_port)
    try:
        yield
    finally:
        server.close()


async def test_a_worker_started_before_its_broker_serves_health_then_connects(
    pulsar_broker: BrokerInfo,
) -> None:
    host, port = pulsar_broker.service_url.removeprefix("pulsar://").split(":")
    proxy_port = free_port()
    http_port = free_port()
    name = f"Conn{uuid.uuid4().hex[:8]}"
    worker = Worker(f"pulsar://127.0.0.1:{proxy_port}", name="late-worker", http_host="127.0.0.1",
                    http_port=http_port, connect_timeout=120)
    worker.add_service(Doubler(), name=name)
    with capture_logs() as logs:
        starting = asyncio.ensure_future(worker.start())
        try:
            status, _ = await poll(lambda: get(http_port, "/healthz"), lambda r: r[0] == 200,
                                   timeout=20)
            assert status == 200
            status, body = await get(http_port, "/readyz")
            assert status == 503 and "connecting" in body, (status, body)
            assert await wait_for_condition(
                lambda: sum(e["event"] == "worker.connecting" for e in logs) >= 2, timeout=30)
            assert not starting.done()
            async with tcp_proxy(proxy_port, (host, int(port))):
                await asyncio.wait_for(starting, 60)
                status, body = await get(http_port, "/readyz")
                assert status == 200, body
                async with AsyncClient(pulsar_broker.service_url) as client:
                    d = await client.service(Doubler, name=name).double(Job(21))
                    assert await d.result(timeout=30) == 42
        finally:
            if not starting.done():
                starting.cancel()
            await worker.stop(grace=2)
    attempts = [e for e in logs if e["event"] == "worker.connecting"]
    numbers = [e["attempt"] for e in attempts]
    assert numbers == list(range(1, len(numbers) + 1)), "one line per attempt"
    assert all(e["retry_in"] > 0 for e in attempts)
    delays = [e["retry_in"] for e in attempts]
    assert delays == sorted(delays), f"backoff grows: {delays}"


def test_a_broker_that_never_comes_ends_the_worker_at_the_deadline(tmp_path: Path) -> None:
    config = tmp_path / "worker.yaml"
    config.write_text(textwrap.dedent(f"""
        pulsar:
          url: "pulsar://127.0.0.1:{free_port()}"
          admin_url: null
          connect_timeout_seconds: 4
        worker:
          http_port: 0
          log_format: json
        services:
          - class: "tests.integration.test_client:Doubler"
    """))
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "infinitic_py.cli", "worker", "-c", str(config)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
        timeout=60, check=False)
    took = time.monotonic() - started
    assert out.returncode != 0
    assert "Traceback" not in out.stderr + out.stdout, out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("infinitic-py worker: broker ") and "within 4s" in last, out.stderr
    assert took < 4 + 10, took
    attempts = [line for line in (out.stdout + out.stderr).splitlines()
                if '"worker.connecting"' in line]
    assert len(attempts) >= 2, out.stdout + out.stderr


def test_sigterm_while_connecting_exits_at_once(tmp_path: Path) -> None:
    config = tmp_path / "worker.yaml"
    config.write_text(textwrap.dedent(f"""
        pulsar:
          url: "pulsar://127.0.0.1:{free_port()}"
          admin_url: null
          connect_timeout_seconds: 600
        worker:
          http_port: 0
          log_format: json
        services:
          - class: "tests.integration.test_client:Doubler"
    """))
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "infinitic_py.cli", "worker", "-c", str(config)],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=out,
            stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while '"worker.connecting"' not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(15)
        took = time.monotonic() - signalled
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert code == 0 and took < 5, (code, took, log.read_text()[-2000:])
    assert "Traceback" not in log.read_text()
