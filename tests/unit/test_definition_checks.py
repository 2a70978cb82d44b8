"""Task methods that could never run are refused when the worker starts (and by ``check``, and
by a client stub made from the class), with a line naming the service, the method and what is
wrong. Each was accepted before: a parameter or result type msgspec cannot encode or decode (a
plain class: every task failed at run time; ``threading.Lock``: a bare "TypeError: Type ... is not
supported" naming nothing), ``@task`` over a staticmethod (its first parameter was dropped as
``self``) or a classmethod (a bare TypeError), a generator (every result failed to encode)."""

from __future__ import annotations

import threading
from typing import Any, NamedTuple, TypedDict

import msgspec
import pytest

from infinitic_py import AsyncClient, task
from infinitic_py.errors import ServiceDefinitionError
from infinitic_py.service import define_service


class Plain:  # msgspec cannot encode or decode it (no hooks)
    def __init__(self, x: int) -> None:
        self.x = x


class Tree(msgspec.Struct):
    children: list[Tree] = []
    label: str | None = None


class Row(NamedTuple):
    a: int


class Shape(TypedDict):
    w: int


class PlainParam:
    @task
    def m(self, p: Plain) -> int:
        return 1


class NestedPlain:
    @task
    def m(self, ps: dict[str, list[Plain | None]]) -> int:
        return 1


class PlainResult:
    @task
    async def m(self, x: int) -> Plain:
        return Plain(x)


class LockParam:
    @task
    def m(self, lock: threading.Lock) -> int:
        return 1


class StaticTask:
    @task
    @staticmethod
    def m(x: int) -> int:
        return x


class ClassTask:
    @task
    @classmethod
    def m(cls, x: int) -> int:
        return x


class Generator:
    @task
    def m(self, n: int) -> Any:
        yield from range(n)


class AsyncGenerator:
    @task
    async def m(self, n: int) -> Any:
        for i in range(n):
            yield i


class TwinGenerator:
    @task
    def m(self, n: int) -> int:
        return n

    @m.batch()
    def m_batch(self, ns: dict[str, int]) -> Any:
        yield ns


@pytest.mark.parametrize(("cls", "words"), [
    (PlainParam, "task 'm': parameter 'p' (Plain) holds Plain, which msgspec cannot"),
    (NestedPlain, "parameter 'ps' (dict[str, list[tests.unit.test_definition_checks.Plain | "
                  "None]]) holds Plain"),
    (PlainResult, "task 'm': the return type (Plain) holds Plain"),
    (LockParam, "parameter 'lock'"),
    (StaticTask, "task 'm': is a staticmethod, which has no self"),
    (ClassTask, "task 'm': is a classmethod, which has no self"),
    (Generator, "task 'm': is a generator"),
    (AsyncGenerator, "task 'm': is a generator"),
    (TwinGenerator, "batch method 'm_batch' (twin of 'm'): is a generator"),
])
async def test_a_method_that_could_never_run_is_refused_naming_it(cls: type[Any],
                                                                  words: str) -> None:
    with pytest.raises(ServiceDefinitionError, match=f"^service {cls.__name__}: ") as info:
        define_service(cls())
    assert words in str(info.value)
    async with AsyncClient("memory://definition-checks") as client:
        with pytest.raises(ServiceDefinitionError, match=f"^service {cls.__name__}: "):
            client.service(cls)


class Fine:
    @task
    def any_value(self, v: object, w: Any) -> object:
        return v

    @task
    def recursive(self, tree: Tree) -> list[Tree]:
        return tree.children

    @task
    def tuples(self, row: Row, shape: Shape, pair: tuple[int, str]) -> tuple[Row, ...]:
        return (row,)

    @task
    def untyped(self, x, y=None):  # type: ignore[no-untyped-def]
        return x


def test_types_msgspec_handles_are_accepted() -> None:
    assert set(define_service(Fine()).methods) == {"any_value", "recursive", "tuples", "untyped"}
