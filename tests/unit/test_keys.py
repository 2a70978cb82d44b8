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
