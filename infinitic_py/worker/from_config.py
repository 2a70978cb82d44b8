"""From a loaded ``WorkerConfig`` to a ready-to-start ``Worker``: imports the service classes,
makes their instances, and turns each config section into the worker's options (once: the
worker then builds each executor's settings from them)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from infinitic_py.batching import BatchLimits
from infinitic_py.config import ServiceConfig, WorkerConfig
from infinitic_py.errors import ConfigError
from infinitic_py.retry import RetryPolicy
from infinitic_py.service import task_methods
from infinitic_py.transport.base import ConsumerSettings, SubscriptionType
from infinitic_py.transport.urls import is_memory

if TYPE_CHECKING:
    from infinitic_py.worker.daemon import Worker

W = TypeVar("W", bound="Worker")


def consumer_settings(config: WorkerConfig) -> ConsumerSettings:
    c = config.pulsar.consumer
    return ConsumerSettings(
        subscription_type=SubscriptionType(c.subscription_type),
        receiver_queue_size=c.receiver_queue_size,
        nack_redelivery_delay=c.nack_redelivery_delay_seconds,
        max_redeliveries=c.max_redeliveries,
    )


def batch_limits(service: ServiceConfig, cls: type[Any]) -> dict[str, BatchLimits]:
    """The config's batch overrides merged over the decorators' values, keyed by task name.
    A key may name the task (``send``) or its batched twin (``send_batch``)."""
    methods = task_methods(cls)
    by_any_name = {}
    for name, tm in methods.items():
        if tm.batch_spec is not None:
            by_any_name[name] = name
            by_any_name[tm.batch_spec.fn.__name__] = name
    limits: dict[str, BatchLimits] = {}
    for key, override in service.batch.items():
        task_name = by_any_name.get(key)
        if task_name is None:
            raise ConfigError(
                f"services[{service.class_path}].batch: {key!r} is not a batched method of "
                f"{cls.__name__} (batched: {', '.join(sorted(set(by_any_name))) or 'none'})"
            )
        spec = methods[task_name].batch_spec
        assert spec is not None
        limits[task_name] = BatchLimits(
            override.max_messages or spec.max_messages,
            override.max_seconds or spec.max_seconds,
        )
    return limits


def retry_policy(service: ServiceConfig) -> RetryPolicy | None:
    r = service.retry
    if r is None:
        return None
    try:
        ignored = r.exception_types()
    except ConfigError as exc:  # "ignored_exceptions: ..." -> the key's full path
        raise ConfigError(f"services[{service.class_path}].retry.{exc}") from exc.__cause__
    try:
        return RetryPolicy(
            maximum_retries=r.maximum_retries,
            minimum_seconds=r.minimum_seconds,
            maximum_seconds=r.maximum_seconds,
            backoff_coefficient=r.backoff_coefficient,
            random_factor=r.random_factor,
            ignored_exceptions=ignored,
        )
    except ValueError as exc:
        raise ConfigError(f"services[{service.class_path}].retry: {exc}") from None


def build_worker(worker_cls: type[W], config: WorkerConfig) -> W:
    """Raises ConfigError (bad values, import failures) or ServiceDefinitionError."""
    w = config.worker
    worker = worker_cls(
        config.pulsar.url,
        tenant=config.pulsar.tenant,
        namespace=config.pulsar.namespace,
        name=w.resolved_name(),
        consumer=consumer_settings(config),
        max_buffered_messages=w.max_buffered_messages,
        max_buffered_bytes=w.max_buffered_bytes,
        max_hung_handlers=w.max_hung_handlers,
        connect_timeout=config.pulsar.connect_timeout_seconds,
        shutdown_grace=w.shutdown_grace_seconds,
        http_host=w.http_host,
        http_port=w.http_port or None,
        transport_options=config.pulsar.transport_options(),
        admin_url=None if is_memory(config.pulsar.url) else config.pulsar.admin_url,
        gc_gen0_threshold=w.gc_gen0_threshold,
        backlog_interval=w.backlog_poll_seconds,
    )
    for service in config.services:
        cls = service.load_class()
        try:
            instance = cls()
        except Exception as exc:
            raise ConfigError(
                f"cannot create service {service.class_path!r}: {type(exc).__name__}: {exc}"
            ) from exc
        worker.add_service(
            instance,
            name=service.name,
            concurrency=service.concurrency,
            retry=retry_policy(service),
            timeout=service.timeout_seconds,
            batch=batch_limits(service, cls),
            wire=service.wire,
            tenant=service.tenant,
            namespace=service.namespace,
            event_handler=service.event_handler,
        )
    return worker


__all__ = ["build_worker", "consumer_settings"]
