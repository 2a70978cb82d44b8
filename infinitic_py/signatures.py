"""Type hints of task methods -> the types msgspec decodes with: resolving hints, unwrapping
awaitables, ``O | Exception`` -> ``O``, ``dict[str, X]`` -> ``X``, a wrapper type's fields."""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any

import msgspec
import msgspec.inspect

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
        short = len(raws) < len(param_names)  # defaults are applied by a client with the class
        return (f"takes {len(param_names)} argument(s) ({', '.join(param_names)}), "
                f"got {len(raws)}" + (" (a task sent by name gets no default values: send "
                                      "every argument, in order)" if short else ""))
    for name, tp, raw in zip(param_names, param_types, raws, strict=True):
        try:
            msgspec.msgpack.decode(raw, type=tp)
        except msgspec.ValidationError as exc:
            return f"argument {name!r} must be {describe(tp)}: {exc}"
    return str(error)


def positional_caller(fn: Callable[..., Any], params: list[inspect.Parameter],
                is_async: bool) -> Callable[..., Any]:
    """``fn`` called with every argument in signature order (how a task's arguments travel):
    its keyword-only parameters, if any, get theirs by keyword."""
    keywords = tuple(p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY)
    if not keywords:
        return fn
    first = len(params) - len(keywords)  # keyword-only parameters come last
    if is_async:
        async def call_async(*args: Any) -> Any:
            return await fn(*args[:first], **dict(zip(keywords, args[first:], strict=True)))
        return call_async

    def call(*args: Any) -> Any:
        return fn(*args[:first], **dict(zip(keywords, args[first:], strict=True)))
    return call


def check_plain_function(fn: Any, where: str) -> None:
    """A task method or batch twin is a plain ``def`` / ``async def`` returning its result:
    a staticmethod or classmethod under ``@task`` lost its ``self`` (the first parameter was
    dropped as one), a generator's result is a generator no wire can carry."""
    if isinstance(fn, staticmethod | classmethod):
        raise ServiceDefinitionError(
            f"{where}: is a {type(fn).__name__}, which has no self: make it a plain method "
            "(def name(self, ...))")
    if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
        raise ServiceDefinitionError(
            f"{where}: is a generator (it yields): a task returns its result (e.g. a list)")


def check_codable(hints: Iterable[tuple[str, Any]], where: str) -> None:
    """Every parameter type and the return type (``("return", type)``) is one msgspec can
    decode and encode without hooks, else ``ServiceDefinitionError`` naming it: a plain class
    (or a part of one, ``list[Plain]``) was accepted, and every task of the method then failed."""
    for name, tp in hints:
        bad = _uncodable(tp)
        if bad is not None:
            what = "the return type" if name == "return" else f"parameter {name!r}"
            shown = repr(tp).replace("typing.", "") if typing.get_origin(tp) else describe(tp)
            raise ServiceDefinitionError(
                f"{where}: {what} ({shown}) holds {bad}, which msgspec cannot encode or "
                "decode: use a msgspec.Struct, a dataclass, a NamedTuple, a TypedDict or builtin "
                "types")


def _uncodable(tp: Any) -> str | None:
    """The part of ``tp`` msgspec cannot handle without hooks, or None."""
    try:
        info = msgspec.inspect.type_info(tp)
    except (TypeError, ValueError):
        return describe(tp)
    seen: set[int] = set()
    stack: list[Any] = [info]
    while stack:
        node = stack.pop()
        if id(node) in seen:  # a recursive Struct refers to itself
            continue
        seen.add(id(node))
        if isinstance(node, msgspec.inspect.CustomType):
            if node.cls is not object:  # object is Any to msgspec
                return describe(node.cls)
            continue
        for attr in ("item_type", "key_type", "value_type", "type"):
            child = getattr(node, attr, None)
            if isinstance(child, msgspec.inspect.Type):
                stack.append(child)
        for attr in ("item_types", "types"):
            stack.extend(getattr(node, attr, None) or ())
        stack.extend(field.type for field in getattr(node, "fields", None) or ())
    return None
