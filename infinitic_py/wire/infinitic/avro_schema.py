"""The schema walk shared by the compiled Avro reader and writer (pure).

``SchemaCompiler.compile(node)`` turns a normalized Avro schema (plain JSON, names qualified as
``schemas.normalize`` leaves them) into one function per node, bottom-up; a subclass says what
each kind of node becomes (``avro_reader``: ``(data, pos) -> (value, pos)``; ``avro_writer``:
``(out, value) -> None``). Named types are compiled once: a later reference reuses the function,
and a reference from inside the type being defined (a recursive record) resolves when first called.

``records``: Avro record full name -> ``msgspec.Struct`` class whose encoded field names are the
record's field names in the same order (checked here): the reader builds such records as that
class (positionally, no dict and no conversion), and the writer reads its attributes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def full_name(node: Mapping[str, Any]) -> str:
    """The full name of a named type (record, error, enum)."""
    name: str = node["name"]
    return name if "." in name or not node.get("namespace") else f"{node['namespace']}.{name}"


def struct_fields(cls: type, node: Mapping[str, Any]) -> tuple[str, ...]:
    """The attribute names of ``cls`` for the fields of record ``node``, in the record's order.
    Raises ``ValueError`` unless its encoded field names are the record's, in the same order."""
    wire = tuple(f["name"] for f in node["fields"])
    encoded = tuple(getattr(cls, "__struct_encode_fields__", ()))
    if encoded != wire:
        raise ValueError(f"{cls.__name__} fields {encoded} are not {full_name(node)}'s {wire}")
    return tuple(cls.__struct_fields__)  # type: ignore[attr-defined]


def generate(lines: list[str], scope: dict[str, Any]) -> Any:
    """The function ``lines`` define (the first: ``def record(...)``), ``scope`` its globals.

    Records are read and written by straight-line functions generated once per record type (as
    ``dataclasses`` generates ``__init__``): no loop over the fields and no list per call, a
    third of a record's time. The source is made of field counts, Avro field names (``repr``)
    and Struct attribute names (identifiers) only."""
    exec("\n".join(lines), scope)
    return scope["record"]


class SchemaCompiler(Generic[F]):
    """Compiles schema nodes; subclasses give the functions of each kind (see the module doc)."""

    primitives: Mapping[str, F]

    def __init__(self, records: Mapping[str, type] | None = None) -> None:
        self.records: Mapping[str, type] = records or {}
        self.named: dict[str, F] = {}
        self.schemas: dict[str, Any] = {}  # named type -> its schema node

    def compile(self, node: Any) -> F:
        if isinstance(node, str):
            if node in self.primitives:
                return self.primitives[node]
            if node in self.named:
                return self.named[node]
            named = self.named  # defined above us (a recursive record): resolved when called
            late: Any = lambda *args: named[node](*args)  # noqa: E731
            return late  # type: ignore[no-any-return]
        if isinstance(node, list):
            return self.union(node)
        kind = node["type"]
        if isinstance(kind, (list, dict)):
            return self.compile(kind)
        if kind in self.primitives:
            return self.primitives[kind]
        if kind in ("record", "error"):
            return self.record(node)
        if kind == "enum":
            return self.define(node, self.enum(list(node["symbols"])))
        if kind == "array":
            return self.array(self.compile(node["items"]))
        if kind == "map":
            return self.map(self.compile(node["values"]))
        raise ValueError(f"unsupported Avro type {kind!r}")

    def declare(self, node: Mapping[str, Any]) -> None:
        """Register a named type's schema (a record: before its fields are compiled)."""
        self.schemas[full_name(node)] = node

    def define(self, node: Mapping[str, Any], function: F) -> F:
        """Register a named type's function (and its schema)."""
        self.declare(node)
        self.named[full_name(node)] = function
        return function

    def branch_name(self, branch: Any) -> str | None:
        """The full name of a union branch if it is a named type (else None)."""
        if isinstance(branch, str):
            return branch if branch in self.schemas else None
        if isinstance(branch, dict) and branch.get("type") in ("record", "error", "enum"):
            return full_name(branch)
        return None

    def is_record(self, name: str | None) -> bool:
        return name is not None and self.schemas[name]["type"] in ("record", "error")

    # --- what a subclass provides ------------------------------------------------------------

    def record(self, node: Mapping[str, Any]) -> F:
        raise NotImplementedError

    def enum(self, symbols: list[str]) -> F:
        raise NotImplementedError

    def array(self, item: F) -> F:
        raise NotImplementedError

    def map(self, values: F) -> F:
        raise NotImplementedError

    def union(self, branches: list[Any]) -> F:
        raise NotImplementedError
