"""Client SDK (issue 5) on both transports: many(), delays, isolation between clients, sync
client from threads and from a plain script, validation before sending."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from infinitic_py import AsyncClient, BatchLimits, Call, Client, Worker, get_context, task
from infinitic_py.topics import service_topic

from .harness import Harness

ROOT = Path(__file__).resolve().parents[2]


class Job(msgspec.Struct, frozen=True):
    n: int


class Doubler:
    def __init__(self) -> None:
        self.started_at: dict[int, float] = {}
        self.meta: dict[int, dict[str, object]] = {}

    @task
    def double(self, job: Job) -> int:
        return job.n * 2

    @double.batch(max_messages=1000, max_seconds=0.2)
    def double_batch(self, jobs: dict[str, Job]) -> dict[str, int]:
        now = time.time()
        for t, job in jobs.items():
            self.started_at.setdefault(job.n, now)
            self.meta[job.n] = dict(get_context(t).meta)
        return {t: job.n * 2 for t, job in jobs.items()}


@pytest.fixture
async def served(harness: Harness) -> AsyncIterator[tuple[Harness, Doubler, str]]:
    name = f"Svc{uuid.uuid4().hex[:10]}"
    service = Doubler()
    worker = Worker(harness.url, tenant=harness.tenant, namespace=harness.namespace,
                    name=f"w-{name}", shutdown_grace=10.0)
    worker.add_service(service, name=name, concurrency=4,
                       batch={"double": BatchLimits(1000, 0.2)})
    await worker.start()
    try:
        yield harness, service, name
    finally:
        await worker.stop()


async def test_many_ten_thousand_in_one_call(served: tuple[Harness, Doubler, str]) -> None:
    harness, service, name = served
    async with AsyncClient(harness.url) as client:
        stub = client.service(Doubler, name=name)
        started = time.perf_counter()
        deferreds = await stub.double.many(Job(i) for i in range(10_000))
        dispatched = time.perf_counter() - started
        assert len(deferreds) == 10_000
        results = await asyncio.gather(*(d.result(timeout=120) for d in deferreds))
        assert results == [2 * i for i in range(10_000)]
        assert len(service.started_at) == 10_000
        assert client.replies_received == 10_000 and client.replies_unmatched == 0
        print(f"many(10_000) dispatched in {dispatched:.2f}s on {harness.kind}")


async def test_delayed_task_does_not_start_early(served: tuple[Harness, Doubler, str]) -> None:
    harness, service, name = served
    async with AsyncClient(harness.url) as client:
        stub = client.service(Doubler, name=name)
        sent = time.time()
        (delayed, now_) = await stub.double.many([Call(Job(1), delay=2.0), Call(Job(2))])
        assert await now_.result(timeout=30) == 4
        assert 1 not in service.started_at, "the delayed task ran before its delay"
        assert await delayed.result(timeout=30) == 2
        assert service.started_at[1] - sent >= 2.0
        assert service.started_at[2] - sent < 2.0


async def test_two_clients_each_get_only_their_own_results(
    served: tuple[Harness, Doubler, str],
) -> None:
    harness, _, name = served
    async with AsyncClient(harness.url) as a, AsyncClient(harness.url) as b:
        da = await a.service(Doubler, name=name).double.many(Job(i) for i in range(300))
        db = await b.service(Doubler, name=name).double.many(Job(1000 + i) for i in range(300))
        ra, rb = await asyncio.gather(
            asyncio.gather(*(d.result(timeout=60) for d in da)),
            asyncio.gather(*(d.result(timeout=60) for d in db)),
        )
        assert ra == [2 * i for i in range(300)]
        assert rb == [2 * (1000 + i) for i in range(300)]
        assert (a.replies_received, b.replies_received) == (300, 300)
        assert a.replies_unmatched == b.replies_unmatched == 0


async def test_sync_client_from_eight_threads(served: tuple[Harness, Doubler, str]) -> None:
    harness, _, name = served

    def run_threads() -> list[list[int]]:
        results: list[list[int]] = [[] for _ in range(8)]
        errors: list[BaseException] = []
        with Client(harness.url) as client:
            stub = client.service(Doubler, name=name)

            def work(k: int) -> None:
                try:
                    ds = [stub.double(Job(100 * k + i)) for i in range(10)]
                    ds += stub.double.many([Job(100 * k + 10 + i) for i in range(10)])
                    results[k] = [d.result(timeout=60) for d in ds]
                except BaseException as exc:  # surfaced below
                    errors.append(exc)

            threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=120)
        assert not errors, errors
        return results

    results = await asyncio.to_thread(run_threads)
    assert results == [[2 * (100 * k + i) for i in range(20)] for k in range(8)]


@pytest.mark.parametrize("harness", ["pulsar"], indirect=True)  # separate processes: a broker
def test_sync_client_from_a_plain_script(harness: Harness, tmp_path: Path) -> None:
    """A script with no event loop of its own, against a worker in another process."""
    name = f"Svc{uuid.uuid4().hex[:10]}"
    config = tmp_path / "worker.yaml"
    config.write_text(textwrap.dedent(f"""
        pulsar: {{url: "{harness.url}", admin_url: null}}
        worker: {{http_port: 0, shutdown_grace_seconds: 5}}
        services:
          - class: "tests.integration.test_client:Doubler"
            name: {name}
            concurrency: 2
    """))
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(f"""
        from infinitic_py import Client
        from tests.integration.test_client import Doubler, Job
        with Client("{harness.url}") as client:
            stub = client.service(Doubler, name="{name}")
            print(sum(d.result(timeout=60) for d in stub.double.many([Job(i) for i in range(50)])))
    """))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    worker = subprocess.Popen([sys.executable, "-m", "infinitic_py.cli", "worker", "-c", str(config)],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        out = subprocess.run([sys.executable, str(script)], cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == str(sum(2 * i for i in range(50)))
    finally:
        worker.terminate()
        _, worker_err = worker.communicate(timeout=30)
        assert worker.returncode == 0, worker_err.decode(errors="replace")[-3000:]


async def test_batch_key_str_or_bytes_and_meta_travel_untouched(
    served: tuple[Harness, Doubler, str],
) -> None:
    harness, service, name = served
    async with AsyncClient(harness.url) as client:
        stub = client.service(Doubler, name=name, meta={"batchKey": b"\x00tenant", "trace": "t-1"})
        d1 = await stub.double(Job(1))
        d2 = await stub.double.options(meta={"batchKey": "eu", "n": 3})(Job(2))
        assert [await d1.result(timeout=30), await d2.result(timeout=30)] == [2, 4]
        assert service.meta[1] == {"batchKey": b"\x00tenant", "trace": "t-1"}
        assert service.meta[2] == {"batchKey": "eu", "trace": "t-1", "n": 3}
        with pytest.raises(TypeError, match="batchKey"):
            client.service(Doubler, name=name, meta={"batchKey": 42})


async def test_a_bad_item_rejects_the_whole_call_before_sending(
    served: tuple[Harness, Doubler, str],
) -> None:
    harness, service, name = served
    async with AsyncClient(harness.url) as client:
        stub = client.service(Doubler, name=name)
        with pytest.raises(TypeError, match="item 2"):
            await stub.double.many([Job(1), Job(2), Job("three"), Job(4)])  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="appears twice"):
            await stub.double.many([Call(Job(5), task_id="x"), Call(Job(6), task_id="x")])
        # Nothing was sent: a follow-up task is the first the service sees.
        assert await (await stub.double(Job(9))).result(timeout=30) == 18
        assert list(service.started_at) == [9]
        topic = service_topic(harness.tenant, harness.namespace, name)
        assert await harness.wait_drained(topic) == (0, 0)


async def test_fire_and_forget_client_asks_for_no_replies(
    served: tuple[Harness, Doubler, str],
) -> None:
    harness, service, name = served
    async with AsyncClient(harness.url, results=False) as client:
        d = await client.service(Doubler, name=name).double(Job(3))
        with pytest.raises(RuntimeError, match="without asking for its result"):
            await d.result(timeout=1)
        assert client._responses is None  # no response subscription was created
    topic = service_topic(harness.tenant, harness.namespace, name)
    assert await harness.wait_drained(topic) == (0, 0)
    assert 3 in service.started_at




async def test_two_clients_with_one_name_are_told_why(harness: Harness) -> None:
    """Pods of one app given the same ``AsyncClient(name=...)`` share a response topic whose
    subscription is exclusive: the second one's dispatch said only 'ConsumerBusy'."""
    from infinitic_py.errors import DispatchFailed

    name = f"api-{uuid.uuid4().hex[:8]}"
    async with AsyncClient(harness.url, tenant=harness.tenant, namespace=harness.namespace,
                           name=name) as first, \
            AsyncClient(harness.url, tenant=harness.tenant, namespace=harness.namespace,
                        name=name) as second:
        await first.service(f"Nobody{name}").job(Job(1))
        with pytest.raises(DispatchFailed) as failed:
            await second.service(f"Nobody{name}").job(Job(2))
    assert f"another client named {name!r} is connected to its response topic" in str(
        failed.value)


