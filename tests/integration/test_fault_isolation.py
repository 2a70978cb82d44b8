"""Fault isolation on the real broker (issue 14): one bad task never costs the others.

Written against public behaviour only (Worker, AsyncClient, raw messages on the service topic,
the dead-letter topic), so they hold whatever the executor looks like inside.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from collections.abc import AsyncIterator

import msgspec

from infinitic_py import AsyncClient, BatchLimits, Worker, task
from infinitic_py.admin import PulsarAdmin
from infinitic_py.priority import BANDS, band_service
from infinitic_py.topics import dead_letter_topic, response_topic, service_topic
from infinitic_py.transport import create_transport
from infinitic_py.transport.base import Consumer, ConsumerSettings, OutgoingMessage
from infinitic_py.wire import native as wire

from .conftest import BrokerInfo
from .harness import receive_letters


class Item(msgspec.Struct, frozen=True):
    n: int


class Counting:
    """Counts every execution of every task n."""

    def __init__(self) -> None:
        self.runs: Counter[int] = Counter()

    @task
    def work(self, item: Item) -> int:
        return item.n

    @work.batch(max_messages=100, max_seconds=0.1)
    async def work_batch(self, items: dict[str, Item]) -> dict[str, int]:
        for it in items.values():
            self.runs[it.n] += 1
        return {t: it.n for t, it in items.items()}


def unique() -> str:
    return f"Iso{uuid.uuid4().hex[:10]}"


def raw_task(service: str, n: int, **changes: object) -> wire.ExecuteTask:
    task_ = wire.ExecuteTask(task_id=f"bad-{n}-{uuid.uuid4().hex[:6]}", service=service,
                             method="work", args=wire.encode_value([Item(n)]))
    return msgspec.structs.replace(task_, **changes)


@contextlib.asynccontextmanager
async def dlq_reader(url: str, topic: str) -> AsyncIterator[Consumer]:
    transport = create_transport(url)
    consumer = await transport.subscribe(topic, "test-dlq", ConsumerSettings())
    try:
        yield consumer
    finally:
        await consumer.close()
        await transport.close()



async def publish_raw(url: str, topic: str, tasks: list[wire.ExecuteTask]) -> None:
    transport = create_transport(url)
    try:
        producer = await transport.create_producer(topic)
        await producer.send_many([OutgoingMessage(wire.encode(t), wire.properties_for(t))
                                  for t in tasks])
        await producer.close()
    finally:
        await transport.close()


async def test_invalid_envelopes_are_dead_lettered_alone_with_a_reason(
    pulsar_broker: BrokerInfo,
) -> None:
    """Another service's name, a negative retry index, a reply topic of another tenant and a
    reply topic that is no topic name: each dead-lettered once, alone, with a reason; none runs;
    the good tasks around them run once each."""
    name = unique()
    url = pulsar_broker.service_url
    svc = Counting()
    worker = Worker(url, name="iso-worker", shutdown_grace=5.0)
    worker.add_service(svc, name=name, concurrency=4)
    bad = [
        raw_task("SomeOtherService", 10_001),
        raw_task(name, 10_002, retry_index=-1),
        raw_task(name, 10_003, reply_to="persistent://other-tenant/default/response:x"),
        raw_task(name, 10_004, reply_to="not a topic at all"),
    ]
    async with dlq_reader(url, dead_letter_topic("public", "default", name)) as dlq:
        await worker.start()
        try:
            async with AsyncClient(url) as client:
                stub = client.service(Counting, name=name)
                first = await stub.work.many([Item(i) for i in range(150)])
                await publish_raw(url, service_topic("public", "default", name), bad)
                second = await stub.work.many([Item(i) for i in range(150, 300)])
                results = await asyncio.gather(*(d.result(timeout=60) for d in first + second))
            assert results == list(range(300))
            letters = await receive_letters(dlq, len(bad), timeout=60, then_quiet=3.0)
        finally:
            await worker.stop()
    assert sorted(letter.task_id or "" for letter in letters) == sorted(t.task_id for t in bad)
    for letter in letters:
        assert letter.reason == "invalid_envelope", letter
        assert letter.message, letter
        assert wire.decode_execute(letter.payload).task_id == letter.task_id
    messages = {letter.task_id: letter.message for letter in letters}
    assert "SomeOtherService" in messages[bad[0].task_id]
    assert "retry_index" in messages[bad[1].task_id]
    assert "reply_to" in messages[bad[2].task_id] and "reply_to" in messages[bad[3].task_id]
    assert not {10_001, 10_002, 10_003, 10_004} & set(svc.runs), svc.runs
    assert all(svc.runs[i] == 1 for i in range(300)), {i: c for i, c in svc.runs.items() if c != 1}


async def test_two_bad_reply_topics_among_a_thousand_cost_the_others_nothing(
    pulsar_broker: BrokerInfo,
) -> None:
    """Issue 14's acceptance at a smaller scale: 1,000 good tasks dispatched at ~1,000/s (100
    every 0.1 s) rather than 4,000 at 200/s, with 2 tasks whose reply topic the broker refuses
    (another tenant; not a topic name) injected among them: 0 good re-executed, the 2 bad
    dead-lettered once each, with a reason."""
    name = unique()
    url = pulsar_broker.service_url
    svc = Counting()
    worker = Worker(url, name="iso-worker", shutdown_grace=5.0)
    worker.add_service(svc, name=name, concurrency=4,
                       batch={"work": BatchLimits(max_messages=100, max_seconds=0.2)})
    bad = [raw_task(name, 20_001, reply_to="persistent://no-such-tenant/ns/response:c"),
           raw_task(name, 20_002, reply_to="response:not/a/topic name")]
    async with dlq_reader(url, dead_letter_topic("public", "default", name)) as dlq:
        await worker.start()
        try:
            async with AsyncClient(url) as client:
                stub = client.service(Counting, name=name)
                deferreds = []
                for chunk in range(10):
                    deferreds += await stub.work.many(
                        [Item(i) for i in range(chunk * 100, chunk * 100 + 100)])
                    if chunk in (3, 6):
                        await publish_raw(url, service_topic("public", "default", name),
                                          [bad[0] if chunk == 3 else bad[1]])
                    await asyncio.sleep(0.1)  # the dispatch rate, not a wait for an event
                results = await asyncio.gather(*(d.result(timeout=120) for d in deferreds))
            assert sorted(results) == list(range(1000))
            letters = await receive_letters(dlq, 2, timeout=60, then_quiet=3.0)
        finally:
            await worker.stop()
    reexecuted = {i: c for i, c in svc.runs.items() if i < 1000 and c > 1}
    assert not reexecuted, f"{len(reexecuted)} good tasks re-executed"
    assert sorted(letter.task_id or "" for letter in letters) == sorted(t.task_id for t in bad)
    assert all(letter.reason and letter.message for letter in letters), letters


async def test_a_reply_topic_the_broker_refuses_fails_only_its_own_task(
    pulsar_broker: BrokerInfo, admin: PulsarAdmin,
) -> None:
    """A reply topic that looks right but that the broker refuses (a namespace without topic
    auto-creation, the topic missing): only that task's outcome is affected. It is dead-lettered
    once with the reason; the tasks batched with it are acked, never run again."""
    ns = f"iso{uuid.uuid4().hex[:8]}"
    name = unique()
    url = pulsar_broker.service_url
    await asyncio.to_thread(admin.ensure_namespace, "public", ns)
    await asyncio.to_thread(admin.post_json, f"/admin/v2/namespaces/public/{ns}/autoTopicCreation",
                            {"allowAutoTopicCreation": False})
    client_name = f"c{uuid.uuid4().hex[:8]}"
    # Every topic the worker and the client use exists (one per priority band), only the
    # missing reply topic does not.
    for topic in (*(service_topic("public", ns, band_service(name, band)) for band in BANDS),
                  dead_letter_topic("public", ns, name), response_topic("public", ns, client_name)):
        local = topic.removeprefix("persistent://")
        await asyncio.to_thread(admin.put_json, f"/admin/v2/persistent/{local}", {})
    svc = Counting()
    worker = Worker(url, tenant="public", namespace=ns, name="iso-worker", shutdown_grace=5.0)
    # One batch holds everything: the bad task shares it with 199 good ones.
    worker.add_service(svc, name=name, concurrency=1,
                       batch={"work": BatchLimits(max_messages=300, max_seconds=1.0)})
    missing = response_topic("public", ns, "nobody-created-this")
    bad = raw_task(name, 30_001, reply_to=missing)
    async with dlq_reader(url, dead_letter_topic("public", ns, name)) as dlq:
        await worker.start()
        try:
            async with AsyncClient(url, tenant="public", namespace=ns, name=client_name) as client:
                stub = client.service(Counting, name=name)
                first = await stub.work.many([Item(i) for i in range(100)])
                await publish_raw(url, service_topic("public", ns, name), [bad])
                second = await stub.work.many([Item(i) for i in range(100, 200)])
                results = await asyncio.gather(*(d.result(timeout=90) for d in first + second))
            assert sorted(results) == list(range(200))
            letters = await receive_letters(dlq, 1, timeout=90, then_quiet=3.0)
        finally:
            await worker.stop()
    assert [letter.task_id for letter in letters] == [bad.task_id]
    assert letters[0].reason == "reply_unpublishable", letters[0]
    assert missing in letters[0].message
    assert svc.runs[30_001] == 1
    reexecuted = {i: c for i, c in svc.runs.items() if i < 200 and c > 1}
    assert not reexecuted, f"{len(reexecuted)} good tasks re-executed"

