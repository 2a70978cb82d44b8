"""Worker processes for the benchmarks: the real CLI (``infinitic-py worker -c cfg.yaml``) and
the raw pulsar-client echo (``python -m benchmarks.raw_echo``), started from the repository root
so ``benchmarks.services`` imports. stdout is a pipe (milestone lines), stderr a file (logs)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
UNCLEAN_EXITS: list[str] = []  # run.py reports these


class WorkerProcess:
    def __init__(
        self, argv: list[str], env: dict[str, str], ready_marker: str, config: str | None = None
    ) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="infinitic-bench-")
        self.log_path = Path(self._dir.name) / "worker.log"
        if config is not None:  # argv names it as {config}
            config_path = Path(self._dir.name) / "worker.yaml"
            config_path.write_text(config)
            argv = [str(config_path) if a == "{config}" else a for a in argv]
        self._log = self.log_path.open("wb")
        self.argv = argv
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.PIPE,
            stderr=self._log, text=True,
        )
        self.ready_marker = ready_marker

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def dir(self) -> Path:
        return Path(self._dir.name)

    async def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}:\n{self.log_tail()}")
            if self.ready_marker in self.log_path.read_text(errors="replace"):
                return
            await asyncio.sleep(0.1)
        raise TimeoutError(f"worker not ready within {timeout}s:\n{self.log_tail()}")

    async def readline(self) -> str:
        assert self.proc.stdout is not None
        return await asyncio.to_thread(self.proc.stdout.readline)

    def log_tail(self, lines: int = 20) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    async def stop(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.proc.wait, timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                await asyncio.to_thread(self.proc.wait)
        self._log.close()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        code = self.proc.returncode
        if code != 0:  # a worker that does not drain and exit 0 on SIGTERM is news
            UNCLEAN_EXITS.append(f"{self.argv[:4]} exited with {code}:\n{self.log_tail()}")
        self._dir.cleanup()
        return code


def rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in KiB, from /proc (Linux); (0, 0) once it is gone."""
    rss = hwm = 0
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1])
    except OSError:
        pass
    return rss, hwm


def start_cli_worker(config: dict[str, Any], env: dict[str, str] | None = None) -> WorkerProcess:
    """``infinitic-py worker -c <config>`` with ``config`` written as YAML."""
    cli = Path(sys.executable).with_name("infinitic-py")
    return WorkerProcess(
        [str(cli), "worker", "-c", "{config}"], env or {}, "worker.started",
        config=yaml.safe_dump(config),
    )


def start_raw_echo(url: str, topic: str, subscription: str) -> WorkerProcess:
    """The raw pulsar-client request/reply worker (the end-to-end baseline)."""
    return WorkerProcess(
        [sys.executable, "-m", "benchmarks.raw_echo", url, topic, subscription], {},
        "raw_echo.ready",
    )


def worker_config(
    url: str,
    admin_url: str,
    service_class: str,
    service: str,
    method: str,
    *,
    max_messages: int,
    max_seconds: float,
    concurrency: int = 10,
    max_buffered: int = 10_000,
    log_level: str = "info",
) -> dict[str, Any]:
    return {
        "pulsar": {"url": url, "admin_url": admin_url},
        "worker": {
            "name": f"bench-{service}",
            "max_buffered_messages": max_buffered,
            "shutdown_grace_seconds": 5.0,
            "http_port": 0,
            "log_format": "json",
            "log_level": log_level,
        },
        "services": [{
            "class": service_class,
            "name": service,
            "concurrency": concurrency,
            "batch": {method: {"max_messages": max_messages, "max_seconds": max_seconds}},
        }],
    }
