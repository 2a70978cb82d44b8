"""Without a tracer provider (the ``otel`` extra installed, no SDK configured), a unit starts no
span at all: nothing would record it, and the worker runs a unit per batch."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("opentelemetry", reason="the otel extra is not installed")

from opentelemetry import trace

from infinitic_py import tracing


def test_no_span_is_started_without_a_tracer_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        pytest.skip("a tracer provider was set in this process (once per process)")

    def no_tracer(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a span was started with no tracer provider")

    monkeypatch.setattr(trace, "get_tracer", no_tracer)

    with tracing.unit_span("S", "m", "b-1", [object()]) as span:
        span.record([], [])
