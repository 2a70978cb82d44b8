"""Hung sync handlers (issue 14, 3): past their timeout they never stall the service, readiness
says when the worker cannot serve, and SIGTERM exits within the grace period plus 2 s, nacking
what still runs. Real broker; public behaviour only (Worker, AsyncClient, /readyz, the CLI)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import msgspec
import pytest

from infinitic_py import AsyncClient, TaskFailed, Worker, task
from infinitic_py.admin import PulsarAdmin
from infinitic_py.topics import WORKER_SUBSCRIPTION, service_topic

from .conftest import BrokerInfo
from .hanging_service import Item as Item_
from .hanging_service import Sleepy
from .harness import poll, wait_for_condition

ROOT = Path(__file__).resolve().parents[2]


class Job(msgspec.Struct, frozen=True):
    n: int


class Hangs:
    """``Job(n)``, n < 0, waits for ``release`` (the test sets it at the end); others take 20 ms."""

    def __init__(self) -> None:
        self.release = threading.Event()

    @task
    def run(self, job: Job) -> int:
        if job.n < 0:
            self.release.wait(120)
        else:
            time.sleep(0.02)
        return job.n


def readyz(port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


async def timed_run(client: AsyncClient, name: str, jobs: range) -> float:
    started = time.monotonic()
    ds = await client.service(Hangs, name=name).run.many([Job(n) for n in jobs])
    assert await asyncio.gather(*(d.result(timeout=60) for d in ds)) == list(jobs)
    return time.monotonic() - started


async def test_hung_handlers_do_not_stall_normal_tasks(pulsar_broker: BrokerInfo) -> None:
    """Concurrency 2, six handlers hung past their 1 s timeout (the issue's 6 > 4 pool threads):
    100 normal tasks take less than twice as long as the same 100 before anything hung."""
    name = f"Hang{uuid.uuid4().hex[:10]}"
    svc = Hangs()
    worker = Worker(pulsar_broker.service_url, name="hang-worker", http_host="127.0.0.1",
                    http_port=0, shutdown_grace=2.0)
    worker.add_service(svc, name=name, concurrency=2, timeout=1.0)
    await worker.start()
    try:
        assert worker.http_server is not None
        port = worker.http_server.port
        async with AsyncClient(pulsar_broker.service_url) as client:
            await timed_run(client, name, range(20))  # warm-up
            baseline = await timed_run(client, name, range(100))
            hung = await client.service(Hangs, name=name).run.many([Job(-n) for n in range(1, 7)])
            for d in hung:
                with pytest.raises(TaskFailed) as info:
                    await d.result(timeout=30)
                assert info.value.error_type == "TaskTimeout"
            assert (await asyncio.to_thread(readyz, port))[0] == 200  # 6 hung: still serving
            after = await timed_run(client, name, range(100, 200))
        print(f"100 normal tasks: {baseline:.2f}s before, {after:.2f}s with 6 hung handlers")
        assert after < 2 * baseline, (baseline, after)
    finally:
        svc.release.set()
        await worker.stop()


async def test_readiness_is_503_when_hung_handlers_cannot_be_replaced(
    pulsar_broker: BrokerInfo,
) -> None:
    name = f"Hang{uuid.uuid4().hex[:10]}"
    svc = Hangs()
    worker = Worker(pulsar_broker.service_url, name="hang-worker", http_host="127.0.0.1",
                    http_port=0, shutdown_grace=2.0, max_hung_handlers=1)
    worker.add_service(svc, name=name, concurrency=1, timeout=0.5)
    await worker.start()
    try:
        assert worker.http_server is not None
        port = worker.http_server.port
        async with AsyncClient(pulsar_broker.service_url) as client:
            stub = client.service(Hangs, name=name)
            first = await stub.run(Job(-1))
            with pytest.raises(TaskFailed):
                await first.result(timeout=30)
            assert (await asyncio.to_thread(readyz, port))[0] == 200  # 1 hung, replaced
            second = await stub.run(Job(-2))
            with pytest.raises(TaskFailed):
                await second.result(timeout=30)
            status, body = await poll(lambda: asyncio.to_thread(readyz, port),
                                      lambda r: r[0] == 503, timeout=10)
            assert status == 503 and "hung" in body, body
            svc.release.set()  # the handlers return: their threads serve again
            status, body = await poll(lambda: asyncio.to_thread(readyz, port),
                                      lambda r: r[0] == 200, timeout=10)
            assert status == 200, body
            assert await (await stub.run(Job(5))).result(timeout=30) == 5
    finally:
        svc.release.set()
        await worker.stop()


def _spawn(config: Path, env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "infinitic_py.cli", "worker", "-c", str(config)],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


async def test_sigterm_exits_within_grace_and_nacks_a_hung_handler(
    pulsar_broker: BrokerInfo, admin: PulsarAdmin, tmp_path: Path,
) -> None:
    """The issue's case: grace 3 s, a sync handler sleeping 40 s (no timeout): the process exits
    within grace + 2 s, exit code 0, and the task it was running is back on the topic."""
    grace = 3.0
    name = f"Hang{uuid.uuid4().hex[:10]}"
    records = tmp_path / "records.txt"
    config = tmp_path / "worker.yaml"
    config.write_text(textwrap.dedent(f"""
        pulsar:
          url: "{pulsar_broker.service_url}"
          admin_url: null
        worker:
          http_port: 0
          shutdown_grace_seconds: {grace}
          log_format: json
        services:
          - class: "tests.integration.hanging_service:Sleepy"
            name: {name}
            concurrency: 1
    """))
    env = {**os.environ, "RECORD_FILE": str(records), "HANG_SECONDS": "40",
           "PYTHONPATH": str(ROOT)}
    proc = _spawn(config, env, tmp_path / "worker.log")
    try:
        async with AsyncClient(pulsar_broker.service_url) as client:
            await client.service(Sleepy, name=name).nap(Item_(-1))
        assert await wait_for_condition(lambda: records.exists() and "start" in records.read_text(),
                                        timeout=60), (tmp_path / "worker.log").read_text()
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.to_thread(proc.wait, grace + 15)
        except subprocess.TimeoutExpired:
            code = None
        took = time.monotonic() - signalled
        assert code == 0 and took < grace + 2, (
            f"exit {code} after {took:.1f}s, grace {grace}s\n"
            + (tmp_path / "worker.log").read_text()[-3000:])
        topic = service_topic("public", "default", name)
        backlog, _ = await poll(
            lambda: asyncio.to_thread(admin.subscription_counts, topic, WORKER_SUBSCRIPTION),
            lambda c: c[0] == 1, timeout=30)
        assert backlog == 1, "the hung task was nacked, not acked"
        print(f"SIGTERM -> exit in {took:.2f}s (grace {grace}s)")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
