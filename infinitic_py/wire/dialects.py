"""Dialects by name (``wire:`` in the worker config, ``Worker.add_service(wire=...)``,
``AsyncClient(wire=...)``)."""

from __future__ import annotations

from typing import Any

from infinitic_py.errors import ConfigError
from infinitic_py.wire import Dialect
from infinitic_py.wire.native import NativeDialect

WIRES = ("native", "infinitic")


def make_dialect(wire: str | Dialect[Any], tenant: str, namespace: str, *,
                 event_handler: bool = False) -> Dialect[Any]:
    """``"native"``, ``"infinitic"`` (needs the ``infinitic`` extra: fastavro) or a dialect."""
    if not isinstance(wire, str):
        return wire
    if wire == "native":
        if event_handler:
            raise ConfigError("event_handler applies to wire 'infinitic' only")
        return NativeDialect(tenant, namespace)
    if wire == "infinitic":
        try:
            from infinitic_py.wire.infinitic.dialect import InfiniticDialect
        except ImportError as exc:
            raise ConfigError(
                f"wire 'infinitic' needs the infinitic extra (pip install 'infinitic-py[infinitic]'): {exc}"
            ) from None
        return InfiniticDialect(tenant, namespace, handlers=event_handler)
    raise ConfigError(f"unknown wire {wire!r} (one of: {', '.join(WIRES)})")
