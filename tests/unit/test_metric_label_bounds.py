"""Metric label sets stay bounded whatever senders put in their messages: the dead-letter
counter's ``method`` label names only the service's own methods (an unknown method, or the
``method`` property of an undecodable message, comes from the sender: one series each would
grow without bound)."""

from __future__ import annotations

import asyncio

from infinitic_py import AsyncClient, Worker, task
from infinitic_py.topics import service_topic
from infinitic_py.transport import create_transport
from infinitic_py.transport.base import OutgoingMessage
from infinitic_py.transport.memory import reset_broker


class Plain:
    @task
    def ok(self, n: int) -> int:
        return n


def _dead_lettered(worker: Worker) -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], float] = {}
    for family in worker.metrics.registry.collect():
        for sample in family.samples:
            if sample.name == "infinitic_tasks_dead_lettered_total":
                key = (sample.labels["method"], sample.labels["reason"])
                out[key] = out.get(key, 0.0) + sample.value
    return out


async def test_unknown_and_unreadable_method_names_never_become_label_values() -> None:
    name = "metric-label-bounds"
    url = f"memory://{name}"
    worker = Worker(url)
    worker.add_service(Plain(), name="Plain")
    try:
        async with worker, AsyncClient(url, results=False) as client:
            stub = client.service("Plain")
            for i in range(20):
                await getattr(stub, f"nope{i}")(i)
            transport = create_transport(url)
            producer = await transport.create_producer(service_topic("public", "default", "Plain"))
            for i in range(5):
                await producer.send(OutgoingMessage(b"\xc1junk", {"method": f"junk{i}"}))
            await producer.close()
            await transport.close()

            deadline = asyncio.get_running_loop().time() + 20  # a poll with a deadline
            while asyncio.get_running_loop().time() < deadline:
                if sum(_dead_lettered(worker).values()) >= 25:
                    break
                await asyncio.sleep(0.02)
        counts = _dead_lettered(worker)
        assert counts == {("", "unknown_method"): 20.0, ("", "undecodable"): 5.0}, counts
    finally:
        reset_broker(name)
