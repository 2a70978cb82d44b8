"""Type hints of task methods -> the types msgspec decodes with: resolving hints, unwrapping
awaitables, ``O | Exception`` -> ``O``, ``dict[str, X]`` -> ``X``, a wrapper type's fields."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import msgspec

from infinitic_py.errors import ServiceDefinitionError


def type_hints(fn: Callable[..., Any], where: str) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn)
    except Exception as exc:  # NameError for an unresolvable forward reference, ...
        raise ServiceDefinitionError(f"{where}: cannot resolve type hints: {exc}") from None


def unwrap_awaitable(tp: Any, is_async: bool) -> Any:
    origin = typing.get_origin(tp)
    if not is_async and origin in (Coroutine, Awaitable):
        args = typing.get_args(tp)
        return args[-1] if args else Any
    return tp


def strip_exceptions(tp: Any) -> Any:
    """``O | Exception`` → ``O`` (a batch value may be an exception instance)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        kept = [
            a for a in typing.get_args(tp)
            if not (isinstance(a, type) and issubclass(a, BaseException))
        ]
        if len(kept) == 1:
            return kept[0]
        return typing.Union[tuple(kept)]  # noqa: UP007
    return tp


NOT_A_DICT: Any = object()


def dict_value_type(tp: Any) -> Any:
    """``dict[str, X]`` → X (``None`` → ``NoneType``); anything else → ``NOT_A_DICT``."""
    if typing.get_origin(tp) is dict:
        key, value = typing.get_args(tp)
        if key is str:
            return type(None) if value is None else value
    return NOT_A_DICT


def wrapper_fields(tp: Any) -> list[tuple[str, Any]] | None:
    """Fields, in constructor order, of a msgspec Struct, NamedTuple or dataclass; else None."""
    if isinstance(tp, type):
        if issubclass(tp, msgspec.Struct):
            hints = typing.get_type_hints(tp)
            return [(f, hints.get(f, Any)) for f in tp.__struct_fields__]
        if issubclass(tuple, tp) is False and issubclass(tp, tuple) and hasattr(tp, "_fields"):
            hints = typing.get_type_hints(tp)
            return [(f, hints.get(f, Any)) for f in tp._fields]
        if dataclasses.is_dataclass(tp):
            hints = typing.get_type_hints(tp)
            return [(f.name, hints.get(f.name, Any)) for f in dataclasses.fields(tp) if f.init]
    return None


def describe(tp: Any) -> str:
    return getattr(tp, "__name__", None) or repr(tp).replace("typing.", "")


def args_mismatch(param_names: tuple[str, ...], param_types: tuple[Any, ...],
                  encoded: bytes | msgspec.Raw, error: Exception) -> str:
    """Why ``encoded`` (the MessagePack array of a task's positional arguments) does not fit the
    parameters, for a user: how many arguments the task takes, or the first argument that does
    not fit, named, with msgspec's reason for it alone (its path relative to that argument).
    ``error`` (the whole array's) when neither applies. Called on the error path only."""
    try:
        raws = msgspec.msgpack.decode(encoded, type=list[msgspec.Raw])
    except msgspec.DecodeError:
        return str(error)
    if len(raws) != len(param_names):
        return (f"takes {len(param_names)} argument(s) ({', '.join(param_names)}), "
                f"got {len(raws)}")
    for name, tp, raw in zip(param_names, param_types, raws, strict=True):
        try:
            msgspec.msgpack.decode(raw, type=tp)
        except msgspec.ValidationError as exc:
            return f"argument {name!r} must be {describe(tp)}: {exc}"
    return str(error)
