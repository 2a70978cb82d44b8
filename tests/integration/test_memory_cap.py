"""Worker memory is bounded by bytes, not only by message count (issue 14, 4): a backlog of 100
messages of 4 MiB, a worker subprocess with worker.max_buffered_bytes 32 MiB and
pulsar.consumer.receiver_queue_size 4. Its peak RSS (VmHWM) stays within the stated bound above
its RSS once started:

    3 x (max_buffered_bytes + one received run (1 message here) x 4 MiB)
    + 2 x receiver_queue_size x 4 MiB + 64 MiB

A held message is in memory three times: pulsar-client's native message (kept for its ack), the
Python bytes the worker decodes, and the decoded argument (here a 4 MiB ``bytes`` field). A
prefetched one twice (native, and Python bytes once handed over). The receiver queue is bounded by
count only (pulsar-client's consumer has no byte cap), hence its share; 64 MiB for the
interpreter, allocator and client buffers. The previous code (count cap only) grew by 328 MiB here.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

from infinitic_py import AsyncClient

from .big_service import Blob, Eater
from .conftest import BrokerInfo
from .harness import wait_for_condition

ROOT = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def _spawn(config: Path, log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "infinitic_py.cli", "worker", "-c", str(config)],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=log,
            stderr=subprocess.STDOUT)


async def test_a_backlog_of_large_messages_stays_under_the_byte_cap(
    pulsar_broker: BrokerInfo, tmp_path: Path
) -> None:
    cap, queue, size = 32 * MIB, 4, 4 * MIB
    name = f"Big{uuid.uuid4().hex[:10]}"
    config = tmp_path / "worker.yaml"
    config.write_text(textwrap.dedent(f"""
        pulsar:
          url: "{pulsar_broker.service_url}"
          admin_url: null
          consumer: {{receiver_queue_size: {queue}}}
        worker:
          http_port: 0
          max_buffered_bytes: {cap}
          log_format: json
        services:
          - class: "tests.integration.big_service:Eater"
            name: {name}
            concurrency: 2
    """))
    # A first worker creates the subscription and gives the RSS of a started worker; the
    # backlog is dispatched while no worker runs; a second worker then meets all of it at once.
    first_log = tmp_path / "first.log"
    first = _spawn(config, first_log)
    try:
        assert await wait_for_condition(
            lambda: first_log.exists() and "worker.started" in first_log.read_text(), timeout=60)
        started_kib = _status_kib(first.pid, "VmRSS")
    finally:
        first.terminate()
        assert await asyncio.to_thread(first.wait, 30) == 0
    async with AsyncClient(pulsar_broker.service_url) as client:
        stub = client.service(Eater, name=name)
        deferreds = []
        for chunk in range(10):
            deferreds += await stub.eat.many(
                [Blob(n, os.urandom(16) * (size // 16)) for n in range(chunk * 10, chunk * 10 + 10)])
        log = tmp_path / "worker.log"
        proc = _spawn(config, log)
        try:
            results = await asyncio.gather(*(d.result(timeout=180) for d in deferreds))
            assert results == [size] * 100
            peak_kib = _status_kib(proc.pid, "VmHWM")
        finally:
            proc.terminate()
            await asyncio.to_thread(proc.wait, 30)
    grown = (peak_kib - started_kib) * 1024
    bound = 3 * (cap + 1 * size) + 2 * queue * size + 64 * MIB
    print(f"worker RSS {started_kib // 1024} MiB at start, peak {peak_kib // 1024} MiB: "
          f"+{grown // MIB} MiB (bound {bound // MIB} MiB)")
    assert grown < bound, f"+{grown // MIB} MiB over the RSS at start, bound {bound // MIB} MiB"
