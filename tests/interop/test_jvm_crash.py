"""A Python worker SIGKILLed mid-batch while JVM workflows (Infinitic 0.18.4) wait on its tasks:
a second worker finishes them and every JVM workflow returns every result right (the JVM runner
exits 0 only then). The JVM plays BenchService's event and retry handlers (``keyed.yml``)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import BrokerInfo
from tests.integration.harness import wait_for_condition

from .conftest import StartJvm
from .namespaces import TENANT

pytestmark = pytest.mark.timeout(1200)  # the first JVM test of a session may build the example
ROOT = Path(__file__).resolve().parents[2]


def _lines(path: Path) -> list[list[str]]:
    return [ln.split() for ln in path.read_text().splitlines() if ln.strip()] if path.exists() else []


def _started(path: Path, pid: int) -> dict[str, list[str]]:
    return {p[2]: p[3].split(",") for p in _lines(path) if p[0] == "start" and int(p[1]) == pid}


def _ended(path: Path, pid: int | None = None) -> set[str]:
    return {p[2] for p in _lines(path) if p[0] == "end" and (pid is None or int(p[1]) == pid)}


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def _spawn(broker: BrokerInfo, namespace: str, records: Path, tmp_path: Path) -> subprocess.Popen[bytes]:
    config = tmp_path / f"worker-{uuid.uuid4().hex[:6]}.yaml"
    config.write_text(textwrap.dedent(f"""
        pulsar:
          url: "{broker.service_url}"
          admin_url: "{broker.admin_url}"
          consumer: {{receiver_queue_size: 40, nack_redelivery_delay_seconds: 0.5}}
        worker:
          http_port: 0
          log_format: json
        services:
          - class: "tests.interop.kill_service:BenchService"
            wire: infinitic
            tenant: {TENANT}
            namespace: {namespace}
            event_handler: false
            concurrency: 2
    """))
    env = {**os.environ, "RECORD_FILE": str(records), "BATCH_SLEEP": "0.5", "PYTHONPATH": str(ROOT)}
    log = open(tmp_path / f"{config.stem}.log", "wb")  # noqa: SIM115  (closed with the process)
    return subprocess.Popen([sys.executable, "-m", "infinitic_py.cli", "worker", "-c", str(config)],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


async def test_a_worker_sigkilled_mid_batch_jvm_workflows_still_get_every_result(
    start_jvm: StartJvm, pulsar_broker: BrokerInfo, interop_namespace: str, tmp_path: Path,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    runner = start_jvm("workflows=4", "per=50", "keys=2", "timeout=300", main="bench.KeyedKt")
    await asyncio.to_thread(runner.wait_for, r"waiting for an external executor", 300)
    records = tmp_path / "records.txt"
    first = _spawn(pulsar_broker, interop_namespace, records, tmp_path)
    processes.append(first)
    assert await wait_for_condition(
        lambda: len(_ended(records, first.pid)) >= 3
        and len(_started(records, first.pid)) > len(_ended(records, first.pid)),
        timeout=180,
    ), _lines(records)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    killed = {b for b in _started(records, first.pid)} - _ended(records, first.pid)
    second = _spawn(pulsar_broker, interop_namespace, records, tmp_path)
    processes.append(second)
    code = await asyncio.to_thread(runner.wait, 300)
    assert code == 0, runner.tail()
    assert "every result correct" in runner.output()
    ended = _ended(records)
    executed: Counter[str] = Counter()
    for pid in (first.pid, second.pid):
        for batch, messages in _started(records, pid).items():
            if batch in ended:
                executed.update(messages)
    assert len(executed) == 200  # every task ran to the end of a batch at least once
    assert killed, "the kill landed between batches"
    print(f"killed batches: {len(killed)}; tasks run twice: {sum(1 for c in executed.values() if c > 1)}")
