"""An example batched service: emails are sent one API call per batch (per tenant).

Run a worker for it with `infinitic-py worker -c deploy/worker.example.yaml`, or see `demo.py`.
"""

from __future__ import annotations

import msgspec

from infinitic_py import get_context, task


class EmailRequest(msgspec.Struct, frozen=True):
    to: str
    subject: str
    body: str = ""


class EmailService:
    """Sends emails. The batched twin sends every email of one tenant in one provider call."""

    def __init__(self) -> None:
        self.provider_calls = 0

    @task
    def send(self, req: EmailRequest) -> bool:
        """One email (used when a caller dispatches without batching, e.g. in tests)."""
        return "@" in req.to

    @send.batch(max_messages=50, max_seconds=0.5)
    def send_batch(self, reqs: dict[str, EmailRequest]) -> dict[str, bool | Exception]:
        self.provider_calls += 1
        results: dict[str, bool | Exception] = {}
        for task_id, req in reqs.items():
            ctx = get_context(task_id)
            if "@" not in req.to:
                # Fails this task alone; the others of the batch complete.
                results[task_id] = ValueError(f"invalid address {req.to!r} (tenant {ctx.batch_key})")
            else:
                results[task_id] = True
        return results
