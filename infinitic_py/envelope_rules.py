"""Envelope validation: which decoded tasks this worker may act on (pure, no I/O).

Every field of an ``ExecuteTask`` the worker acts on is checked when the message is decoded, so a
bad envelope is dead-lettered alone (with the reason returned here) instead of failing later,
where it would share a batch with good tasks:

- ``service`` names the service whose topic the message came from;
- ``method`` is a non-empty name (whether the service has it is the router's business);
- ``reply_to``, when set, is a response topic of this worker's own tenant and namespace
  (``persistent://T/NS/response:<name>``, ``<name>`` in Pulsar's topic-name alphabet): a reply
  the broker would refuse (another tenant, not a topic name) can then never poison a batch;
- ``retry_index`` and ``retry_sequence`` are >= 0;
- ``task_id``, ``reply_to``, the tags and the encoded arguments stay within the sizes below.

``EnvelopeRules.problem(task)`` returns ``None`` for a valid task, else a one-line reason for the
dead letter. It is on the receive hot path: an accepted reply topic is remembered (bounded), so a
client's thousands of tasks cost one regex match, not thousands.
"""

from __future__ import annotations

import re
from typing import Final

import msgspec

from infinitic_py.messages import ExecuteTask
from infinitic_py.topics import RESPONSE_TOPIC_PREFIX

__all__ = ["INVALID_ENVELOPE", "MAX_ARGS_BYTES", "MAX_ID_CHARS", "EnvelopeRules"]

INVALID_ENVELOPE: Final = "invalid_envelope"  # the dead letter's reason
MAX_ID_CHARS: Final = 256
MAX_TOPIC_CHARS: Final = 512
MAX_TAGS: Final = 256
MAX_ARGS_BYTES: Final = 64 * 1024 * 1024
_REMEMBERED_REPLY_TOPICS: Final = 4096
# Pulsar's NamedEntity alphabet for a topic's local name: letters, digits, _ - = : .
_LOCAL_NAME = r"[A-Za-z0-9_\-=:.]+"


class EnvelopeRules:
    """The checks for one service of one tenant / namespace."""

    __slots__ = ("_accepted", "_reply", "namespace", "service", "tenant")

    def __init__(self, service: str, tenant: str, namespace: str) -> None:
        self.service = service
        self.tenant = tenant
        self.namespace = namespace
        prefix = f"persistent://{tenant}/{namespace}/{RESPONSE_TOPIC_PREFIX}"
        self._reply = re.compile(re.escape(prefix) + _LOCAL_NAME)
        self._accepted: set[str] = set()

    def problem(self, task: ExecuteTask) -> str | None:
        """``None`` if the worker may act on ``task``, else why not (one line)."""
        if task.service != self.service:
            return f"the envelope names service {task.service!r}, this topic serves {self.service!r}"
        if not task.method:
            return "the envelope names no method"
        if not task.task_id or len(task.task_id) > MAX_ID_CHARS:
            return f"task_id must be 1 to {MAX_ID_CHARS} characters"
        if task.retry_index < 0 or task.retry_sequence < 0:
            return (f"retry_index ({task.retry_index}) and retry_sequence "
                    f"({task.retry_sequence}) must be >= 0")
        reply_to = task.reply_to
        if reply_to is not None and reply_to not in self._accepted:
            reason = self.reply_problem(reply_to)
            if reason is not None:
                return reason
            if len(self._accepted) >= _REMEMBERED_REPLY_TOPICS:
                self._accepted.clear()
            self._accepted.add(reply_to)
        if len(task.tags) > MAX_TAGS:
            return f"{len(task.tags)} tags (at most {MAX_TAGS})"
        if len(task.args) > MAX_ARGS_BYTES:
            return f"arguments of {len(task.args)} bytes (at most {MAX_ARGS_BYTES})"
        return None

    def reply_problem(self, reply_to: str) -> str | None:
        """Why ``reply_to`` is not a response topic of this tenant / namespace, or ``None``."""
        if len(reply_to) > MAX_TOPIC_CHARS or self._reply.fullmatch(reply_to) is None:
            shown = reply_to if len(reply_to) <= 120 else reply_to[:117] + "..."
            return (f"reply_to {shown!r} is not a response topic of {self.tenant}/"
                    f"{self.namespace} (persistent://{self.tenant}/{self.namespace}/"
                    f"{RESPONSE_TOPIC_PREFIX}<name>)")
        return None

    def without_bad_reply(self, task: ExecuteTask) -> ExecuteTask:
        """``task`` itself, or a copy without its ``reply_to`` if that is no reply topic of
        ours (a rejected task must not be answered where the broker would refuse it)."""
        if task.reply_to is None or self.reply_problem(task.reply_to) is None:
            return task
        return msgspec.structs.replace(task, reply_to=None)
