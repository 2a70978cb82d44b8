"""A compiled Avro binary reader for the envelope schemas, when a message's writer schema is the
reader's own (the usual case: the JVM and Python write the 0.18.4 definitions). Without
``records`` it returns what fastavro's ``schemaless_reader(..., return_record_name=True,
return_record_name_override=True)`` returns (checked in ``tests/unit/test_infinitic_avro_writer.py``),
without its per-call setup; with ``records`` (see ``avro_schema``) those records come out as
their ``msgspec.Struct`` directly (no dict, no conversion: ``ExecuteTask`` on the hot path).
Another writer schema goes through fastavro's resolution."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Mapping
from typing import Any

from infinitic_py.wire.infinitic.avro_schema import (
    SchemaCompiler,
    full_name,
    generate,
    struct_fields,
)

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


def _size(data: bytes, pos: int) -> tuple[int, int]:
    """A length prefix: one byte for lengths below 64 (the usual case)."""
    b = data[pos]
    if b < 0x80 and not b & 1:
        return b >> 1, pos + 1
    size, pos = _long(data, pos)
    if size < 0:
        raise ValueError(f"negative length {size}")
    return size, pos


def _string(data: bytes, pos: int) -> tuple[str, int]:
    size, pos = _size(data, pos)
    end = pos + size
    if end > len(data):
        raise EOFError("string past the end")
    return data[pos:end].decode(), end


def _bytes(data: bytes, pos: int) -> tuple[bytes, int]:
    size, pos = _size(data, pos)
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


# Field types a generated record reads inline (``{v}``: the field's variable, ``{read}``: its
# reader, ``{item}``: the reader of an optional's value; ``size``: the payload's length): the
# usual case without a call, else the reader.
def _sized(kind: str, finish: str) -> list[str]:
    """A string or bytes: a length (one byte below 64), then the data."""
    return [
        "n = data[pos]",
        "if n < 0x80 and not n & 1:  # shorter than 64 bytes",
        "    end = pos + 1 + (n >> 1)",
        "    if end > size:",
        f"        raise EOFError('{kind} past the end')",
        f"    {{v}} = data[pos + 1:end]{finish}",
        "    pos = end",
        "else:",
        f"    {{v}}, pos = _{kind}(data, pos)",
    ]


_INT = [
    "n = data[pos]",
    "if n < 0x80:  # one byte",
    "    {v} = (n >> 1) ^ -(n & 1)",
    "    pos += 1",
    "else:",
    "    {v}, pos = _long(data, pos)",
]
_INLINE: dict[str, list[str]] = {
    '"string"': _sized("string", ".decode()"),
    '"bytes"': _sized("bytes", ""),
    '"int"': _INT,
    '"long"': _INT,
    '"boolean"': ["{v} = data[pos] != 0", "pos += 1"],
}
_OPTIONAL = [  # [null, X]
    "n = data[pos]",
    "if n == 0:",
    "    {v} = None",
    "    pos += 1",
    "elif n == 2:",
    "    {v}, pos = {item}(data, pos + 1)",
    "else:",
    "    raise ValueError(f'union index {{n}} out of range')",
]
_EMPTY = {  # an array or a map, usually empty (task tags, a value's meta)
    kind: ["if data[pos] == 0:", f"    {{v}} = {empty}", "    pos += 1", "else:",
           "    {v}, pos = {read}(data, pos)"]
    for kind, empty in (("array", "[]"), ("map", "{{}}"))
}
_CALL = ["{v}, pos = {read}(data, pos)"]


class _ReaderCompiler(SchemaCompiler[Read]):
    primitives: Mapping[str, Read] = {
        "null": _null, "boolean": _boolean, "int": _long, "long": _long, "float": _float,
        "double": _double, "string": _string, "bytes": _bytes,
    }

    def enum(self, symbols: list[str]) -> Read:
        def enum(data: bytes, pos: int) -> tuple[Any, int]:
            i, pos = _long(data, pos)
            return symbols[i], pos

        return enum

    def array(self, item: Read) -> Read:
        def array(data: bytes, pos: int) -> tuple[Any, int]:
            if data[pos] == 0:  # empty (the usual task tags)
                return [], pos + 1
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

    def map(self, values: Read) -> Read:
        def entry(data: bytes, pos: int) -> tuple[Any, int]:
            key, pos = _string(data, pos)
            value, pos = values(data, pos)
            return (key, value), pos

        entries = self.array(entry)  # a map is an array of entries on the wire

        def map_(data: bytes, pos: int) -> tuple[Any, int]:
            found, pos = entries(data, pos)
            return dict(found), pos

        return map_

    def record(self, node: Mapping[str, Any]) -> Read:
        cls = self.records.get(full_name(node))
        names = [f["name"] for f in node["fields"]]
        if cls is not None:
            struct_fields(cls, node)  # positional construction needs the same order
        # One straight-line function per record (``avro_schema.generate``): no loop, no list,
        # and the common field types read inline (``_INLINE``), with no call.
        self.declare(node)  # its fields may refer to it (a reference resolved when called)
        scope: dict[str, Any] = {"build": cls, "_string": _string, "_bytes": _bytes, "_long": _long}
        lines = ["def record(data, pos):", "    size = len(data)"]
        for i, f in enumerate(node["fields"]):
            kind = f["type"]
            scope[f"read{i}"] = self.compile(kind)
            template = _INLINE.get(json.dumps(kind))
            if template is None and isinstance(kind, list) and len(kind) == 2 and \
                    kind[0] == "null":
                scope[f"item{i}"] = self.compile(kind[1])
                template = _OPTIONAL
            elif template is None and isinstance(kind, dict):
                template = _EMPTY.get(kind["type"])
            lines.extend("    " + line.format(v=f"v{i}", read=f"read{i}", item=f"item{i}")
                         for line in template or _CALL)
        values = ", ".join(f"v{i}" for i in range(len(names)))
        built = f"build({values})" if cls is not None else \
            "{" + ", ".join(f"{name!r}: v{i}" for i, name in enumerate(names)) + "}"
        lines.append(f"    return {built}, pos")
        return self.define(node, generate(lines, scope))

    def union(self, branches: list[Any]) -> Read:
        readers = [self.compile(b) for b in branches]
        records = [name if self.is_record(name) else None for name in map(self.branch_name, branches)]
        tagged = sum(n is not None for n in records) > 1  # fastavro: (name, record) only then
        # a record read as its Struct is never tagged: its class tells the branch
        names = [None if n in self.records else n for n in records] if tagged else [None] * len(records)
        if len(branches) == 2 and "null" in branches:  # [null, X] / [X, null]
            null_at = branches.index("null")
            other = readers[1 - null_at]
            other_name = names[1 - null_at]
            null_byte, other_byte = null_at << 1, (1 - null_at) << 1

            def optional(data: bytes, pos: int) -> tuple[Any, int]:
                i = data[pos]
                if i == null_byte:
                    return None, pos + 1
                if i != other_byte:
                    raise ValueError(f"union index {i} out of range")
                value, end = other(data, pos + 1)
                return ((other_name, value) if other_name else value), end

            return optional

        def union(data: bytes, pos: int) -> tuple[Any, int]:
            i, pos = _long(data, pos)
            value, pos = readers[i](data, pos)
            name = names[i]
            if name is not None:
                return (name, value), pos
            return value, pos

        return union


def compile_reader(schema: Any, records: Mapping[str, type] | None = None) -> Callable[[bytes], Any]:
    """``schema``: normalized Avro JSON; ``records``: see ``avro_schema``. Returns ``payload ->
    value``; raises ``ValueError`` / ``EOFError`` / ``IndexError`` on a payload that is not of
    it, including trailing bytes."""
    read = _ReaderCompiler(records).compile(schema)

    def decode(payload: bytes) -> Any:
        value, pos = read(payload, 0)
        if pos != len(payload):
            raise ValueError(f"{len(payload) - pos} trailing bytes")
        return value

    return decode
