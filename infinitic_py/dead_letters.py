"""Reading a dead-letter topic: the worker's own letters and Pulsar's raw copies alike (pure).

Two kinds of message land on ``task-executor-dlq:<Service>`` (kept by the durable subscription
``topics.DLQ_SUBSCRIPTION``, which the worker creates before it writes there):

- the worker's ``DeadLetter`` envelopes, with a ``reason`` (``retries_exhausted``,
  ``not_retryable``, ``undecodable``, ``unknown_method``, ``invalid_envelope``,
  ``reply_unpublishable``), the error and the original message as ``payload``;
- Pulsar's own copies, made by the consumer's dead-letter policy once a message was redelivered
  more than ``max_redeliveries`` times (the worker crashed or could not publish its outcomes
  every time): the original message byte for byte, with the properties ``REAL_TOPIC`` and
  ``ORIGIN_MESSAGE_ID`` added.

``read_dead_letter`` reads either as a ``DeadLetter``: a raw copy gets the reason
``max_redeliveries``, so one reader (``infinitic-py dlq``) shows the same fields for both.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import msgspec

from infinitic_py.wire import native as wire

__all__ = ["MAX_REDELIVERIES", "ORIGIN_MESSAGE_ID", "REAL_TOPIC", "read_dead_letter"]

MAX_REDELIVERIES: Final = "max_redeliveries"  # the reason given to Pulsar's raw copies
REAL_TOPIC: Final = "REAL_TOPIC"
ORIGIN_MESSAGE_ID: Final = "ORIGIN_MESSAGE_ID"


def read_dead_letter(data: bytes, properties: Mapping[str, str], service: str) -> wire.DeadLetter:
    """The dead letter a message of ``service``'s dead-letter topic holds, whichever kind."""
    if REAL_TOPIC not in properties:
        try:
            return wire.decode_dead_letter(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            pass  # not ours after all: described below from what it carries
    task: wire.ExecuteTask | None
    try:
        task = wire.decode_execute(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        task = None
    origin = properties.get(REAL_TOPIC, "?")
    message = (f"redelivered more than max_redeliveries times from {origin} "
               f"(message {properties.get(ORIGIN_MESSAGE_ID, '?')}); Pulsar's dead-letter policy "
               "moved it here")
    return wire.DeadLetter(
        reason=MAX_REDELIVERIES if REAL_TOPIC in properties else "unreadable",
        error_type="MaxRedeliveries" if REAL_TOPIC in properties else "UnreadableDeadLetter",
        message=message if REAL_TOPIC in properties else "neither a DeadLetter nor a task",
        traceback=None,
        retry_index=task.retry_index if task else _int(properties.get(wire.PROP_RETRY_INDEX)),
        task_id=task.task_id if task else properties.get(wire.PROP_TASK_ID),
        service=task.service if task else service,
        method=task.method if task else properties.get(wire.PROP_METHOD),
        payload=data,
        failed_at=0.0,
        worker=None,
    )


def _int(text: str | None) -> int:
    try:
        return int(text or 0)
    except ValueError:
        return 0
