"""OpenTelemetry tracing, when the ``otel`` extra (``opentelemetry-api``) is installed.

- The client injects the caller's trace context (W3C ``traceparent`` / ``tracestate``, and
  ``baggage``) into each task's message properties (``inject``).
- The worker starts one span per batch (or single task), ``<Service>.<method>``, kind CONSUMER,
  with a link to each task's context and a ``task.failed`` event per failed task (``run_batch``).
- Retries, dead letters and replays copy the trace properties of the message they come from
  (``carried``, needs nothing installed), so a retried or replayed task links to its trace.

Without the package, ``ENABLED`` is False and the callers skip every call: the import is tried
once, here, and the hot path pays one boolean test per task.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from typing import Any, Final

try:
    from opentelemetry import propagate, trace
except ImportError:  # the `otel` extra is not installed
    ENABLED = False
else:
    ENABLED = True

__all__ = ["ENABLED", "TRACE_PROPERTIES", "carried", "inject", "run_batch"]

TRACER_NAME: Final = "infinitic_py"
# Message properties that carry a trace (W3C trace context and baggage).
TRACE_PROPERTIES: Final = ("traceparent", "tracestate", "baggage")


def carried(properties: Mapping[str, str]) -> dict[str, str]:
    """The trace properties of a received message, to copy onto its retry or dead letter."""
    return {key: properties[key] for key in TRACE_PROPERTIES if key in properties}


def inject(properties: MutableMapping[str, str]) -> None:
    """Client side: the current trace context into a task's message properties."""
    propagate.inject(properties)


async def run_batch(
    service: str,
    method: str,
    batch_id: str | None,
    items: Sequence[Any],
    execute: Callable[[], Awaitable[Any]],
) -> Any:
    """Worker side: ``await execute()`` inside one span linked to every task's trace context.

    ``items`` are the executor's pending tasks (``.msg.properties``, ``.task.task_id``);
    ``execute`` returns a list of outcomes in the same order, or one outcome for all of them
    (an outcome with an ``error`` attribute is a failure). Links and events are only built for
    a recording span: with the API alone (no SDK configured) a batch costs one no-op span."""
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
        outcomes = await execute()
        shared = None if isinstance(outcomes, list) else outcomes
        for index, item in enumerate(items):
            outcome = shared if shared is not None else outcomes[index]
            error = getattr(outcome, "error", None)
            if error is not None:
                span.add_event("task.failed", {
                    "infinitic.task_id": item.task.task_id,
                    "exception.type": type(error).__name__,
                    "exception.message": str(error),
                })
        return outcomes
