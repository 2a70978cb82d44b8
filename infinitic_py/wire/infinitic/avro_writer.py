"""A compiled Avro binary writer for the envelope schemas (pure).

fastavro's ``schemaless_writer`` validates every branch of every union it meets, recursively, to
pick one: on Infinitic's envelopes (nested ``[null, record]`` unions everywhere) that cost ~70 µs
per event, two events per task. This writer is compiled once per schema into closures that pick a
union branch directly: ``None`` -> ``null``; a ``(name, record)`` tuple or a ``-type`` key (the
tags ``envelopes`` writes) -> that record; the only other branch; else the Python type; else (an
ambiguous union) fastavro's validation picks, as fastavro would. The bytes are fastavro's
(checked on every golden message and outcome in ``tests/unit/test_infinitic_codec.py``).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from fastavro.validation import validate

Write = Callable[[bytearray, Any], None]

_PRIMITIVE_TYPES: dict[str, tuple[type, ...]] = {
    "null": (type(None),), "boolean": (bool,), "int": (int,), "long": (int,),
    "float": (float, int), "double": (float, int), "string": (str,), "bytes": (bytes,),
}


def _long(out: bytearray, value: int) -> None:
    if 0 <= value < 64:  # one byte (most ints here: indexes, lengths, retry counters)
        out.append(value << 1)
        return
    n = (value << 1) ^ (value >> 63)
    while n & ~0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _string(out: bytearray, value: str) -> None:
    data = value.encode()
    size = len(data)
    if size < 64:
        out.append(size << 1)
    else:
        _long(out, size)
    out += data


def _bytes(out: bytearray, value: bytes) -> None:
    _long(out, len(value))
    out += value


def _null(out: bytearray, value: Any) -> None:
    if value is not None:
        raise ValueError(f"{value!r} is not null")


def _boolean(out: bytearray, value: bool) -> None:
    out.append(1 if value else 0)


def _float(out: bytearray, value: float) -> None:
    out += struct.pack("<f", value)


def _double(out: bytearray, value: float) -> None:
    out += struct.pack("<d", value)


_PRIMITIVES: dict[str, Write] = {
    "null": _null, "boolean": _boolean, "int": _long, "long": _long, "float": _float,
    "double": _double, "string": _string, "bytes": _bytes,
}


class _Compiler:
    def __init__(self) -> None:
        self.named: dict[str, Write] = {}
        self.schemas: dict[str, Any] = {}

    def compile(self, node: Any) -> Write:
        if isinstance(node, str):
            if node in _PRIMITIVES:
                return _PRIMITIVES[node]
            named = self.named
            return lambda out, value: named[node](out, value)  # resolved when first written
        if isinstance(node, list):
            return self._union(node)
        kind = node["type"]
        if isinstance(kind, (list, dict)):
            return self.compile(kind)
        if kind in _PRIMITIVES:
            return _PRIMITIVES[kind]
        if kind in ("record", "error"):
            return self._record(node)
        if kind == "enum":
            index = {s: i for i, s in enumerate(node["symbols"])}
            write: Write = lambda out, value: _long(out, index[value])  # noqa: E731
            return self._name(node, write)
        if kind == "array":
            item = self.compile(node["items"])

            def array(out: bytearray, value: Any) -> None:
                if value:
                    _long(out, len(value))
                    for v in value:
                        item(out, v)
                out.append(0)

            return array
        if kind == "map":
            val = self.compile(node["values"])

            def map_(out: bytearray, value: Any) -> None:
                if value:
                    _long(out, len(value))
                    for k, v in value.items():
                        _string(out, k)
                        val(out, v)
                out.append(0)

            return map_
        raise ValueError(f"unsupported Avro type {kind!r}")

    def _name(self, node: Any, write: Write) -> Write:
        name = node["name"] if "." in node["name"] or not node.get("namespace") \
            else f"{node['namespace']}.{node['name']}"
        self.named[name] = write
        self.schemas[name] = node
        return write

    def _record(self, node: Any) -> Write:
        fields: list[tuple[str, Any, Write]] = []

        def record(out: bytearray, value: Any) -> None:
            get = value.get
            for name, default, write in fields:
                write(out, get(name, default))

        self._name(node, record)  # before its fields: a record may refer to itself
        for f in node["fields"]:
            fields.append((f["name"], f.get("default"), self.compile(f["type"])))
        return record

    def _union(self, branches: list[Any]) -> Write:
        writers = [self.compile(b) for b in branches]
        if len(branches) == 2 and "null" in branches:  # [null, X] / [X, null]: no choice to make
            null_at = branches.index("null")
            other_at = 1 - null_at
            other = writers[other_at]
            null_byte, other_byte = null_at << 1, other_at << 1

            def optional(out: bytearray, value: Any) -> None:
                if value is None:
                    out.append(null_byte)
                else:
                    out.append(other_byte)
                    other(out, value)

            return optional
        names = [b if isinstance(b, str) else b.get("type") if b.get("type") not in
                 ("record", "error", "enum") else self._full(b) for b in branches]
        by_name = {n: i for i, n in enumerate(names) if isinstance(n, str)}
        short = {n.rsplit(".", 1)[-1]: i for n, i in by_name.items()}
        null = by_name.get("null")
        others = [i for i in range(len(branches)) if i != null]
        schemas = self.schemas

        def pick(value: Any) -> int:
            if value is None and null is not None:
                return null
            if len(others) == 1:
                return others[0]
            if isinstance(value, dict) and "-type" in value:
                tag = value["-type"]
                found = by_name.get(tag, short.get(tag))
                if found is not None:
                    return found
            for i in others:  # by Python type for primitives
                prim = names[i]
                if prim in _PRIMITIVE_TYPES and isinstance(value, _PRIMITIVE_TYPES[prim]) and \
                        not (prim != "boolean" and isinstance(value, bool)):
                    return i
            for i in others:  # ambiguous: as fastavro, the first branch that validates
                schema = branches[i]
                if isinstance(schema, str) and schema in schemas:
                    schema = schemas[schema]
                if validate(value, schema, raise_errors=False):
                    return i
            raise ValueError(f"no branch of union {names} for {value!r}")

        def union(out: bytearray, value: Any) -> None:
            if isinstance(value, tuple):
                name, value = value
                i = by_name.get(name, short.get(name))
                if i is None:
                    raise ValueError(f"no branch {name!r} in union {names}")
            else:
                i = pick(value)
            _long(out, i)
            writers[i](out, value)

        return union

    @staticmethod
    def _full(node: Any) -> str:
        name: str = node["name"]
        return name if "." in name or not node.get("namespace") else f"{node['namespace']}.{name}"


def compile_writer(schema: Any) -> Callable[[Any], bytes]:
    """``schema``: a normalized Avro schema (plain JSON form, names qualified as
    ``schemas.normalize`` leaves them). Returns ``record -> Avro binary``."""
    write = _Compiler().compile(schema)

    def encode(record: Any) -> bytes:
        out = bytearray()
        write(out, record)
        return bytes(out)

    return encode
