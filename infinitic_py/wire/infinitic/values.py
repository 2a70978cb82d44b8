"""Python values <-> Infinitic ``SerializedData`` (the JSON Jackson/kotlinx read and write).

The JVM decodes a task's arguments and result with the *declared* types of the service interface
method (no type tags), so the Python side encodes with msgspec and decodes with the Python
method's type hints. What maps to what (JVM declared type -> Python type hint -> JSON):

=============================================  ================================  =====================
JVM type (Jackson / kotlinx)                   Python hint                       JSON on the wire
=============================================  ================================  =====================
``void`` / ``Unit`` / null result              ``None``                          ``type=NULL``, no bytes
``String``, ``char``                           ``str``                           string
``int``/``long``/``short``/``byte`` (boxed)    ``int``                           number
``double``/``float``, ``BigDecimal``           ``float``, ``decimal.Decimal``    number
``boolean``                                    ``bool``                          true / false
``T?`` / nullable                              ``T | None``                      value or null
``List<T>``, ``Set<T>``, arrays                ``list[T]``, ``set[T]``, tuple    array
``Map<String, V>`` (``Map<Int, V>``)           ``dict[str, V]`` (``dict[int,V]``)  object (keys as strings)
``byte[]``                                     ``bytes``                         base64 string
data class / POJO                              ``msgspec.Struct`` / dataclass    object by property name
  (renamed properties: ``@JsonProperty``,       (``rename="camel"`` or
  ``@SerialName``)                              ``msgspec.field(name=...)``)
``enum`` (constant ``RED``)                    ``enum.Enum`` whose *value* is    string ``"RED"``
                                               the constant name
``Instant`` / ``OffsetDateTime``               ``datetime`` with a tzinfo        ISO-8601 string
``LocalDateTime``                              naive ``datetime``                ISO-8601 string
``LocalDate`` / ``LocalTime``                  ``date`` / ``time``               ISO-8601 string
``Duration``                                   ``timedelta``                     ISO-8601 (``PT1.5S``)
``UUID``                                       ``uuid.UUID``                     string
kotlinx sealed class (``#klass`` discriminator) tagged Structs:                  object with
                                               ``tag_field="#klass"``,           ``"#klass": "<FQCN>"``
                                               ``tag="<FQCN or @SerialName>"``
=============================================  ================================  =====================

Rules that follow from the JVM mappers (see ``NOTES.md``): unknown JSON properties are ignored on
both sides; kotlinx omits properties equal to their default in what the JVM sends, so Python
Structs need the same defaults; kotlinx requires nullable properties without a default to be
present (msgspec writes every field unless ``omit_defaults`` is set: keep it unset).

Not mappable (each raises ``ValueMappingError`` for the task, never crashes the worker): values
msgspec cannot encode (arbitrary objects), JSON that does not fit the hint, ``AVRO_WITH_SCHEMA``
data (workflow tasks only), a method whose JVM return type is ``Object``/``Any`` or abstract without
``@JsonTypeInfo`` (the JVM cannot decode it: the mistake shows up on the JVM side). Known lossy
cases: ``float('nan')``/``inf`` encode as ``null``; an ``IntEnum`` travels by its number, which
Jackson reads as an ordinal: use string values equal to the JVM constant names.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from infinitic_py.wire.infinitic.envelopes import SerializedData

NULL = SerializedData(b"", "NULL", {})
_JSON_TYPES = frozenset({"JSON", "JSON_JACKSON", "JSON_KOTLIN"})  # the last two: before 0.15
_encoder = msgspec.json.Encoder(decimal_format="number")


class ValueMappingError(TypeError):
    """A value that does not map between Python and the JVM's declared type (fails its task).

    A ``TypeError``: what the executor's seam expects of an output that cannot be encoded."""


def encode_value(value: Any) -> SerializedData:
    """``SerializedData`` of a Python value (``None`` -> ``NULL``), as the JVM's Jackson reads it."""
    if value is None:
        return NULL
    try:
        return SerializedData(_encoder.encode(value), "JSON", {})
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValueMappingError(
            f"cannot send a {type(value).__qualname__} to the JVM as JSON: {exc}"
        ) from exc


def decode_value(data: SerializedData, hint: Any = Any) -> Any:
    """The Python value of ``data``, converted to ``hint`` (raises ``ValueMappingError``)."""
    if data.kind == "NULL":
        if hint is Any or _accepts_none(hint):
            return None
        raise ValueMappingError(f"got null where {_name(hint)} is required")
    if data.kind not in _JSON_TYPES:
        raise ValueMappingError(f"SerializedData of type {data.kind} is not supported")
    try:
        return _decoder(hint).decode(data.data)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ValueMappingError(f"cannot read {_preview(data.data)} as {_name(hint)}: {exc}") from exc


_DECODERS: dict[Any, msgspec.json.Decoder[Any]] = {}


def _decoder(hint: Any) -> msgspec.json.Decoder[Any]:
    """A decoder per type hint (a third of ``msgspec.json.decode(type=...)``'s time per call)."""
    try:
        found = _DECODERS.get(hint)
    except TypeError:  # an unhashable hint
        return msgspec.json.Decoder(hint)
    if found is None:
        found = msgspec.json.Decoder(hint)
        if len(_DECODERS) < 1024:  # the parameter types of the services: a bounded set
            _DECODERS[hint] = found
    return found


def decode_args(params: Sequence[SerializedData], hints: Sequence[Any]) -> list[Any]:
    """The arguments of a task, each converted to the matching parameter hint."""
    if len(params) != len(hints):
        raise ValueMappingError(f"the task has {len(params)} argument(s), the method takes {len(hints)}")
    out = []
    for index, (param, hint) in enumerate(zip(params, hints, strict=True)):
        try:
            out.append(decode_value(param, hint))
        except ValueMappingError as exc:
            raise ValueMappingError(f"argument {index}: {exc}") from exc
    return out


def _accepts_none(hint: Any) -> bool:
    if hint is None or hint is type(None):
        return True
    try:
        msgspec.convert(None, hint)
    except (msgspec.ValidationError, TypeError):
        return False
    return True


def _name(hint: Any) -> str:
    return getattr(hint, "__qualname__", None) or repr(hint)


def _preview(data: bytes, limit: int = 60) -> str:
    text = data.decode("utf-8", "replace")
    return text if len(text) <= limit else text[: limit - 3] + "..."
