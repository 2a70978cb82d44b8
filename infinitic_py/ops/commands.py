"""The operator subcommands: ``dlq list | show | replay | purge``, ``status``, and ``dispatch``'s
broker options. ``cli.py`` registers them (``add_commands``) and calls ``run``."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from infinitic_py.errors import ConfigError
from infinitic_py.json_text import strict_json
from infinitic_py.ops.scopes import Scope
from infinitic_py.ops.settings import ToolSettings, load_tool_settings

__all__ = [
    "BROKER_HELP", "SERVICES_HELP", "add_broker_options", "add_commands", "delay_seconds", "run",
    "seconds", "service_scope", "settings_of",
]

BROKER_HELP = (
    "Broker settings are read like the worker's: the config file (-c, or $INFINITIC_CONFIG; its "
    "`pulsar` section), then INFINITIC_PULSAR__URL, INFINITIC_PULSAR__ADMIN_URL, "
    "INFINITIC_PULSAR__TENANT, INFINITIC_PULSAR__NAMESPACE, INFINITIC_PULSAR__AUTH_PLUGIN, "
    "INFINITIC_PULSAR__AUTH_PARAMS, INFINITIC_PULSAR__TLS_*, then the flags below. "
    "$PULSAR_URL is read when nothing else sets the URL."
)
SERVICES_HELP = (
    " A service the config's `services` declare is looked for where the worker serves it: in its "
    "own tenant / namespace (when set), and by dlq with its own wire (dispatch refuses a wire: "
    "infinitic one); a flag still wins."
)
_CONNECT_TIMEOUT = 10.0


def seconds(text: str) -> float:
    """An argparse type: a finite number of seconds > 0."""
    value = _number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected seconds > 0, got {text!r}")
    return value


def delay_seconds(text: str) -> float:
    """An argparse type: a finite number of seconds >= 0, at most the client's maximum."""
    from infinitic_py.client.stubs import MAX_DELAY_SECONDS

    value = _number(text)
    if not 0 <= value <= MAX_DELAY_SECONDS:
        raise argparse.ArgumentTypeError(
            f"expected seconds from 0 to {MAX_DELAY_SECONDS} (10 years), got {text!r}")
    return value


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number of seconds, got {text!r}")
    return value


def add_broker_options(parser: argparse.ArgumentParser, *, services: bool = False) -> None:
    """``services``: the command looks for a service the config declares in its own tenant /
    namespace (``dlq``, ``status``, ``dispatch``)."""
    own = "; a service the config declares: its own, when it has one" if services else ""
    group = parser.add_argument_group("broker (see the description for the environment)")
    group.add_argument("-c", "--config", help="worker config YAML (default: $INFINITIC_CONFIG)")
    group.add_argument("--url", help="pulsar://HOST:PORT (pulsar.url)")
    group.add_argument("--admin-url", help="http://HOST:8080 (pulsar.admin_url)")
    group.add_argument("--tenant", help=f"pulsar.tenant (default public{own})")
    group.add_argument("--namespace", help=f"pulsar.namespace (default default{own})")
    group.add_argument("--connect-timeout", type=seconds, default=_CONNECT_TIMEOUT,
                       help=f"seconds to reach the broker (default {_CONNECT_TIMEOUT:g})")


def settings_of(args: argparse.Namespace) -> ToolSettings:
    settings = load_tool_settings(args.config, url=args.url, admin_url=args.admin_url,
                                  tenant=args.tenant, namespace=args.namespace)
    if settings.url.startswith("memory://"):  # nothing outside its own process can reach it
        raise ConfigError(
            f"{args.command}: {settings.url} is the in-process broker of one program; from the "
            "shell give a real broker: pulsar://HOST:PORT (--url, pulsar.url in the config file "
            "or INFINITIC_PULSAR__URL)")
    return settings


