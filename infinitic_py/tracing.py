"""OpenTelemetry tracing, when the ``otel`` extra (``opentelemetry-api``) is installed.

- The client injects the caller's trace context (W3C ``traceparent`` / ``tracestate``, and
  ``baggage``) into each task's message properties (``inject``).
- The worker starts one span per batch (or single task), ``<Service>.<method>``, kind CONSUMER,
  with a link to each task's context and a ``task.failed`` event per failed task (``unit_span``,
  entered by ``worker/invoke.py`` around the user's code).
- Retries, dead letters and replays copy the trace properties of the message they come from
  (``carried``, needs nothing installed; ``worker/outcomes.py`` for retries and dead letters), so a retried or replayed task links to its trace.

Without the package, ``ENABLED`` is False and the callers skip every call: the import is tried
once, here, and the hot path pays one boolean test per task.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager
from typing import Any, Final, Protocol

import msgspec

from infinitic_py.transport.base import OutgoingMessage

try:
    from opentelemetry import propagate, trace
except ImportError:  # the `otel` extra is not installed
    ENABLED = False
else:
    ENABLED = True

__all__ = ["ENABLED", "TRACE_PROPERTIES", "UnitSpan", "carried", "inject", "injected", "unit_span"]

TRACER_NAME: Final = "infinitic_py"
# Message properties that carry a trace (W3C trace context and baggage).
TRACE_PROPERTIES: Final = ("traceparent", "tracestate", "baggage")


def carried(properties: Mapping[str, str]) -> dict[str, str]:
    """The trace properties of a received message, to copy onto its retry or dead letter."""
    return {key: properties[key] for key in TRACE_PROPERTIES if key in properties}


def inject(properties: MutableMapping[str, str]) -> None:
    """Client side: the current trace context into a task's message properties."""
    propagate.inject(properties)


def injected(message: OutgoingMessage) -> OutgoingMessage:
    """Client side: ``message`` with the current trace context added to its properties."""
    properties = dict(message.properties)
    propagate.inject(properties)
    return msgspec.structs.replace(message, properties=properties)


class UnitSpan(Protocol):
    def record(self, items: Sequence[Any], outcomes: Sequence[Any]) -> None: ...


class _NoSpan:
    def record(self, items: Sequence[Any], outcomes: Sequence[Any]) -> None:
        return None


class _RecordingSpan:
    def __init__(self, span: Any) -> None:
        self._span = span

    def record(self, items: Sequence[Any], outcomes: Sequence[Any]) -> None:
        """A ``task.failed`` event per task whose outcome has an ``error``."""
        for item, outcome in zip(items, outcomes, strict=True):
            error = getattr(outcome, "error", None)
            if error is not None:
                self._span.add_event("task.failed", {
                    "infinitic.task_id": item.task.task_id,
                    "exception.type": type(error).__name__,
                    "exception.message": str(error),
                })


_NO_SPAN: Final = _NoSpan()
_PROVIDER_RECHECK = 1.0  # seconds: how long "no tracer provider" is believed
_no_provider_until = 0.0


def _provider_set() -> bool:
    """Whether a tracer provider is set (OpenTelemetry's lookup reads the environment each
    time: a worker runs a unit per batch, so "none" is rechecked once a second)."""
    global _no_provider_until
    if not ENABLED:
        return False
    now = time.monotonic()
    if now < _no_provider_until:
        return False
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        _no_provider_until = now + _PROVIDER_RECHECK
        return False
    return True


@contextmanager
def unit_span(service: str, method: str, batch_id: str | None,
              items: Sequence[Any]) -> Iterator[UnitSpan]:
    """Worker side: the user's code of one unit runs inside this span (current for the unit's
    task and the sync handler's thread), linked to every task's trace context; ``record`` adds
    the failures. ``items``: the unit's pending tasks (``.msg.properties``, ``.task.task_id``).

    Without the extra, or with the API alone (no tracer provider set: nothing would record
    it), no span is started; a provider set later is seen within a second."""
    if not _provider_set():
        yield _NO_SPAN
        return
    attributes: dict[str, Any] = {
        "messaging.system": "pulsar",
        "messaging.batch.message_count": len(items),
        "infinitic.service": service,
        "infinitic.method": method,
    }
    if batch_id is not None:
        attributes["infinitic.batch_id"] = batch_id
    tracer = trace.get_tracer(TRACER_NAME)
    with tracer.start_as_current_span(
        f"{service}.{method}", kind=trace.SpanKind.CONSUMER, attributes=attributes,
    ) as span:
        if not span.is_recording():
            yield _NO_SPAN
            return
        for item in items:
            context = trace.get_current_span(propagate.extract(item.msg.properties))
            span_context = context.get_span_context()
            if span_context.is_valid:
                span.add_link(span_context, {"infinitic.task_id": item.task.task_id})
        yield _RecordingSpan(span)
