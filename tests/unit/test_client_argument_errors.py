"""A mistake in a dispatch option is a clear exception at the call site, with a one-line message
naming the option (README "Client"): never a silent misreading (tags="signup" read as six
tags), a task that can never be answered (task_id=5), or a crash of the embedded broker
(delay=inf)."""

from __future__ import annotations

import asyncio
import math
import os
import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from infinitic_py import AsyncClient, Call, Client, ResultTimeout, TaskFailed, Worker, task


class Svc:
    @task
    def echo(self, x: int) -> int:
        return x


def url() -> str:
    return f"memory://client-args-{uuid.uuid4().hex[:8]}"


@pytest.mark.parametrize(("options", "error", "words"), [
    ({"tags": "signup"}, TypeError, "tags must be a list of str"),
    ({"tags": 5}, TypeError, "tags must be a list of str"),
    ({"tags": ["ok", 3]}, TypeError, "tags must be a list of str"),
    ({"meta": "x"}, TypeError, "meta must be a mapping"),
    ({"meta": [("batchKey", "k")]}, TypeError, "meta must be a mapping"),
    ({"delay": "soon"}, TypeError, "delay must be a number of seconds"),
    ({"delay": -1}, ValueError, "delay must be a finite number of seconds >= 0"),
    ({"delay": math.nan}, ValueError, "delay must be a finite number of seconds >= 0"),
    ({"delay": math.inf}, ValueError, "delay must be a finite number of seconds >= 0"),
    ({"delay": 1e300}, ValueError, "delay must be at most 315360000 seconds"),
    ({"run_at": datetime(9999, 1, 1, tzinfo=UTC)}, ValueError,
     "run_at must be at most 315360000 seconds ahead"),
    ({"run_at": "2030-01-01"}, TypeError, "run_at must be a timezone-aware datetime"),
    ({"run_at": datetime(2030, 1, 1)}, TypeError, "run_at must be a timezone-aware datetime"),
    ({"task_id": 5}, TypeError, "task_id must be a str"),
    ({"task_id": ""}, ValueError, "task_id must not be empty"),
])
async def test_a_wrong_option_is_refused_before_anything_is_sent(
        options: dict[str, Any], error: type[Exception], words: str) -> None:
    async with AsyncClient(url(), results=False) as client:
        echo = client.service(Svc).echo
        with pytest.raises(error, match=words) as info:
            await echo.options(**options)(1)
        assert "\n" not in str(info.value)
        with pytest.raises(error, match=words):
            await echo.many([Call(1), Call(2, **options)])


@pytest.mark.parametrize(("options", "words"), [
    ({"tags": "signup"}, "tags must be a list of str"),
    ({"meta": "x"}, "meta must be a mapping"),
])
async def test_the_stubs_own_meta_and_tags_are_checked_too(options: dict[str, Any],
                                                           words: str) -> None:
    async with AsyncClient(url(), results=False) as client:
        with pytest.raises(TypeError, match=words):
            client.service(Svc, **options)


def test_the_sync_client_checks_the_same() -> None:
    with Client(url(), results=False) as client:
        with pytest.raises(TypeError, match="tags must be a list of str"):
            client.service(Svc, tags="signup")
        with pytest.raises(ValueError, match="delay must be a finite"):
            client.service(Svc).echo.options(delay=math.inf)(1)


async def test_a_list_or_tuple_of_tags_still_works() -> None:
    async with AsyncClient(url(), results=False) as client:
        stub = client.service(Svc, tags=("a",), meta={"batchKey": b"k"})
        await stub.echo.options(tags=["b"], delay=0, task_id="t-1")(1)
        assert stub.tags == ["a"]


def test_the_sync_client_after_close_raises_client_closed_and_nothing_else() -> None:
    import warnings

    from infinitic_py.errors import ClientClosed

    client = Client(url(), results=False)
    client.close()
    client.close()  # twice is fine
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "coroutine ... was never awaited" would be one
        with pytest.raises(ClientClosed):
            client.service(Svc).echo(1)
        import gc

        gc.collect()


@pytest.mark.parametrize("items", ["hello", b"hi", 5, {"a": 1}])
async def test_many_wants_an_iterable_of_items(items: Any) -> None:
    """many("hello") was five tasks ('h', 'e', ...), many(5) a bare 'int is not iterable'."""
    async with AsyncClient(url(), results=False) as client:
        with pytest.raises(TypeError, match=r"many\(\) takes a list of items"):
            await client.service(Svc).echo.many(items)


async def test_a_dispatch_to_a_broker_that_refuses_connections_says_so() -> None:
    """A wrong broker address: the error names it and why ("3 Timeout" from pulsar-client's
    subscribe said neither)."""
    import socket

    from infinitic_py.errors import DispatchFailed

    with socket.socket() as free:  # a port nothing listens on
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    broker = f"pulsar://127.0.0.1:{port}"
    async with AsyncClient(broker, admin_url=None,
                           transport_options={"operation_timeout_seconds": 1,
                                              "log_file": os.devnull}) as client:
        with pytest.raises(DispatchFailed) as info:
            await client.service(Svc).echo(1)
    message = str(info.value)
    assert "\n" not in message
    assert f"cannot reach the broker at {broker}" in message and "refused" in message, message


