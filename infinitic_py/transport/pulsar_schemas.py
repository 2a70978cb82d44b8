"""Pulsar schema registry glue the transport needs for a wire dialect whose topics carry an Avro
schema (Infinitic's): a producer schema that registers a *given* definition and passes the
dialect's pre-encoded bytes through, and the writer definition of a received message's schema
version, fetched once per (topic, version) in the consumer's receive thread, never on the loop.

Checked on Pulsar 4.2.4 (``tests/interop/test_schema_registry.py``): producing with the exact
definition a JVM registered reuses its version (no new version); the broker compares AVRO schemas
by parsed equality, and the JVM's ``__alwaysAllowNull`` properties do not count.
"""

from __future__ import annotations

import re
import threading
from typing import Any

import _pulsar
import pulsar

_PARTITION = re.compile(r"-partition-\d+$")


class RawAvroSchema(pulsar.schema.Schema):  # type: ignore[misc]
    """An AVRO ``SchemaInfo`` with ``definition`` as is; ``encode`` / ``decode`` pass bytes
    through (the dialect does the Avro work). ``Schema.__init__`` is skipped on purpose: it would
    register an indented re-dump of the definition."""

    def __init__(self, definition: str) -> None:
        self._record_cls = bytes
        self._client = None
        self.definition = definition
        self._schema_info = _pulsar.SchemaInfo(_pulsar.SchemaType.AVRO, "", definition)

    def encode(self, obj: bytes) -> bytes:
        if not isinstance(obj, bytes):
            raise TypeError(f"RawAvroSchema sends encoded bytes, got {type(obj).__name__}")
        return obj

    def decode(self, data: bytes) -> bytes:
        return data

    def decode_message(self, msg: Any) -> bytes:
        data: bytes = msg.data()
        return data

    def __str__(self) -> str:
        return "RawAvroSchema"


def base_topic(topic: str) -> str:
    """``persistent://t/ns/x-partition-2`` -> ``persistent://t/ns/x`` (schemas live on the base)."""
    return _PARTITION.sub("", topic)


class WriterSchemas:
    """Writer definitions by (base topic, version), fetched with the native client's
    binary-protocol lookup, once each (a registered version never changes). Thread-safe;
    ``of`` may block on the network the first time: call it off the event loop."""

    def __init__(self, native_client: Any) -> None:
        self._client = native_client
        self._cache: dict[tuple[str, int], str | None] = {}
        self._lock = threading.Lock()

    def of(self, native_message: Any, topic: str) -> str | None:
        """The writer definition of a received native message (None: no schema version, or a
        lookup that failed: the dialect then reads with its own schema)."""
        version = int(native_message.int_schema_version())
        if version < 0:
            return None
        key = (base_topic(topic), version)
        try:
            return self._cache[key]
        except KeyError:
            pass
        try:
            info = self._client.get_schema_info(key[0], version)
            text: str | None = info.schema() if info.schema_type() == _pulsar.SchemaType.AVRO else None
        except Exception:  # a transient lookup failure is not cached
            return None
        with self._lock:
            self._cache[key] = text
        return text
