"""The types a user's type checker sees (``make lint`` runs mypy --strict over this file): the
typed route ``stub.method(Service.task)`` gives the task's parameters and its result type, for
``@task`` and ``@task(timeout=..., retry=...)``, sync and ``async def`` tasks, on ``AsyncClient``
and ``Client``. The tests also run, so the calls are real ones (memory://)."""

from __future__ import annotations

import uuid
from typing import assert_type

import msgspec

from infinitic_py import AsyncClient, Client, Deferred, RetryPolicy, SyncDeferred, Worker, task
from infinitic_py.transport.memory import reset_broker


class Item(msgspec.Struct):
    sku: str


class Shop:
    @task
    def price(self, item: Item) -> float:
        return 1.5

    @task
    async def stock(self, item: Item, *, store: str = "main") -> list[int]:
        return [len(item.sku), len(store)]

    @task(timeout=5.0)  # before: an async def's result type was Coroutine[Any, Any, list[int]]
    async def reserve(self, item: Item, count: int) -> list[int]:
        return [count]

    @task(retry=RetryPolicy(maximum_retries=1))
    def restock(self, item: Item) -> bool:
        return True


async def test_the_typed_route_sees_parameters_and_results() -> None:
    name = f"types-{uuid.uuid4().hex[:8]}"
    worker = Worker(f"memory://{name}")
    worker.add_service(Shop())
    try:
        async with worker, AsyncClient(f"memory://{name}") as client:
            shop = client.service(Shop)
            price = await shop.method(Shop.price)(Item("a"))
            assert_type(price, Deferred[float])
            assert_type(await price.result(timeout=10), float)
            stock = await shop.method(Shop.stock)(Item("ab"), store="x")
            assert_type(await stock.result(timeout=10), list[int])
            reserve = shop.method(Shop.reserve)
            reserved = await reserve.options(delay=0)(Item("a"), 3)
            assert_type(reserved, Deferred[list[int]])
            assert await reserved.result(timeout=10) == [3]
            many = await reserve.many([(Item("a"), 1), (Item("b"), 2)])
            assert_type(many, list[Deferred[list[int]]])
            restocked = await shop.method(Shop.restock)(Item("a"))
            assert_type(await restocked.result(timeout=10), bool)
    finally:
        reset_broker(name)


def test_the_sync_clients_typed_route_too() -> None:
    name = f"types-sync-{uuid.uuid4().hex[:8]}"
    worker = Worker(f"memory://{name}")
    worker.add_service(Shop())
    try:
        with Client(f"memory://{name}") as client:
            client._run(worker.start())
            try:
                reserve = client.service(Shop).method(Shop.reserve)
                deferred = reserve.options(priority=7)(Item("a"), 2)
                assert_type(deferred, SyncDeferred[list[int]])
                assert_type(deferred.result(timeout=10), list[int])
                assert deferred.result(timeout=10) == [2]
            finally:
                client._run(worker.stop())
    finally:
        reset_broker(name)
