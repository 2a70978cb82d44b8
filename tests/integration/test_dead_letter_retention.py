"""Dead letters are kept (issue 14, 5): the worker makes sure every dead-letter topic it writes to
has the durable subscription ``infinitic-py-dlq`` before it writes, so the broker keeps them, and
across a broker restart that keeps its data.

The restart runs on a private broker (own run directory, free ports) that the test starts and
stops itself with ``pulsar.sh``: the shared broker on 6650 is never touched."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from infinitic_py import AsyncClient, TaskFailed, Worker, task
from infinitic_py.admin import PulsarAdmin
from infinitic_py.topics import DLQ_SUBSCRIPTION, dead_letter_topic
from infinitic_py.transport import create_transport
from infinitic_py.transport.base import ConsumerSettings
from infinitic_py.wire.native_letters import read_letter

from .conftest import BrokerInfo
from .harness import poll

ROOT = Path(__file__).resolve().parents[2]
PULSAR_SH = ROOT / "deploy" / "pulsar-standalone" / "pulsar.sh"


class Order(msgspec.Struct, frozen=True):
    n: int


class Broken:
    @task
    def place(self, order: Order) -> int:
        raise ValueError(f"order {order.n} is refused")


def backlog(admin: PulsarAdmin, topic: str) -> tuple[list[str], int]:
    stats = admin.topic_stats(topic)
    subs = stats.get("subscriptions", {})
    return sorted(subs), int(subs.get(DLQ_SUBSCRIPTION, {}).get("msgBacklog", 0))


async def fail_one_task(url: str, name: str, admin: PulsarAdmin) -> str:
    """Start a worker, dispatch one task that fails for good, stop the worker; the task id."""
    worker = Worker(url, name="dlq-worker", shutdown_grace=5.0)
    worker.add_service(Broken(), name=name)
    await worker.start()
    try:
        topic = dead_letter_topic("public", "default", name)
        subs, _ = await asyncio.to_thread(backlog, admin, topic)
        assert DLQ_SUBSCRIPTION in subs, f"no {DLQ_SUBSCRIPTION} before any write: {subs}"
        async with AsyncClient(url) as client:
            d = await client.service(Broken, name=name).place(Order(7))
            with pytest.raises(TaskFailed):
                await d.result(timeout=60)
    finally:
        await worker.stop()
    return d.task_id


async def read_kept_letter(url: str, name: str) -> list[tuple[str, str | None]]:
    transport = create_transport(url)
    try:
        consumer = await transport.subscribe(
            dead_letter_topic("public", "default", name), DLQ_SUBSCRIPTION, ConsumerSettings())
        msg = await asyncio.wait_for(consumer.receive(), 30)
        letter = read_letter(msg.data, msg.properties, service=name, published_at=None)
        await consumer.close()
        return [(letter.reason, letter.task_id)]
    finally:
        await transport.close()


async def test_a_dead_letter_is_kept_by_the_dlq_subscription(
    pulsar_broker: BrokerInfo, admin: PulsarAdmin
) -> None:
    name = f"Dlq{uuid.uuid4().hex[:10]}"
    task_id = await fail_one_task(pulsar_broker.service_url, name, admin)
    topic = dead_letter_topic("public", "default", name)
    subs, kept = await poll(lambda: asyncio.to_thread(backlog, admin, topic),
                            lambda r: r[1] >= 1, timeout=30)
    assert kept == 1, (subs, kept)
    assert await read_kept_letter(pulsar_broker.service_url, name) == [("retries_exhausted", task_id)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[tuple[BrokerInfo, dict[str, str]]]:
    """A broker of this test's own (own run directory, free ports), stopped at the end."""
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.skip("no Java: cannot start a private broker to restart")
    broker_port, web_port = _free_port(), _free_port()
    env = {**os.environ, "PULSAR_RUN_DIR": str(tmp_path / "pulsar-run"),
           "PULSAR_BROKER_PORT": str(broker_port), "PULSAR_WEB_PORT": str(web_port),
           "PULSAR_MEM": "-Xms256m -Xmx512m -XX:MaxDirectMemorySize=512m"}
    env.pop("PULSAR_AUTO_STOP", None)
    up = subprocess.run([str(PULSAR_SH), "up"], env=env, capture_output=True, text=True,
                        timeout=300, check=False)
    try:
        assert up.returncode == 0, up.stderr
        yield BrokerInfo(f"pulsar://127.0.0.1:{broker_port}", f"http://127.0.0.1:{web_port}"), env
    finally:
        subprocess.run([str(PULSAR_SH), "down"], env=env, capture_output=True, timeout=120,
                       check=False)


async def test_a_dead_letter_survives_a_broker_restart(
    private_broker: tuple[BrokerInfo, dict[str, str]],
) -> None:
    broker, env = private_broker
    admin = PulsarAdmin(broker.admin_url, timeout=10)
    name = f"Dlq{uuid.uuid4().hex[:10]}"
    task_id = await fail_one_task(broker.service_url, name, admin)
    topic = dead_letter_topic("public", "default", name)
    _, kept = await poll(lambda: asyncio.to_thread(backlog, admin, topic), lambda r: r[1] >= 1,
                         timeout=30)
    assert kept == 1
    restart = await asyncio.to_thread(
        subprocess.run, [str(PULSAR_SH), "restart"], env=env, capture_output=True, text=True,
        timeout=400, check=False)
    assert restart.returncode == 0, restart.stderr
    subs, kept = await poll(lambda: asyncio.to_thread(backlog, admin, topic), lambda r: r[1] >= 1,
                            timeout=60)
    assert (DLQ_SUBSCRIPTION in subs, kept) == (True, 1), subs
    assert await read_kept_letter(broker.service_url, name) == [("retries_exhausted", task_id)]
