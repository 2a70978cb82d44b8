"""Topic and subscription names: pure functions, one place."""

from __future__ import annotations

WORKER_SUBSCRIPTION = "infinitic-py-worker"
# The durable subscription that keeps dead letters (created by the worker and by the `dlq`
# commands, read by `infinitic-py dlq`): a topic without a subscription keeps nothing.
DLQ_SUBSCRIPTION = "infinitic-py-dlq"
SERVICE_TOPIC_PREFIX = "task-executor:"
DLQ_TOPIC_PREFIX = "task-executor-dlq:"
RESPONSE_TOPIC_PREFIX = "response:"


def _full(tenant: str, namespace: str, local: str) -> str:
    return f"persistent://{tenant}/{namespace}/{local}"


def service_topic(tenant: str, namespace: str, service: str) -> str:
    """Where tasks of ``service`` are dispatched and retried."""
    return _full(tenant, namespace, SERVICE_TOPIC_PREFIX + service)


def dead_letter_topic(tenant: str, namespace: str, service: str) -> str:
    """Where tasks of ``service`` that failed for good (or could not be decoded) end up."""
    return _full(tenant, namespace, DLQ_TOPIC_PREFIX + service)


def response_topic(tenant: str, namespace: str, client_name: str) -> str:
    """Where the results of tasks dispatched by one client come back."""
    return _full(tenant, namespace, RESPONSE_TOPIC_PREFIX + client_name)


PARTITION_SUFFIX = "-partition-"


def unpartitioned(topic: str) -> str:
    """The topic a partition belongs to: ``"<topic>-partition-<n>"`` -> ``"<topic>"`` (a
    non-partitioned topic is returned as it is). Pulsar names a message's topic by partition."""
    base, sep, index = topic.rpartition(PARTITION_SUFFIX)
    return base if sep and index.isdigit() else topic
