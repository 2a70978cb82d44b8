"""Workers leaving and joining a key_shared service mid-run (issue 15): a rolling update or a
scale-up moves key ranges between worker processes. Nothing is lost; duplicates are counted."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from collections import Counter
from pathlib import Path

from infinitic_py import AsyncClient, Call
from infinitic_py.transport.base import SubscriptionType

from .conftest import BrokerInfo
from .fleet_service import FleetRecorder, Item, read_batches
from .harness import wait_for_condition

ROOT = Path(__file__).resolve().parents[2]
N = 8000
KEYS = 20


def spawn(broker: BrokerInfo, service: str, who: str, records: Path, tmp: Path
          ) -> subprocess.Popen[bytes]:
    config = tmp / f"{who}.yaml"
    config.write_text(textwrap.dedent(f"""
        pulsar:
          url: "{broker.service_url}"
          admin_url: null
          consumer: {{subscription_type: key_shared, receiver_queue_size: 500}}
        worker:
          name: {who}
          http_port: 0
          shutdown_grace_seconds: 10
          log_format: json
        services:
          - class: "tests.integration.fleet_service:FleetRecorder"
            name: {service}
            concurrency: 4
            batch:
              record: {{max_messages: 100, max_seconds: 2.0}}
    """))
    env = {**os.environ, "RECORD_FILE": str(records), "FLEET_WORKER": who,
           "PYTHONPATH": str(ROOT)}
    log = open(tmp / f"{who}.log", "wb")  # noqa: SIM115  (closed with the process)
    return subprocess.Popen(
        [sys.executable, "-m", "infinitic_py.cli", "worker", "-c", str(config)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )


def started(tmp: Path, who: str) -> bool:
    log = tmp / f"{who}.log"
    return log.exists() and "worker.started" in log.read_text(errors="replace")


async def test_sigterm_one_worker_and_start_another_mid_run(
    pulsar_broker: BrokerInfo, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    service = f"Roll{uuid.uuid4().hex[:10]}"
    records = tmp_path / "records.txt"
    for who in ("w0", "w1", "w2"):
        processes.append(spawn(pulsar_broker, service, who, records, tmp_path))
    assert await wait_for_condition(
        lambda: all(started(tmp_path, w) for w in ("w0", "w1", "w2")), timeout=60)
    leaving = processes[0]
    async with AsyncClient(pulsar_broker.service_url, results=False,
                           subscription_type=SubscriptionType.KEY_SHARED) as client:
        stub = client.service(FleetRecorder, name=service)
        for start in range(0, N, 100):
            if start == N // 4:  # a rolling update: one pod goes...
                leaving.send_signal(signal.SIGTERM)
            if start == N // 2:  # ... and its replacement comes
                processes.append(spawn(pulsar_broker, service, "w3", records, tmp_path))
            await stub.record.many([Call(Item(i), meta={"batchKey": f"tenant-{i % KEYS:02d}"})
                                    for i in range(start, start + 100)])
            await asyncio.sleep(0.05)  # a steady offered rate, about 2,000 tasks/s
        assert await wait_for_condition(lambda: started(tmp_path, "w3"), timeout=60)
        everything = await wait_for_condition(
            lambda: {i for b in read_batches(records) for i in b.ns} >= set(range(N)), timeout=60)
    code = await asyncio.to_thread(leaving.wait, 30)
    batches = read_batches(records)
    ran = Counter(i for b in batches for i in b.ns)
    lost = set(range(N)) - set(ran)
    duplicates = sum(count - 1 for count in ran.values() if count > 1)
    per_worker = Counter({b.who: 0 for b in batches})
    for b in batches:
        per_worker[b.who] += len(b.ns)
    fill = {who: per_worker[who] / sum(1 for b in batches if b.who == who) for who in per_worker}
    # Printed, not asserted: a key that moves leaves at most one short batch on its old worker
    # (flushed by the timer or the drain); a key offered below max_messages / max_seconds (a
    # loaded machine) makes timer-flushed batches anyway.
    short = Counter(key for b in batches if len(b.ns) < 100 for key in b.keys)
    print(f"\nlost {len(lost)}, duplicates {duplicates}, tasks per worker {dict(per_worker)}, "
          f"mean batch per worker { {w: round(f, 1) for w, f in fill.items()} }, "
          f"short batches {sum(short.values())} of {len(batches)} "
          f"(most on one key: {max(short.values(), default=0)})")
    assert code == 0, "the leaving worker drained and exited 0"
    assert everything and not lost, f"{len(lost)} tasks lost"
    assert per_worker["w3"] > 0, "the joining worker took over key ranges"
    assert duplicates == 0, f"{duplicates} duplicates (a graceful drain re-runs nothing)"
