"""``strict_json``: the JSON the CLI prints for other programs (``dispatch --wait`` results,
``dlq show --json``). Python's ``json`` writes a non-finite float as a bare ``NaN`` /
``Infinity``, which is not JSON: ``jq`` and ``JSON.parse`` refuse the whole line. Here such a
float is the string ``"NaN"``, ``"Infinity"`` or ``"-Infinity"`` (as Jackson's
``WRITE_NAN_AS_STRINGS``); what ``json`` cannot write is written as its ``repr``."""

from __future__ import annotations

import json
import math
from typing import Any


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def strict_json(value: Any, *, indent: int | None = None) -> str:
    return json.dumps(_finite(value), default=repr, indent=indent, allow_nan=False)


__all__ = ["strict_json"]
