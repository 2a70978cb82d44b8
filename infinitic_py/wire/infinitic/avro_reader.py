"""A compiled Avro binary reader for the envelope schemas, when a message's writer schema is the
reader's own (the usual case: the JVM and Python write the 0.18.4 definitions). It returns what
fastavro's ``schemaless_reader(..., return_record_name=True, return_record_name_override=True)``
returns (checked in ``tests/unit/test_infinitic_avro_writer.py``), without its per-call setup:
~4x faster on an ``ExecuteTask``. Another writer schema goes through fastavro's resolution."""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

Read = Callable[[bytes, int], tuple[Any, int]]


def _long(data: bytes, pos: int) -> tuple[int, int]:
    b = data[pos]
    pos += 1
    if not b & 0x80:  # one byte
        return (b >> 1) ^ -(b & 1), pos
    n = b & 0x7F
    shift = 7
    while b & 0x80:
        b = data[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        shift += 7
    return (n >> 1) ^ -(n & 1), pos


def _string(data: bytes, pos: int) -> tuple[str, int]:
    size, pos = _long(data, pos)
    end = pos + size
    if end > len(data):
        raise EOFError("string past the end")
    return data[pos:end].decode(), end


def _bytes(data: bytes, pos: int) -> tuple[bytes, int]:
    size, pos = _long(data, pos)
    end = pos + size
    if end > len(data):
        raise EOFError("bytes past the end")
    return data[pos:end], end


def _null(data: bytes, pos: int) -> tuple[None, int]:
    return None, pos


def _boolean(data: bytes, pos: int) -> tuple[bool, int]:
    return data[pos] != 0, pos + 1


def _float(data: bytes, pos: int) -> tuple[float, int]:
    return struct.unpack_from("<f", data, pos)[0], pos + 4


def _double(data: bytes, pos: int) -> tuple[float, int]:
    return struct.unpack_from("<d", data, pos)[0], pos + 8


_PRIMITIVES: dict[str, Read] = {
    "null": _null, "boolean": _boolean, "int": _long, "long": _long, "float": _float,
    "double": _double, "string": _string, "bytes": _bytes,
}


def _full(node: Any) -> str:
    name: str = node["name"]
    return name if "." in name or not node.get("namespace") else f"{node['namespace']}.{name}"


class _Compiler:
    def __init__(self) -> None:
        self.named: dict[str, Read] = {}
        self.kinds: dict[str, str] = {}

    def compile(self, node: Any) -> Read:
        if isinstance(node, str):
            if node in _PRIMITIVES:
                return _PRIMITIVES[node]
            named = self.named
            return lambda data, pos: named[node](data, pos)
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
            symbols = list(node["symbols"])

            def enum(data: bytes, pos: int) -> tuple[Any, int]:
                i, pos = _long(data, pos)
                return symbols[i], pos

            self.named[_full(node)] = enum
            self.kinds[_full(node)] = "enum"
            return enum
        if kind == "array":
            item = self.compile(node["items"])

            def array(data: bytes, pos: int) -> tuple[Any, int]:
                out: list[Any] = []
                while True:
                    count, pos = _long(data, pos)
                    if count == 0:
                        return out, pos
                    if count < 0:
                        count = -count
                        _, pos = _long(data, pos)  # block size
                    for _ in range(count):
                        v, pos = item(data, pos)
                        out.append(v)

            return array
        if kind == "map":
            val = self.compile(node["values"])

            def map_(data: bytes, pos: int) -> tuple[Any, int]:
                out: dict[str, Any] = {}
                while True:
                    count, pos = _long(data, pos)
                    if count == 0:
                        return out, pos
                    if count < 0:
                        count = -count
                        _, pos = _long(data, pos)
                    for _ in range(count):
                        k, pos = _string(data, pos)
                        out[k], pos = val(data, pos)

            return map_
        raise ValueError(f"unsupported Avro type {kind!r}")

    def _record(self, node: Any) -> Read:
        fields: list[tuple[str, Read]] = []

        def record(data: bytes, pos: int) -> tuple[Any, int]:
            out = {}
            for name, read in fields:
                out[name], pos = read(data, pos)
            return out, pos

        self.named[_full(node)] = record
        self.kinds[_full(node)] = "record"
        for f in node["fields"]:
            fields.append((f["name"], self.compile(f["type"])))
        return record

    def _union(self, branches: list[Any]) -> Read:
        readers = [self.compile(b) for b in branches]
        names: list[str | None] = []
        for b in branches:
            if isinstance(b, str):
                names.append(b if self.kinds.get(b) == "record" else None)
            elif b.get("type") in ("record", "error"):
                names.append(_full(b))
            else:
                names.append(None)
        tagged = sum(n is not None for n in names) > 1  # fastavro: (name, record) only then
        if len(branches) == 2 and "null" in branches:  # [null, X] / [X, null]
            null_at = branches.index("null")
            other = readers[1 - null_at]
            other_name = names[1 - null_at]

            def optional(data: bytes, pos: int) -> tuple[Any, int]:
                i = data[pos]
                if i == null_at << 1:
                    return None, pos + 1
                if i != (1 - null_at) << 1:
                    raise ValueError(f"union index {i} out of range")
                value, end = other(data, pos + 1)
                return ((other_name, value) if tagged and other_name else value), end

            return optional

        def union(data: bytes, pos: int) -> tuple[Any, int]:
            i, pos = _long(data, pos)
            value, pos = readers[i](data, pos)
            name = names[i]
            if tagged and name is not None:
                return (name, value), pos
            return value, pos

        return union


def compile_reader(schema: Any) -> Callable[[bytes], Any]:
    """``schema``: normalized Avro JSON. Returns ``payload -> value``; raises ``ValueError`` /
    ``EOFError`` / ``IndexError`` on a payload that is not of it, including trailing bytes."""
    read = _Compiler().compile(schema)

    def decode(payload: bytes) -> Any:
        value, pos = read(payload, 0)
        if pos != len(payload):
            raise ValueError(f"{len(payload) - pos} trailing bytes")
        return value

    return decode
