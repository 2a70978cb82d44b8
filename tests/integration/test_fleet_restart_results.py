"""A rolling restart of a whole fleet of worker processes (the CLI, as a pod runs it) while one
client dispatches tasks and awaits every result: each worker in turn gets a replacement, then is
signalled. With SIGTERM (graceful drain) every caller gets exactly its result and no task runs
twice; with SIGKILL every caller still gets its result (a killed worker's unacked tasks run again
elsewhere: at least once, counted)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from collections import Counter
from functools import partial
from pathlib import Path

import pytest

from infinitic_py import AsyncClient, Call
from infinitic_py.admin import PulsarAdmin
from infinitic_py.topics import WORKER_SUBSCRIPTION, service_topic
from infinitic_py.transport.base import SubscriptionType

from .conftest import BrokerInfo
from .echo_fleet_service import EchoRecorder, Num, read_runs
from .harness import wait_for_condition

ROOT = Path(__file__).resolve().parents[2]
N = 4000
KEYS = 20


def spawn(broker: BrokerInfo, service: str, who: str, subscription: str, records: Path,
          tmp: Path) -> subprocess.Popen[bytes]:
    config = tmp / f"{who}.yaml"
    config.write_text(textwrap.dedent(f"""
        pulsar:
          url: "{broker.service_url}"
          admin_url: null
          consumer: {{subscription_type: {subscription}, receiver_queue_size: 500}}
        worker:
          name: {who}
          http_port: 0
          shutdown_grace_seconds: 20
          log_format: json
        services:
          - class: "tests.integration.echo_fleet_service:EchoRecorder"
            name: {service}
            concurrency: 4
    """))
    env = {**os.environ, "RECORD_FILE": str(records), "FLEET_WORKER": who,
           "ECHO_DELAY": "0.1", "PYTHONPATH": str(ROOT)}
    log = open(tmp / f"{who}.log", "wb")  # noqa: SIM115  (closed with the process)
    return subprocess.Popen(
        [sys.executable, "-m", "infinitic_py.cli", "worker", "-c", str(config)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def started(tmp: Path, who: str) -> bool:
    log = tmp / f"{who}.log"
    return log.exists() and "worker.started" in log.read_text(errors="replace")


def stuck_report(broker: BrokerInfo, service: str, tmp: Path, never_ran: list[int]) -> str:
    """The worker subscription as the broker sees it (backlog, replay queue, each consumer's
    unacked messages and draining hashes), the keys of the tasks that never ran, and each
    worker's drain and stop lines."""
    topic = service_topic("public", "default", service)
    try:
        sub = PulsarAdmin(broker.admin_url).topic_stats(topic)["subscriptions"][WORKER_SUBSCRIPTION]
    except Exception as exc:  # a report, not a check
        return f"no stats of {topic}: {exc}"
    fields = ("msgBacklog", "msgInReplay", "unackedMessages", "type", "allowOutOfOrderDelivery")
    lines = [f"never ran: {len(never_ran)}, keys {sorted({f'k{i % KEYS}' for i in never_ran})}",
             f"subscription: { {k: sub.get(k) for k in fields} }"]
    for c in sub.get("consumers", []):
        lines.append(f"  consumer {c.get('consumerName')}: unacked {c.get('unackedMessages')}, "
                     f"permits {c.get('availablePermits')}, draining hashes "
                     f"{c.get('drainingHashesCount')} {c.get('drainingHashes')}")
    for log in sorted(tmp.glob("*.log")):
        lines += [f"  {log.stem}: {line[:240]}" for line in log.read_text(errors="replace")
                  .splitlines() if "executor.draining" in line or "executor.stopped" in line]
    return "\n".join(lines)


@pytest.mark.parametrize(("how", "subscription"), [
    (signal.SIGTERM, "shared"), (signal.SIGTERM, "key_shared"), (signal.SIGKILL, "shared"),
    (signal.SIGKILL, "key_shared")])
async def test_every_caller_gets_its_result_across_a_rolling_restart(
    pulsar_broker: BrokerInfo, tmp_path: Path, processes: list[subprocess.Popen[bytes]],
    how: signal.Signals, subscription: str,
) -> None:
    service = f"Roll{uuid.uuid4().hex[:10]}"
    records = tmp_path / "records.txt"
    fleet = {who: spawn(pulsar_broker, service, who, subscription, records, tmp_path)
             for who in ("a0", "b0", "c0")}
    processes.extend(fleet.values())
    assert await wait_for_condition(lambda: all(started(tmp_path, w) for w in fleet), 60)
    exits: dict[str, int | None] = {}

    async def roll() -> None:
        for old in ("a0", "b0", "c0"):
            new = f"{old[0]}1"
            fleet[new] = spawn(pulsar_broker, service, new, subscription, records, tmp_path)
            processes.append(fleet[new])
            assert await wait_for_condition(partial(started, tmp_path, new), 60), new
            fleet[old].send_signal(how)
            exits[old] = await asyncio.to_thread(fleet[old].wait, 60)

    kind = (SubscriptionType.KEY_SHARED if subscription == "key_shared"
            else SubscriptionType.SHARED)
    async with AsyncClient(pulsar_broker.service_url, subscription_type=kind,
                           admin_url=pulsar_broker.admin_url) as client:
        stub = client.service(EchoRecorder, name=service)
        deferreds = []
        rolling: asyncio.Future[None] | None = None
        for start in range(0, N, 100):
            if start == N // 10:
                rolling = asyncio.ensure_future(roll())
            deferreds += await stub.echo.many(
                [Call(Num(i), meta={"batchKey": f"k{i % KEYS}"}) for i in range(start, start + 100)])
            await asyncio.sleep(0.05)  # an offered rate (about 1,500 tasks/s), not a wait
        assert rolling is not None
        await rolling
        results = await asyncio.gather(*(d.result(timeout=120) for d in deferreds),
                                       return_exceptions=True)
    failures = Counter(type(r).__name__ for r in results if isinstance(r, BaseException))
    wrong = [i for i, r in enumerate(results) if r != 2 * i]
    runs = Counter(n for run in read_runs(records) for n in run.ns)
    duplicates = sum(count - 1 for count in runs.values())
    print(f"\n{how.name} {subscription}: {N} results, failures {dict(failures)}, "
          f"{len(wrong)} wrong, {N - len(runs)} never ran, {duplicates} re-runs, exits {exits}")
    if failures or wrong:  # what the broker and the workers held, for the diagnosis
        print(stuck_report(pulsar_broker, service, tmp_path, [i for i in wrong if i not in runs]))
    assert not failures and not wrong, (dict(failures), wrong[:5])
    assert set(runs) == set(range(N))
    if how == signal.SIGTERM:
        assert exits == {"a0": 0, "b0": 0, "c0": 0}, "each drained and exited 0"
        assert duplicates == 0, f"{duplicates} re-runs (a graceful drain re-runs nothing)"
    else:
        assert all(code == -signal.SIGKILL for code in exits.values()), exits
