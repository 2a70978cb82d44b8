"""Wire format: msgspec MessagePack vs msgspec JSON for one ExecuteTask, encode + decode of the
envelope and of its arguments (what a client and a worker do per task), best of 5 rounds."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import msgspec

from benchmarks.common import Order
from infinitic_py.wire import native as wire


@dataclass(frozen=True)
class WireResult:
    msgpack_us: float
    json_us: float
    msgpack_bytes: int
    json_bytes: int


def _round(encode: Any, envelope: Any, args: Any, order: Order, base: wire.ExecuteTask,
           loops: int) -> float:
    """Microseconds per task: encode the arguments and the envelope, decode both."""
    started = time.perf_counter()
    for _ in range(loops):
        task = msgspec.structs.replace(base, args=msgspec.Raw(encode.encode((order,))))
        data = encode.encode(task)
        decoded = envelope.decode(data)
        args.decode(decoded.args)
    return (time.perf_counter() - started) / loops * 1e6


def run_wire(loops: int = 50_000) -> WireResult:
    order = Order(42, "customer-42@example.com", 1042)
    now = wire.now()
    base = wire.ExecuteTask(
        task_id=uuid.uuid4().hex, service="BenchService", method="noop", args=msgspec.Raw(b""),
        meta={"batchKey": "tenant-42"}, reply_to="persistent://public/default/response:client-1",
        emitted_at=now, first_emitted_at=now,
    )
    mp = (msgspec.msgpack.Encoder(), msgspec.msgpack.Decoder(wire.ExecuteTask),
          msgspec.msgpack.Decoder(tuple[Order]))
    js = (msgspec.json.Encoder(), msgspec.json.Decoder(wire.ExecuteTask),
          msgspec.json.Decoder(tuple[Order]))
    mp_us = min(_round(*mp, order, base, loops) for _ in range(5))
    js_us = min(_round(*js, order, base, loops) for _ in range(5))
    mp_task = msgspec.structs.replace(base, args=msgspec.Raw(mp[0].encode((order,))))
    js_task = msgspec.structs.replace(base, args=msgspec.Raw(js[0].encode((order,))))
    return WireResult(mp_us, js_us, len(mp[0].encode(mp_task)), len(js[0].encode(js_task)))
