"""A result that does not match the return type the client's service class declares (a batch
twin returning another type, or a client class out of date with the worker's) is one clear
``DecodeError`` naming the task, the method and the mismatch: not a bare msgspec
``ValidationError`` ("Expected `int | null`, got `str`") that says neither which task nor why."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from infinitic_py import AsyncClient, Client, DecodeError, Worker, service, task
from infinitic_py.transport.memory import reset_broker


class Loose:
    @task
    def count(self, n: int) -> int:
        return n

    @count.batch(max_messages=2, max_seconds=0.05)
    def count_batch(self, ns: dict[str, int]) -> dict[str, int]:
        wrong: Any = "not an int"  # a user's bug mypy cannot see (it came from a JSON API, say)
        return {t: (wrong if n == 2 else n) for t, n in ns.items()}


@service(name="Loose")
class OutOfDate:  # the client's copy of the class, older than the worker's
    @task
    def count(self, n: int) -> list[str]:
        raise NotImplementedError


async def test_a_result_of_another_type_than_declared_is_a_decode_error_naming_the_task() -> None:
    name = f"mismatch-{uuid.uuid4().hex[:8]}"
    worker = Worker(f"memory://{name}")
    worker.add_service(Loose())
    try:
        async with worker, AsyncClient(f"memory://{name}") as client:
            good, bad = await client.service(Loose).count.many([1, 2])
            assert await good.result(timeout=10) == 1
            with pytest.raises(DecodeError) as info:
                await bad.result(timeout=10)
            text = str(info.value)
            assert "\n" not in text
            assert bad.task_id in text and "Loose.count" in text
            assert "Expected `int | null`, got `str`" in text
            assert "return type" in text
            # the class's declared type is what the client checks: an out-of-date copy is named
            (old,) = await client.service(OutOfDate).count.many([3])
            with pytest.raises(DecodeError, match=r"Loose\.count.*Expected `array`, got `int`"):
                await old.result(timeout=10)
    finally:
        reset_broker(name)


def test_the_sync_client_raises_the_same() -> None:
    name = f"mismatch-sync-{uuid.uuid4().hex[:8]}"
    worker = Worker(f"memory://{name}")
    worker.add_service(Loose())
    try:
        with Client(f"memory://{name}") as client:
            client._run(worker.start())
            try:
                bad = client.service(Loose).count(2)
                with pytest.raises(DecodeError, match=r"Loose\.count"):
                    bad.result(timeout=10)
            finally:
                client._run(worker.stop())
    finally:
        reset_broker(name)
