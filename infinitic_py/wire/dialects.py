"""Dialects by name (``wire:`` in the worker config, ``Worker.add_service(wire=...)``,
``AsyncClient(wire=...)``)."""

from __future__ import annotations

from typing import Any

from infinitic_py.errors import ConfigError
from infinitic_py.wire import Dialect
from infinitic_py.wire.letters import DeadLetters
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


def letter_readers(wire: str, tenant: str, namespace: str) -> list[DeadLetters]:
    """How the operator tools read a service's dead letters: its dialect's ``dead_letters()``;
    ``"auto"``: every dialect's, native first (a message the native one cannot read is tried
    with the next: the two share the name ``task-executor-dlq:<S>``); Infinitic's only when its
    extra (fastavro) is installed."""
    if wire != "auto":
        return [_letters_of(make_dialect(wire, tenant, namespace))]
    readers: list[DeadLetters] = []
    for name in WIRES:
        try:
            readers.append(_letters_of(make_dialect(name, tenant, namespace)))
        except ConfigError:  # the infinitic extra is not installed
            continue
    return readers


def _letters_of(dialect: Dialect[Any]) -> DeadLetters:
    """A dialect's optional ``dead_letters()`` (``wire.letters``)."""
    make = getattr(dialect, "dead_letters", None)
    if make is None:
        raise ConfigError(f"wire {dialect.name!r} offers no dead-letter reader to the tools")
    letters: DeadLetters = make()
    return letters


def status_names(tenant: str, namespace: str) -> tuple[list[str], list[str]]:
    """What ``infinitic-py status`` looks for in a namespace, from every dialect available: the
    prefixes of dead-letter topics (``task-executor-dlq:``, ``task-retry-dlq:``...) and the
    workers' subscription names on a service's task topic (native first)."""
    prefixes: dict[str, None] = {}
    subscriptions: dict[str, None] = {}
    for name in WIRES:
        try:
            dialect = make_dialect(name, tenant, namespace)
            letters = _letters_of(dialect)
        except ConfigError:  # the infinitic extra is not installed
            continue
        for letter_topic in letters.letter_topics(""):  # the service-less name: its prefix
            prefixes[letter_topic.topic.rsplit("/", 1)[-1]] = None
        subscriptions[dialect.subscriptions("")[0].subscription] = None
    return list(prefixes), list(subscriptions)
