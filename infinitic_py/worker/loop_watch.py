"""LoopWatch: says *what* blocks the worker's event loop, while it blocks.

Every service of a worker shares one event loop: an ``async def`` handler that calls blocking
code (``time.sleep``, a sync HTTP client, a CPU-bound loop) stops receiving, flushing, acking
and every other handler until it returns. ``/healthz`` answers 503 then (its check runs on the
loop), but nothing named the culprit. The loop beats every ``interval`` seconds; a daemon thread
checks the beat, and once it is ``threshold`` seconds late logs ``worker.loop_blocked`` (once a
stall) with where the loop's thread is (its innermost frames: the blocking call and the handler
above it), then ``worker.loop_unblocked`` with the stall's length when the loop beats again.
Costs one timer callback per interval.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import traceback

import structlog

log = structlog.get_logger("infinitic_py.worker")

DEFAULT_THRESHOLD = 2.0  # seconds without a beat before a stall is logged
_FRAMES = 6  # innermost frames of the loop thread logged with a stall


class LoopWatch:
    def __init__(self, *, threshold: float = DEFAULT_THRESHOLD,
                 interval: float | None = None) -> None:
        self.threshold = threshold
        self.interval = interval if interval is not None else min(0.5, threshold / 4)
        self._beat = time.monotonic()
        self._stop = threading.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0

    def start(self) -> None:
        """On the loop to watch."""
        if self._thread is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._stop.clear()
        self._on_beat()
        self._thread = threading.Thread(target=self._watch, name="loop-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._thread = None

    def _on_beat(self) -> None:
        self._beat = time.monotonic()
        if not self._stop.is_set() and self._loop is not None:
            self._timer = self._loop.call_later(self.interval, self._on_beat)

    def _watch(self) -> None:
        stalled_since: float | None = None
        while not self._stop.wait(self.interval):
            beat = self._beat
            late = time.monotonic() - beat
            if stalled_since is not None and beat > stalled_since:
                log.info("worker.loop_unblocked", seconds=round(beat - stalled_since, 3))
                stalled_since = None
            if stalled_since is None and late >= self.threshold:
                stalled_since = beat
                log.warning("worker.loop_blocked", seconds=round(late, 3),
                            where=self._where(),
                            hint="an async handler runs blocking code on the event loop, which "
                                 "every service of this worker shares: make it a plain def "
                                 "(run in a thread) or await asyncio.to_thread(...)")

    def _where(self) -> list[str]:
        frame = sys._current_frames().get(self._loop_thread)
        if frame is None:
            return []
        summary = traceback.extract_stack(frame)[-_FRAMES:]
        return [f"{f.filename}:{f.lineno} {f.name}: {f.line or ''}".rstrip() for f in summary]
