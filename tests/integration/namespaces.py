"""A throwaway namespace of the shared broker with some policies set (e.g. an unacked limit
that would disturb every other test), deleted with its topics afterwards."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator, Mapping

from infinitic_py.admin import PulsarAdmin


@contextlib.contextmanager
def throwaway_namespace(admin: PulsarAdmin, prefix: str,
                        policies: Mapping[str, int]) -> Iterator[str]:
    """``public/<prefix><random>`` with each ``policies`` item POSTed to
    ``/admin/v2/namespaces/public/<ns>/<policy>``; yields the namespace's name."""
    namespace = f"{prefix}{uuid.uuid4().hex[:8]}"
    admin.ensure_namespace("public", namespace)
    for policy, value in policies.items():
        admin.post_json(f"/admin/v2/namespaces/public/{namespace}/{policy}", value)
    try:
        yield namespace
    finally:
        try:
            for topic in admin.topics("public", namespace):
                admin.delete_topic(topic)
            admin._request("DELETE", f"/admin/v2/namespaces/public/{namespace}")
        except Exception as exc:  # left behind: harmless, named so that it can be removed
            print(f"namespace public/{namespace} not deleted: {exc}")
