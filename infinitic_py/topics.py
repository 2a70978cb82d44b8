"""Topic and subscription names: pure functions, one place."""

from __future__ import annotations

import re

from infinitic_py.priority import Band, split_band

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


# Pulsar's NamedEntity alphabet for a topic's local name (letters, digits, _ - = : .) and the
# longest topic name: what a worker accepts as a reply topic (worker/envelope_rules.py), hence
# what a client's name may hold (check_client_name).
TOPIC_LOCAL_NAME = r"[A-Za-z0-9_\-=:.]+"
MAX_TOPIC_CHARS = 512


_NAMED_ENTITY = re.compile(TOPIC_LOCAL_NAME)  # the same rule for tenants and namespaces


def check_namespace(tenant: object, namespace: object) -> tuple[str, str]:
    """``(tenant, namespace)`` if Pulsar can name topics with them, else a one-line
    ``ValueError`` (``TypeError`` for a non-str): a namespace given with its tenant
    (``"public/default"``) waited out pulsar-client's 30 s operation timeout at the first
    dispatch, an empty tenant failed there with InvalidTopicName."""
    for what, value in (("tenant", tenant), ("namespace", namespace)):
        if not isinstance(value, str):
            raise TypeError(f"{what} must be a str, got {type(value).__name__}")
        if _NAMED_ENTITY.fullmatch(value) is None:
            hint = ""
            if what == "namespace" and value.count("/") == 1:
                given_tenant, _, name = value.partition("/")
                hint = f" (give it without its tenant: tenant={given_tenant!r}, " \
                       f"namespace={name!r})"
            raise ValueError(f"invalid {what} {value!r}: letters, digits and _ - = : . only"
                             f"{hint}")
    assert isinstance(tenant, str) and isinstance(namespace, str)
    return tenant, namespace


def check_client_name(name: str, tenant: str, namespace: str) -> str:
    """``name`` if its ``response:`` topic is one a worker answers on, else a one-line
    ``ValueError``: a worker dead-letters a task whose reply topic is not (``invalid_envelope``),
    so every awaited result of such a client would never come."""
    if not isinstance(name, str):
        raise TypeError(f"a client name is a str, got {type(name).__name__}")
    longest = MAX_TOPIC_CHARS - len(response_topic(tenant, namespace, ""))
    if _NAMED_ENTITY.fullmatch(name) is None or len(name) > longest:
        shown = repr(name) if len(name) <= 60 else f"{name[:57]!r}... ({len(name)} characters)"
        raise ValueError(f"client name {shown} cannot name its response topic: use letters, "
                         f"digits and _ - = : . only, at most {longest} characters")
    return name


def response_topic(tenant: str, namespace: str, client_name: str) -> str:
    """Where the results of tasks dispatched by one client come back."""
    return _full(tenant, namespace, RESPONSE_TOPIC_PREFIX + client_name)


PARTITION_SUFFIX = "-partition-"


def unpartitioned(topic: str) -> str:
    """The topic a partition belongs to: ``"<topic>-partition-<n>"`` -> ``"<topic>"`` (a
    non-partitioned topic is returned as it is). Pulsar names a message's topic by partition."""
    base, sep, index = topic.rpartition(PARTITION_SUFFIX)
    return base if sep and index.isdigit() else topic


_PARTITION_NAME = re.compile(r"-partition-\d+$")


def check_service_name(name: object) -> str:
    """``name`` if it can name a service's topics, else a one-line ``ValueError`` (``TypeError``
    if it is no str) saying why: a name the broker would read as another path, another
    service's priority band or a partition makes a dispatch fail late, or go elsewhere."""
    if not isinstance(name, str):
        raise TypeError(f"a service name is a str, got {type(name).__name__}")
    problem = None
    if not name.strip():
        problem = "it is empty"
    elif "/" in name:
        problem = "'/' separates a topic's tenant, namespace and local name"
    elif any(ch < " " or ch == "\x7f" for ch in name):
        problem = "it holds a control character"
    elif split_band(name)[1] is not Band.NORMAL:
        problem = (f"the suffix names a priority band's topic of service "
                   f"{split_band(name)[0]!r} (use priority=... to dispatch there)")
    elif _PARTITION_NAME.search(name):
        problem = "Pulsar reserves the suffix '-partition-N' for a topic's partitions"
    if problem is not None:
        raise ValueError(f"invalid service name {name!r}: {problem}")
    return name
