"""A sync Client closed while other threads call it: every call ends (ClientClosed), none
waits forever. A call submitted to the client's loop just before close() stopped it was never
run, and its thread waited on it for ever (seen with 12 threads awaiting results)."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid

from infinitic_py import Client, ClientClosed, ResultTimeout
from infinitic_py.transport.memory import reset_broker


def test_closing_a_client_other_threads_are_calling_ends_every_call() -> None:
    name = f"sync-close-{uuid.uuid4().hex[:8]}"
    try:
        client = Client(f"memory://{name}")
        deferreds = client.service("Nobody").run.many([1, 2, 3, 4])  # no worker: never answered
        ended: list[BaseException] = []
        started = threading.Barrier(len(deferreds) * 2 + 1)

        def poll(index: int) -> None:
            started.wait(10)
            try:
                while True:  # a call to the client's loop after another, as fast as it goes
                    with contextlib.suppress(ResultTimeout):
                        deferreds[index % len(deferreds)].result(timeout=0)
            except BaseException as exc:
                ended.append(exc)

        threads = [threading.Thread(target=poll, args=(i,), daemon=True)
                   for i in range(len(deferreds) * 2)]
        for thread in threads:
            thread.start()
        started.wait(10)
        time.sleep(0.2)  # let them run: the race is with calls in flight, not with a state
        client.close()
        deadline = time.monotonic() + 20
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        assert not any(thread.is_alive() for thread in threads), "a call never returned"
        assert len(ended) == len(threads)
        assert all(isinstance(exc, ClientClosed) for exc in ended), ended
    finally:
        reset_broker(name)
