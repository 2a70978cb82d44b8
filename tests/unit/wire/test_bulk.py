"""wire/bulk.py: one message carrying many tasks, expanded by the worker, settled as one."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infinitic_py.transport.base import OutgoingMessage, ReceivedMessage
from infinitic_py.wire.bulk import (
    BULK_MAGIC,
    PROP_BULK,
    BulkTooLarge,
    BulkTracker,
    bulk_message,
    bulk_parts,
    expand,
    expand_sized,
    split_settlement,
)


def received(data: bytes, count: int = 0) -> ReceivedMessage:
    return ReceivedMessage(data, {}, count, "persistent://public/default/t", object())


@given(st.lists(st.binary(max_size=50), min_size=1, max_size=40))
def test_round_trip_in_order(bodies: list[bytes]) -> None:
    bulk = bulk_message([OutgoingMessage(b) for b in bodies])
    assert bulk_parts(bulk.data) == bodies
    assert bulk.properties[PROP_BULK] == str(len(bodies))
    parent = received(bulk.data, count=2)
    parts = expand([received(b"\x81plain"), parent, received(b"\x81tail")])
    assert [p.data for p in parts] == [b"\x81plain", *bodies, b"\x81tail"]
    assert all(p.redelivery_count == 2 for p in parts[1:-1])


def test_no_bulk_keeps_the_same_list() -> None:
    msgs = [received(b"\x81a"), received(b"\x81b")]
    assert expand(msgs) is msgs


@given(st.lists(st.booleans(), min_size=1, max_size=30), st.randoms())
def test_parent_settles_once_after_the_last_part(acks: list[bool], rnd: object) -> None:
    bulk = bulk_message([OutgoingMessage(b"x") for _ in acks])
    parent = received(bulk.data)
    parts = expand([parent])
    order = list(zip(parts, acks, strict=True))
    rnd.shuffle(order)  # type: ignore[attr-defined]
    verdicts = []
    for part, ack in order:
        plain, parents = split_settlement([part], ack)
        assert plain == []
        verdicts.extend(parents)
    assert len(verdicts) == 1, "the bulk is settled exactly once, by its last part"
    assert verdicts[0].parent is parent
    assert verdicts[0].ack is all(acks), "any nacked part nacks the bulk"
    # A part settled twice (a bug upstream) never settles the bulk again.
    assert split_settlement([parts[0]], True) == ([], [])


def test_plain_messages_pass_through_settlement() -> None:
    plain = received(b"\x81a")
    parts = expand([received(bulk_message([OutgoingMessage(b"x")]).data)])
    msgs, parents = split_settlement([plain, *parts], True)
    assert msgs == [plain] and len(parents) == 1


def test_too_large_is_refused_before_sending() -> None:
    with pytest.raises(BulkTooLarge, match="nothing was dispatched"):
        bulk_message([OutgoingMessage(b"x" * 600) for _ in range(10)], max_bytes=5000)


def test_mixed_delays_refused_and_keys() -> None:
    with pytest.raises(ValueError, match="same delay"):
        bulk_message([OutgoingMessage(b"x", deliver_after=1.0), OutgoingMessage(b"y")])
    same = bulk_message([OutgoingMessage(b"x", partition_key="k")] * 2)
    mixed = bulk_message([OutgoingMessage(b"x", partition_key="k"), OutgoingMessage(b"y")])
    assert same.partition_key == "k" and mixed.partition_key is None


def test_unreadable_bulk_stays_for_the_dialect() -> None:
    bad = received(b"\xc1IPB1\xff\xff")
    assert expand([bad]) == [bad]
    assert type(bad.handle) is not BulkTracker


class _Keyed(ReceivedMessage):
    def _read_partition_key(self) -> str | None:
        return "k1#3"


def test_tasks_of_a_bulk_keep_its_partition_key() -> None:
    bulk = bulk_message([OutgoingMessage(b"\x81a", partition_key="k1#3"),
                         OutgoingMessage(b"\x81b", partition_key="k1#3")])
    parent = _Keyed(bulk.data, {}, 0, "persistent://public/default/t", object())
    parts = expand([parent])
    assert [(p.data, p.partition_key) for p in parts] == [(b"\x81a", "k1#3"), (b"\x81b", "k1#3")]
    assert expand([received(bulk.data)])[0].partition_key is None


_payloads = st.one_of(
    st.binary(max_size=30),
    st.binary(max_size=10).map(lambda b: b + BULK_MAGIC + b"x"),  # the magic inside a payload
    st.lists(st.binary(max_size=20), min_size=1, max_size=4).map(
        lambda bodies: bulk_message([OutgoingMessage(b) for b in bodies]).data),
    st.just(BULK_MAGIC + b"unreadable"))


@given(st.lists(_payloads, max_size=12))
def test_expand_sized_is_expand_and_the_payload_bytes(payloads: list[bytes]) -> None:
    msgs = [received(p) for p in payloads]
    tasks, size = expand_sized(msgs)
    assert [t.data for t in tasks] == [t.data for t in expand(list(msgs))]
    assert size == sum(len(t.data) for t in tasks)
    if not any(p.startswith(BULK_MAGIC) for p in payloads):
        assert tasks is msgs


def test_expand_sized_takes_any_payload_type() -> None:
    class Buffer:  # not bytes-like: joined it cannot be, each message is checked
        def __init__(self, data: bytes) -> None:
            self.data = data

        def __len__(self) -> int:
            return len(self.data)

        def __getitem__(self, index: slice) -> bytes:
            return self.data[index]

    msgs = [ReceivedMessage(Buffer(b"\x81a"), {}, 0, "t", None)]  # type: ignore[arg-type]
    assert expand_sized(msgs) == (msgs, 2)
