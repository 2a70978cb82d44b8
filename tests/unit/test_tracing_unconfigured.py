"""Without a tracer provider (the ``otel`` extra installed, no SDK configured), a unit starts no
span at all: nothing would record it, and the worker runs a unit per batch."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("opentelemetry", reason="the otel extra is not installed")

from opentelemetry import trace

from infinitic_py import tracing


def test_no_span_is_started_without_a_tracer_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    # A provider may have been set by another test of this process (once per process): the
    # lookup is made to answer "none", as it does in a worker without the SDK.
    monkeypatch.setattr(trace, "get_tracer_provider", trace.ProxyTracerProvider)
    monkeypatch.setattr(tracing, "_no_provider_until", 0.0)

    def no_tracer(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a span was started with no tracer provider")

    monkeypatch.setattr(trace, "get_tracer", no_tracer)

    with tracing.unit_span("S", "m", "b-1", [object()]) as span:
        span.record([], [])
