"""A Python BenchService for the interop crash test, run by ``infinitic-py worker`` in a
subprocess: its batches sleep ``BATCH_SLEEP`` seconds and record, in ``RECORD_FILE``,
``start <pid> <batch> <task ids>`` before and ``end <pid> <batch>`` after."""

from __future__ import annotations

import asyncio
import os
import uuid

from infinitic_py import task


def _record(line: str) -> None:
    with open(os.environ["RECORD_FILE"], "a") as out:
        out.write(line + "\n")


class BenchService:
    @task
    def echo(self, message: str) -> str:
        return message

    @echo.batch(max_messages=10, max_seconds=0.2)
    async def echo_batch(self, messages: dict[str, str]) -> dict[str, str]:
        batch = uuid.uuid4().hex[:8]
        _record(f"start {os.getpid()} {batch} {','.join(messages.values())}")
        await asyncio.sleep(float(os.environ.get("BATCH_SLEEP", "0.5")))
        _record(f"end {os.getpid()} {batch}")
        return messages
