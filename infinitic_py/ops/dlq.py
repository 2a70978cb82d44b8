"""Dead letters as operators see them: filtered, shown, summed up (pure).

What a letter *is* belongs to its service's dialect (``wire.letters``: ``LetterView``, the
``DeadLetters`` each dialect offers; ``wire.native_letters``, ``wire.infinitic.letters``).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from infinitic_py.wire.letters import KIND_EVENT, LetterView, format_time

__all__ = [
    "LetterFilter",
    "LetterView",
    "format_time",
    "parse_time",
    "render_show",
    "render_table",
    "replay_counts",
    "replayed_what",
    "summary",
]


# ---------------------------------------------------------------------------------------------
# Filters


@dataclass(frozen=True)
class LetterFilter:
    """Every given criterion must hold (``None`` = any)."""

    method: str | None = None
    error_type: str | None = None
    reason: str | None = None
    batch_key: str | None = None
    task_id: str | None = None
    since: float | None = None  # failed_at >= since (epoch seconds)
    until: float | None = None  # failed_at < until

    def matches(self, letter: LetterView) -> bool:
        return (
            (self.method is None or letter.method == self.method)
            and (self.error_type is None or letter.error_type == self.error_type)
            and (self.reason is None or letter.reason == self.reason)
            and (self.batch_key is None or letter.batch_key == self.batch_key)
            and (self.task_id is None or letter.task_id == self.task_id)
            and (self.since is None or letter.failed_at >= self.since)
            and (self.until is None or letter.failed_at < self.until)
        )

    def is_empty(self) -> bool:
        return all(v is None for v in (self.method, self.error_type, self.reason,
                                        self.batch_key, self.task_id, self.since, self.until))


_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_time(text: str, *, now: float | None = None) -> float:
    """``30m``, ``2h``, ``1d`` (that long ago), an ISO 8601 time (UTC unless it says otherwise)
    or epoch seconds. Raises ValueError with what is accepted."""
    value = text.strip()
    relative = _RELATIVE.match(value)
    if relative:
        ago = float(relative.group(1)) * _UNIT_SECONDS[relative.group(2)]
        return (time.time() if now is None else now) - ago
    try:
        epoch = float(value)
    except ValueError:
        pass
    else:
        if math.isfinite(epoch):
            return epoch
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"not a time: {text!r} (expected e.g. 30m, 2h, 1d, 2026-11-30T10:00:00Z or epoch "
            "seconds)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


# ---------------------------------------------------------------------------------------------
# Output


def summary(letters: Sequence[LetterView]) -> dict[str, dict[str, int]]:
    """Counts by reason, error type and method."""
    return {
        "reason": dict(Counter(letter.reason for letter in letters).most_common()),
        "error_type": dict(Counter(letter.error_type for letter in letters).most_common()),
        "method": dict(Counter(letter.method or "-" for letter in letters).most_common()),
    }


def replay_counts(letters: Sequence[LetterView]) -> dict[str, int]:
    """What a replay of ``letters`` republishes: ``tasks`` (as new attempts) and ``events`` (an
    Infinitic service's task events, as they were)."""
    events = sum(letter.kind == KIND_EVENT for letter in letters)
    return {"tasks": len(letters) - events, "events": events}


def replayed_what(letters: Sequence[LetterView], target: str, *,
                  to_service: str | None = None) -> str:
    """``3 task(s) to S as new attempts``, ``2 event(s) unchanged ...``, or both joined by
    "and": what ``dlq replay`` republishes (``to_service`` applies to tasks only)."""
    counts = replay_counts(letters)
    tasks, events = counts["tasks"], counts["events"]
    parts = []
    if tasks or not events:
        parts.append(f"{tasks} task(s) to {target} as new attempts")
    if events:
        parts.append(f"{events} event(s) unchanged to their service's task-events topic"
                     + (" (--to-service applies to tasks only)" if to_service else ""))
    return " and ".join(parts)


_COLUMNS = ("FAILED_AT", "TASK_ID", "METHOD", "REASON", "ERROR", "RETRY", "BATCH_KEY", "MESSAGE")


def render_table(letters: Iterable[LetterView], *, width: int = 60) -> str:
    rows = [
        (format_time(x.failed_at), x.task_id or "-", x.method or "-", x.reason, x.error_type,
         str(x.retry_index), x.batch_key or "-", _shorten(x.message, width))
        for x in letters
    ]
    return _table(_COLUMNS, rows)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
              for r in rows]
    return "\n".join(lines)


_SHOW_FIRST = ("task_id", "service", "method", "reason", "error_type", "message", "retry_index",
               "batch_key", "failed_at", "first_dispatched_at", "publishes", "worker", "args",
               "meta", "tags")
_SHOW_NEVER = frozenset({"traceback", "properties"})


def render_show(letter: LetterView) -> str:
    """Every field of a letter, one a line: the common ones first, then what its dialect adds
    (``LetterView.facts`` / ``detail``), the traceback last."""
    data = letter.to_json(details=True)
    keys = [key for key in _SHOW_FIRST if key in data]
    keys += [key for key in data if key not in _SHOW_FIRST and key not in _SHOW_NEVER]
    lines = [f"{key:19} {_show_value(data[key])}" for key in keys]
    if letter.traceback:
        lines.append("traceback:")
        lines += ["  " + line for line in letter.traceback.rstrip().splitlines()]
    return "\n".join(lines)


def _show_value(value: Any) -> str:
    if isinstance(value, str) or value is None:
        return "-" if value is None else value
    return json.dumps(value, default=repr)


def _shorten(text: str, width: int) -> str:
    one = " ".join(text.split())
    return one if len(one) <= width else one[: width - 1] + "…"
