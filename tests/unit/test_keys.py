"""Routing keys with a spread (infinitic_py/keys.py)."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infinitic_py.keys import check_key_spread, routing_key, spread_for


@given(st.one_of(st.text(min_size=1), st.binary(min_size=1)), st.text(), st.integers(1, 64))
def test_a_task_always_gets_the_same_key_among_spread(key: str | bytes, task_id: str,
                                                     spread: int) -> None:
    routed = routing_key(key, task_id, spread)
    assert routed == routing_key(key, task_id, spread)
    base = key if isinstance(key, str) else key.hex()
    if spread == 1:
        assert routed == base
    else:
        assert routed is not None
        prefix, _, index = routed.rpartition("#")
        assert prefix == base and 0 <= int(index) < spread


def test_no_batch_key_no_partition_key() -> None:
    assert routing_key(None, "t1", 4) is None


def test_tasks_of_a_key_spread_evenly_over_its_sub_keys() -> None:
    counts = Counter(routing_key("hot", uuid.uuid4().hex, 4) for _ in range(8000))
    assert len(counts) == 4
    assert max(counts.values()) < 1.1 * 2000


def test_key_spread_option() -> None:
    assert check_key_spread(3) == 3
    assert check_key_spread({"Email": 4}) == {"Email": 4}
    assert spread_for({"Email": 4}, "Email") == 4
    assert spread_for({"Email": 4}, "Other") == 1
    for bad in (0, -1, True, 1.5, 5000):
        with pytest.raises(ValueError, match="key_spread"):
            check_key_spread(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"key_spread\['Email'\]"):
        check_key_spread({"Email": 0})


async def _sent_keys(atomic: bool, key_spread: int) -> list[str | None]:
    """The partition keys of what a client sends for a ``many()`` of 8 tasks of one batch key."""
    from typing import Any

    from infinitic_py import AsyncClient, Call
    from infinitic_py.transport import create_transport

    transport = create_transport(f"memory://keys-{uuid.uuid4().hex[:8]}")
    sent: list[Any] = []
    create = transport.create_producer

    async def capturing(topic: str, *, schema: str | None = None,
                        partitioner: Any = None) -> Any:
        producer = await create(topic, schema=schema, partitioner=partitioner)
        send_many = producer.send_many

        async def capture(messages: Any) -> Any:
            sent.extend(messages)
            return await send_many(messages)

        producer.send_many = capture  # type: ignore[method-assign]
        return producer

    transport.create_producer = capturing  # type: ignore[method-assign]
    try:
        async with AsyncClient("memory://", transport=transport, results=False,
                               key_spread=key_spread) as client:
            calls = [Call(i, meta={"batchKey": "tenant"}) for i in range(8)]
            await client.service("Svc").run.many(calls, atomic=atomic)
    finally:
        await transport.close()
    return [m.partition_key for m in sent]


async def test_an_atomic_bulk_of_one_key_keeps_a_sub_key() -> None:
    # A bulk carries a key only if all its tasks share one; with key_spread each task would get
    # its own sub-key, and a one-key bulk would lose its affinity: they share the first one's.
    (bulk_key,) = await _sent_keys(atomic=True, key_spread=4)
    assert bulk_key is not None and bulk_key.startswith("tenant#")
    plain = await _sent_keys(atomic=False, key_spread=4)
    assert len(plain) == 8 and len(set(plain)) > 1  # spread over several sub-keys
    assert await _sent_keys(atomic=True, key_spread=1) == ["tenant"]
