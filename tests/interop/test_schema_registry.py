"""Pulsar's schema registry with pulsar-client's native API, on the real broker (no JVM needed).

The JVM's registration is emulated over REST (same definition string and properties as the JVM
registers, see the golden samples); ``test_jvm_interop.py`` repeats the version check against
schemas the real JVM registered.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import _pulsar
import pulsar
import pytest
from pulsar.schema import AvroSchema

from infinitic_py.admin import PulsarAdmin
from infinitic_py.wire.infinitic import envelopes as env
from infinitic_py.wire.infinitic import outcomes, values
from infinitic_py.wire.infinitic.registry import (
    JVM_SCHEMA_PROPERTIES,
    InfiniticSchema,
    WriterSchemas,
    native_fetcher,
    rest_fetcher,
    schema_version,
)
from infinitic_py.wire.infinitic.schemas import Envelope, definition
from tests.integration.conftest import BrokerInfo

from .namespaces import TENANT, create_infinitic_namespace, drop_namespace, quote

LOCAL = "task-executor:Svc"


@pytest.fixture
def namespace(admin: PulsarAdmin) -> Iterator[str]:
    name = f"py-reg-{uuid.uuid4().hex[:8]}"
    create_infinitic_namespace(admin, name)
    admin.put_json(f"/admin/v2/persistent/{TENANT}/{name}/{quote(LOCAL)}/partitions", 3)
    # what the JVM registers for task-executor:<S> (type, definition, properties)
    admin.post_json(
        f"/admin/v2/schemas/{TENANT}/{name}/{quote(LOCAL)}/schema",
        {"type": "AVRO", "schema": definition(Envelope.TASK_EXECUTOR), "properties": JVM_SCHEMA_PROPERTIES},
    )
    yield name
    drop_namespace(admin, name)


@pytest.fixture
def client(pulsar_broker: BrokerInfo) -> Iterator[pulsar.Client]:
    c = pulsar.Client(pulsar_broker.service_url, logger=_quiet_logger())
    yield c
    c.close()


def _quiet_logger() -> pulsar.ConsoleLogger:
    return pulsar.ConsoleLogger(pulsar.LoggerLevel.Error)


def _versions(admin: PulsarAdmin, namespace: str) -> list[int]:
    body = admin.get_json(f"/admin/v2/schemas/{TENANT}/{namespace}/{quote(LOCAL)}/schemas")
    return sorted(int(v["version"]) for v in body["getSchemaResponses"])


def _task() -> env.ExecuteTask:
    return outcomes.client_task("Svc", "echo", [values.encode_value("x")], "py-client")


def test_python_producer_reuses_the_jvm_schema_version_and_reads_by_writer_version(
    admin: PulsarAdmin, pulsar_broker: BrokerInfo, client: pulsar.Client, namespace: str
) -> None:
    topic = f"persistent://{TENANT}/{namespace}/{LOCAL}"
    assert _versions(admin, namespace) == [0]
    consumer = client.subscribe(
        topic,
        "task-executor-subscription",
        consumer_type=pulsar.ConsumerType.Shared,
        schema=InfiniticSchema(Envelope.TASK_EXECUTOR),
        initial_position=pulsar.InitialPosition.Earliest,
    )
    producer = client.create_producer(topic, schema=InfiniticSchema(Envelope.TASK_EXECUTOR))
    task = _task()
    producer.send(env.encode_execute_task(task))
    assert _versions(admin, namespace) == [0]  # no new schema version

    message = consumer.receive(10_000)
    version = schema_version(message)
    assert version == 0
    assert message.value() == message.data()  # the schema passes the Avro bytes through
    for fetch in (native_fetcher(client), rest_fetcher(pulsar_broker.admin_url)):
        writers = WriterSchemas(fetch)
        writer = writers.lookup(message.topic_name(), version)
        assert writer == definition(Envelope.TASK_EXECUTOR)
        assert writers.cached(topic + "-partition-0", version) == writer  # cached per base topic
        assert env.decode_execute_task(message.data(), writer) == task
    consumer.acknowledge(message)


def test_a_schemaless_producer_is_refused_and_a_changed_schema_adds_a_version(
    admin: PulsarAdmin, client: pulsar.Client, namespace: str
) -> None:
    """What the exact definition avoids (and proof that the version check above can fail)."""
    topic = f"persistent://{TENANT}/{namespace}/{LOCAL}"
    with pytest.raises(_pulsar.IncompatibleSchema):
        client.create_producer(topic)  # bytes: refused under schemaValidationEnforced
    changed = json.loads(definition(Envelope.TASK_EXECUTOR))
    changed["fields"].append({"name": "extra", "type": ["null", "string"], "default": None})
    client.create_producer(topic, schema=AvroSchema(None, schema_definition=changed)).close()
    assert _versions(admin, namespace) == [0, 1]


def test_stock_avro_schema_with_the_same_schema_reuses_the_version(
    admin: PulsarAdmin, client: pulsar.Client, namespace: str
) -> None:
    """pulsar-client's AvroSchema registers an indented text; the broker still matches it (it
    compares parsed schemas), but its encode() would need fastavro dicts: InfiniticSchema is used."""
    topic = f"persistent://{TENANT}/{namespace}/{LOCAL}"
    stock = AvroSchema(None, schema_definition=json.loads(definition(Envelope.TASK_EXECUTOR)))
    assert stock.schema_info().schema() != definition(Envelope.TASK_EXECUTOR)
    client.create_producer(topic, schema=stock).close()
    assert _versions(admin, namespace) == [0]
