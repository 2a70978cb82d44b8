"""Pulsar schema-registry glue for Infinitic's topics with pulsar-client directly (the proofs in
``tests/interop/test_schema_registry.py``; the product uses ``transport/pulsar_schemas.py``):

- **produce** with ``InfiniticSchema(envelope)``: an AVRO ``SchemaInfo`` whose definition is the
  byte-exact string the JVM registers. The broker then finds the JVM's schema (same hash) and no
  new version appears. The payload is the codec's Avro binary, passed through unchanged;
- **consume** with the same schema object (a consumer's schema must be compatible with the topic's
  under ``schemaValidationEnforced``), then read each message by its *writer* version:
  ``message.int_schema_version()`` (or the 8-byte big-endian ``schema_version()``) looked up with
  ``WriterSchemas`` (the native client's ``get_schema_info`` or the admin REST API, cached per
  topic and version) and passed to ``envelopes.decode_*(payload, writer_definition)``.

Verified on Pulsar 4.2.4 (``tests/interop/test_schema_registry.py``): see ``NOTES.md``.
"""

from __future__ import annotations

import json
import re
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

import _pulsar
import pulsar

from infinitic_py.transport.pulsar_schemas import RawAvroSchema
from infinitic_py.wire.infinitic.schemas import Envelope, definition

# JVM SchemaInfo properties (Pulsar's AvroSchema adds them; they do not enter the schema hash)
JVM_SCHEMA_PROPERTIES = {"__alwaysAllowNull": "true", "__jsr310ConversionEnabled": "true"}
_PARTITION = re.compile(r"-partition-\d+$")


class InfiniticSchema(RawAvroSchema):
    """The AVRO schema of an Infinitic envelope, registered with the JVM's exact definition
    (the transport's ``RawAvroSchema``: bytes pass through, the codec does the Avro work)."""

    def __init__(self, envelope: Envelope) -> None:
        super().__init__(definition(envelope))
        self.envelope = envelope

    def __str__(self) -> str:
        return f"InfiniticSchema({self.envelope.value})"


def base_topic(topic: str) -> str:
    """``persistent://t/ns/x-partition-2`` -> ``persistent://t/ns/x`` (schemas live on the base)."""
    return _PARTITION.sub("", topic)


def native_fetcher(client: pulsar.Client) -> Callable[[str, int], str]:
    """Fetch a writer definition through the native client's binary-protocol schema lookup."""

    def fetch(topic: str, version: int) -> str:
        info = client._client.get_schema_info(topic, version)
        if info.schema_type() != _pulsar.SchemaType.AVRO:
            raise ValueError(f"{topic} schema version {version} is {info.schema_type()}, not AVRO")
        text: str = info.schema()
        return text

    return fetch


def rest_fetcher(admin_url: str, timeout: float = 10.0) -> Callable[[str, int], str]:
    """Fetch a writer definition with ``GET /admin/v2/schemas/{t}/{ns}/{topic}/schema/{version}``."""

    def fetch(topic: str, version: int) -> str:
        tenant, namespace, local = topic.split("://", 1)[-1].split("/", 2)
        path = f"/admin/v2/schemas/{tenant}/{namespace}/{urllib.parse.quote(local, safe='')}/schema/{version}"
        with urllib.request.urlopen(admin_url.rstrip("/") + path, timeout=timeout) as response:
            body = json.loads(response.read())
        if body.get("type") != "AVRO":
            raise ValueError(f"{topic} schema version {version} is {body.get('type')}, not AVRO")
        text: str = body["data"]
        return text

    return fetch


class WriterSchemas:
    """Writer definitions by (base topic, schema version), fetched once each (thread-safe).

    A schema version never changes once registered, so the cache needs no expiry. ``lookup`` may
    block on the network the first time a version is seen: call it from a thread in async code.
    """

    def __init__(self, fetch: Callable[[str, int], str]) -> None:
        self._fetch = fetch
        self._cache: dict[tuple[str, int], str] = {}
        self._lock = threading.Lock()

    def lookup(self, topic: str, version: int) -> str:
        key = (base_topic(topic), version)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        text = self._fetch(key[0], version)
        with self._lock:
            self._cache[key] = text
        return text

    def cached(self, topic: str, version: int) -> str | None:
        """The definition if already known (lets a hot path skip the thread hop)."""
        return self._cache.get((base_topic(topic), version))


def schema_version(message: Any) -> int | None:
    """The writer schema version of a received ``pulsar.Message`` (None: sent without schema)."""
    raw = message._message.int_schema_version()
    version = int(raw)
    return None if version < 0 else version
