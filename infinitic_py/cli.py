"""``infinitic-py``: ``worker`` (run until SIGTERM), ``check`` (config, services, broker, limits),
``dispatch`` (send a task from the shell), ``status`` and ``dlq`` (operator tools, ``ops/``).

Exit codes: 0 ok; 1 a check failed or a runtime error (broker unreachable, a limit that will
stall the consumer, a task that failed, no result in time); 2 the configuration, a service
definition or the command line is wrong. Every failure is one readable line on stderr; ``--debug``
shows the traceback instead.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from infinitic_py.errors import (
    ConfigError,
    ForcedShutdown,
    InfiniticError,
    ServiceDefinitionError,
    TaskFailed,
)
from infinitic_py.transport.urls import is_memory

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_CONFIG = 2


class _Parser(argparse.ArgumentParser):
    """A usage mistake is one line naming it and where to read more (exit 2), not the usage."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("infinitic-py").strip()
        where = f"{command}: " if command else ""
        self.exit(EXIT_CONFIG, f"infinitic-py: {where}{message} (see '{self.prog} --help')\n")


def _parser() -> argparse.ArgumentParser:
    from infinitic_py.ops.commands import (
        BROKER_HELP,
        SERVICES_HELP,
        add_broker_options,
        add_commands,
        delay_seconds,
        seconds,
    )

    parser = _Parser(
        prog="infinitic-py", description="Batched tasks over Apache Pulsar: worker and tools."
    )
    parser.add_argument("--version", action="version", version=f"infinitic-py {_version()}")
    common = _Parser(add_help=False)
    common.add_argument("--debug", action="store_true",
                        help="show the traceback of a failure instead of one line")
    parents = [common]
    sub = parser.add_subparsers(dest="command", required=True)

    worker = sub.add_parser("worker", help="run a worker until SIGTERM / SIGINT", parents=parents)
    worker.add_argument("-c", "--config", help="worker config YAML (default: $INFINITIC_CONFIG)")

    check = sub.add_parser(
        "check", help="validate config, import services, check signatures, broker and limits",
        parents=parents,
    )
    check.add_argument("-c", "--config", help="worker config YAML (default: $INFINITIC_CONFIG)")
    check.add_argument("--offline", action="store_true", help="skip the broker checks")
    check.add_argument(
        "--strict", action="store_true", help="exit 1 on warnings too, not only on errors"
    )
    check.add_argument(
        "--workers", type=_worker_count, default=1, metavar="N",
        help="workers of each service running at once (pods x workers per pod; default 1): "
             "their worst-case unacked messages are checked against "
             "maxUnackedMessagesPerSubscription",
    )

    dispatch = sub.add_parser("dispatch", help="dispatch a task from the shell", parents=parents,
                              description="Dispatch one task. " + BROKER_HELP + SERVICES_HELP)
    dispatch.add_argument("service", help="service name (e.g. EmailService)")
    dispatch.add_argument("method", help="task method (e.g. send)")
    dispatch.add_argument(
        "args", nargs="?", default="[]", help="JSON array of positional arguments (default [])"
    )
    dispatch.add_argument("--batch-key", help="meta batchKey")
    dispatch.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE")
    dispatch.add_argument("--task-id", help="caller-chosen task id (idempotency key)")
    dispatch.add_argument("--delay", type=delay_seconds, help="seconds before delivery")
    dispatch.add_argument("--wait", action="store_true", help="wait for and print the result")
    dispatch.add_argument("--timeout", type=seconds, default=None,
                          help="with --wait (seconds, default 60)")
    add_broker_options(dispatch, services=True)
    add_commands(sub, parents)
    return parser


