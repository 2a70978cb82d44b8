"""PulsarProducer's send path against a real broker: the client thread that runs the send
callbacks keeps one Python thread state for its life.

pybind11 made a thread state for each callback and deleted it after (with its frame stack):
half of the I/O thread's time on the Infinitic wire, two messages per task. A thread-local value
set in one callback is visible in the next only if the thread state lives on."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from infinitic_py.transport import pulsar as pulsar_transport
from infinitic_py.transport import pulsar_producer
from infinitic_py.transport.base import OutgoingMessage

if TYPE_CHECKING:
    from tests.integration.conftest import BrokerInfo

pytestmark = pytest.mark.integration


async def test_send_callbacks_keep_their_client_thread_state(
    pulsar_broker: BrokerInfo, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = threading.local()
    loop_thread = threading.get_ident()
    seen: list[int] = []  # per callback on a client thread: callbacks this thread state saw before
    real = pulsar_producer._Countdown.callback

    def callback(self: Any, index: int) -> Callable[..., None]:
        done = real(self, index)

        def counted(result: Any, *rest: Any) -> None:
            done(result, *rest)
            if threading.get_ident() != loop_thread:
                seen.append(getattr(local, "calls", 0))
                local.calls = getattr(local, "calls", 0) + 1

        return counted

    monkeypatch.setattr(pulsar_producer._Countdown, "callback", callback)
    # Two clients one after the other: the second client's I/O thread may get the ident of the
    # first one's, ended (a thread ident is reused); it must keep its own state too.
    for client in ("first", "second"):
        seen.clear()
        transport = pulsar_transport.PulsarTransport(pulsar_broker.service_url)
        try:
            producer = await transport.create_producer(
                f"persistent://public/default/send-{uuid.uuid4().hex[:10]}")
            for _ in range(3):  # windows a round trip apart: callbacks in several receipts
                await producer.send_many([OutgoingMessage(b"x")] * 100)
        finally:
            await transport.close()
        assert len(seen) == 300, f"{client} client: the callbacks ran on the client's threads"
        assert max(seen) >= 100, \
            f"{client} client: each callback had a fresh thread state: {sorted(set(seen))[:5]}"
