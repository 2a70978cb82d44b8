"""``infinitic-py status --watch`` (refreshes until Ctrl-C) and ``dlq replay --to-service`` (the
dead letters of one service re-run by another, e.g. a fixed version) on the real broker."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from typing import Any

from infinitic_py import AsyncClient, Call, RetryPolicy, Worker
from infinitic_py.admin import PulsarAdmin
from infinitic_py.topics import dead_letter_topic, service_topic

from .conftest import BrokerInfo
from .harness import poll
from .test_dlq_cli import ROOT, Flaky, acli, letters_json


async def test_status_watch_refreshes_until_interrupted(
    pulsar_broker: BrokerInfo, admin: PulsarAdmin, unique_name: str
) -> None:
    service = f"Watch{unique_name}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "INFINITIC_PULSAR__URL": pulsar_broker.service_url,
           "INFINITIC_PULSAR__ADMIN_URL": pulsar_broker.admin_url}
    env.pop("INFINITIC_CONFIG", None)
    try:
        async with AsyncClient(pulsar_broker.service_url, results=False) as client:
            await client.service(service).go.many([Call(1)])  # no worker: the task waits
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "infinitic_py.cli", "status", "--json", "--watch", "0.3",
                "--service", service,
                env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            stdout, stderr_pipe = proc.stdout, proc.stderr
            assert stdout is not None and stderr_pipe is not None
            try:
                async def refresh() -> dict[str, Any]:
                    line = await asyncio.wait_for(stdout.readline(), 60)
                    assert line, (await stderr_pipe.read()).decode()
                    (row,) = json.loads(line)["services"]
                    assert row["service"] == service
                    return dict(row)

                first = await poll(refresh, lambda r: r["backlog"] == 1, 60, every=0)
                assert first["backlog"] == 1 and first["state"] != "ok"  # nobody consumes it
                for n in (2, 3):  # one by one: the backlog counts entries (a batch is one)
                    await client.service(service).go.many([Call(n)])
                # The same process prints again, with what changed meanwhile.
                later = await poll(refresh, lambda r: r["backlog"] == 3, 60, every=0)
                assert later["backlog"] == 3
                proc.send_signal(signal.SIGINT)
                _, err = await asyncio.wait_for(proc.communicate(), 30)
                stderr = err.decode()
                code = proc.returncode
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
        assert code == 0, stderr
        assert "Traceback" not in stderr
    finally:
        await asyncio.to_thread(admin.delete_topic, service_topic("public", "default", service))


async def test_dlq_replay_to_another_service(
    pulsar_broker: BrokerInfo, admin: PulsarAdmin, unique_name: str
) -> None:
    old, new = f"Old{unique_name}", f"New{unique_name}"
    broken, fixed = Flaky(), Flaky()
    fixed.fail_values = False
    worker = Worker(pulsar_broker.service_url, name="replay-test")
    worker.add_service(broken, name=old, retry=RetryPolicy(maximum_retries=0))
    worker.add_service(fixed, name=new)
    await worker.start()
    try:
        async with AsyncClient(pulsar_broker.service_url, results=False) as client:
            await client.service(old).run.many([Call("value", n) for n in range(3)])

        async def count(service: str) -> int:
            return int((await letters_json(pulsar_broker, service))["count"])

        assert await poll(lambda: count(old), lambda n: n == 3, 60, every=1.0) == 3
        assert broken.calls["value"] == 3 and fixed.calls["value"] == 0
        ids = {x["task_id"] for x in (await letters_json(pulsar_broker, old))["letters"]}

        replay = await acli(pulsar_broker, "dlq", "replay", old, "--to-service", new, "--json")
        assert replay.returncode == 0, replay.stderr
        result = json.loads(replay.stdout)
        assert (result["service"], result["to_service"], result["replayed"]) == (old, new, 3)
        assert set(result["task_ids"]) == ids

        async def completed() -> list[int]:
            return sorted(fixed.completed)

        assert await poll(completed, lambda c: len(c) == 3, 60) == [0, 1, 2]
        assert broken.calls["value"] == 3  # the old service did not run them again
        assert await poll(lambda: count(old), lambda n: n == 0, 30, every=1.0) == 0
        assert await count(new) == 0
    finally:
        await worker.stop()
        for service in (old, new):
            for topic in (service_topic("public", "default", service),
                          dead_letter_topic("public", "default", service)):
                await asyncio.to_thread(admin.delete_topic, topic)
