"""A compiled Avro binary writer for the envelope schemas (pure).

fastavro's ``schemaless_writer`` validates every branch of every union it meets, recursively, to
pick one: on Infinitic's envelopes (nested ``[null, record]`` unions everywhere) that cost ~70 µs
per event, two events per task. This writer is compiled once per schema into closures that pick a
union branch directly: ``None`` -> ``null``; a ``(name, record)`` tuple or a ``-type`` key (the
tags ``envelopes`` writes) or a Struct of ``records`` (see ``avro_schema``: written from its
attributes, no dict) -> that record; the only other branch; else the Python type; else (an
ambiguous union) fastavro's validation picks, as fastavro would. The bytes are fastavro's
(checked on every golden message and outcome in ``tests/unit/test_infinitic_codec.py``).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from typing import Any

from fastavro.validation import validate

from infinitic_py.wire.infinitic.avro_schema import (
    SchemaCompiler,
    full_name,
    generate,
    struct_fields,
)

Write = Callable[[bytearray, Any], None]

_PRIMITIVE_TYPES: dict[str, tuple[type, ...]] = {
    "null": (type(None),), "boolean": (bool,), "int": (int,), "long": (int,),
    "float": (float, int), "double": (float, int), "string": (str,), "bytes": (bytes,),
}


def write_long(out: bytearray, value: int) -> None:
    if 0 <= value < 64:  # one byte (most ints here: indexes, lengths, retry counters)
        out.append(value << 1)
        return
    n = (value << 1) ^ (value >> 63)
    while n & ~0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def write_string(out: bytearray, value: str) -> None:
    data = value.encode()
    size = len(data)
    if size < 64:
        out.append(size << 1)
    else:
        write_long(out, size)
    out += data


def _bytes(out: bytearray, value: bytes) -> None:
    write_long(out, len(value))
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


class _WriterCompiler(SchemaCompiler[Write]):
    primitives: Mapping[str, Write] = {
        "null": _null, "boolean": _boolean, "int": write_long, "long": write_long,
        "float": _float, "double": _double, "string": write_string, "bytes": _bytes,
    }

    def enum(self, symbols: list[str]) -> Write:
        index = {s: i for i, s in enumerate(symbols)}
        return lambda out, value: write_long(out, index[value])

    def array(self, item: Write) -> Write:
        def array(out: bytearray, value: Any) -> None:
            if value:
                write_long(out, len(value))
                for v in value:
                    item(out, v)
            out.append(0)

        return array

    def map(self, values: Write) -> Write:
        def map_(out: bytearray, value: Any) -> None:
            if value:
                write_long(out, len(value))
                for k, v in value.items():
                    write_string(out, k)
                    values(out, v)
            out.append(0)

        return map_

    def record(self, node: Mapping[str, Any]) -> Write:
        cls = self.records.get(full_name(node))
        attributes = struct_fields(cls, node) if cls is not None else None
        # One straight-line function per record (``avro_schema.generate``): a dict's fields by
        # name (with their defaults), a Struct's by attribute.
        self.declare(node)  # its fields may refer to it (a reference resolved when called)
        scope: dict[str, Any] = {}
        lines = ["def record(out, value):", "    if type(value) is dict:", "        get = value.get"]
        for i, f in enumerate(node["fields"]):
            scope[f"write{i}"], scope[f"default{i}"] = self.compile(f["type"]), f.get("default")
            lines.append(f"        write{i}(out, get({f['name']!r}, default{i}))")
        lines.append("    else:")
        if attributes is None:
            lines.append(f"        raise TypeError(f'{{value!r}} is not a {node['name']} record')")
        else:
            lines.extend(f"        write{i}(out, value.{a})" for i, a in enumerate(attributes))
        return self.define(node, generate(lines, scope))

    def union(self, branches: list[Any]) -> Write:
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
        names = [self.branch_name(b) or (b if isinstance(b, str) else b.get("type"))
                 for b in branches]
        by_name = {n: i for i, n in enumerate(names) if isinstance(n, str)}
        short = {n.rsplit(".", 1)[-1]: i for n, i in by_name.items()}
        by_class = {self.records[n]: i for n, i in by_name.items() if n in self.records}
        null = by_name.get("null")
        others = [i for i in range(len(branches)) if i != null]
        schemas = self.schemas

        def pick(value: Any) -> int:
            if value is None and null is not None:
                return null
            found = by_class.get(type(value))
            if found is not None:
                return found
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
            write_long(out, i)
            writers[i](out, value)

        return union


def compile_writer(schema: Any, records: Mapping[str, type] | None = None) -> Callable[[Any], bytes]:
    """``schema``: a normalized Avro schema (plain JSON form, names qualified as
    ``schemas.normalize`` leaves them); ``records``: see ``avro_schema``. Returns ``record ->
    Avro binary``."""
    write = _WriterCompiler(records).compile(schema)

    def encode(record: Any) -> bytes:
        out = bytearray()
        write(out, record)
        return bytes(out)

    return encode


def field_writers(schema: Any, record: str, records: Mapping[str, type] | None = None
                  ) -> dict[str, Write]:
    """The writer of each field of the record named ``record`` in ``schema``, by field name: to
    write an envelope's parts on their own (``events``)."""
    compiler = _WriterCompiler(records)
    compiler.compile(schema)  # defines every named type a field may refer to
    return {f["name"]: compiler.compile(f["type"]) for f in compiler.schemas[record]["fields"]}
