"""Relay: a service's subscriptions whose role is not ``"execute"`` (a dialect's handler roles,
e.g. Infinitic's task-event and task-retry handlers). Each received message becomes the
dialect's ``relay`` messages; they are published, then the message is acked. A message the
dialect cannot read is nacked (the broker's dead-letter policy bounds the loop); messages whose
outcomes cannot be published are nacked too: nothing is acked before its relay is durable. One
exception, as Infinitic's JVM handlers do: a reply (``Publish.reply``, e.g. an answer on a
client's ``response:`` topic) that the broker refuses (the client closed and its topic is gone)
is dropped with a warning; nacking it would re-relay the whole run until it is dead-lettered."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import structlog

from infinitic_py.producers import ProducerCache, dialect_producers
from infinitic_py.topics import unpartitioned
from infinitic_py.transport.base import (
    Consumer,
    ConsumerClosed,
    ConsumerSettings,
    OutgoingMessage,
    ReceivedMessage,
    Transport,
    TransportError,
)
from infinitic_py.wire import Dialect, Subscription
from infinitic_py.worker.consumers import Consumers

_MAX_PRODUCERS = 64
_RUN = 500  # messages relayed per publish round


class Relay:
    def __init__(self, service: str, subscriptions: Sequence[Subscription], transport: Transport,
                 dialect: Dialect[Any], settings: ConsumerSettings, worker: str) -> None:
        self.service = service
        self._roles = {s.topic: s.role for s in subscriptions}
        self._dialect = dialect
        self._worker = worker
        self._transport = transport
        self._log = structlog.get_logger("infinitic_py.relay").bind(service=service)
        self._consumers = Consumers(subscriptions, settings, f"{worker}-{service}-relay",
                                    self._log)
        self._producers = ProducerCache(dialect_producers(transport, dialect), _MAX_PRODUCERS)
        self._loops: list[asyncio.Task[None]] = []
        self.relayed = 0

    @property
    def consuming(self) -> bool:
        return bool(self._loops) and not any(t.done() for t in self._loops)

    async def start(self) -> None:
        await self._consumers.subscribe(self._transport)
        self._loops = [asyncio.create_task(self._loop(c), name="relay") for c in self._consumers]
        self._log.info("relay.started", roles=sorted(set(self._roles.values())))

    async def stop(self) -> None:
        await self._consumers.close()
        if self._loops:
            _, stuck = await asyncio.wait(self._loops, timeout=5.0)
            for task in stuck:
                task.cancel()
        await self._producers.close()

    def _role(self, msg: ReceivedMessage) -> str:
        role = self._roles.get(msg.topic)
        if role is None:  # a partition of a consumed topic
            role = self._roles[unpartitioned(msg.topic)]
        return role

    async def _loop(self, consumer: Consumer) -> None:
        backoff = 0.1
        while True:
            msgs: list[ReceivedMessage] = []
            try:
                msgs = await consumer.receive_many(_RUN)
                await self._relay(msgs)
            except ConsumerClosed:
                return
            except Exception as exc:  # the broker, or a bug of ours: never stop consuming
                if isinstance(exc, TransportError):
                    self._log.warning("receive.failed", error=str(exc), retry_in=backoff)
                else:
                    self._log.exception("relay.crashed", count=len(msgs), retry_in=backoff)
                if msgs:  # give the run back: nothing is acked before its relay is durable
                    await self._give_back(msgs)
                await asyncio.sleep(backoff)  # reconnect backoff, not a wait for an event
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.1

    async def _give_back(self, msgs: list[ReceivedMessage]) -> None:
        try:
            await self._consumers.settle(msgs, ack=False)
        except Exception:  # the broker redelivers what stays unacked anyway
            self._log.exception("relay.give_back_failed", count=len(msgs))

    async def _relay(self, msgs: list[ReceivedMessage]) -> None:
        """Publish the relays of a run, then ack it (nack what cannot be read or published)."""
        by_topic: dict[str, list[OutgoingMessage]] = {}
        replies: set[str] = set()  # topics of replies (may be dropped when refused)
        done: list[ReceivedMessage] = []
        bad: list[ReceivedMessage] = []
        for msg in msgs:
            try:
                publishes = self._dialect.relay(self._role(msg), msg, self._worker)
            except Exception as exc:  # unreadable: back to the broker (then its DLQ)
                self._log.error("relay.unreadable", topic=msg.topic,
                                error=f"{type(exc).__name__}: {exc}")
                bad.append(msg)
                continue
            for p in publishes:
                by_topic.setdefault(p.topic, []).append(p.message)
                if p.reply:
                    replies.add(p.topic)
            done.append(msg)
        if bad:
            await self._consumers.settle(bad, ack=False)
        failures = await self._producers.publish_each(by_topic)
        if any(topic not in replies or not failure.refused
               for topic, failure in failures.items()):  # the broker itself, or may pass: again
            for topic, failure in failures.items():
                self._log.error("relay.publish_failed", topic=topic, error=str(failure))
            await self._consumers.settle(done, ack=False)
            return
        for topic, failure in failures.items():
            self._log.warning("relay.reply_dropped", topic=topic, count=len(by_topic[topic]),
                              error=str(failure))
        await self._consumers.settle(done, ack=True)
        self.relayed += len(done)
