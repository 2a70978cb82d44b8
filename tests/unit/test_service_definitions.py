"""Service definitions: batch twins and inheritance cases a user expects to work."""

from __future__ import annotations

import dataclasses
from typing import Any

import msgspec
import pytest

from infinitic_py import task
from infinitic_py.errors import ServiceDefinitionError
from infinitic_py.service import define_service


@dataclasses.dataclass(kw_only=True)
class KwOnlyPair:
    a: int
    b: str


class KwOnlyStruct(msgspec.Struct, kw_only=True):
    a: int
    b: str


class WithKwOnlyPair:
    @task
    def go(self, a: int, b: str) -> None: ...

    @go.batch(max_messages=2, max_seconds=1)
    def go_batch(self, items: dict[str, KwOnlyPair]) -> None: ...


class WithKwOnlyStruct:
    @task
    def go(self, a: int, b: str) -> None: ...

    @go.batch(max_messages=2, max_seconds=1)
    def go_batch(self, items: dict[str, KwOnlyStruct]) -> None: ...


@pytest.mark.parametrize(
    ("service", "wrapper"), [(WithKwOnlyPair, KwOnlyPair), (WithKwOnlyStruct, KwOnlyStruct)]
)
def test_keyword_only_batch_inputs_are_built_by_keyword(
    service: type[Any], wrapper: type[Any]
) -> None:
    batch = define_service(service()).methods["go"].batch
    assert batch is not None
    assert batch.wrap((1, "x")) == wrapper(a=1, b="x")


def test_twins_returning_dict_of_none_or_not_annotated_are_accepted() -> None:
    class NoneValues:
        @task
        def go(self, x: int) -> None: ...

        @go.batch(max_messages=2, max_seconds=1)
        def go_batch(self, xs: dict[str, int]) -> dict[str, None]:
            return dict.fromkeys(xs)

    class NotAnnotated:
        @task
        def go(self, x: int) -> int:
            return x

        @go.batch(max_messages=2, max_seconds=1)
        def go_batch(self, xs: dict[str, int]):  # type: ignore[no-untyped-def]
            return xs

    for svc in (NoneValues(), NotAnnotated()):
        assert define_service(svc).methods["go"].batch is not None


class Base:
    @task(timeout=3.0)
    def go(self, x: int) -> int:
        return x

    @go.batch(max_messages=5, max_seconds=1)
    def go_batch(self, xs: dict[str, int]) -> dict[str, int]:
        return xs


class Child(Base):
    def go(self, x: int) -> int:  # a plain override: still the task, with the base's options
        return x + 1

    def go_batch(self, xs: dict[str, int]) -> dict[str, int]:
        return {t: x + 1 for t, x in xs.items()}


def test_a_plain_override_in_a_subclass_is_what_runs() -> None:
    go = define_service(Child()).methods["go"]
    assert go.fn is not None and go.fn(1) == 2
    assert go.batch is not None and go.batch.fn({"t": 1}) == {"t": 2}
    assert go.timeout == 3.0 and go.batch.limits.max_messages == 5
    base = define_service(Base()).methods["go"]  # the base class is untouched
    assert base.fn is not None and base.fn(1) == 1



class _Named(msgspec.Struct, kw_only=True):
    first: str


class NamedStruct(_Named):  # msgspec lists kw_only fields last: ("last", "first")
    last: str


@dataclasses.dataclass(frozen=True)
class Reordered:  # the task's parameter names, in another order
    last: str
    first: str


class GreetStruct:
    @task
    def greet(self, first: str, last: str) -> str:
        return f"{first} {last}"

    @greet.batch(max_messages=2, max_seconds=1)
    def greet_batch(self, items: dict[str, NamedStruct]) -> dict[str, str]:
        return {t: f"{i.first} {i.last}" for t, i in items.items()}


class GreetReordered:
    @task
    def greet(self, first: str, last: str) -> str:
        return f"{first} {last}"

    @greet.batch(max_messages=2, max_seconds=1)
    def greet_batch(self, items: dict[str, Reordered]) -> dict[str, str]:
        return {t: f"{i.first} {i.last}" for t, i in items.items()}


@pytest.mark.parametrize("service", [GreetStruct, GreetReordered])
def test_batch_input_fields_named_like_the_parameters_get_their_namesakes(
    service: type[Any],
) -> None:
    """Same-typed fields in another order than the parameters were filled by position: first
    and last swapped, silently."""
    batch = define_service(service()).methods["greet"].batch
    assert batch is not None
    built = batch.wrap(("Ada", "Lovelace"))
    assert (built.first, built.last) == ("Ada", "Lovelace")


class SameNameTwin:
    @task
    def go(self, x: int) -> int:
        return x

    @go.batch(max_messages=5, max_seconds=1)  # type: ignore[no-redef]
    def go(self, xs: dict[str, int]) -> dict[str, int]:
        return xs


class OverridesSameNameTwin(SameNameTwin):
    def go(self, x: int) -> int:
        return x + 1


class OverridesWithStaticmethod(Base):
    @staticmethod
    def go(x: int) -> int:
        return x + 1


class OverridesWithNone(Base):
    go = None  # type: ignore[assignment]


class OverridesTwinWithStaticmethod(Base):
    @staticmethod
    def go_batch(xs: dict[str, int]) -> dict[str, int]:
        return xs


@pytest.mark.parametrize(
    ("service", "message"),
    [
        (OverridesSameNameTwin, "batch twin has the same name"),
        (OverridesWithStaticmethod, "with a staticmethod"),
        (OverridesWithNone, "with a NoneType"),
        (OverridesTwinWithStaticmethod, "twin 'go_batch' of task 'go' with a staticmethod"),
    ],
)
def test_an_override_that_would_not_run_is_a_definition_error(
    service: type[Any], message: str
) -> None:
    """These overrides were ignored: the base class's function ran instead."""
    with pytest.raises(ServiceDefinitionError, match=message) as info:
        define_service(service())
    assert f"{service.__qualname__}." in str(info.value)
