"""OpenTelemetry tracing, when the ``otel`` extra (``opentelemetry-api``) is installed.

- The client injects the caller's trace context (W3C ``traceparent`` / ``tracestate``, and
  ``baggage``) into each task's message properties (``inject``).
- The worker starts one span per batch (or single task), ``<Service>.<method>``, kind CONSUMER,
  with a link to each task's context and a ``task.failed`` event per failed task (``run_batch``,
  called by ``worker/invoke.py`` around the user's code).
- Retries, dead letters and replays copy the trace properties of the message they come from
  (``carried``, needs nothing installed; ``worker/outcomes.py`` for retries and dead letters), so a retried or replayed task links to its trace.

Without the package, ``ENABLED`` is False and the callers skip every call: the import is tried
once, here, and the hot path pays one boolean test per task.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from dataclasses import replace
from typing import Any, Final, Protocol, TypeVar

from infinitic_py.transport.base import OutgoingMessage

try:
    from opentelemetry import propagate, trace
except ImportError:  # the `otel` extra is not installed
    ENABLED = False
else:
    ENABLED = True

__all__ = ["ENABLED", "TRACE_PROPERTIES", "carried", "inject", "injected", "run_batch"]

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
    return replace(message, properties=properties)


class _Result(Protocol):
    @property
    def outcomes(self) -> Sequence[Any]: ...


R = TypeVar("R", bound=_Result)


async def run_batch(
    service: str,
    method: str,
    batch_id: str | None,
    items: Sequence[Any],
    execute: Callable[[], Awaitable[R]],
) -> R:
    """Worker side: ``await execute()`` inside one span linked to every task's trace context.

    ``items`` are the unit's pending tasks (``.msg.properties``, ``.task.task_id``); ``execute``
    returns a result whose ``outcomes`` are in the same order (an outcome with an ``error``
    attribute is a failure). Links and events are only built for a recording span: with the API
    alone (no SDK configured) a unit costs one check: no span is started (nothing would record
    it; a tracer provider set later is seen by the next unit)."""
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return await execute()
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
            return await execute()
        for item in items:
            context = trace.get_current_span(propagate.extract(item.msg.properties))
            span_context = context.get_span_context()
            if span_context.is_valid:
                span.add_link(span_context, {"infinitic.task_id": item.task.task_id})
        result = await execute()
        for item, outcome in zip(items, result.outcomes, strict=True):
            error = getattr(outcome, "error", None)
            if error is not None:
                span.add_event("task.failed", {
                    "infinitic.task_id": item.task.task_id,
                    "exception.type": type(error).__name__,
                    "exception.message": str(error),
                })
        return result