def _filters(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("filters (all given must hold)")
    group.add_argument("--method", help="task method")
    group.add_argument("--error-type", help="exception class name, e.g. ValueError")
    group.add_argument("--reason", help="retries_exhausted, not_retryable, undecodable, "
                                        "unknown_method, invalid_envelope, "
                                        "reply_unpublishable, max_redeliveries")
    group.add_argument("--batch-key", help="meta batchKey (hex for bytes keys)")
    group.add_argument("--task-id", help="one task")
    group.add_argument("--since", help="failed at or after: 30m, 2h, 1d, ISO 8601 or epoch")
    group.add_argument("--until", help="failed before: same forms as --since")


def add_commands(
    sub: Any, parents: Sequence[argparse.ArgumentParser]
) -> None:
    """Register ``dlq`` and ``status`` on the CLI's subparsers."""
    fmt = argparse.RawDescriptionHelpFormatter
    dlq = sub.add_parser(
        "dlq", help="list, show, replay or purge a service's dead letters", parents=parents,
        description="Dead letters of a service (task-executor-dlq:<Service>; for a `wire: "
                    "infinitic` service also task-retry-dlq:<Service> and "
                    "task-events-dlq:<Service>), read through the durable subscription "
                    "infinitic-py-dlq. " + BROKER_HELP + SERVICES_HELP, formatter_class=fmt)
    actions = dlq.add_subparsers(dest="dlq_action", required=True,
                                 metavar="{list,show,replay,purge}")
    for name, text in (
        ("list", "list dead letters (nothing is consumed)"),
        ("show", "everything about one task's dead letter(s): error, traceback, arguments"),
        ("replay", "republish the tasks as new attempts, then delete their dead letters"),
        ("purge", "delete dead letters (a dry run unless --yes)"),
    ):
        action = actions.add_parser(name, help=text,
                                    description=f"{text}. {BROKER_HELP}{SERVICES_HELP}",
                                    parents=parents)
        action.add_argument("service", help="service name, e.g. EmailService")
        if name == "show":
            action.add_argument("task_id", help="the task's id")
        else:
            _filters(action)
        action.add_argument(
            "--wire", choices=("auto", "native", "infinitic"), default=None,
            help="the service's wire (default: its `wire` when the config declares it, else auto: "
                 "native letters on task-executor-dlq:S, and those of a `wire: infinitic` service "
                 "on task-executor-dlq:S, task-retry-dlq:S and task-events-dlq:S, each read by "
                 "the dialect that reads it)")
        if name == "replay":
            action.add_argument("--to-service", metavar="NAME",
                                help="replay to another service name (e.g. a fixed version)")
            action.add_argument("--dry-run", action="store_true",
                                help="show what would be replayed, change nothing")
        if name == "purge":
            action.add_argument("--yes", action="store_true", help="really delete")
        action.add_argument("--json", action="store_true", help="JSON output")
        add_broker_options(action, services=True)

    status = sub.add_parser(
        "status", help="services of the namespace: backlog, workers, dead letters, rates",
        parents=parents, description="Services of a namespace from the admin API, and of the "
                                     "namespaces of the config's services. " + BROKER_HELP
                                     + SERVICES_HELP)
    status.add_argument("--service", action="append", help="only this service (repeatable)")
    status.add_argument("--json", action="store_true", help="JSON output")
    status.add_argument("--watch", nargs="?", type=seconds, const=2.0, metavar="SECONDS",
                        help="refresh every SECONDS (default 2) until Ctrl-C")
    add_broker_options(status, services=True)


def run(args: argparse.Namespace) -> int:
    from infinitic_py.observability import configure_logging

    configure_logging("auto", "error")  # stderr, errors only: stdout is the output
    settings = settings_of(args)
    # where to look, from the config's services: a mistake there is said before any request
    if args.command == "status":
        targets = _status_targets(args, settings)
        settings.refuse_bad_credentials(args.connect_timeout)
        with settings.refusals_named():
            return _status(args, settings, targets)
    scope = service_scope(settings, args.service, wire=args.wire)
    settings.refuse_bad_credentials(args.connect_timeout)
    with settings.refusals_named():
        return asyncio.run(_dlq(args, settings, scope))


def service_scope(settings: ToolSettings, service: str, *, wire: str | None = None) -> Scope:
    """Where ``service`` lives (``ToolSettings.scope_of``); its note, if any, on stderr."""
    scope = settings.scope_of(service, wire=wire)
    if scope.note:
        print(f"infinitic-py: note: {scope.note}", file=sys.stderr)
    return scope


# ---------------------------------------------------------------------------------------------
# status


def _admin(settings: ToolSettings, *, required_by: str, connect_timeout: float) -> Any:
    from infinitic_py.admin import PulsarAdmin

    url = settings.pulsar.admin_url
    if not url or settings.url.startswith("memory://"):
        raise ConfigError(f"{required_by} needs the broker's admin API: set pulsar.admin_url "
                          "(--admin-url or INFINITIC_PULSAR__ADMIN_URL)")
    return PulsarAdmin(url, auth_token=settings.admin_token(), timeout=connect_timeout)


_Target = tuple[str, str, list[str] | None]  # tenant, namespace, the services asked (None: all)


def _status_targets(args: argparse.Namespace, settings: ToolSettings) -> list[_Target]:
    """The namespaces to read: with ``--service``, each service's own (grouped); without,
    ``pulsar``'s (or the flags') and those of the config's services."""
    if not args.service:
        return [(tenant, namespace, None) for tenant, namespace in settings.status_namespaces()]
    groups: dict[tuple[str, str], list[str]] = {}
    for service in dict.fromkeys(args.service):
        scope = service_scope(settings, service)
        groups.setdefault((scope.tenant, scope.namespace), []).append(service)
    return [(tenant, namespace, only) for (tenant, namespace), only in groups.items()]


def _status(args: argparse.Namespace, settings: ToolSettings, targets: list[_Target]) -> int:
    from infinitic_py.ops.status import render_status, statuses_json
    from infinitic_py.ops.status_io import read_status

    admin = _admin(settings, required_by="status", connect_timeout=args.connect_timeout)
    try:
        while True:
            statuses = [read_status(admin, tenant, namespace, only=only)
                        for tenant, namespace, only in targets]
            if args.json:
                print(json.dumps(statuses_json(statuses), indent=None if args.watch else 2),
                      flush=True)
            else:
                if args.watch and sys.stdout.isatty():
                    print("\033[2J\033[H", end="")
                print("\n".join(render_status(status) for status in statuses), flush=True)
            if not args.watch:
                return 0
            time.sleep(args.watch)  # a refresh period, not a wait for an event
    except KeyboardInterrupt:  # Ctrl-C ends a --watch (whether it was reading or waiting)
        if not args.watch:
            raise
        return 0


# ---------------------------------------------------------------------------------------------
# dlq


async def _dlq(args: argparse.Namespace, settings: ToolSettings, scope: Scope) -> int:
    from infinitic_py.ops.dlq import LetterFilter, parse_time
    from infinitic_py.ops.dlq_store import DeadLetterStore
    from infinitic_py.ops.failures import BrokerFailure, probe_broker
    from infinitic_py.transport import create_transport
    from infinitic_py.transport.base import TransportError
    from infinitic_py.transport.urls import redact_url

    if args.dlq_action == "show":
        selection = LetterFilter(task_id=args.task_id)
    else:
        try:
            selection = LetterFilter(
                method=args.method, error_type=args.error_type, reason=args.reason,
                batch_key=args.batch_key, task_id=args.task_id,
                since=parse_time(args.since) if args.since else None,
                until=parse_time(args.until) if args.until else None)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    await asyncio.to_thread(probe_broker, settings.url, args.connect_timeout)
    admin = None
    if settings.pulsar.admin_url and not settings.url.startswith("memory://"):
        from infinitic_py.admin import PulsarAdmin

        admin = PulsarAdmin(settings.pulsar.admin_url, auth_token=settings.admin_token(),
                            timeout=args.connect_timeout)
    from infinitic_py.wire.dialects import letter_readers

    readers = letter_readers(scope.wire, scope.tenant, scope.namespace)
    options = settings.tool_transport_options(args.connect_timeout, quiet=not args.debug)
    transport = create_transport(settings.url, **options)
    try:
        async with DeadLetterStore(transport, scope.tenant, scope.namespace, args.service,
                                   admin=admin, readers=readers) as store:
            letters = await store.read()
            chosen = [x for x in letters if selection.matches(x.view)]
            handler = _DLQ_ACTIONS[args.dlq_action]
            return await handler(args, store, letters, chosen)
    except TransportError as exc:
        raise BrokerFailure(f"broker {redact_url(settings.url)}: {exc}") from exc
    finally:
        await asyncio.wait_for(transport.close(), 15.0)


async def _list(args: argparse.Namespace, store: Any, letters: list[Any], chosen: list[Any]) -> int:
    from infinitic_py.ops.dlq import render_table, summary

    views = [x.view for x in chosen]
    if args.json:
        print(json.dumps({"service": args.service, "topic": store.topic,
                          "topics": store.topics, "total": len(letters),
                          "count": len(views), "complete": not store.truncated,
                          "summary": summary(views),
                          "letters": [v.to_json() for v in views]}, indent=2))
        return 0
    if views:
        print(render_table(views))
    counts = summary(views)["error_type"]
    print(f"{len(views)} dead letter(s) of {args.service}"
          + (f" (of {len(letters)})" if len(views) != len(letters) else "")
          + (": " + ", ".join(f"{k} {v}" for k, v in counts.items()) if counts else "")
          + ("" if store.topic_exists else f" (no {store.topic} topic: a service that never "
             "dead-lettered a task, or a mistyped name; `infinitic-py status` lists services)")
          + _truncated_note(store))
    return 0


def _truncated_note(store: Any) -> str:
    """What was not read: the broker stops delivering to a consumer at its unacked limit."""
    if not store.truncated:
        return ""
    return ("; POSSIBLY INCOMPLETE: the broker stopped delivering at its unacked-messages "
            "limit (maxUnackedMessagesPerConsumer), so more dead letters may be kept than were "
            "read; replay or purge these, then run the command again, or raise the namespace's "
            "limit")


async def _show(args: argparse.Namespace, store: Any, letters: list[Any], chosen: list[Any]) -> int:
    from infinitic_py.ops.dlq import render_show

    if not chosen:
        print(f"infinitic-py: no dead letter of task {args.task_id} on {store.topic} "
              f"({len(letters)} letter(s) there)", file=sys.stderr)
        return 1
    if args.json:
        print(strict_json([x.view.to_json(details=True) for x in chosen], indent=2))
    else:
        print("\n\n".join(render_show(x.view) for x in chosen))
    return 0


async def _replay(args: argparse.Namespace, store: Any, letters: list[Any], chosen: list[Any]) -> int:
    from infinitic_py.ops.dlq import render_table, replay_counts, replayed_what
    from infinitic_py.ops.dlq_store import whole_bulks

    whole, partial = whole_bulks(chosen)
    replayable = [x for x in whole if x.view.task is not None]
    skipped = len(whole) - len(replayable)
    target = args.to_service or args.service
    views = [x.view for x in replayable]
    what = replayed_what(views, target, to_service=args.to_service)
    if args.dry_run:
        if replayable:
            print(render_table(views))
        print(f"dry run: would replay {what}"
              + (f" ({skipped} without a decodable task skipped)" if skipped else "")
              + _partial_note(partial) + _truncated_note(store))
        return 0
    count = await store.replay(replayable, to_service=args.to_service)
    result = {"service": args.service, "to_service": target, "replayed": count,
              **replay_counts(views), "skipped": skipped, "skipped_partial_bulk": len(partial),
              "complete": not store.truncated,
              "task_ids": [x.view.task_id for x in replayable]}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"replayed {what}; their dead letters are deleted"
              + (f"; {skipped} without a decodable task skipped (purge them)"
                           if skipped else "") + _partial_note(partial)
              + _truncated_note(store))
    return 0


