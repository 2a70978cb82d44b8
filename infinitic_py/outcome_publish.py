"""Publishing a unit's outcomes topic by topic, so that a failure is pinned to its topic.

A unit's outcomes go to several topics: the service topic (retries), its dead-letter topic and
each awaiting client's reply topic. A reply topic the broker refuses (deleted, in a namespace
without auto-creation, ...) concerns only the tasks replying there: the executor turns those
into dead letters and acks the rest. A failure on the worker's own topics is a failure of the
broker itself: the unit is nacked. ``publish_each`` reports which topics failed; it raises only
what is not a ``TransportError`` (a bug, a cancellation).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from infinitic_py.producers import ProducerCache
from infinitic_py.transport.base import OutgoingMessage, TransportError

__all__ = ["REPLY_UNPUBLISHABLE", "ReplyUnpublishable", "publish_each"]

REPLY_UNPUBLISHABLE = "reply_unpublishable"  # the dead letter's reason


class ReplyUnpublishable(Exception):
    """The broker refused the task's reply topic: the error recorded in its dead letter."""


async def _send(producers: ProducerCache, topic: str, messages: Sequence[OutgoingMessage]) -> None:
    producer = await producers.get(topic)
    await producer.send_many(messages)


async def publish_each(
    producers: ProducerCache, by_topic: Mapping[str, Sequence[OutgoingMessage]]
) -> dict[str, TransportError]:
    """Publish every topic's messages at once; the topics whose publish failed, with the error."""
    if not by_topic:
        return {}
    with producers.using(*by_topic):
        results = await asyncio.gather(
            *(_send(producers, topic, msgs) for topic, msgs in by_topic.items()),
            return_exceptions=True,
        )
    failures: dict[str, TransportError] = {}
    for topic, result in zip(by_topic, results, strict=True):
        if isinstance(result, TransportError):
            failures[topic] = result
        elif isinstance(result, BaseException):
            raise result
    return failures