@pytest.mark.parametrize("delay", [0.0, 0.005, 0.01])
async def test_a_caller_cancelled_during_the_first_dispatch_leaves_the_client_working(
    served: tuple[Harness, Doubler, str], delay: float
) -> None:
    """The first awaited dispatch subscribes the client's response topic (an exclusive
    subscription). A caller cancelled during that subscribe (a request timeout) left the consumer
    the broker was creating orphaned: every later awaited dispatch of that client failed
    (ConsumerBusy, its own consumer holding the subscription)."""
    harness, _, name = served
    async with AsyncClient(harness.url, tenant=harness.tenant,
                           namespace=harness.namespace) as client:
        stub = client.service(Doubler, name=name)
        first = asyncio.ensure_future(stub.double(Job(1)))
        await asyncio.sleep(delay)
        first.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await first
        second = await stub.double(Job(2))
        assert await second.result(timeout=30) == 4


async def test_close_ends_every_pending_await_with_client_closed(harness: Harness) -> None:
    """500 callers await results that never come (no worker), 100 of them are cancelled: the
    others are unaffected, and close() ends every remaining await at once with ClientClosed."""
    from infinitic_py.errors import ClientClosed

    client = AsyncClient(harness.url, tenant=harness.tenant, namespace=harness.namespace)
    stub = client.service(Doubler, name=f"NoWorker{uuid.uuid4().hex[:8]}")
    deferreds = await stub.double.many([Job(i) for i in range(500)])
    callers = [asyncio.ensure_future(d.result()) for d in deferreds]
    await asyncio.sleep(0.1)
    for caller in callers[:100]:
        caller.cancel()
    assert not any(c.done() for c in callers[100:])
    await asyncio.wait_for(client.close(), 30)
    ended = await asyncio.wait_for(asyncio.gather(*callers, return_exceptions=True), 5)
    assert all(isinstance(e, asyncio.CancelledError) for e in ended[:100])
    assert all(isinstance(e, ClientClosed) for e in ended[100:]), {type(e) for e in ended}
    with pytest.raises(ClientClosed):  # a Deferred awaited after the close
        await deferreds[0].result(timeout=1)


