"""worker/priority.py: the band picker's bounded starvation, and the slots that apply it."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infinitic_py.priority import Band, band_of, check_priority
from infinitic_py.worker.priority import BandPicker, PrioritySlots

bands = st.sets(st.sampled_from(list(Band)), min_size=1)


@given(st.lists(bands, min_size=1, max_size=200), st.integers(1, 10))
def test_a_waiting_band_is_served_within_k_plus_2(
        waiting_seq: list[set[Band]], k: int) -> None:
    """Whatever the bands with work at each pick, a band that keeps work is passed over at most
    k + 2 times (k + the number of other bands)."""
    picker = BandPicker(k)
    waited = dict.fromkeys(Band, 0)
    for waiting in waiting_seq:
        chosen = picker.pick(waiting)
        assert chosen in waiting
        for band in Band:
            if band not in waiting or band == chosen:
                waited[band] = 0
            else:
                waited[band] += 1
                assert waited[band] <= k + 2, (band, waited)


@given(st.integers(1, 10))
def test_steady_high_stream_gives_low_one_slot_in_k_plus_1(k: int) -> None:
    picker = BandPicker(k)
    picks = [picker.pick({Band.HIGH, Band.LOW}) for _ in range(10 * (k + 1))]
    assert picks.count(Band.LOW) == 10
    assert picks[:k] == [Band.HIGH] * k  # preference first: k highs, then the owed low


def test_highest_band_first_when_nothing_is_owed() -> None:
    picker = BandPicker(8)
    assert picker.pick({Band.LOW, Band.NORMAL, Band.HIGH}) is Band.HIGH
    assert picker.pick({Band.LOW}) is Band.LOW


def test_priority_range_and_bands() -> None:
    assert [band_of(p) for p in range(10)] == [Band.LOW] * 4 + [Band.NORMAL] * 3 + [Band.HIGH] * 3
    with pytest.raises(ValueError, match="from 0"):
        check_priority(10)
    with pytest.raises(TypeError, match="must be an int"):
        check_priority("high")


async def test_slots_start_waiting_higher_bands_first() -> None:
    slots = PrioritySlots(1, k=2)
    order: list[str] = []
    gate = asyncio.Event()

    async def unit(name: str, band: Band) -> None:
        async with slots.take(band):
            order.append(name)
            if name == "first":
                await gate.wait()

    first = asyncio.create_task(unit("first", Band.LOW))
    await asyncio.sleep(0)
    waiting = [asyncio.create_task(unit(f"low{i}", Band.LOW)) for i in range(3)]
    waiting += [asyncio.create_task(unit(f"high{i}", Band.HIGH)) for i in range(5)]
    await asyncio.sleep(0)
    gate.set()
    await asyncio.gather(first, *waiting)
    assert order == ["first", "high0", "high1", "low0", "high2", "high3", "low1", "high4", "low2"]
    assert slots.started == {Band.LOW: 4, Band.NORMAL: 0, Band.HIGH: 5}


async def test_a_cancelled_waiter_gives_its_turn_away() -> None:
    slots = PrioritySlots(1)
    gate = asyncio.Event()
    ran: list[str] = []

    async def hold() -> None:
        async with slots.take(Band.NORMAL):
            await gate.wait()

    async def unit(name: str) -> None:
        async with slots.take(Band.HIGH):
            ran.append(name)

    holder = asyncio.create_task(hold())
    await asyncio.sleep(0)
    cancelled, kept = asyncio.create_task(unit("a")), asyncio.create_task(unit("b"))
    await asyncio.sleep(0)
    cancelled.cancel()
    gate.set()
    await asyncio.gather(holder, kept)
    assert ran == ["b"]
