"""The unacked-limit checks read each service's own namespace (``services[].namespace``), not
the worker's ``pulsar.namespace``: a namespace policy of 100 on the service's namespace was
reported as "ok ... broker 50000" by both ``infinitic-py check`` and the worker's start check
(which also listed the topics in the wrong namespace)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from infinitic_py import Worker
from infinitic_py.admin import PulsarAdmin

from .conftest import BrokerInfo
from .namespaces import throwaway_namespace
from .test_client import Doubler

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 100


@pytest.fixture
def limited_namespace(admin: PulsarAdmin) -> Iterator[str]:
    """A fresh namespace of the shared broker with maxUnackedMessagesPerConsumer = 100."""
    with throwaway_namespace(admin, "lim", {"maxUnackedMessagesPerConsumer": LIMIT}) as ns:
        yield ns


def test_check_reads_the_service_namespace_limit(
    pulsar_broker: BrokerInfo, limited_namespace: str, tmp_path: Path
) -> None:
    config = tmp_path / "worker.yaml"
    config.write_text(textwrap.dedent(f"""
        pulsar:
          url: "{pulsar_broker.service_url}"
          admin_url: "{pulsar_broker.admin_url}"
          consumer: {{receiver_queue_size: 50}}
        services:
          - class: "examples.email_service:EmailService"
            namespace: {limited_namespace}
            concurrency: 4
            batch:
              send: {{max_messages: 50}}
    """))
    out = subprocess.run(
        [sys.executable, "-m", "infinitic_py.cli", "check", "-c", str(config)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode in (0, 1), out.stdout + out.stderr
    where = f"public/{limited_namespace}"
    assert f"namespace {where}={LIMIT}" in out.stdout, out.stdout
    assert f"persistent://{where}/task-executor:EmailService" in out.stdout, out.stdout
    warning = next((line for line in out.stdout.splitlines() if line.startswith("WARN")), "")
    assert f"namespace maxUnackedMessagesPerConsumer {LIMIT}" in warning, out.stdout
    assert f"set-max-unacked-messages-per-consumer {where} -c" in out.stdout


async def test_worker_start_reads_the_service_namespace_limit(
    pulsar_broker: BrokerInfo, limited_namespace: str
) -> None:
    worker = Worker(pulsar_broker.service_url, admin_url=pulsar_broker.admin_url,
                    http_port=None, backlog_interval=0)
    worker.add_service(Doubler(), name=f"Svc{uuid.uuid4().hex[:8]}", concurrency=4,
                       namespace=limited_namespace)
    with capture_logs() as logs:
        await worker.start()
    await asyncio.wait_for(worker.stop(grace=5), 30)
    warnings = [e for e in logs if e["event"] == "worker.unacked_limit"]
    assert warnings, [e["event"] for e in logs]
    assert all(f"namespace maxUnackedMessagesPerConsumer {LIMIT}" in e["message"]
               for e in warnings), warnings
    assert any(f"public/{limited_namespace} -c" in " ".join(e["fix"]) for e in warnings)


async def test_a_worker_over_the_limit_warns_and_never_stalls(
    pulsar_broker: BrokerInfo, limited_namespace: str
) -> None:
    """The worker can hold far more than the namespace's 100 unacked messages (receiver queue
    2000, buffer 10,000): the broker stops dispatching at 100 and resumes as batches are acked.
    Batches flushed by time keep it going: every task of 20 batch keys completes."""
    from infinitic_py import AsyncClient, BatchLimits, Call

    from .test_client import Job

    name = f"Svc{uuid.uuid4().hex[:8]}"
    worker = Worker(pulsar_broker.service_url, namespace=limited_namespace,
                    admin_url=pulsar_broker.admin_url, http_port=None, backlog_interval=0)
    worker.add_service(Doubler(), name=name, concurrency=4,
                       batch={"double": BatchLimits(50, 0.2)})
    with capture_logs() as logs:
        await worker.start()
    try:
        assert any(e["event"] == "worker.unacked_limit" for e in logs)
        async with AsyncClient(pulsar_broker.service_url, namespace=limited_namespace,
                               admin_url=pulsar_broker.admin_url) as client:
            stub = client.service(Doubler, name=name)
            ds = await stub.double.many([Call(Job(i), meta={"batchKey": f"k{i % 20}"})
                                         for i in range(1000)])
            results = await asyncio.gather(*(d.result(timeout=120) for d in ds))
        assert results == [2 * i for i in range(1000)]
    finally:
        await asyncio.wait_for(worker.stop(grace=5), 30)
