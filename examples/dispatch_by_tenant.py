"""Dispatch emails for several tenants with one batch key each, then print the results.

    python -m examples.dispatch_by_tenant              # in-process worker on memory://
    PULSAR_URL=pulsar://127.0.0.1:6650 python -m examples.dispatch_by_tenant --no-worker
                                                       # with `infinitic-py worker -c deploy/worker.example.yaml` running
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from examples.email_service import EmailRequest, EmailService
from infinitic_py import AsyncClient, Call, ResultTimeout, TaskFailed, Worker
from infinitic_py.errors import InfiniticError
from infinitic_py.observability import configure_logging

TENANTS = {"acme": 4, "globex": 3, "initech": 2}


async def main(use_worker: bool) -> int:
    url = os.environ.get("PULSAR_URL", "memory://example")
    configure_logging(level=os.environ.get("LOG_LEVEL", "warning"))
    worker = None
    if use_worker:
        worker = Worker(url, name="example-worker")
        worker.add_service(EmailService(), concurrency=4)
        await worker.start()
    try:
        async with AsyncClient(url) as client:
            emails = client.service(EmailService)
            calls = [
                Call(EmailRequest(to=f"user{i}@{tenant}.example" if i else "not-an-address",
                                  subject=f"Welcome #{i}"),
                     meta={"batchKey": tenant})
                for tenant, count in TENANTS.items()
                for i in range(count)
            ]
            deferreds = await emails.send.many(calls)  # one round trip for every tenant
            print(f"dispatched {len(deferreds)} emails for {len(TENANTS)} tenants")
            for call, deferred in zip(calls, deferreds, strict=True):
                tenant = (call.meta or {})["batchKey"]
                try:
                    sent = await deferred.result(timeout=30)
                    print(f"  {tenant:8} {call.args[0].to:28} sent={sent}")
                except TaskFailed as exc:
                    print(f"  {tenant:8} {call.args[0].to:28} FAILED {exc.error_type}: {exc.message}")
    finally:
        if worker is not None:
            await worker.stop()
    return 0


def run(use_worker: bool) -> int:
    """``main()``, its failures as one line (and Ctrl-C as exit 130)."""
    try:
        return asyncio.run(main(use_worker))
    except KeyboardInterrupt:
        return 130
    except ResultTimeout as exc:
        print(f"dispatch_by_tenant: {exc}: is a worker running? (infinitic-py worker -c "
              "deploy/worker.example.yaml)", file=sys.stderr)
        return 1
    except InfiniticError as exc:
        print(f"dispatch_by_tenant: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-worker", action="store_true",
                        help="don't run an in-process worker (one is already running)")
    sys.exit(run(not parser.parse_args().no_worker))
