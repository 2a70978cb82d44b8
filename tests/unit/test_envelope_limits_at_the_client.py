"""What a worker dead-letters as ``invalid_envelope`` is refused by the client at the call site,
in one line: a client name outside Pulsar's topic alphabet (or too long) made every awaited
result of that client silently never come (its reply topic is not one a worker answers on:
``AsyncClient(name="my client")`` waited out every timeout); a task id over 256 characters or
more than 256 tags were dispatched and dead-lettered."""

from __future__ import annotations

import uuid

import pytest

from infinitic_py import AsyncClient, Call, Client, Worker, task
from infinitic_py.transport.memory import reset_broker
from infinitic_py.worker.envelope_rules import EnvelopeRules


class Echo:
    @task
    def echo(self, x: int) -> int:
        return x


@pytest.mark.parametrize("name", ["my client", "clïent", "a/b", "billing\n", "x" * 500])
def test_a_client_name_no_worker_answers_on_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="cannot name its response topic") as info:
        AsyncClient(f"memory://names-{uuid.uuid4().hex[:8]}", name=name)
    assert "\n" not in str(info.value).replace(repr(name), "")
    with pytest.raises(ValueError, match="cannot name its response topic"):
        Client(f"memory://names-{uuid.uuid4().hex[:8]}", name=name)


@pytest.mark.parametrize("name", ["billing-api", "pod_7.eu:1", "x" * 475])
async def test_a_name_the_client_accepts_is_answered(name: str) -> None:
    """The client's rule and the worker's are the same (the longest name included)."""
    url = f"memory://names-{uuid.uuid4().hex[:8]}"
    rules = EnvelopeRules.native("Echo", "public", "default")
    worker = Worker(url)
    worker.add_service(Echo())
    try:
        async with worker, AsyncClient(url, name=name) as client:
            assert rules.reply_problem(client.response_topic) is None
            deferred = await client.service(Echo).echo(1)
            assert await deferred.result(timeout=10) == 1
    finally:
        reset_broker(url.removeprefix("memory://"))


async def test_task_ids_and_tags_beyond_what_a_worker_accepts_are_refused() -> None:
    async with AsyncClient(f"memory://ids-{uuid.uuid4().hex[:8]}", results=False) as client:
        echo = client.service(Echo).echo
        await echo.options(task_id="x" * 256, tags=[f"t{i}" for i in range(256)])(1)
        with pytest.raises(ValueError, match="task_id must be at most 256 characters, got 257"):
            await echo.options(task_id="x" * 257)(1)
        with pytest.raises(ValueError, match="at most 256 tags, got 257"):
            await echo.options(tags=[f"t{i}" for i in range(257)])(1)
        stub = client.service(Echo, tags=[f"s{i}" for i in range(200)])
        with pytest.raises(ValueError, match="item 1: a task has at most 256 tags, got 300"):
            await stub.echo.many([Call(1), Call(2, tags=[f"c{i}" for i in range(100)])])
