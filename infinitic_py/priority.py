"""Task priority: a small fixed range mapped onto a few *bands*, each its own topic.

Pulsar has no message priority, so priority is built on what it offers: topics. A priority is
0 (lowest) to 9 (highest), default 5. It maps to one of three bands:

    low     0-3   task-executor:<Service>:low
    normal  4-6   task-executor:<Service>        (the topic every deployment already uses)
    high    7-9   task-executor:<Service>:high

A worker consumes all three and starts waiting work of a higher band first, with a bounded
starvation of the lower ones (``worker/priority.py``). Within a band, tasks run in the order they
arrive, whatever their exact number (7 and 9 are the same band). Pure: shared by client and
worker.
"""

from __future__ import annotations

import enum

PRIORITY_MIN = 0
PRIORITY_MAX = 9
DEFAULT_PRIORITY = 5
NORMAL_RANGE = range(4, 7)  # the priorities of the normal band (the default topic)


class Band(enum.IntEnum):
    LOW = 0
    NORMAL = 1
    HIGH = 2

    @property
    def suffix(self) -> str:
        """What the band adds to the service's topic name (nothing for the normal band)."""
        return _SUFFIX[self]


_SUFFIX = {Band.LOW: ":low", Band.NORMAL: "", Band.HIGH: ":high"}
BANDS = (Band.HIGH, Band.NORMAL, Band.LOW)  # highest first


def band_of(priority: int) -> Band:
    if priority >= 7:
        return Band.HIGH
    if priority >= 4:
        return Band.NORMAL
    return Band.LOW


def check_priority(priority: object) -> int:
    """The priority, or a one-line ``TypeError`` / ``ValueError`` for a user mistake."""
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise TypeError(f"priority must be an int from {PRIORITY_MIN} to {PRIORITY_MAX}, "
                        f"got {type(priority).__name__}")
    if not PRIORITY_MIN <= priority <= PRIORITY_MAX:
        raise ValueError(f"priority must be from {PRIORITY_MIN} (lowest) to {PRIORITY_MAX} "
                         f"(highest), got {priority}")
    return priority


def band_service(service: str, band: Band) -> str:
    """The service name whose topic holds ``band``: ``service_topic(t, ns, band_service(...))``
    is the band's topic."""
    return service + band.suffix


def split_band(name: str) -> tuple[str, Band]:
    """The service and band of a band's service name (``band_service``'s inverse):
    ``"S:high"`` -> ``("S", Band.HIGH)``, ``"S"`` -> ``("S", Band.NORMAL)``."""
    for band in (Band.HIGH, Band.LOW):
        if name.endswith(band.suffix) and len(name) > len(band.suffix):
            return name[: -len(band.suffix)], band
    return name, Band.NORMAL
