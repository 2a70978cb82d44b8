"""Shared fixtures of the worker parts' unit tests: a small service and messages for it."""

from __future__ import annotations

from typing import Any

import msgspec

from infinitic_py import task
from infinitic_py.service import ServiceDefinition, define_service
from infinitic_py.transport.base import ReceivedMessage
from infinitic_py.wire import native as wire
from infinitic_py.worker.routing import Pending, Router

REPLIES = "persistent://public/default/response:c1"


class Job(msgspec.Struct, frozen=True):
    n: int


class Jobs:
    @task
    def one(self, job: Job) -> int:
        return job.n

    @task
    def double(self, job: Job) -> int:
        return 2 * job.n

    @double.batch(max_messages=3, max_seconds=0.5)
    def double_batch(self, jobs: dict[str, Job]) -> dict[str, int]:
        return {t: 2 * j.n for t, j in jobs.items()}


def definition() -> ServiceDefinition:
    return define_service(Jobs(), name="Jobs")


def message(task_id: str = "t1", method: str = "double", args: Any = None, *,
            meta: dict[str, Any] | None = None, retry_sequence: int = 0, retry_index: int = 0,
            reply_to: str | None = None) -> ReceivedMessage:
    execute = wire.ExecuteTask(
        task_id=task_id, service="Jobs", method=method,
        args=wire.encode_value((Job(1),) if args is None else args),
        meta=meta or {}, retry_sequence=retry_sequence, retry_index=retry_index,
        reply_to=reply_to)
    return ReceivedMessage(wire.encode(execute), {}, 0, "topic", None)


def routed(*msgs: ReceivedMessage) -> list[Pending]:
    pending, rejected = Router(definition(), wire.NativeDialect()).route_many(list(msgs))
    assert not rejected
    return pending
