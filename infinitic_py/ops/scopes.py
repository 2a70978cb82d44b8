"""Where the operator tools look for a service: the tenant, namespace and wire a worker with the
same config file gives it (pure; a class is imported only through the ``name_of`` given).

A service declared in the config's ``services`` may live in its own tenant / namespace
(``services[].tenant`` / ``namespace``, else ``pulsar``'s) and speak its own ``wire``. For each
of the three, an explicit flag (``--tenant``, ``--namespace``, ``--wire``) wins, then the
service's own, then ``pulsar``'s (the wire: ``auto``, every dialect's reader). A service the
config does not declare is looked for where it always was: ``pulsar``'s tenant / namespace.

The worker names a service by ``name:``, else by its class (``@service(name=...)`` or the class
name). A tool matches ``name:`` first, then the class path's own class name (nothing imported);
only when neither matches does it ask ``name_of`` (the CLI imports the class, best effort) about
the entries without ``name:`` that live elsewhere: a class ``@service(name=...)`` renames. When
such a class cannot be imported, ``Scope.note`` says the answer may be elsewhere.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from infinitic_py.config import ServiceConfig
from infinitic_py.errors import ConfigError

__all__ = ["Flags", "NameOf", "Scope", "class_path_name", "scope_of", "status_namespaces"]

NameOf = Callable[[ServiceConfig], str | None]
"""The name a worker gives an entry without ``name:`` (its imported class's), ``None`` when the
class cannot be imported."""


@dataclass(frozen=True)
class Flags:
    """What the command line (or the ``pulsar`` section, for the defaults) says."""

    tenant: str  # pulsar.tenant, after the flags
    namespace: str  # pulsar.namespace, after the flags
    tenant_flag: bool = False  # --tenant given
    namespace_flag: bool = False  # --namespace given
    wire: str | None = None  # --wire given (auto, native, infinitic), else None


@dataclass(frozen=True)
class Scope:
    tenant: str
    namespace: str
    wire: str  # auto, native or infinitic
    declared: str | None = None  # "services[1] (billing:Invoices)" when the config declares it
    note: str | None = None  # why the answer may be elsewhere (a class that could not be named)


def class_path_name(svc: ServiceConfig) -> str:
    """The class's own name from ``module:Class`` (``Outer.Inner``: ``Inner``): the service's
    name unless ``@service(name=...)`` renames it."""
    return svc.class_path.partition(":")[2].rsplit(".", 1)[-1]


def _where(svc: ServiceConfig, flags: Flags) -> tuple[str, str]:
    tenant = flags.tenant if flags.tenant_flag else (svc.tenant or flags.tenant)
    namespace = flags.namespace if flags.namespace_flag else (svc.namespace or flags.namespace)
    return tenant, namespace


def _label(index: int, svc: ServiceConfig) -> str:
    return f"services[{index}] ({svc.class_path})"


def scope_of(service: str, services: Sequence[ServiceConfig], flags: Flags, *,
             source: str, name_of: NameOf | None = None) -> Scope:
    """Where ``service``'s topics are. Raises ConfigError (one line) when the config declares
    it more than once in different places."""
    default = Scope(flags.tenant, flags.namespace, flags.wire or "auto")
    unnamed = [(i, svc) for i, svc in enumerate(services) if svc.name is None]
    found = [(i, svc) for i, svc in enumerate(services) if svc.name == service]
    found = found or [(i, svc) for i, svc in unnamed if class_path_name(svc) == service]
    if not found:
        # A class renamed by @service(name=...): only an entry that lives elsewhere changes
        # the answer, so only such a class is imported.
        elsewhere = [(i, svc) for i, svc in unnamed
                     if _where(svc, flags) != (default.tenant, default.namespace)]
        unknown: list[tuple[int, ServiceConfig]] = []
        for i, svc in elsewhere:
            known = name_of(svc) if name_of is not None else None
            if known == service:
                found.append((i, svc))
            elif known is None:
                unknown.append((i, svc))
        if not found:
            if not unknown:
                return default
            i, svc = unknown[0]
            tenant, namespace = _where(svc, flags)
            return dataclasses.replace(default, note=(
                f"{source}: {_label(i, svc)} has no name: and its class cannot be imported here, "
                f"so whether it is {service} (then in {tenant}/{namespace}) is unknown: give it "
                "a name: in the config, or --tenant / --namespace"))
    places = {(*_where(svc, flags), flags.wire or svc.wire): (i, svc) for i, svc in found}
    if len(places) > 1:
        shown = ", ".join(f"{_label(i, svc)} in {t}/{n} wire {w}"
                          for (t, n, w), (i, svc) in places.items())
        raise ConfigError(
            f"{source}: service {service} is declared more than once ({shown}): give each "
            "entry its own name:, or say where with --tenant / --namespace / --wire")
    ((tenant, namespace, wire), (i, svc)), = places.items()
    return Scope(tenant, namespace, wire, declared=_label(i, svc))


def status_namespaces(services: Sequence[ServiceConfig], flags: Flags) -> list[tuple[str, str]]:
    """The namespaces ``status`` shows: ``pulsar``'s (or the flags'), then each declared
    service's own, each once, in order."""
    found = {(flags.tenant, flags.namespace): None}
    for svc in services:
        found[_where(svc, flags)] = None
    return list(found)
