"""A service for test_tracing's subprocess (importable without OpenTelemetry)."""

from __future__ import annotations

from infinitic_py import task


class Plain:
    @task
    def go(self, n: int) -> int:
        return n
