"""Ledger: backpressure and duplicate memory in one place."""

from __future__ import annotations

import asyncio

from hypothesis import given
from hypothesis import strategies as st

from infinitic_py.transport.base import OutgoingMessage
from infinitic_py.wire import Publish
from infinitic_py.worker.ledger import CopyAction, Ledger

from .parts import REPLIES, message, routed

OTHER = "persistent://public/default/response:other"


def test_room_and_release() -> None:
    ledger = Ledger(3)
    ledger.hold(3)
    assert ledger.full and ledger.room == 0
    ledger.release(1)
    assert not ledger.full and ledger.room == 1


async def test_wait_for_room_wakes_on_release() -> None:
    ledger = Ledger(1)
    ledger.hold(1)
    waiting = asyncio.ensure_future(ledger.wait_for_room())
    await asyncio.sleep(0)
    assert not waiting.done()
    ledger.release(1)
    await asyncio.wait_for(waiting, 1)


def test_a_copy_of_a_running_attempt_waits() -> None:
    ledger = Ledger(10)
    fresh, copies = ledger.admit(routed(message("a"), message("a")))
    assert len(fresh) == 1 and len(copies) == 1
    assert ledger.verdict(copies[0]).action is CopyAction.WAIT


def test_a_parked_copy_is_handed_back_when_its_attempt_settles() -> None:
    ledger = Ledger(10)
    fresh, copies = ledger.admit(routed(message("a", reply_to=REPLIES), message("b"),
                                        message("a", reply_to=OTHER)))
    ledger.hold(3)
    ledger.park(copies[0])
    assert ledger.parked == 1 and ledger.held == 3  # a parked copy keeps its room
    reply = Publish(REPLIES, OutgoingMessage(b"reply"), reply=True)
    assert ledger.settle(fresh[1:], ack=True, replies=[()]) == []  # not the parked one's
    assert ledger.settle(fresh[:1], ack=True, replies=[[reply]]) == copies
    assert ledger.parked == 0
    verdict = ledger.verdict(copies[0])  # now answered from the settled attempt
    assert verdict.action is CopyAction.REPLY
    assert [(r.topic, r.message.data) for r in verdict.replies] == [(OTHER, b"reply")]


def test_parked_copies_come_back_with_an_attempt_given_back() -> None:
    ledger = Ledger(10)
    fresh, copies = ledger.admit(routed(message("a"), message("a"), message("a")))
    for copy in copies:
        ledger.park(copy)
    assert ledger.settle(fresh, ack=False) == copies and ledger.parked == 0


def test_settled_attempts_are_answered_from_memory() -> None:
    ledger = Ledger(10)
    items = routed(message("quiet"), message("asked", reply_to=REPLIES))
    fresh, _ = ledger.admit(items)
    ledger.hold(2)
    reply = Publish(REPLIES, OutgoingMessage(b"reply"), reply=True)
    ledger.settle(fresh, ack=True, replies=[(), [reply]])
    assert ledger.held == 0
    _, copies = ledger.admit(routed(message("quiet"), message("asked", reply_to=OTHER)))
    quiet, asked = (ledger.verdict(c) for c in copies)
    assert quiet.action is CopyAction.ACK
    assert asked.action is CopyAction.REPLY
    assert [(r.topic, r.message.data) for r in asked.replies] == [(OTHER, b"reply")]


def test_a_copy_asking_elsewhere_without_a_kept_reply_runs_again() -> None:
    ledger = Ledger(10)
    fresh, _ = ledger.admit(routed(message("r", reply_to=REPLIES)))
    ledger.settle(fresh, ack=True, replies=[None])  # retried: no reply kept
    _, copies = ledger.admit(routed(message("r", reply_to=OTHER)))
    assert ledger.verdict(copies[0]).action is CopyAction.RERUN
    _, again = ledger.admit(routed(message("r")))
    assert ledger.verdict(again[0]).action is CopyAction.WAIT  # now running


def test_given_back_attempts_are_forgotten() -> None:
    ledger = Ledger(10)
    fresh, _ = ledger.admit(routed(message("n")))
    ledger.settle(fresh, ack=False)
    fresh, copies = ledger.admit(routed(message("n")))
    assert len(fresh) == 1 and not copies


def test_large_replies_are_not_kept() -> None:
    ledger = Ledger(10, keep_reply_bytes=4)
    fresh, _ = ledger.admit(routed(message("big", reply_to=REPLIES)))
    big = Publish(REPLIES, OutgoingMessage(b"0123456789"), reply=True)
    ledger.settle(fresh, ack=True, replies=[[big]])
    _, copies = ledger.admit(routed(message("big", reply_to=REPLIES)))
    assert ledger.verdict(copies[0]).action is CopyAction.ACK  # same caller: it has it


def test_the_byte_cap_fills_the_ledger_as_the_count_cap_does() -> None:
    ledger = Ledger(100, max_bytes=1000)
    ledger.hold(2, 999)
    assert not ledger.full and ledger.room == 98
    ledger.hold(1, 1)
    assert ledger.full  # at the byte cap, far below the count cap
    items = routed(message("a"))
    fresh, _ = ledger.admit(items)
    ledger.hold(1, len(fresh[0].msg.data))
    ledger.settle(fresh, ack=True)  # releases its own bytes
    assert ledger.held_bytes == 1000 and ledger.full
    ledger.release(1, 500)
    assert not ledger.full and ledger.held == 2


async def test_a_receive_loop_waiting_at_the_byte_cap_wakes_when_bytes_are_released() -> None:
    ledger = Ledger(100, max_bytes=10)
    ledger.hold(1, 64)
    waiting = asyncio.ensure_future(ledger.wait_for_room())
    await asyncio.sleep(0)
    assert not waiting.done()
    ledger.release(1, 64)
    await asyncio.wait_for(waiting, 5)


@given(st.lists(st.lists(st.integers(0, 12), max_size=8), max_size=6), st.data())
def test_admit_splits_runs_as_one_task_at_a_time_would(runs: list[list[int]],
                                                        data: st.DataObject) -> None:
    """Whatever the runs (all fresh: the set-operation path; or with copies), ``admit`` splits
    them as admitting one task at a time would: the first sight of an attempt is fresh, every
    later one a copy (running, or settled in between)."""
    ledger = Ledger(1000)
    seen: set[str] = set()
    for run in runs:
        items = routed(*(message(f"t{k}") for k in run)) if run else []
        fresh, copies = ledger.admit(items)
        expected_fresh: list[str] = []
        for k in run:
            if f"t{k}" not in seen:
                seen.add(f"t{k}")
                expected_fresh.append(f"t{k}")
        assert [p.key for p in fresh] == expected_fresh
        assert len(fresh) + len(copies) == len(run)
        settle: bool = data.draw(st.booleans())
        if fresh and settle:  # settle some: they stay known (settled)
            ledger.hold(len(fresh))
            ledger.settle(fresh, ack=True)
