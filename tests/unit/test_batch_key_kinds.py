"""README "Client": a ``str`` batch key and its UTF-8 bytes are two keys; an empty key is a key
like any other (its own group, not the unkeyed one)."""

from __future__ import annotations

import uuid

from infinitic_py import AsyncClient, Call, Worker, get_context, task
from infinitic_py.transport.memory import reset_broker


class Keys:
    @task
    def see(self, n: int) -> str:
        return ""

    @see.batch(max_messages=2, max_seconds=0.2)
    def see_batch(self, ns: dict[str, int]) -> dict[str, str]:
        raw = {repr(get_context(t).meta.get("batchKey")) for t in ns}
        return {t: f"{len(ns)} {sorted(raw)}" for t in ns}


async def test_a_str_key_and_its_bytes_are_two_keys_and_an_empty_key_is_one() -> None:
    name = f"key-kinds-{uuid.uuid4().hex[:8]}"
    worker = Worker(f"memory://{name}")
    worker.add_service(Keys())
    try:
        async with worker, AsyncClient(f"memory://{name}") as client:
            deferreds = await client.service(Keys).see.many([
                Call(1, meta={"batchKey": "k1"}), Call(2, meta={"batchKey": b"k1"}),
                Call(3, meta={"batchKey": ""}), Call(4),
            ])
            results = [await d.result(timeout=10) for d in deferreds]
        assert results == ["1 [\"'k1'\"]", "1 [\"b'k1'\"]", "1 [\"''\"]", "1 ['None']"]
    finally:
        reset_broker(name)
