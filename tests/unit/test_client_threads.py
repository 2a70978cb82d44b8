"""The sync Client's state lives on its event-loop thread, also when a Deferred is dropped (and
finalized) in a caller's thread."""

from __future__ import annotations

import asyncio
import gc
import threading
import uuid

from infinitic_py import Client
from infinitic_py.transport.memory import reset_broker


async def _hold_loop(on_loop: threading.Event, release: threading.Event) -> None:
    on_loop.set()
    release.wait(30)  # blocks the client's loop thread on purpose


def test_a_deferred_dropped_in_a_callers_thread_is_forgotten_on_the_clients_loop() -> None:
    """The finalizer of a Deferred runs in whichever thread drops it. It removed the entry
    from the dict of awaited results right there, racing the loop thread (a reply popping the
    same entry: KeyError; close() iterating the dict: "dictionary changed size")."""
    name = f"threads-{uuid.uuid4().hex[:8]}"
    try:
        with Client(f"memory://{name}") as client:
            waiting = client._async._waiting
            deferred = client.service("Nobody").run(1)  # no worker: the result stays awaited
            task_id = deferred.task_id
            assert task_id in waiting
            on_loop, release = threading.Event(), threading.Event()
            held = asyncio.run_coroutine_threadsafe(_hold_loop(on_loop, release), client._loop)
            try:
                assert on_loop.wait(30)
                del deferred
                gc.collect()  # the finalizer runs now, in this thread
                assert task_id in waiting  # untouched while the loop thread is busy
            finally:
                release.set()
                held.result(30)

            async def forgotten() -> bool:
                return task_id not in waiting

            assert client._run(forgotten())  # the loop ran the queued removal first
    finally:
        reset_broker(name)
