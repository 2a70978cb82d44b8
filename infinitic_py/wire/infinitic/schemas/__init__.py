"""Infinitic 0.18.4 envelope schemas: the exact definitions the JVM registers, parsed for fastavro.

Two views of each schema:

- ``definition(envelope)``: the byte-exact string the JVM registers with Pulsar (producers must
  register this very string so the broker reuses the JVM's schema version; see ``NOTICE.md``);
- ``parsed(definition)``: the same schema made usable by fastavro. Infinitic's schemas declare
  some records with ``"namespace": ""`` (``FailedTaskError``, ...) and later name them bare from
  inside a non-empty namespace; Java Avro falls back to the null namespace there, fastavro does
  not. ``normalize`` gives null-namespace types a synthetic namespace and rewrites references with
  Java's rule. Avro binary carries no type names, so the bytes are unchanged; the normalized form
  is only ever used locally.
"""

from __future__ import annotations

import copy
import functools
import json
from enum import Enum
from importlib import resources
from typing import Any

import fastavro

VERSION = "0.18.4"
_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_NULL_NAMESPACE = "_nons"


class Envelope(Enum):
    """Infinitic's Pulsar envelopes, by schema file stem."""

    TASK_EXECUTOR = "serviceExecutorEnvelope"  # task-executor:<S>, task-retry:<S>
    TASK_EVENTS = "serviceEventEnvelope"  # task-events:<S>
    CLIENT = "clientEnvelope"  # response:<client>
    WORKFLOW_ENGINE = "workflowEngineEnvelope"  # workflow-engine:<W>
    TASK_TAG = "serviceTagEnvelope"  # task-tag:<S>


@functools.cache
def definition(envelope: Envelope) -> str:
    """The exact schema definition string the JVM registers for this envelope."""
    name = f"{envelope.value}-{VERSION}.pulsar-def.json"
    return resources.files(__name__).joinpath(name).read_text(encoding="utf-8")


def normalize(schema: Any) -> Any:
    """A copy of ``schema`` in which every named type has a namespace fastavro resolves (see above)."""
    out = copy.deepcopy(schema)
    defined: set[str] = set()

    def walk(node: Any, namespace: str) -> Any:
        if isinstance(node, str):
            if node in _PRIMITIVES:
                return node
            full = node if "." in node else (f"{namespace}.{node}" if namespace else node)
            if full in defined:
                return full
            if f"{_NULL_NAMESPACE}.{node}" in defined:  # Java's fallback to the null namespace
                return f"{_NULL_NAMESPACE}.{node}"
            raise ValueError(f"unknown Avro type {node!r} in namespace {namespace!r}")
        if isinstance(node, list):
            return [walk(branch, namespace) for branch in node]
        kind = node["type"]
        if kind in ("record", "error", "enum", "fixed"):
            if "." in node["name"]:
                own, name = node["name"].rsplit(".", 1)
            else:
                own, name = node.get("namespace", namespace), node["name"]
            own = own or _NULL_NAMESPACE
            node["namespace"], node["name"] = own, name
            defined.add(f"{own}.{name}")
            if kind in ("record", "error"):
                for field in node["fields"]:
                    field["type"] = walk(field["type"], own)
            return node
        if kind == "array":
            node["items"] = walk(node["items"], namespace)
        elif kind == "map":
            node["values"] = walk(node["values"], namespace)
        elif isinstance(kind, (list, dict)):
            node["type"] = walk(kind, namespace)
        return node

    return walk(out, out.get("namespace", ""))


@functools.lru_cache(maxsize=64)
def parsed(definition_text: str) -> Any:
    """fastavro's parsed form of a schema definition string (cached: writer schemas repeat)."""
    return fastavro.parse_schema(normalize(json.loads(definition_text)))


def reader_schema(envelope: Envelope) -> Any:
    """fastavro's parsed form of the 0.18.4 schema of ``envelope`` (what Python reads into)."""
    return parsed(definition(envelope))
