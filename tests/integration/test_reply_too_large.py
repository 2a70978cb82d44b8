"""A result too large for the broker (MessageTooBig) is dead-lettered ``reply_unpublishable``,
and the client that awaits it is told: a ``TaskFailed`` (``ReplyUnpublishable``) reaches it on
the same reply topic, which takes that small message. Before, nothing was sent: the client
waited for its whole timeout and got ``ResultTimeout`` ("it may still complete")."""

from __future__ import annotations

import pytest

from infinitic_py import AsyncClient, TaskFailed, Worker, task

from .conftest import BrokerInfo
from .test_dlq_cli import letters_json


class Huge:
    @task
    def make(self, n: int) -> str:
        return "x" * (6 * 1024 * 1024)  # over the broker's default maxMessageSize (5 MiB)


async def test_an_awaiting_client_is_told_its_result_could_not_be_sent(
    pulsar_broker: BrokerInfo, unique_name: str
) -> None:
    service = f"Huge{unique_name}"
    worker = Worker(pulsar_broker.service_url, name="huge-test")
    worker.add_service(Huge(), name=service, concurrency=1)
    await worker.start()
    try:
        async with AsyncClient(pulsar_broker.service_url) as client:
            deferred = await client.service(service).make(1)
            with pytest.raises(TaskFailed) as failed:
                await deferred.result(timeout=60)
        assert failed.value.error_type == "ReplyUnpublishable"
        assert "MessageTooBig" in failed.value.message
    finally:
        await worker.stop()
    listed = await letters_json(pulsar_broker, service)
    assert [x["reason"] for x in listed["letters"]] == ["reply_unpublishable"]
