"""A task with keyword-only parameters (``def f(self, x, *, unit="kg")``) runs: the client sends
every argument in signature order, and the worker called the method with all of them by
position ("takes 2 positional arguments but 3 were given", the task failed on every call)."""

from __future__ import annotations

import uuid

from infinitic_py import AsyncClient, Worker, task
from infinitic_py.transport.memory import reset_broker


class Scale:
    @task
    def weigh(self, grams: int, *, unit: str = "kg", digits: int) -> str:
        return f"{round(grams / 1000, digits)} {unit}"

    @task
    async def weigh_async(self, grams: int, *, unit: str = "kg") -> str:
        return f"{grams / 1000} {unit}"

    @task
    def only_keywords(self, *, a: int, b: int = 2) -> int:
        return a * 10 + b

    @task
    def positional_only(self, a: int, /, b: int) -> int:
        return a - b


async def test_keyword_only_parameters_get_their_arguments_by_keyword() -> None:
    name = f"kwonly-{uuid.uuid4().hex[:8]}"
    worker = Worker(f"memory://{name}")
    worker.add_service(Scale())
    try:
        async with worker, AsyncClient(f"memory://{name}") as client:
            scale = client.service(Scale)
            results = [
                await scale.weigh(1500, digits=1),
                await scale.weigh(2500, unit="t", digits=0),
                await scale.weigh_async(1500, unit="g"),
                await scale.weigh_async(500),
                await scale.only_keywords(a=4),
                await scale.positional_only(5, b=2),
            ]
            assert [await d.result(timeout=10) for d in results] == [
                "1.5 kg", "2.0 t", "1.5 g", "0.5 kg", 42, 3]
    finally:
        reset_broker(name)