def test_sync_close_ends_a_result_awaited_in_another_thread(harness: Harness) -> None:
    from infinitic_py.errors import ClientClosed

    client = Client(harness.url, tenant=harness.tenant, namespace=harness.namespace)
    deferred = client.service(Doubler, name=f"NoWorker{uuid.uuid4().hex[:8]}").double(Job(1))
    outcome: list[BaseException] = []

    def wait() -> None:
        try:
            deferred.result()  # no timeout: only the close ends it
        except BaseException as exc:
            outcome.append(exc)

    waiter = threading.Thread(target=wait)
    waiter.start()
    client.close()
    waiter.join(30)
    assert not waiter.is_alive(), "the waiting thread hangs after close()"
    assert len(outcome) == 1 and isinstance(outcome[0], ClientClosed), outcome


async def test_close_does_not_wait_for_a_subscribe_to_an_unreachable_broker() -> None:
    """A dispatch pending on the response topic's subscribe (nothing listens at the address)
    and close(): close returns at once, and the dispatch fails with DispatchFailed (not after
    pulsar-client's 30 s operation timeout)."""
    import socket

    from infinitic_py.errors import DispatchFailed

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # free: nothing listens there
    client = AsyncClient(f"pulsar://127.0.0.1:{port}", admin_url=None)
    pending = asyncio.ensure_future(client.service("Nobody").job(Job(1)))
    await asyncio.sleep(0.5)
    assert not pending.done()
    await asyncio.wait_for(client.close(), 10)
    with pytest.raises(DispatchFailed):
        await asyncio.wait_for(pending, 10)
