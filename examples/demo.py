"""`make run`: a worker executing a batched service, and a client dispatching to it.

With no broker configured it runs on the embedded in-process broker (memory://demo); with
PULSAR_URL set (or `make run PULSAR=1`) the same demo runs over Apache Pulsar.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections import Counter, defaultdict

import msgspec

from infinitic_py import AsyncClient, Call, TaskFailed, Worker, get_context, task
from infinitic_py.batching import BatchLimits
from infinitic_py.errors import InfiniticError
from infinitic_py.observability import configure_logging

TENANTS = ("acme", "globex", "initech")


class Invoice(msgspec.Struct, frozen=True):
    customer: str
    amount_cents: int


class InvoiceService:
    """Renders invoices; the batched twin renders one tenant's invoices in one go."""

    def __init__(self) -> None:
        self.batches: list[tuple[str | None, int]] = []

    @task
    def render(self, invoice: Invoice) -> str:
        return f"{invoice.customer}: {invoice.amount_cents / 100:.2f} EUR"

    @render.batch(max_messages=10, max_seconds=0.2)
    async def render_batch(self, invoices: dict[str, Invoice]) -> dict[str, str | Exception]:
        first = get_context(next(iter(invoices)))
        self.batches.append((first.batch_key, len(invoices)))
        await asyncio.sleep(0.01)  # one call to a (pretend) PDF renderer for the whole batch
        out: dict[str, str | Exception] = {}
        for task_id, inv in invoices.items():
            if inv.amount_cents < 0:
                out[task_id] = ValueError(f"negative amount for {inv.customer}")
            else:
                out[task_id] = f"{inv.customer}: {inv.amount_cents / 100:.2f} EUR"
        return out


async def main() -> int:
    url = os.environ.get("PULSAR_URL") or "memory://demo"
    tenant = os.environ.get("PULSAR_TENANT", "public")
    namespace = os.environ.get("PULSAR_NAMESPACE", "default")
    configure_logging("console" if sys.stdout.isatty() else "json", os.environ.get("LOG_LEVEL", "warning"))
    service = InvoiceService()
    # A demo gives up on a broker that does not answer sooner than a worker daemon (120 s).
    worker = Worker(url, tenant=tenant, namespace=namespace, name="demo-worker",
                    connect_timeout=float(os.environ.get("DEMO_CONNECT_TIMEOUT", "10")))
    worker.add_service(service, concurrency=4, batch={"render": BatchLimits(10, 0.2)})
    print(f"infinitic-py demo on {url}")
    await worker.start()
    try:
        async with AsyncClient(url, tenant=tenant, namespace=namespace) as client:
            calls = []
            for i in range(36):
                t = TENANTS[i % 3]
                amount = -500 if i == 7 else 1000 + 37 * i
                calls.append(Call(Invoice(f"{t}-customer-{i:02d}", amount), meta={"batchKey": t}))
            started = time.perf_counter()
            invoices = client.service(InvoiceService)
            deferreds = await invoices.render.many(calls)
            print(f"dispatched {len(deferreds)} tasks for {len(TENANTS)} tenants in one call")
            per_tenant: dict[str, list[str]] = defaultdict(list)
            failures = []
            for call, d in zip(calls, deferreds, strict=True):
                tenant_key = str((call.meta or {})["batchKey"])
                try:
                    per_tenant[tenant_key].append(await d.result(timeout=30))
                except TaskFailed as exc:
                    failures.append(f"{tenant_key}: {exc.error_type}: {exc.message}")
            elapsed = time.perf_counter() - started
    finally:
        await worker.stop()
    sizes = Counter(key for key, _ in service.batches)
    print(f"\n{sum(len(v) for v in per_tenant.values())} completed, {len(failures)} failed "
          f"in {elapsed:.2f}s, in {len(service.batches)} batches:")
    for t in TENANTS:
        print(f"  {t:8} {sizes[t]} batches  e.g. {per_tenant[t][0]}")
    for line in failures:
        print(f"  failed  {line}")
    ok = len(failures) == 1 and sum(len(v) for v in per_tenant.values()) == 35
    print("\ndemo", "OK" if ok else "UNEXPECTED")
    return 0 if ok else 1


def run() -> int:
    """``main()``, its failures as one line (and Ctrl-C as exit 130)."""
    try:
        return asyncio.run(main())
    except KeyboardInterrupt:
        return 130
    except InfiniticError as exc:  # e.g. the broker at PULSAR_URL does not answer
        text = str(exc).replace("(pulsar.connect_timeout_seconds, or Worker(connect_timeout=...) "
                                "in code)", "(DEMO_CONNECT_TIMEOUT)")
        print(f"demo: {text} (make run PULSAR=1 starts a local broker; without PULSAR_URL the "
              "demo runs on the embedded one)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(run())
