"""Throwaway Pulsar namespaces for interop tests (admin REST, stdlib only)."""

from __future__ import annotations

import contextlib
import time
import urllib.parse
import uuid
from collections.abc import Iterator

from infinitic_py.admin import PulsarAdmin, PulsarAdminError

TENANT = "public"


def create_infinitic_namespace(admin: PulsarAdmin, namespace: str) -> None:
    """A namespace with the schema policies Infinitic applies (WIRE.md §2)."""
    base = f"/admin/v2/namespaces/{TENANT}/{namespace}"
    admin.put_json(base, {})
    admin.put_json(f"{base}/schemaCompatibilityStrategy", "BACKWARD_TRANSITIVE")
    admin.post_json(f"{base}/schemaValidationEnforced", True)
    admin.post_json(f"{base}/isAllowAutoUpdateSchema", True)


@contextlib.contextmanager
def jvm_like_namespace(admin: PulsarAdmin, prefix: str) -> Iterator[str]:
    """A throwaway namespace ``<prefix>-<hex>`` set up as a JVM Infinitic cluster's: its schema
    policies, auto topic creation off (new topics partitioned in 3); dropped at exit."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    create_infinitic_namespace(admin, name)
    admin.post_json(f"/admin/v2/namespaces/{TENANT}/{name}/autoTopicCreation",
                    {"allowAutoTopicCreation": False, "topicType": "partitioned",
                     "defaultNumPartitions": 3})
    try:
        yield name
    finally:
        drop_namespace(admin, name)


def quote(local: str) -> str:
    return urllib.parse.quote(local, safe="")


def drop_namespace(admin: PulsarAdmin, namespace: str) -> None:
    """Delete every topic of ``namespace`` (force), then the namespace; best effort."""
    with contextlib.suppress(PulsarAdminError):
        for domain in ("persistent", "non-persistent"):
            for partitioned in admin.get_json(f"/admin/v2/{domain}/{TENANT}/{namespace}/partitioned") or []:
                local = partitioned.rsplit("/", 1)[-1]
                with contextlib.suppress(PulsarAdminError):
                    admin._request(
                        "DELETE", f"/admin/v2/{domain}/{TENANT}/{namespace}/{quote(local)}/partitions?force=true"
                    )
            for topic in admin.get_json(f"/admin/v2/{domain}/{TENANT}/{namespace}") or []:
                local = topic.rsplit("/", 1)[-1]
                with contextlib.suppress(PulsarAdminError):
                    admin._request("DELETE", f"/admin/v2/{domain}/{TENANT}/{namespace}/{quote(local)}?force=true")
        admin._request("DELETE", f"/admin/v2/namespaces/{TENANT}/{namespace}")


def wait_consumer(admin: PulsarAdmin, namespace: str, local: str, subscription: str, timeout: float) -> None:
    """Poll until ``subscription`` of the partitioned topic ``local`` has a consumer."""
    path = f"/admin/v2/persistent/{TENANT}/{namespace}/{quote(local)}/partitioned-stats"
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(PulsarAdminError):
            stats = admin.get_json(path) or {}
            if (stats.get("subscriptions", {}).get(subscription) or {}).get("consumers"):
                return
        if time.monotonic() > deadline:
            raise AssertionError(f"no consumer on {local} / {subscription} after {timeout:.0f}s")
        time.sleep(0.25)