def _partial_note(partial: list[Any]) -> str:
    """One line on the letters left alone: tasks of an atomic bulk only partly selected."""
    if not partial:
        return ""
    return (f"; {len(partial)} task(s) of an atomic bulk skipped: the bulk is one dead-letter "
            "message, settled only with all its tasks selected (use a filter matching them all)")


async def _purge(args: argparse.Namespace, store: Any, letters: list[Any], chosen: list[Any]) -> int:
    from infinitic_py.ops.dlq import render_table
    from infinitic_py.ops.dlq_store import whole_bulks

    chosen, partial = whole_bulks(chosen)
    if not args.yes:
        if args.json:
            print(json.dumps({"service": args.service, "would_delete": len(chosen),
                              "deleted": 0, "dry_run": True, "complete": not store.truncated}))
        else:
            if chosen:
                print(render_table([x.view for x in chosen]))
            print(f"dry run: would delete {len(chosen)} dead letter(s) of {args.service}; "
                  "add --yes to delete them" + _partial_note(partial) + _truncated_note(store))
        return 0
    await store.ack(chosen)
    if args.json:
        print(json.dumps({"service": args.service, "deleted": len(chosen), "dry_run": False,
                          "skipped_partial_bulk": len(partial),
                          "complete": not store.truncated}))
    else:
        print(f"deleted {len(chosen)} dead letter(s) of {args.service}"
              + _partial_note(partial) + _truncated_note(store))
    return 0


_Action = Callable[[argparse.Namespace, Any, list[Any], list[Any]], Coroutine[Any, Any, int]]
_DLQ_ACTIONS: dict[str, _Action] = {
    "list": _list, "show": _show, "replay": _replay, "purge": _purge,
}