class Orders:
    @task
    def place(self, order: Order, qty: int) -> int:
        return qty


class Order(msgspec.Struct):
    sku: str
    lines: list[int] = []


@pytest.mark.parametrize(("args", "words"), [
    # msgspec alone said "Expected `object`, got `str` - at `$[0]`": which argument, what type?
    (("sku-1", 2), r"Orders.place\(\): argument 'order' must be Order: Expected `object`, got `str`"),
    ((Order("a"), "2"), r"Orders.place\(\): argument 'qty' must be int: Expected `int`, got `str`"),
    (({"sku": "a", "lines": ["x"]}, 2),
     r"argument 'order' must be Order: Expected `int`, got `str` - at `\$.lines\[0\]`"),
])
async def test_an_argument_of_the_wrong_type_is_named_with_its_parameter(
        args: tuple[Any, ...], words: str) -> None:
    async with AsyncClient(url(), results=False) as client:
        with pytest.raises(TypeError, match=words) as info:
            await client.service(Orders).place(*args)
        assert "$[" not in str(info.value)


@pytest.mark.parametrize(("timeout", "error"), [
    (math.nan, ValueError),  # waited forever (NaN compares false with everything)
    ("3", TypeError),  # "'<=' not supported between 'str' and 'int'", and a shield leaked
    (True, TypeError),
])
async def test_a_wrong_result_timeout_is_refused_at_once(timeout: Any,
                                                         error: type[Exception]) -> None:
    async with AsyncClient(url()) as client:
        deferred = await client.service("Nobody").run(1)  # no worker: no result ever comes
        with pytest.raises(error, match="timeout must be a number of seconds or None"):
            await asyncio.wait_for(deferred.result(timeout=timeout), 5)
        with pytest.raises(ResultTimeout):  # 0 or less: only a result already there
            await deferred.result(timeout=-1)


def test_the_sync_deferred_refuses_it_too() -> None:
    with Client(url()) as client:
        deferred = client.service("Nobody").run(1)
        with pytest.raises(ValueError, match="timeout must be a number of seconds or None"):
            deferred.result(timeout=math.nan)


@pytest.mark.parametrize(("args", "words"), [
    (("sku-1", 2), "argument 'order' must be Order: Expected `object`, got `str`"),
    (({"sku": "a"},), r"takes 2 argument\(s\) \(order, qty\), got 1 \(a task sent by name "
                      r"gets no default values: send every argument, in order\)"),
])
async def test_the_worker_names_the_argument_of_a_task_sent_by_name(
        args: tuple[Any, ...], words: str) -> None:
    """A stub made from a name sends arguments as given; the worker's DecodeError names the
    parameter too (it said "Expected `array` of length 2, got 1" or "... - at `$[0]`")."""
    address = url()
    worker = Worker(address)
    worker.add_service(Orders())
    async with worker, AsyncClient(address) as client:
        deferred = await client.service("Orders").place(*args)
        with pytest.raises(TaskFailed, match=words) as info:
            await deferred.result(timeout=10)
        assert info.value.error_type == "DecodeError"


async def test_meta_that_cannot_be_encoded_is_named() -> None:
    """It said only "Encoding objects of type object is unsupported"."""
    async with AsyncClient(url(), results=False) as client:
        with pytest.raises(TypeError, match=r"Svc.echo\(\): cannot encode meta: Encoding objects"):
            await client.service(Svc).echo.options(meta={"when": object()})(1)


class Other:
    @task
    def ship(self, x: int) -> int:
        return x


async def test_the_typed_route_refuses_a_method_the_service_has_not() -> None:
    """``stub.method(Other.ship)`` on a stub of ``Svc`` dispatched 'ship' to Svc unchecked
    (the worker then dead-lettered it), where ``stub.ship`` is an AttributeError."""
    async with AsyncClient(url(), results=False) as client:
        stub = client.service(Svc)
        with pytest.raises(AttributeError, match=r"service Svc has no task method 'ship' \(it "
                                                 r"has: echo\)"):
            stub.method(Other.ship)
        with pytest.raises(TypeError, match="method\\(\\) takes a task method"):
            stub.method(Svc().echo)  # type: ignore[arg-type]
        await client.service("Svc").method(Other.ship)(1)  # by name: sent as given


async def test_options_refuses_an_unknown_option_async_and_sync() -> None:
    """An unknown option is a TypeError naming it, never taken as a task's keyword argument."""
    async with AsyncClient(url()) as client:
        with pytest.raises(TypeError, match=r"unexpected keyword argument.*bogus; it takes meta"):
            client.service("S").go.options(bogus=1)  # type: ignore[call-arg]
    with Client(url()) as sync_client, pytest.raises(TypeError, match=r"argument.*bogus"):
        sync_client.service("S").go.options(bogus=1)  # type: ignore[call-arg]
