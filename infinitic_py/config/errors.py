"""The messages users read when a worker configuration is wrong: one line naming the source,
the key path and what was expected, e.g.::

    worker.yaml: unknown key 'concurency' at services[0] (did you mean 'concurrency'?)
    worker.yaml: services[0].concurrency: expected int >= 1, got 'ten'

When msgspec refuses the data, ``locate`` walks the data and the schema together (our own
validation, on msgspec's type information) to find the first problem in document order: its
path, its kind and the type expected there. msgspec's error text is never parsed.
``semantic_problem`` checks what msgspec's constraints cannot express.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import msgspec.inspect as mi

from infinitic_py.config.schema import WorkerConfig, one_line
from infinitic_py.config.sources import (
    ROOT_TYPE,
    Path,
    container,
    field,
    field_names,
    show,
    suggest,
    where,
)
from infinitic_py.transport.urls import EXPECTED, invalid_broker_address, transport_kind

_DOTTED = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
_CLASS_PATH_RE: Final = re.compile(rf"{_DOTTED}:{_DOTTED}")
_DOTTED_RE: Final = re.compile(_DOTTED)
_IDENTIFIER_RE: Final = re.compile(r"[A-Za-z_]\w*")
_SERVICE_NAME_RE: Final = re.compile(r"[\w.\-]+")


@dataclass(frozen=True, slots=True)
class Problem:
    """The first thing wrong in the data: at ``path``, of ``kind``; ``key`` for an unknown or
    missing key, ``expected`` / ``value`` for a value of the wrong type or out of range."""

    path: Path
    kind: Literal["unknown", "missing", "invalid"]
    key: str = ""
    expected: mi.Type | None = None
    value: Any = None
    names: tuple[str, ...] = ()  # the keys allowed where a key is unknown


def locate(value: Any, t: mi.Type = ROOT_TYPE, path: Path = ()) -> Problem | None:
    """The first problem of ``value`` against ``t``, in document order (as msgspec meets it)."""
    if isinstance(t, mi.UnionType):
        if value is None and any(isinstance(m, mi.NoneType) for m in t.types):
            return None
        if isinstance(value, dict | list):
            inner = container(t)
            if inner is not t:
                return locate(value, inner, path)
        if any(locate(value, m, path) is None for m in t.types):
            return None
        return Problem(path, "invalid", expected=t, value=value)
    if isinstance(t, mi.StructType):
        if not isinstance(value, dict):
            return Problem(path, "invalid", expected=t, value=value)
        for key, item in value.items():
            f = field(t, key) if isinstance(key, str) else None
            if f is None:
                if t.forbid_unknown_fields:
                    return Problem(path, "unknown", key=str(key), names=tuple(field_names(t)))
                continue
            problem = locate(item, f.type, (*path, f.encode_name))
            if problem is not None:
                return problem
        for f in t.fields:
            if f.required and f.encode_name not in value:
                return Problem(path, "missing", key=f.encode_name)
        return None
    if isinstance(t, mi.DictType):
        if not isinstance(value, dict):
            return Problem(path, "invalid", expected=t, value=value)
        for key, item in value.items():
            if not isinstance(key, str):
                return Problem((*path, str(key)), "invalid", expected=t.key_type, value=key)
            problem = locate(item, t.value_type, (*path, key))
            if problem is not None:
                return problem
        return None
    if isinstance(t, mi.ListType | mi.VarTupleType):
        if not isinstance(value, list | tuple) or len(value) < (t.min_length or 0):
            return Problem(path, "invalid", expected=t, value=value)
        for i, item in enumerate(value):
            problem = locate(item, t.item_type, (*path, i))
            if problem is not None:
                return problem
        return None
    return None if _scalar_ok(value, t) else Problem(path, "invalid", expected=t, value=value)


def _scalar_ok(value: Any, t: mi.Type) -> bool:
    if isinstance(t, mi.AnyType):
        return True
    if isinstance(t, mi.NoneType):
        return value is None
    if isinstance(t, mi.BoolType):
        return isinstance(value, bool)
    if isinstance(t, mi.StrType):
        return isinstance(value, str) and len(value) >= (t.min_length or 0)
    if isinstance(t, mi.LiteralType):
        return any(value == v and type(value) is type(v) for v in t.values)
    if isinstance(t, mi.IntType | mi.FloatType):
        if isinstance(value, bool) or not isinstance(value, int | float) or (
                isinstance(t, mi.IntType) and not isinstance(value, int)):
            return False
        number = float(value)
        return not ((t.ge is not None and number < t.ge) or (t.gt is not None and number <= t.gt)
                    or (t.le is not None and number > t.le)
                    or (t.lt is not None and number >= t.lt))
    return True


def message(problem: Problem | None, source: str, provenance: Mapping[Path, str],
            fallback: str) -> str:
    """The one-line message of a problem (``fallback``: msgspec's own text, one-lined, in the
    unexpected case where our walk finds nothing wrong)."""
    if problem is None:
        return f"{source}: {one_line(fallback)}"
    path = problem.path
    if problem.kind == "unknown":
        return (f"{source}: unknown key {problem.key!r} at {where(path)}"
                f"{suggest(problem.key, problem.names)}{origin((*path, problem.key), provenance)}")
    if problem.kind == "missing":
        return (f"{source}: missing required key {problem.key!r} at {where(path)}"
                f"{origin(path, provenance)}")
    assert problem.expected is not None
    return (f"{source}: {where(path)}: expected {describe(problem.expected)}, "
            f"got {show(problem.value)}{origin(path, provenance)}")


def origin(path: Sequence[str | int], provenance: Mapping[Path, str]) -> str:
    """`` (set by VAR)`` when the key (or a section holding it) came from the environment."""
    for n in range(len(path), 0, -1):
        label = provenance.get(tuple(path[:n]))
        if label is not None:
            return f" (set by {label})"
    return ""


def describe(t: mi.Type) -> str:
    """What a schema type accepts, in words: ``int >= 1``, ``number > 0 or null``..."""
    if isinstance(t, mi.UnionType):
        members = [m for m in t.types if not isinstance(m, mi.NoneType)]
        words = [describe(m) for m in members]
        if len(members) < len(t.types):
            words.append("null")
        return " or ".join(words)
    if isinstance(t, mi.IntType | mi.FloatType):
        return _describe_number("int" if isinstance(t, mi.IntType) else "number", t)
    if isinstance(t, mi.BoolType):
        return "true or false"
    if isinstance(t, mi.StrType):
        return "a string"
    if isinstance(t, mi.NoneType):
        return "null"
    if isinstance(t, mi.LiteralType):
        return "one of " + ", ".join(repr(v) for v in t.values)
    if isinstance(t, mi.StructType):
        return "a mapping"
    if isinstance(t, mi.DictType):
        return "a mapping"
    if isinstance(t, mi.ListType | mi.VarTupleType):
        if t.min_length:
            return "a non-empty list" if t.min_length == 1 else f"a list of >= {t.min_length}"
        return "a list"
    return "a valid value"


def _describe_number(kind: str, t: mi.IntType | mi.FloatType) -> str:
    low = (t.ge, ">=") if t.ge is not None else (t.gt, ">") if t.gt is not None else None
    high = (t.le, "<=") if t.le is not None else (t.lt, "<") if t.lt is not None else None
    if low and high and low[1] == ">=" and high[1] == "<=":
        return f"{kind} from {num(low[0])} to {num(high[0])}"
    bounds = [f"{op} {num(v)}" for v, op in (b for b in (low, high) if b is not None)]
    return f"{kind} {' and '.join(bounds)}" if bounds else kind


def num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else str(v)


def semantic_problem(config: WorkerConfig) -> tuple[Path, str] | None:
    """Checks msgspec's constraints cannot express; the first problem found, or None."""
    p = config.pulsar
    if transport_kind(p.url) is None or p.url.partition("://")[2] in ("", "/"):
        return ("pulsar", "url"), f"expected {EXPECTED}, got {p.url!r}"
    bad_address = invalid_broker_address(p.url)
    if bad_address is not None:
        return ("pulsar", "url"), (f"expected {EXPECTED}, got {p.url!r} ({bad_address!r} is not "
                                   "a host with a port from 0 to 65535)")
    if p.admin_url is not None and not re.match(r"https?://[^/]", p.admin_url):
        return ("pulsar", "admin_url"), (
            f"expected http://HOST:PORT or https://HOST:PORT (or null), got {p.admin_url!r}"
        )
    for key in ("tenant", "namespace"):
        value = getattr(p, key)
        if not _SERVICE_NAME_RE.fullmatch(value):
            return ("pulsar", key), f"expected a name of letters, digits, '_', '-', '.', got {value!r}"
    if p.auth_params is not None and p.auth_plugin is None:
        return ("pulsar", "auth_params"), "is set but pulsar.auth_plugin is null"
    w = config.worker
    if w.name is not None and not w.name.strip():
        return ("worker", "name"), "expected a non-empty string or null"
    if not w.http_host.strip():
        return ("worker", "http_host"), "expected a host name or address"
    seen: dict[str, int] = {}
    for i, svc in enumerate(config.services):
        if not _CLASS_PATH_RE.fullmatch(svc.class_path):
            return ("services", i, "class"), (
                f"expected a 'module:Class' import path, got {svc.class_path!r}"
            )
        if svc.name is not None and not _SERVICE_NAME_RE.fullmatch(svc.name):
            return ("services", i, "name"), (
                f"expected a name of letters, digits, '_', '-', '.', got {svc.name!r}"
            )
        for key in ("tenant", "namespace"):  # as pulsar.tenant / pulsar.namespace
            value = getattr(svc, key)
            if value is not None and not _SERVICE_NAME_RE.fullmatch(value):
                return ("services", i, key), (
                    f"expected a name of letters, digits, '_', '-', '.', got {value!r}")
        if svc.event_handler and svc.wire != "infinitic":
            return ("services", i, "event_handler"), (
                f"applies to wire: infinitic only (this service's wire is {svc.wire!r})"
            )
        identity = svc.name or svc.class_path
        if identity in seen:
            return ("services", i), (
                f"duplicates services[{seen[identity]}] ({identity!r}); give one a distinct name"
            )
        seen[identity] = i
        if svc.retry is not None:
            r = svc.retry
            if r.maximum_seconds < r.minimum_seconds:
                return ("services", i, "retry", "maximum_seconds"), (
                    f"expected >= minimum_seconds ({num(r.minimum_seconds)}), "
                    f"got {num(r.maximum_seconds)}"
                )
            for j, name in enumerate(r.ignored_exceptions):
                if not _DOTTED_RE.fullmatch(name):
                    return ("services", i, "retry", "ignored_exceptions", j), (
                        f"expected an exception name (ValueError or pkg.module.Error), got {name!r}"
                    )
        for method in svc.batch:
            if not _IDENTIFIER_RE.fullmatch(method):
                return ("services", i, "batch"), f"expected method names as keys, got {method!r}"
    return None


