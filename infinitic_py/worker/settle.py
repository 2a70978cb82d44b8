"""Settler: gives back (nacks) what did not settle, and settles the messages that run no unit of
their own (a rejection, dead-lettered; a copy of an attempt running or settled, answered as the
ledger says); records what a unit's published plan did. Exception-safe: whatever fails, a
message is acked only after its outcomes are durable, nacked otherwise, and its room in the
ledger is always released. A part of the executor that never calls back into it (DESIGN §1)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import structlog

from infinitic_py.producers import ProducerCache
from infinitic_py.transport.base import OutgoingMessage, ReceivedMessage, TransportError
from infinitic_py.wire import Dialect
from infinitic_py.worker import outcomes
from infinitic_py.worker.consumers import Consumers
from infinitic_py.worker.instruments import ServiceInstruments
from infinitic_py.worker.ledger import CopyAction, CopyVerdict, Ledger
from infinitic_py.worker.routing import Pending, Rejection

# How long the last words of a task about to be dead-lettered may take (a broker that just
# refused its outcomes may not answer at all): the nack is not held up longer.
LAST_WORDS_TIMEOUT = 10.0


class Settler:
    def __init__(self, producers: ProducerCache, consumers: Consumers, ledger: Ledger,
                 instruments: ServiceInstruments, dialect: Dialect[Any], service: str,
                 worker_name: str, log: structlog.stdlib.BoundLogger) -> None:
        self._producers = producers
        self._consumers = consumers
        self._ledger = ledger
        self._instruments = instruments
        self._dialect = dialect
        self._service = service
        self._worker_name = worker_name
        self._log = log
        self._last_words = getattr(dialect, "last_words", None)

    def record(self, plan: outcomes.Plan, method: str, log: Any) -> None:
        """Count what a settled unit did; a failure here is logged, never raised (the unit's
        messages are acked already)."""
        try:
            self._instruments.record(plan, method, log)
        except Exception:
            log.exception("instruments.record_failed")

    def triage(self, copy: Pending) -> CopyVerdict:
        """What to do with a copy (RERUN: the caller runs it again, it is marked running)."""
        verdict = self._ledger.verdict(copy)
        try:
            self._instruments.duplicate(verdict.action.value)
        except Exception:
            self._log.exception("instruments.record_failed")
        return verdict

    async def reject(self, rejection: Rejection) -> None:
        """A message that can never run (undecodable, unknown method, bad arguments)."""
        msg = rejection.msg
        try:
            plan = outcomes.plan_rejection(rejection, self._dialect, self._service,
                                           self._worker_name)
            if await self._publish_then_settle(msg, plan.by_topic):
                try:
                    self._instruments.record_dead(plan, self._log)
                except Exception:
                    self._log.exception("instruments.record_failed")
        except Exception:
            self._log.exception("rejection.settle_failed")
            await self._nack(msg)
        finally:
            self._ledger.release(1, len(msg.data))

    async def answer_copy(self, copy: Pending, verdict: CopyVerdict) -> None:
        """Answer a copy whose verdict is ACK or REPLY (a WAIT copy is parked in the ledger
        until its attempt settles; answered with WAIT, it is nacked)."""
        try:
            if verdict.action is CopyAction.REPLY:
                by_topic: dict[str, list[OutgoingMessage]] = {}
                for r in verdict.replies:
                    by_topic.setdefault(r.topic, []).append(r.message)
                await self._publish_then_settle(copy.msg, by_topic)
            else:
                await self._consumers.settle([copy.msg], ack=verdict.action is CopyAction.ACK)
        except Exception:
            self._log.exception("copy.settle_failed")
            await self._nack(copy.msg)
        finally:
            self._ledger.release(1, len(copy.msg.data))

    async def give_back(self, items: Sequence[Pending],
                        error: BaseException | None = None, *, ran: bool = True) -> None:
        """Nack the tasks of a unit that did not settle (they run again), close their books;
        the copies parked on them go back too (they come back after the attempt). ``error``:
        why their outcomes could not be made durable; a task this nack makes the broker
        dead-letter is first told to whoever waits, if the dialect says how (``last_words``).
        ``ran=False``: tasks the stopping worker gives back unrun
        (``Consumers.give_back_unrun``: none is dead-lettered for it)."""
        nack = self._consumers.give_back_unrun if not ran else self._nack_all
        try:
            if error is not None:
                await self._say_last_words(items, error)
            await nack([p.msg for p in items])
        finally:
            parked = self._ledger.settle(items, ack=False)
            if parked:
                try:
                    await nack([p.msg for p in parked])
                finally:
                    self._ledger.release(len(parked), sum(len(p.msg.data) for p in parked))

    async def _nack_all(self, msgs: Sequence[ReceivedMessage]) -> None:
        await self._consumers.settle(msgs, ack=False)

    async def _say_last_words(self, items: Sequence[Pending], error: BaseException) -> None:
        """Best effort, never raises: the tasks at their last delivery
        (``Consumers.at_last_delivery``) go to the dead-letter topic at this nack."""
        speak = self._last_words
        if speak is None:
            return
        doomed = [p for p in items if self._consumers.at_last_delivery(p.msg)]
        if not doomed:
            return
        by_topic: dict[str, list[OutgoingMessage]] = {}
        try:
            for p in doomed:
                for publish in speak(p.task, error, self._worker_name):
                    by_topic.setdefault(publish.topic, []).append(publish.message)
            await asyncio.wait_for(self._producers.publish(by_topic), LAST_WORDS_TIMEOUT)
        except Exception as exc:  # the broker that refused the outcomes may refuse these too
            self._log.error("task.dead_lettered_untold", count=len(doomed),
                            task_ids=[p.task.task_id for p in doomed[:10]],
                            error=str(exc) or type(exc).__name__)
            return
        self._log.error("task.dead_lettered_told", count=len(doomed),
                        task_ids=[p.task.task_id for p in doomed[:10]], error=str(error))

    async def give_back_run(self, msgs: Sequence[ReceivedMessage], held: bool) -> None:
        """Nack a received run that was not routed (its room released if it was ``held``)."""
        try:
            await self._consumers.settle(msgs, ack=False)
        finally:
            if held:
                self._ledger.release(len(msgs), sum(len(m.data) for m in msgs))

    async def _publish_then_settle(
        self, msg: ReceivedMessage, by_topic: dict[str, list[OutgoingMessage]]
    ) -> bool:
        """Publish, then ack; nack if the publish failed. True: acked."""
        try:
            await self._producers.publish(by_topic)
        except TransportError as exc:
            self._log.error("outcomes.publish_failed", error=str(exc))
            await self._consumers.settle([msg], ack=False)
            return False
        await self._consumers.settle([msg], ack=True)
        return True

    async def _nack(self, msg: ReceivedMessage) -> None:
        try:
            await self._consumers.settle([msg], ack=False)
        except Exception:  # the broker redelivers an unsettled message anyway
            self._log.exception("settle.failed", ack=False)
