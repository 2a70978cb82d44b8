"""Routing keys with a spread (infinitic_py/keys.py)."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infinitic_py.keys import (
    KeyRotation,
    check_key_rotation,
    check_key_spread,
    routing_key,
    spread_for,
)


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


@given(st.lists(st.sampled_from(["a", "b", "c"]), max_size=300), st.integers(1, 50))
def test_key_rotation_publishes_runs_of_every_tasks_per_key(keys: list[str], every: int) -> None:
    """The n-th task of a key (per service) goes under run n // every: runs of ``every``
    consecutive tasks of a key share a routing key, whatever the other keys do in between."""
    rotation = KeyRotation()
    seen: Counter[str] = Counter()
    for key in keys:
        assert rotation.key_for("Svc", key, every) == f"{key}#r{seen[key] // every}"
        seen[key] += 1
    assert rotation.key_for("Other", "a", every) == "a#r0"  # a service counts its own


def test_key_rotation_forgets_the_least_recent_keys() -> None:
    rotation = KeyRotation(max_keys=2)
    for key in ("a", "a", "b", "c"):  # "a" is the least recent once "c" comes
        rotation.key_for("S", key, 1)
    assert rotation.key_for("S", "a", 1) == "a#r0"  # forgotten: starts over (any run will do)
    assert rotation.key_for("S", "c", 1) == "c#r1"


def test_key_rotation_option() -> None:
    assert check_key_rotation(0) == 0 and check_key_rotation(100) == 100
    assert check_key_rotation({"Email": 100}) == {"Email": 100}
    assert spread_for({"Email": 100}, "Other", 0) == 0
    for bad in (-1, True, 1.5, 2_000_000):
        with pytest.raises(ValueError, match="key_rotation"):
            check_key_rotation(bad)  # type: ignore[arg-type]


async def test_a_client_with_key_rotation_sends_runs_of_keys() -> None:
    keys = await _sent_keys(atomic=False, key_spread=1, key_rotation=3)
    assert keys == ["tenant#r0"] * 3 + ["tenant#r1"] * 3 + ["tenant#r2"] * 2


async def test_key_spread_and_key_rotation_together_are_refused() -> None:
    with pytest.raises(ValueError, match="key_spread and key_rotation both set"):
        await _sent_keys(atomic=False, key_spread=2, key_rotation=3)


async def _sent_keys(atomic: bool, key_spread: int, key_rotation: int = 0) -> list[str | None]:
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
                               key_spread=key_spread, key_rotation=key_rotation) as client:
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


def test_a_partition_names_its_topic() -> None:
    from infinitic_py.topics import unpartitioned

    base = "persistent://public/default/task-executor:S:high"
    assert unpartitioned(base + "-partition-3") == base
    assert unpartitioned(base) == base
    assert unpartitioned(base + "-partition-x") == base + "-partition-x"
