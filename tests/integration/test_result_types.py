"""An output that does not fit its method's declared result type, through a worker and an
AsyncClient, on both transports: that task alone fails (``ResultTypeError``, one line naming the
method, the task, the declared type and what was returned), follows its retry policy, and is
dead-lettered with that reason, whether or not its caller awaits it; the other tasks of its batch
complete.

Before, the worker published whatever the method returned: a caller with the service class got
a ``DecodeError`` for a result that had "completed" (never retried, never dead-lettered), a caller
without it got the wrong value, and a task nobody awaited completed silently, even with an object
msgspec cannot encode."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from infinitic_py import AsyncClient, RetryPolicy, TaskFailed, Worker, task
from infinitic_py.topics import dead_letter_topic
from infinitic_py.transport import create_transport
from infinitic_py.transport.base import ConsumerSettings

from .harness import Harness, receive_letters


class Unencodable:
    """Nothing msgspec can write."""


WRONG: dict[str, Any] = {"str": "three", "none": None, "object": Unencodable()}


@pytest.fixture
async def client(harness: Harness) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(harness.url, tenant=harness.tenant, namespace=harness.namespace) as c:
        yield c


class Lying:
    """Methods returning another type than they declare (a user's bug mypy cannot see)."""

    @task
    def count(self, n: int) -> int:
        return n

    @count.batch(max_messages=4, max_seconds=0.2)
    def count_batch(self, ns: dict[str, int]) -> dict[str, int]:
        wrong: Any = "three"
        return {t: (wrong if n == 3 else n) for t, n in ns.items()}

    @task
    def echo(self, kind: str) -> int:
        wrong: Any = WRONG.get(kind, len(kind))
        return wrong  # type: ignore[no-any-return]


async def test_a_wrong_output_fails_its_task_alone_then_is_dead_lettered(
    harness: Harness, client: AsyncClient
) -> None:
    name = f"Res{uuid.uuid4().hex[:10]}"
    transport = create_transport(harness.url)
    dlq = await transport.subscribe(dead_letter_topic(harness.tenant, harness.namespace, name),
                                    "test-dlq", ConsumerSettings())
    worker = Worker(harness.url, tenant=harness.tenant, namespace=harness.namespace,
                    name=f"w-{name}", shutdown_grace=10.0)
    worker.add_service(Lying(), name=name, retry=RetryPolicy(
        maximum_retries=1, minimum_seconds=0.1, maximum_seconds=0.2, random_factor=0.0))
    await worker.start()
    try:
        stub = client.service(Lying, name=name)
        batch = await stub.count.many([1, 2, 3, 4])
        singles = {kind: await stub.echo(kind) for kind in (*WRONG, "fine")}
        assert [await d.result(timeout=60) for d in (batch[0], batch[1], batch[3])] == [1, 2, 4]
        assert await singles.pop("fine").result(timeout=60) == 4
        expected = {batch[2].task_id: f"{name}.count_batch returned str for task "
                                      f"{batch[2].task_id}: expected int"}
        returned = {"str": "str", "none": "None", "object": "Unencodable"}
        for kind, d in singles.items():
            expected[d.task_id] = (f"{name}.echo returned {returned[kind]} for task {d.task_id}: "
                                   "expected int")
        for d in (batch[2], *singles.values()):
            with pytest.raises(TaskFailed) as info:
                await d.result(timeout=60)
            failure = info.value
            assert (failure.error_type, failure.retry_index) == ("ResultTypeError", 1)
            assert failure.message.startswith(expected[d.task_id]), failure.message
            assert "\n" not in failure.message
        # nobody awaits it: dead-lettered all the same, not completed silently
        quiet = client.service(Lying, name=name, results=False)
        unawaited = await quiet.echo("object")
        expected[unawaited.task_id] = (f"{name}.echo returned Unencodable for task "
                                       f"{unawaited.task_id}: expected int")
        letters = await receive_letters(dlq, len(expected), timeout=60, then_quiet=1.0)
        assert sorted(x.task_id or "" for x in letters) == sorted(expected)
        for letter in letters:
            assert (letter.reason, letter.error_type, letter.retry_index, letter.service) == (
                "retries_exhausted", "ResultTypeError", 1, name)
            assert letter.message.startswith(expected[letter.task_id or ""]), letter.message
    finally:
        await worker.stop()
        await dlq.close()
        await transport.close()