def _worker_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of workers, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1 worker, got {value}")
    return value


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("infinitic-py")
    except PackageNotFoundError:
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Like `python -m`, uvicorn or gunicorn: service classes are importable from the current dir.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        if args.command == "worker":
            return _worker(args.config)
        if args.command == "check":
            return _check(args.config, offline=args.offline, strict=args.strict,
                          workers=args.workers)
        if args.command in ("dlq", "status"):
            from infinitic_py.ops.commands import run

            return run(args)
        return asyncio.run(_dispatch(args))
    except KeyboardInterrupt:
        return 130
    except ServiceDefinitionError as exc:
        if args.debug:
            raise
        print(f"infinitic-py: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except Exception as exc:  # one line naming what to fix (ops/failures.py), or --debug
        from infinitic_py.ops.failures import describe

        if args.debug:
            raise
        line, code = describe(exc, args.command)
        print(f"infinitic-py: {line}", file=sys.stderr)
        return code


def _config_path(path: str | None) -> str | None:
    """The worker's config file: ``-c`` or ``$INFINITIC_CONFIG``; without either there are no
    services to run (the environment alone cannot list them), which is said plainly."""
    from infinitic_py.config import CONFIG_PATH_ENV

    if path is None and not os.environ.get(CONFIG_PATH_ENV):
        raise ConfigError(f"no config file: give one with -c FILE (or set ${CONFIG_PATH_ENV}); "
                          "deploy/worker.example.yaml is an annotated example")
    return path


def _worker(path: str | None) -> int:
    from infinitic_py.config import load_config
    from infinitic_py.observability import configure_logging
    from infinitic_py.ops.failures import port_in_use
    from infinitic_py.worker import Worker

    config = load_config(_config_path(path))
    configure_logging(config.worker.log_format, config.worker.log_level)
    worker = Worker.from_config(config)  # imports the services, then tunes the GC
    try:
        worker.run()
    except OSError as exc:
        if not port_in_use(exc):
            raise
        w = config.worker
        print(f"infinitic-py: worker.http_port {w.http_port} is already in use on {w.http_host}: "
              "set worker.http_port (or INFINITIC_WORKER__HTTP_PORT) to a free port, or 0 to "
              "disable the HTTP server", file=sys.stderr)
        return EXIT_CONFIG
    except ForcedShutdown as exc:
        # Exit now: a sync handler may still hold a pool thread, which a normal exit would join.
        print(f"infinitic-py worker: {exc}", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(130)
    except InfiniticError as exc:
        if isinstance(exc, ConfigError | ServiceDefinitionError):
            raise
        print(f"infinitic-py worker: {exc}", file=sys.stderr)
        return EXIT_CHECK_FAILED
    return EXIT_OK


def _check(path: str | None, *, offline: bool, strict: bool, workers: int = 1) -> int:
    from infinitic_py.admin import PulsarAdmin, PulsarAdminError
    from infinitic_py.config import load_config
    from infinitic_py.credentials import authorization_problem, credentials_problem
    from infinitic_py.limits import (
        LimitScope,
        buffer_findings,
        byte_findings,
        check_slots_against_limit,
        check_subscription_unacked_limit,
        check_unacked_limit,
        unacked_budget,
    )
    from infinitic_py.priority import BANDS, band_service
    from infinitic_py.service import define_service, task_methods
    from infinitic_py.tokens import bearer_token
    from infinitic_py.topics import service_topic
    from infinitic_py.wire.dialects import make_dialect
    from infinitic_py.worker.from_config import batch_limits, retry_policy

    config = load_config(_config_path(path))
    print(f"ok    config {path or os.environ.get('INFINITIC_CONFIG', '')}: "
          f"{len(config.services)} service(s), broker {config.redacted()['pulsar']['url']}")
    # (service, concurrency, largest max_messages, tenant, namespace)
    plans: list[tuple[str, int, int, str, str]] = []
    for svc in config.services:
        cls = svc.load_class()
        limits = batch_limits(svc, cls)
        retry_policy(svc)
        _check_constructible(svc.class_path, cls)
        instance = object.__new__(cls)  # signatures only: no constructor side effects
        definition = define_service(instance, name=svc.name, batch_limits=limits)
        largest = max(
            (m.batch.limits.max_messages for m in definition.methods.values() if m.batch),
            default=1,
        )
        batched = [n for n, tm in task_methods(cls).items() if tm.batch_spec]
        print(f"ok    service {definition.name}: methods {sorted(definition.methods)}, "
              f"batched {batched or 'none'}, concurrency {svc.concurrency}")
        tenant = svc.tenant or config.pulsar.tenant  # a service may live in its own namespace
        namespace = svc.namespace or config.pulsar.namespace
        if svc.wire == "native":
            bands = ", ".join(
                f"{b.name.lower()} {service_topic(tenant, namespace, band_service(definition.name, b))}"
                for b in BANDS)
            print(f"ok    service {definition.name}: priority bands (consumed high first) {bands}")
        else:  # the dialect's own topics (Infinitic's have no priority bands)
            dialect = make_dialect(svc.wire, tenant, namespace, event_handler=svc.event_handler)
            consumed = ", ".join(f"{s.role} {s.topic}"
                                 for s in dialect.subscriptions(definition.name))
            print(f"ok    service {definition.name}: wire {svc.wire}, consumes {consumed}")
        plans.append((definition.name, svc.concurrency, largest, tenant, namespace))
    if offline or is_memory(config.pulsar.url):
        print("skip  broker checks (offline or memory:// transport)")
        return EXIT_OK
    p = config.pulsar
    problems = warnings = 0
    # pulsar-client only times out when the broker refuses the credentials: asked first
    refused = credentials_problem(p.admin_url, p.auth_plugin, p.auth_params_string(), timeout=10)
    if refused:
        print(f"FAIL  {refused}")
        return EXIT_CHECK_FAILED
    unreachable = _broker_unreachable(p.url, config)
    refused = authorization_problem(unreachable, p.auth_plugin, p.auth_params_string(),
                                    f"{p.tenant}/{p.namespace}")
    if refused:
        print(f"FAIL  {refused}")
        return EXIT_CHECK_FAILED
    if unreachable:
        print(f"FAIL  broker {p.url} is not reachable: {unreachable}")
        return EXIT_CHECK_FAILED
    print(f"ok    broker {p.url} reachable")
    broker_limit = broker_sub_limit = None
    namespace_limits: dict[tuple[str, str], int | None] = {}  # each service's own namespace
    namespace_sub_limits: dict[tuple[str, str], int | None] = {}  # ... per subscription
    if p.admin_url:
        admin = PulsarAdmin(p.admin_url, auth_token=bearer_token(p.auth_plugin,
                                                                 p.auth_params_string()))
        try:
            broker_limit = admin.broker_max_unacked_per_consumer()
            broker_sub_limit = admin.broker_max_unacked_per_subscription()
            for tenant, namespace in sorted({(t, n) for *_, t, n in plans}):
                namespace_limits[tenant, namespace] = admin.namespace_max_unacked_per_consumer(
                    tenant, namespace)
                namespace_sub_limits[tenant, namespace] = (
                    admin.namespace_max_unacked_per_subscription(tenant, namespace))
            shown = ", ".join(f"namespace {t}/{n}={'unset' if v is None else v}"
                              for (t, n), v in namespace_limits.items())
            print(f"ok    admin {p.admin_url}: maxUnackedMessagesPerConsumer broker="
                  f"{broker_limit if broker_limit is not None else 'unknown'}, {shown}")
            for level, line in _delayed_delivery_notes(admin):
                print(line)
                problems += level == "error"
        except PulsarAdminError as exc:
            warnings += 1
            print(f"warn  admin {p.admin_url}: {exc} (limits checked against the default 50000)")
    else:
        warnings += 1
        print("warn  no pulsar.admin_url: limits checked against the broker default (50000)")
    rq, buffered = p.consumer.receiver_queue_size, config.worker.max_buffered_messages
    for name, concurrency, max_messages, tenant, namespace in plans:
        scope = LimitScope(broker_limit=broker_limit,
                           namespace_limit=namespace_limits.get((tenant, namespace)),
                           tenant=tenant, namespace=namespace, service=name)
        findings = [
            *check_slots_against_limit(rq, concurrency, max_messages, buffered, **scope),
            *check_unacked_limit(rq, concurrency, max_messages, buffered, **scope),
            *buffer_findings(concurrency, max_messages, buffered, service=name),
            *byte_findings(rq, config.worker.max_buffered_bytes, service=name),
            *check_subscription_unacked_limit(
                unacked_budget(rq, concurrency, max_messages, buffered).demand, workers,
                **LimitScope(broker_limit=broker_sub_limit,
                             namespace_limit=namespace_sub_limits.get((tenant, namespace)),
                             tenant=tenant, namespace=namespace, service=name)),
        ]
        for finding in findings:
            tag = {"ok": "ok   ", "warn": "WARN ", "error": "ERROR"}[finding.level]
            print(f"{tag} {finding.message}")
            for suggestion in finding.suggestions:
                print(f"        fix: {suggestion}")
            problems += finding.level == "error"
            warnings += finding.level == "warn"
    if problems or (strict and warnings):
        return EXIT_CHECK_FAILED
    return EXIT_OK


def _check_constructible(class_path: str, cls: type[Any]) -> None:
    """The worker builds each service with no arguments: say so now if the constructor needs
    some (without running it: its side effects are the worker's business)."""
    import inspect

    try:
        signature = inspect.signature(cls)
    except (TypeError, ValueError):  # a builtin or C-level constructor: nothing to check
        return
    try:
        signature.bind()
    except TypeError as exc:
        raise ConfigError(f"cannot create service {class_path!r}: the worker builds it with no "
                          f"arguments, but {cls.__name__}() says: {exc}") from None


def _delayed_delivery_notes(admin: Any) -> list[tuple[str, str]]:
    """Retries use Pulsar's delayed delivery: say how precise this broker makes it."""
    runtime = admin.get_json("/admin/v2/brokers/configuration/runtime") or {}
    enabled = str(runtime.get("delayedDeliveryEnabled", "true")).lower() == "true"
    strict = str(runtime.get("isDelayedDeliveryDeliverAtTimeStrict", "false")).lower() == "true"
    tick = runtime.get("delayedDeliveryTickTimeMillis", "1000")
    if not enabled:
        return [("error", "ERROR delayedDeliveryEnabled=false on the broker: retries and delay= "
                 "are delivered at once (set delayedDeliveryEnabled=true)")]
    if strict:
        return [("ok", f"ok    delayed delivery strict, tick {tick} ms: retries never fire early")]
    return [("note", f"note  delayed delivery not strict (isDelayedDeliveryDeliverAtTimeStrict="
             f"false, tick {tick} ms): a retry or delay= may arrive up to {tick} ms before its "
             "time; set isDelayedDeliveryDeliverAtTimeStrict=true on the broker if that matters")]


def _broker_unreachable(url: str, config: Any) -> str:
    """Why the broker at ``url`` cannot be used, or ``""``: first a TCP connection (a wrong
    address says so at once), then one Pulsar request, each bounded; pulsar-client's native log
    lines are discarded (the FAIL line says what went wrong)."""
    from infinitic_py.ops.failures import BrokerUnreachable, probe_broker

    timeout = 10.0
    try:
        probe_broker(url, timeout)
    except BrokerUnreachable as exc:
        return exc.reason

    async def probe() -> str:
        from infinitic_py.topics import service_topic
        from infinitic_py.transport.pulsar import PulsarTransport

        transport = PulsarTransport(url, **config.pulsar.transport_options(),
                                    operation_timeout_seconds=int(timeout),
                                    connection_timeout_ms=int(timeout * 1000),
                                    log_file=os.devnull)
        try:
            topic = service_topic(config.pulsar.tenant, config.pulsar.namespace,
                                  "infinitic-py-check")
            await asyncio.wait_for(
                asyncio.to_thread(transport._client._client.get_topic_partitions, topic),
                timeout + 5,
            )
            return ""
        except TimeoutError:
            return f"no answer to a Pulsar request within {timeout + 5:g}s"
        except Exception as exc:
            return f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        finally:
            await transport.close()

    return asyncio.run(probe())


async def _dispatch(args: argparse.Namespace) -> int:
    from infinitic_py.client import AsyncClient
    from infinitic_py.observability import configure_logging
    from infinitic_py.ops.commands import service_scope, settings_of
    from infinitic_py.ops.failures import BrokerFailure, probe_broker
    from infinitic_py.transport.base import TransportError
    from infinitic_py.transport.urls import redact_url

    configure_logging("auto", "error")  # stderr, errors only: a failure is one line
    settings = settings_of(args)

    if args.timeout is not None and not args.wait:  # it was ignored without a word
        raise ConfigError("--timeout applies to --wait (the time to wait for the result): add "
                          "--wait, or drop --timeout")
    try:
        positional = json.loads(args.args)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"args must be a JSON array: {exc}") from None
    if not isinstance(positional, list):
        raise ConfigError(f"args must be a JSON array, got {type(positional).__name__}")
    meta: dict[str, Any] = {}
    for item in args.meta:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--meta expects KEY=VALUE, got {item!r}")
        meta[key] = value
    if args.batch_key:
        meta["batchKey"] = args.batch_key
    # A service the config declares gets its tasks where its workers consume (ops/scopes.py).
    scope = service_scope(settings, args.service)
    if scope.wire == "infinitic":
        raise ConfigError(f"service {args.service} is declared wire: infinitic ({scope.declared}):"
                          " dispatch sends infinitic-py's own format; dispatch it from an "
                          "Infinitic client, or AsyncClient(wire='infinitic') in Python")
    # A wrong address fails at once (not in the client's reconnect loop), and a broker that
    # accepts connections but never answers is bounded by --connect-timeout.
    await asyncio.to_thread(probe_broker, settings.url, args.connect_timeout)
    await asyncio.to_thread(settings.refuse_bad_credentials, args.connect_timeout)
    options = settings.tool_transport_options(args.connect_timeout, quiet=not args.debug)
    try:
        with settings.refusals_named():
            async with AsyncClient(settings.url, tenant=scope.tenant,
                                   namespace=scope.namespace, results=args.wait,
                                   transport_options=options,
                                   admin_url=settings.pulsar.admin_url) as client:
                return await _dispatch_one(client, args, positional, meta)
    except TransportError as exc:
        raise BrokerFailure(f"broker {redact_url(settings.url)}: {exc}") from exc


async def _dispatch_one(client: Any, args: argparse.Namespace, positional: list[Any],
                        meta: dict[str, Any]) -> int:
    from infinitic_py.client import Call

    if not args.method.strip():
        raise ConfigError("the METHOD argument is empty")
    try:  # a service name, task id, ... the client refuses before anything is sent: usage
        stub = client.service(args.service)
        (deferred,) = await getattr(stub, args.method).many(
            [Call(*positional, meta=meta, delay=args.delay, task_id=args.task_id)]
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc)) from None
    print(json.dumps({"task_id": deferred.task_id, "service": args.service,
                      "method": args.method}))
    if not args.wait:
        return EXIT_OK
    try:
        result = await deferred.result(timeout=60.0 if args.timeout is None else args.timeout)
    except TaskFailed as exc:
        print(json.dumps({"task_id": exc.task_id, "failed": exc.error_type,
                          "message": exc.message, "retry_index": exc.retry_index}))
        return EXIT_CHECK_FAILED
    from infinitic_py.json_text import strict_json

    print(strict_json({"task_id": deferred.task_id, "result": result}))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
