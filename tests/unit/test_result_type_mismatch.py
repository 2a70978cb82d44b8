"""A result of another type than declared, end to end on memory://.

- The worker's method returns another type than it declares (a user's bug mypy cannot see):
  the worker fails that task alone with ``ResultTypeError`` naming the method, the task, the
  declared type and what was returned; the caller gets ``TaskFailed``, the other tasks of the
  batch complete.
- The client's copy of the class declares another type than the worker's (out of date): the
  result decodes to a clear ``DecodeError`` naming the task, the method and the mismatch, not
  a bare msgspec ``ValidationError`` that says neither which task nor why."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from infinitic_py import AsyncClient, Client, DecodeError, TaskFailed, Worker, service, task
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


async def test_a_result_of_another_type_than_declared_fails_that_task_alone() -> None:
    name = f"mismatch-{uuid.uuid4().hex[:8]}"
    worker = Worker(f"memory://{name}")
    worker.add_service(Loose())
    try:
        async with worker, AsyncClient(f"memory://{name}") as client:
            good, bad = await client.service(Loose).count.many([1, 2])
            assert await good.result(timeout=10) == 1
            with pytest.raises(TaskFailed) as info:
                await bad.result(timeout=10)
            assert info.value.error_type == "ResultTypeError"
            assert info.value.message == (
                f"Loose.count_batch returned str for task {bad.task_id}: expected int")
            # a client without the class (by name) gets the same failure, not the wrong value
            (named,) = await client.service("Loose").count.many([2])
            with pytest.raises(TaskFailed, match="ResultTypeError"):
                await named.result(timeout=10)
    finally:
        reset_broker(name)


async def test_a_client_class_out_of_date_is_a_decode_error_naming_the_task() -> None:
    name = f"mismatch-{uuid.uuid4().hex[:8]}"
    worker = Worker(f"memory://{name}")
    worker.add_service(Loose())
    try:
        async with worker, AsyncClient(f"memory://{name}") as client:
            (old,) = await client.service(OutOfDate).count.many([3])
            with pytest.raises(DecodeError) as info:
                await old.result(timeout=10)
            text = str(info.value)
            assert "\n" not in text
            assert old.task_id in text and "Loose.count" in text
            assert "Expected `array`, got `int`" in text and "return type" in text
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
                with pytest.raises(TaskFailed, match=r"Loose\.count_batch returned str"):
                    bad.result(timeout=10)
                old = client.service(OutOfDate).count(3)
                with pytest.raises(DecodeError, match=r"Loose\.count"):
                    old.result(timeout=10)
            finally:
                client._run(worker.stop())
    finally:
        reset_broker(name)


class InfEcho:
    @task
    def echo(self, kind: str) -> int:
        wrong: Any = {"str": "three", "none": None}.get(kind, len(kind))
        return wrong  # type: ignore[no-any-return]


async def test_on_the_infinitic_wire_the_task_fails_the_same() -> None:
    """``wire="infinitic"``: the same executor, so the same check; the failure travels as a
    ``TaskFailedEvent`` (what a JVM workflow sees as ``TaskFailedException``), here answered
    to a Python client by the worker playing Infinitic's event handler."""
    pytest.importorskip("fastavro", reason="the `infinitic` extra (fastavro) is not installed")
    url = f"memory://mismatch-inf-{uuid.uuid4().hex[:8]}"
    worker = Worker(url, name="py")
    worker.add_service(InfEcho(), wire="infinitic", namespace="infinitic", event_handler=True)
    try:
        async with worker, AsyncClient(url, wire="infinitic", namespace="infinitic") as client:
            stub = client.service(InfEcho)
            fine, three, none = [await stub.echo(kind) for kind in ("fine", "str", "none")]
            assert await fine.result(timeout=10) == 4
            for d, returned in ((three, "str"), (none, "None")):
                with pytest.raises(TaskFailed) as info:
                    await d.result(timeout=10)
                assert info.value.error_type == "infinitic_py.errors.ResultTypeError"
                assert info.value.message == (
                    f"InfEcho.echo returned {returned} for task {d.task_id}: expected int")
    finally:
        reset_broker(url.removeprefix("memory://"))
