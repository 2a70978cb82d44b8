"""``make bench``: infinitic-py against a real Pulsar broker, every figure next to a baseline
measured in the same run. Prints a table and writes ``bench-results/results.json``.

    deploy/pulsar-standalone/with-broker.sh .venv/bin/python -m benchmarks.run [options]
      --only SECTIONS   comma-separated: wire,baseline,executor,e2e,flush,memory,bulk,fleet,
                        interop (default: all but interop, which needs Java + the Infinitic jar)
      --quick           smaller N everywhere (a smoke run, figures are noisier)
      --repeats R       runs per throughput figure, the median is kept (default 3; the executor
                        rows take max(R, 5) pairs of runs, made odd, 1 if R is 1)
      --profile DIR     also profile one executor max_messages=100 run with pyinstrument
                        (DIR/executor-m100.txt and .html; not part of the figures)
    For a sampling profile with less overhead: py-spy record -o out.svg -- <the command above>.

Method (each section's module docstring has the details):

1. baseline (``benchmarks.baseline``): N pre-published ExecuteTask messages (~170 bytes, published
   by the transport's batching producer as ``many()`` does) consumed and acked on a Shared
   subscription by raw pulsar-client, as fast as it goes: ``pulsar.asyncio`` receive + ack, and a
   thread on the sync ``batch_receive()`` + native ack. Timed from the first message received to
   the last ack (after one discarded warm-up run). The faster is "the limit". A diagnostic row
   runs infinitic-py's own ``PulsarConsumer`` as the executor does (receive_many, ack per 100):
   the transport's share.
   The whole bench process runs with the worker daemon's GC settings (``tune_gc_for_worker``).
2. executor (``benchmarks.executor_bench``): a ``ServiceExecutor`` (what the worker runs per
   service) drains N pre-published tasks through a no-op async batch method, max_messages 1 / 10 /
   100 / 1000 (and 100 with a sync batch method), max_seconds 0.05, concurrency 10, no ``reply_to`` (nothing published back). Timed
   from the first message its consumer hands out to the N-th ack (a counting wrapper around the
   transport's consumer); the admin API must then show the subscription drained. Ratio: each
   executor run is paired with a run of the limit's raw loop just before it (the broker's speed
   drifts by up to a third over minutes), on the same N, in alternating order; the row gives the
   median of the pairs' ratios (so its ratio is not its value / its baseline, the median runs). Both
   sections start with discarded runs (raw loop, then executor) on the fresh broker. A diagnostic row (``benchmarks.executor_local``) runs the same executor without a
   broker (an in-process consumer, free acks): the CPU µs per task the executor itself adds.
   Two "floor" rows (``benchmarks.floor``), paired like the executor rows: the same transport and
   decoding, a dict per 100 tasks, a no-op (async, or sync in a thread pool), the ack, 10 batches
   at once, and nothing else: the most any executor on this transport can reach. In-process logging at the worker's default level, INFO (a line per batch), as JSON to
   bench-results/bench-log.jsonl. A sync row runs the same no-op as a plain ``def`` batch method.
3. end to end (``benchmarks.e2e``): ``AsyncClient.many()`` → ``infinitic-py worker`` process →
   results awaited, 2,000 tasks in flight; tasks/s and p50/p99 latency (dispatch → result).
   Baseline: the same closed loop with raw pulsar-client on both sides (``benchmarks.raw_echo``).
4. flush accuracy (``benchmarks.flush``): single-task groups flushed by their timer, max_seconds
   0.1 and 1.0 (unique batch keys, 15 ms apart), 0.1 with one key every 0.15 s, and 0.1 while a
   second executor on the same loop drains a backlog. Lateness of the flush and of the batch
   method's start vs first arrival + max_seconds; baseline: a bare ``loop.call_later`` armed at
   each publish, on the same loop at the same time.
5. memory (``benchmarks.memory``): peak RSS of an ``infinitic-py worker`` process while 100,000
   tasks flow through a slow batch method with ``max_buffered_messages`` 10,000, at 10,000 and at
   100,000 tasks processed. Ratio: 100k / 10k (the cap holds if <= 1.2).
6. bulk (``benchmarks.bulk``): dispatch throughput of ``many()`` of 1,000 tasks with
   ``atomic=True`` (one message carrying them all); baseline: the same ``many()`` without it
   (1,000 messages in producer batches), alternated on the same client.
7. wire (``benchmarks.wire``): msgspec MessagePack vs JSON, encode + decode of an ExecuteTask and
   its arguments. Ratio: JSON time / MessagePack time.
8. fleet (``benchmarks.fleet``): 1, 2 and 4 ``infinitic-py worker`` processes on one service,
   20 batch keys, 2,000 tasks/s offered (20,000 tasks a row; 6,000 with --quick), max_messages
   100, max_seconds 2. Value: mean batch; ratio: to the 1-worker row's (the fill a fleet keeps);
   the note gives the busiest worker's share of the tasks over its fair share, the tasks per
   worker, keys seen on several workers and tasks/s. Rows for key_shared with many() and single
   dispatches, shared, the mixed-key producer batches of before issue 15, key_spread, a hot key.
9. interop (``benchmarks.interop``, opt-in): the Python executor on Infinitic's wire vs the JVM
   Infinitic executor (example runner ``mode=isolated``), same broker, batch settings and run:
   ``--repeats`` alternating pairs (odd), the median of the pairs' ratios.

The broker and this process share the machine: throughput figures move by +-10% between runs,
hence medians of ``--repeats`` runs. Every run uses fresh topics and deletes them at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import platform
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any, TypeVar

from benchmarks.baseline import BaselineResult, run_baseline
from benchmarks.bulk import run_bulk
from benchmarks.common import Env, percentile
from benchmarks.e2e import run_infinitic, run_raw
from benchmarks.executor_bench import ExecutorResult, run_executor
from benchmarks.executor_local import LocalResult, run_executor_local
from benchmarks.fleet import CASES as FLEET_CASES
from benchmarks.fleet import run_fleet
from benchmarks.floor import run_floor
from benchmarks.flush import FlushResult, run_flush
from benchmarks.interop import run_interop
from benchmarks.memory import run_memory
from benchmarks.wire import run_wire
from benchmarks.workerproc import UNCLEAN_EXITS
from infinitic_py.gc_tuning import tune_gc_for_worker
from infinitic_py.observability import configure_logging

# (max_messages, sync batch method): the executor rows.
EXECUTOR_ROWS = ((1, False), (10, False), (100, False), (100, True), (1000, False))
SECTIONS = ("wire", "baseline", "executor", "e2e", "flush", "memory", "bulk", "fleet", "interop")
DEFAULT_SECTIONS = SECTIONS[:-1]  # interop is opt-in (``--only interop``): it needs the JVM
RESULTS = Path(__file__).resolve().parents[1] / "bench-results" / "results.json"
T = TypeVar("T")


@dataclass
class Row:
    section: str
    measure: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_name: str = ""
    ratio: float | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Sizes:
    baseline: int = 100_000
    executor: int = 100_000
    executor_m1: int = 20_000
    e2e: int = 20_000
    flush: int = 150
    flush_load: int = 100_000
    memory: tuple[int, ...] = (10_000, 100_000, 200_000)
    fleet: int = 20_000
    fleet_rate: float = 2_000.0

    @classmethod
    def quick(cls) -> Sizes:
        return cls(20_000, 20_000, 5_000, 5_000, 40, 20_000, (5_000, 20_000, 40_000), 6_000)


def _ratio(value: float, baseline: float | None) -> float | None:
    if baseline is None or baseline == 0 or math.isnan(baseline) or math.isnan(value):
        return None
    return value / baseline


class Bench:
    def __init__(self, env: Env, sizes: Sizes, repeats: int, profile: str | None) -> None:
        self.env = env
        self.sizes = sizes
        self.repeats = repeats
        self.profile = profile
        self.rows: list[Row] = []
        self.limit: float | None = None
        self.limit_name = ""
        self.limit_variant = "thread"
        # A single pair's ratio moves by +-10%: the executor rows take more runs than the others,
        # an odd number (a true median).
        self.pairs = (max(repeats, 5) | 1) if repeats > 1 else 1
        self.max_messages: set[int] = set()  # executor rows to run (empty: all)

    def add(self, row: Row) -> None:
        row.ratio = _ratio(row.value, row.baseline) if row.ratio is None else row.ratio
        self.rows.append(row)
        print(f"  {row.measure}: {_fmt(row.value)} {row.unit}"
              + (f"  (x{row.ratio:.2f} of {row.baseline_name})" if row.ratio is not None else ""),
              flush=True)

    async def median_of(self, run: Callable[[], Awaitable[T]], key: Callable[[T], float]
                        ) -> tuple[T, list[float]]:
        results: list[T] = []
        for _ in range(self.repeats):
            results.append(await run())
            gc.collect()
        values = [key(r) for r in results]
        results.sort(key=key)
        return results[len(results) // 2], sorted(values)

    # ------------------------------------------------------------------ sections

    async def wire(self) -> None:
        result = await asyncio.to_thread(run_wire)
        self.add(Row("wire", "msgpack encode+decode (ExecuteTask + args)", result.msgpack_us,
                     "us/task", result.json_us, "JSON", ratio=result.json_us / result.msgpack_us,
                     note=f"{result.msgpack_bytes} B vs {result.json_bytes} B JSON; ratio = JSON"
                          " time / msgpack time",
                     extra=asdict(result)))

    async def baseline(self) -> None:
        n = self.sizes.baseline
        # A freshly started broker (JIT, caches) is slower at first, by up to half: discarded runs
        # of the raw loop and of the executor first, so nothing is measured on a cold broker.
        await run_baseline(self.env, "thread", n)
        await run_executor(self.env, 100, n // 2)
        gc.collect()
        best: dict[str, float] = {}
        variants: dict[str, str] = {}
        for variant, label in (("thread", "raw thread batch_receive + ack"),
                               ("asyncio", "raw pulsar.asyncio receive + ack"),
                               ("transport", "infinitic PulsarConsumer receive_many + ack/100")):
            result, values = await self.median_of(
                lambda v=variant: run_baseline(self.env, v, n),  # type: ignore[misc]
                lambda r: r.tasks_per_s)
            assert isinstance(result, BaselineResult)
            if variant != "transport":
                best[label] = result.tasks_per_s
                variants[label] = variant
            else:
                self.limit_name = max(best, key=lambda k: best[k])
                self.limit = best[self.limit_name]
                self.limit_variant = variants[self.limit_name]
            self.add(Row("baseline", label, result.tasks_per_s, "msg/s",
                         self.limit if variant == "transport" else None,
                         "the limit" if variant == "transport" else "",
                         note=("" if result.drained else "NOT DRAINED ")
                         + f"N={n}, runs: {', '.join(_fmt(v) for v in values)}",
                         extra={"runs": values}))
        self.rows.insert(0, Row("baseline", f"the limit = {self.limit_name}", self.limit or 0,
                                "msg/s"))

    async def executor(self) -> None:
        if self.limit is None:
            raise SystemExit("the executor section needs the baseline section")
        # Paired runs: the broker's speed drifts by a third over minutes on this kind of machine,
        # so each executor run is next to a run of the raw loop that sets the limit, on the same
        # N, and its ratio is to that run. The order alternates (raw first in pairs 1, 3, 5...),
        # so whatever running second does to a run is not always on the same side. The row's
        # ratio is the median of the pairs' ratios.
        for m, sync in EXECUTOR_ROWS:
            if self.max_messages and m not in self.max_messages:
                continue
            n = self.sizes.executor_m1 if m == 1 else self.sizes.executor
            pairs: list[tuple[BaselineResult, ExecutorResult]] = []
            for i in range(self.pairs):
                if i % 2 == 0:
                    raw = await run_baseline(self.env, self.limit_variant, n)
                    ours = await run_executor(self.env, m, n, sync=sync)
                else:
                    ours = await run_executor(self.env, m, n, sync=sync)
                    raw = await run_baseline(self.env, self.limit_variant, n)
                gc.collect()
                pairs.append((raw, ours))
            ratios = sorted(o.tasks_per_s / r.tasks_per_s for r, o in pairs)
            values = sorted(o.tasks_per_s for _, o in pairs)
            raws = sorted(r.tasks_per_s for r, _ in pairs)
            result = sorted((o for _, o in pairs), key=lambda o: o.tasks_per_s)[len(pairs) // 2]
            drained = all(o.drained and r.drained for r, o in pairs)
            kind = "sync" if sync else "async"
            self.add(Row("executor", f"executor batched no-op ({kind}), max_messages={m}",
                         result.tasks_per_s, "tasks/s", raws[len(raws) // 2],
                         f"{self.limit_name}, paired", ratio=ratios[len(ratios) // 2],
                         note=("" if drained else "NOT DRAINED ")
                         + f"N={n}, {result.batches} batches; value and baseline are the "
                         "median runs, the ratio the median of the pairs' ratios; pairs (limit "
                         "run -> executor): "
                         + ", ".join(f"{_fmt(r.tasks_per_s)} -> {_fmt(o.tasks_per_s)}"
                                     for r, o in pairs),
                         extra={"runs": values, "limit_runs": raws, "ratios": ratios,
                                "batches": result.batches}))
        for sync in (False, True):
            if self.max_messages and 100 not in self.max_messages:
                break
            kind = "sync" if sync else "async"
            pairs_s = await self._paired(self.sizes.executor,
                                         lambda s=sync: run_floor(  # type: ignore[misc]
                                             self.env, self.sizes.executor, sync=s))
            ratios = sorted(o / r for r, o in pairs_s)
            self.add(Row("executor", f"floor: decode + dict + no-op ({kind}) + ack per 100, "
                         "no executor", sorted(o for _, o in pairs_s)[len(pairs_s) // 2],
                         "tasks/s", sorted(r for r, _ in pairs_s)[len(pairs_s) // 2],
                         f"{self.limit_name}, paired", ratio=ratios[len(ratios) // 2],
                         note=f"diagnostic: the most any executor on this transport can reach "
                              f"(benchmarks.floor); N={self.sizes.executor}, pairs (limit run "
                              "-> floor): " + ", ".join(f"{_fmt(r)} -> {_fmt(o)}"
                                                        for r, o in pairs_s),
                         extra={"ratios": ratios}))
        for sync in (False, True):
            local, values = await self.median_of(
                lambda s=sync: run_executor_local(100, self.sizes.executor,  # type: ignore[misc]
                                                  sync=s),
                lambda r: r.cpu_us_per_task)
            assert isinstance(local, LocalResult)
            kind = "sync" if sync else "async"
            self.add(Row("executor", f"executor alone ({kind}, no broker, free ack), "
                         "max_messages=100", local.cpu_us_per_task, "us/task",
                         note=f"diagnostic: CPU per task the executor adds to the transport; "
                              f"N={local.n}, runs: " + ", ".join(f"{v:.2f}" for v in values),
                         extra={"runs": values}))
        if self.profile:
            os.makedirs(self.profile, exist_ok=True)
            path = os.path.join(self.profile, "executor-m100.txt")
            await run_executor(self.env, 100, self.sizes.executor, profile_path=path)
            print(f"  profile: {path} (+ .html)")

    async def _paired(self, n: int, ours: Callable[[], Awaitable[float]]
                      ) -> list[tuple[float, float]]:
        """``self.pairs`` alternating pairs (raw limit loop, ``ours``) on N messages each:
        their (limit, ours) rates in tasks/s."""
        pairs: list[tuple[float, float]] = []
        for i in range(self.pairs):
            if i % 2 == 0:
                raw = (await run_baseline(self.env, self.limit_variant, n)).tasks_per_s
                value = await ours()
            else:
                value = await ours()
                raw = (await run_baseline(self.env, self.limit_variant, n)).tasks_per_s
            gc.collect()
            pairs.append((raw, value))
        return pairs

    async def e2e(self) -> None:
        n = self.sizes.e2e
        raw = await run_raw(self.env, n)
        gc.collect()
        ours = await run_infinitic(self.env, n)
        gc.collect()
        sat = {"raw_p50_ms": percentile(raw.saturated_ms, 50),
               "p50_ms": percentile(ours.saturated_ms, 50)}
        self.add(Row("e2e", "raw request/reply throughput (raw_echo)", raw.tasks_per_s,
                     "tasks/s", note=f"N={n}, {raw.window} in flight"))
        self.add(Row("e2e", "end to end many() -> worker -> result", ours.tasks_per_s, "tasks/s",
                     raw.tasks_per_s, "raw request/reply",
                     note=f"N={n}, {ours.window} in flight; latency then p50 "
                          f"{sat['p50_ms']:.0f} ms (raw {sat['raw_p50_ms']:.0f} ms)",
                     extra=sat))
        for q in (50, 99):
            self.add(Row("e2e", f"end to end latency p{q} at {ours.rate:,.0f} tasks/s",
                         percentile(ours.latencies_ms, q), "ms",
                         percentile(raw.latencies_ms, q), f"raw p{q}",
                         note=f"{len(ours.latencies_ms)} tasks, many() of 100"
                         if q == 50 else ""))
        # The same with 1 ms instead of the default 10 ms producer batching delay (client and
        # worker): each hop otherwise waits for the batch timer.
        fast = await run_infinitic(self.env, n // 4, publish_delay_ms=1)
        gc.collect()
        for q in (50, 99):
            self.add(Row("e2e", f"... latency p{q}, batching_max_publish_delay_ms=1",
                         percentile(fast.latencies_ms, q), "ms",
                         percentile(raw.latencies_ms, q), f"raw p{q}",
                         note=f"throughput {_fmt(fast.tasks_per_s)} tasks/s (N={n // 4})"
                         if q == 50 else ""))

    async def flush(self) -> None:
        cases: list[tuple[str, float, dict[str, Any]]] = [
            ("0.1 s, unique keys 15 ms apart", 0.1, {}),
            ("1.0 s, unique keys 15 ms apart", 1.0, {}),
            ("0.1 s, one key every 0.15 s", 0.1,
             {"unique_keys": False, "count": max(10, self.sizes.flush // 5)}),
            ("0.1 s, unique keys, busy loop", 0.1, {"load": self.sizes.flush_load, "count": 100}),
        ]
        for label, max_seconds, options in cases:
            count = options.pop("count", self.sizes.flush)
            result = await run_flush(self.env, max_seconds, count, label=label, **options)
            gc.collect()
            self._flush_rows(result)

    def _flush_rows(self, r: FlushResult) -> None:
        note = f"{len(r.flush_ms)} time flushes" + (
            f", {r.not_time} flushed otherwise" if r.not_time else "")
        for q in (50, 99):
            self.add(Row("flush", f"flush lateness p{q}, max_seconds {r.label}",
                         r.p(r.flush_ms, q), "ms", r.p(r.timer_ms, q), f"call_later p{q}",
                         note=note if q == 50 else
                         f"handler start p{q}: {r.p(r.start_ms, q):.1f} ms",
                         extra={"handler_start_ms": r.p(r.start_ms, q),
                                "max_ms": max(r.flush_ms) if r.flush_ms else None}))

    async def interop(self) -> None:
        quick = self.sizes.executor < 100_000
        python_n = 20_000 if quick else 50_000
        workflows, per = (10, 100) if quick else (30, 100)
        # Alternating pairs (JVM run, then Python run), an odd number: the ratio is the median
        # of the pairs' ratios, as for the executor rows (one pair moved by +-30% here).
        pairs: list[tuple[float, float]] = []
        lines: list[str] = []
        for _ in range(self.repeats | 1):
            r = await run_interop(self.env, python_n, workflows, per)
            if r.skipped:
                print(f"  interop skipped: {r.skipped}", flush=True)
                return
            if r.jvm_tps is None:
                print(f"  interop: {r.jvm_line}", flush=True)
                continue
            pairs.append((r.jvm_tps, r.python_tps))
            lines.append(r.jvm_line)
            print(f"  pair {len(pairs)}: JVM {_fmt(r.jvm_tps)} -> Python {_fmt(r.python_tps)} "
                  f"tasks/s (x{r.python_tps / r.jvm_tps:.2f})", flush=True)
        if not pairs:
            return
        ratios = sorted(py / jvm for jvm, py in pairs)
        jvm_median = sorted(j for j, _ in pairs)[len(pairs) // 2]
        py_median = sorted(p for _, p in pairs)[len(pairs) // 2]
        self.add(Row("interop", "Python executor, Infinitic wire (firstStart->lastEnd)",
                     py_median, "tasks/s", jvm_median, "JVM Infinitic executor",
                     ratio=ratios[len(ratios) // 2],
                     note=f"N={python_n}; JVM K={workflows * per} mode=isolated; batch 100/1.0 s, "
                          "concurrency 4; value and baseline are the median runs, the ratio the "
                          "median of the pairs' ratios; pairs (JVM -> Python): "
                          + ", ".join(f"{_fmt(j)} -> {_fmt(p)}" for j, p in pairs),
                     extra={"jvm_lines": lines, "pairs": pairs}))

    async def memory(self) -> None:
        milestones = self.sizes.memory
        result = await run_memory(self.env, milestones)
        first = milestones[0]
        previous: int | None = None
        for m in milestones:
            note = f"VmRSS {result.rss_mib(m):.1f} MiB"
            if m == first:
                note += f"; max_buffered_messages {result.max_buffered:,}"
            if m == milestones[-1]:
                note += (("" if result.drained else "; NOT DRAINED")
                         + f"; sampled peak {result.sampled_peak_kib / 1024:.1f} MiB; "
                         f"{result.seconds:.1f} s")
            baseline = None if previous is None else result.hwm_mib(first)
            self.add(Row("memory", f"worker peak RSS at {m:,} tasks", result.hwm_mib(m), "MiB",
                         baseline, f"peak at {first:,}" if baseline is not None else "",
                         note=note, extra=result.milestones[m]))
            if previous is not None and previous != first:
                self.add(Row("memory", f"worker peak RSS {previous:,} -> {m:,} tasks",
                             result.hwm_mib(m), "MiB", result.hwm_mib(previous),
                             f"peak at {previous:,}"))
            previous = m

    async def fleet(self) -> None:
        n, rate = self.sizes.fleet, self.sizes.fleet_rate
        single_fill: float | None = None
        for case in FLEET_CASES:
            r = await run_fleet(self.env, case, n, rate)
            gc.collect()
            if case.workers == 1:
                single_fill = r.mean_batch
            hot = f", hot key on {r.hot_workers} worker(s)" if case.hot else ""
            self.add(Row(
                "fleet", case.label, r.mean_batch, "tasks/batch",
                None if case.workers == 1 else single_fill,
                "" if case.workers == 1 else "1-worker fill",
                note=("" if r.complete else "INCOMPLETE ")
                + f"busiest worker x{r.max_share:.2f} of its fair share (tasks {r.shares()}); "
                f"keys on >1 worker {r.keys_on_several}{hot}; {_fmt(r.tasks_per_s)} tasks/s",
                extra={"per_worker": r.per_worker, "max_share": r.max_share,
                       "tasks_per_s": r.tasks_per_s, "batches": r.batches,
                       "keys_on_several": r.keys_on_several, "n": n, "rate": rate}))

    async def bulk(self) -> None:
        result = await run_bulk(self.env, 1000, max(5, 3 * self.repeats))
        self.add(Row("bulk", "many() of 1,000, atomic=True (one message)",
                     result.atomic_tasks_per_s, "tasks/s", result.plain_tasks_per_s,
                     "many() of 1,000, plain",
                     note="dispatch only, until the broker confirmed; plain runs: "
                          + ", ".join(_fmt(v) for v in result.plain_runs),
                     extra={"atomic_runs": result.atomic_runs,
                            "plain_runs": result.plain_runs}))


def _fmt(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _table(rows: list[Row]) -> str:
    head = ("section", "measure", "value", "baseline", "ratio", "note")
    body = [
        (r.section, r.measure, f"{_fmt(r.value)} {r.unit}",
         f"{_fmt(r.baseline)} ({r.baseline_name})" if r.baseline is not None else "",
         f"{r.ratio:.2f}" if r.ratio is not None else "", r.note)
        for r in rows
    ]
    widths = [max(len(line[i]) for line in [head, *body]) for i in range(5)]
    out = []
    for line in [head, (*("-" * w for w in widths), "-" * 4), *body]:
        out.append("  ".join(c.ljust(w) for c, w in zip(line[:5], widths, strict=True))
                   + "  " + line[5])
    return "\n".join(out)


def _checks(rows: list[Row]) -> list[str]:
    def find(prefix: str) -> Row | None:
        return next((r for r in rows if r.measure.startswith(prefix)), None)

    out = []
    for kind, target in (("async", 0.85), ("sync", 0.75)):
        m100 = find(f"executor batched no-op ({kind}), max_messages=100")
        if m100 and m100.ratio is not None:
            out.append(f"{'PASS' if m100.ratio >= target else 'MISS'}  executor ({kind} batch "
                       f"method) max_messages=100 at {m100.ratio:.2f} of the limit "
                       f"(target >= {target})")
    p99 = find("flush lateness p99, max_seconds 0.1 s, unique keys 15 ms apart")
    if p99:
        out.append(f"{'PASS' if p99.value < 50 else 'MISS'}  flush lateness p99 at max_seconds "
                   f"0.1: {p99.value:.1f} ms (target < 50 ms)")
    busy = find("flush lateness p99, max_seconds 0.1 s, unique keys, busy loop")
    if busy:
        out.append(f"{'PASS' if busy.value < 50 else 'MISS'}  ... with a busy loop: "
                   f"{busy.value:.1f} ms (target < 50 ms)")
    for label in ("4 workers, key_shared, many() of 100",
                  "4 workers, key_shared, single dispatches",
                  "4 workers, key_shared, many() of 100, key_rotation=100",
                  "4 workers, key_shared, single dispatches, key_rotation=100"):
        row = next((r for r in rows if r.measure == label), None)
        if row and row.ratio is not None:
            share = float(row.extra.get("max_share", 0))
            ok = row.ratio >= 0.9 and share <= 1.5
            out.append(f"{'PASS' if ok else 'MISS'}  fleet {label}: fill {row.ratio:.2f} of one "
                       f"worker's (target >= 0.9), busiest worker x{share:.2f} of its fair share "
                       + ("(target <= 1.5)" if "rotation" in label else
                          "(target <= 1.5; a hash draw with 20 keys, see the note)"))
    interop = find("Python executor, Infinitic wire")
    if interop and interop.ratio is not None:
        out.append(f"{'PASS' if interop.ratio >= 10 else 'MISS'}  interop: Python executor "
                   f"x{interop.ratio:.2f} of the JVM Infinitic executor (target >= 10)")
    memory = [r for r in rows if r.section == "memory" and r.ratio is not None]
    for r in memory:
        out.append(f"{'PASS' if r.ratio is not None and r.ratio <= 1.2 else 'MISS'}  "
                   f"{r.measure} / {r.baseline_name}: {r.ratio:.2f} (target <= 1.2)")
    return out


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(DEFAULT_SECTIONS))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", metavar="DIR")
    parser.add_argument("--output", default=str(RESULTS))
    parser.add_argument("--max-messages", default="",
                        help="executor rows: only these max_messages (comma-separated)")
    args = parser.parse_args(argv)
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    if "executor" in sections and "baseline" not in sections:
        sections.insert(0, "baseline")
    # The worker's default log level (info: one line per batch), rendered as in a worker, to a
    # file next to the results rather than the terminal.
    os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
    log_path = os.path.join(os.path.dirname(args.output) or ".", "bench-log.jsonl")
    configure_logging("json", "info", stream=open(log_path, "w"))  # noqa: SIM115, ASYNC230
    # The GC settings of the worker daemon (infinitic_py/gc_tuning.py), for the whole bench
    # process: the in-process executor runs as in a worker, and the raw loops get the same.
    tune_gc_for_worker()
    print(f"GC as in the worker daemon (gen-0 threshold {gc.get_threshold()[0]}, startup objects "
          "frozen), for every row, the raw loops included", flush=True)
    started = time.perf_counter()
    env = Env.from_environ()
    bench = Bench(env, Sizes.quick() if args.quick else Sizes(), max(1, args.repeats),
                  args.profile)
    bench.max_messages = {int(m) for m in args.max_messages.split(",") if m.strip()}
    try:
        for section in SECTIONS:
            if section in sections:
                print(f"[{section}]", flush=True)
                t0 = time.perf_counter()
                await getattr(bench, section)()
                print(f"  ({time.perf_counter() - t0:.0f} s)", flush=True)
    finally:
        deleted = await asyncio.to_thread(env.cleanup)
    wall = time.perf_counter() - started
    checks = _checks(bench.rows)
    print()
    print(_table(bench.rows))
    print()
    for line in checks:
        print(line)
    for unclean in UNCLEAN_EXITS:
        print(f"WARNING worker process {unclean}")
    output = Path(args.output)
    _write_json(output, {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - wall)),
        "wall_seconds": round(wall, 1),
        "sections": sections,
        "sizes": asdict(bench.sizes),
        "gc_threshold": list(gc.get_threshold()),
        "repeats": bench.repeats,
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                    "platform": platform.platform(), "pulsar_client": version("pulsar-client"),
                    "msgspec": version("msgspec")},
        "broker": env.url,
        "rows": [asdict(r) for r in bench.rows],
        "checks": checks,
        "unclean_worker_exits": UNCLEAN_EXITS,
    })
    print(f"\n{len(bench.rows)} rows, {wall:.0f} s, {deleted} bench topics deleted -> {output}")
    return 0


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
