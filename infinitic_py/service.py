"""Service definitions: ``@task``, its batched twin ``@<method>.batch(...)``, ``@service(name=...)``,
and the checks that turn a service instance into ``ServiceDefinition`` at worker start.

A service is a plain class; its task methods are ``TaskMethod`` descriptors. Accessed on an
instance they behave like the original method, so services stay testable as plain objects.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import types
import typing
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Concatenate, Generic, ParamSpec, Protocol, TypeVar, overload

import msgspec

from infinitic_py.batching import BatchLimits, check_timeout
from infinitic_py.errors import ServiceDefinitionError
from infinitic_py.retry import RetryPolicy, check_retry
from infinitic_py.signatures import (
    NOT_A_DICT,
    check_codable,
    check_plain_function,
    describe,
    dict_value_type,
    positional_caller,
    strip_exceptions,
    type_hints,
    unwrap_awaitable,
    wrapper_fields,
)
from infinitic_py.topics import check_service_name

S = TypeVar("S")
P = ParamSpec("P")
R = TypeVar("R")
C = TypeVar("C", bound=type[Any])
BF = TypeVar("BF", bound=Callable[..., Any])

DEFAULT_MAX_MESSAGES = 100
DEFAULT_MAX_SECONDS = 1.0
_SERVICE_NAME_ATTR = "__infinitic_service_name__"


@dataclass(frozen=True)
class BatchSpec:
    """What ``@<method>.batch(...)`` declared."""

    fn: Callable[..., Any]
    max_messages: int
    max_seconds: float
    isolate_failures: bool


class TaskMethod(Generic[S, P, R]):
    """A task method. ``R`` is the result type (an ``async def`` task's awaited result)."""

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.fn = fn
        self.name: str = fn.__name__
        self.timeout = check_timeout(timeout)
        self.retry = check_retry(retry)
        self.batch_spec: BatchSpec | None = None
        functools.update_wrapper(self, fn)  # type: ignore[arg-type]

    def __set_name__(self, owner: type[Any], name: str) -> None:
        self.name = name

    @overload
    def __get__(self, instance: None, owner: type[Any]) -> TaskMethod[S, P, R]: ...
    @overload
    def __get__(self, instance: object, owner: type[Any]) -> Callable[P, Any]: ...
    def __get__(self, instance: object | None, owner: type[Any]) -> Any:
        if instance is None:
            return self
        return types.MethodType(self.fn, instance)

    def batch(
        self,
        *,
        max_messages: int = DEFAULT_MAX_MESSAGES,
        max_seconds: float = DEFAULT_MAX_SECONDS,
        isolate_failures: bool = False,
    ) -> Callable[[BF], BF]:
        """Declare the batched twin of this task. It takes ``dict[task_id, I]`` and returns
        ``dict[task_id, O]`` (a value may be an exception: that task fails alone) or ``None``.

        ``max_messages`` / ``max_seconds`` are defaults that worker config can override.
        With ``isolate_failures=True`` a batch that raises is split in halves and re-run to find
        the failing tasks before their retries are spent.
        The twin may keep the task's name (Infinitic's habit) or take another one.
        """
        BatchLimits(max_messages, max_seconds)  # validates now, at import time

        def register(fn: BF) -> BF:
            self.batch_spec = BatchSpec(fn, max_messages, max_seconds, isolate_failures)
            if getattr(fn, "__name__", None) == self.name:
                return self  # type: ignore[return-value]  # same name: the class keeps the task
            return fn

        return register

    def _overridden(
        self, *, fn: Callable[..., Any] | None = None, batch_fn: Callable[..., Any] | None = None
    ) -> TaskMethod[S, P, R]:
        """This task with a subclass's plain override of its function or of its batch twin."""
        copy = TaskMethod[S, P, R](fn or self.fn, timeout=self.timeout, retry=self.retry)
        copy.name = self.name
        copy.batch_spec = self.batch_spec
        if self.batch_spec is not None and batch_fn is not None:
            copy.batch_spec = dataclasses.replace(self.batch_spec, fn=batch_fn)
        return copy

    def __repr__(self) -> str:
        return f"<task {self.name}{' (batched)' if self.batch_spec else ''}>"


class _TaskDecorator(Protocol):
    """What ``@task(timeout=..., retry=...)`` returns: like ``@task``, an ``async def``'s result
    type is its awaited result."""

    @overload
    def __call__(
        self, fn: Callable[Concatenate[S, P], Coroutine[Any, Any, R]], /
    ) -> TaskMethod[S, P, R]: ...
    @overload
    def __call__(self, fn: Callable[Concatenate[S, P], R], /) -> TaskMethod[S, P, R]: ...


@overload
def task(
    fn: Callable[Concatenate[S, P], Coroutine[Any, Any, R]], /
) -> TaskMethod[S, P, R]: ...
@overload
def task(fn: Callable[Concatenate[S, P], R], /) -> TaskMethod[S, P, R]: ...
@overload
def task(
    *, timeout: float | None = None, retry: RetryPolicy | None = None
) -> _TaskDecorator: ...
def task(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    timeout: float | None = None,
    retry: RetryPolicy | None = None,
) -> Any:
    """Mark a method as a task: ``@task`` or ``@task(timeout=10, retry=RetryPolicy(...))``."""
    if fn is None:
        return lambda f: TaskMethod(f, timeout=timeout, retry=retry)
    return TaskMethod(fn, timeout=timeout, retry=retry)


def service(*, name: str | None = None) -> Callable[[C], C]:
    """Name a service (default: the class name): ``@service(name="Email")``."""

    def mark(cls: C) -> C:
        if name is not None:
            try:
                check_service_name(name)
            except (TypeError, ValueError) as exc:
                raise ServiceDefinitionError(f"{cls.__name__}: {exc}") from None
            setattr(cls, _SERVICE_NAME_ATTR, name)
        return cls

    return mark


def service_name(cls_or_name: type[Any] | str) -> str:
    if isinstance(cls_or_name, str):
        return cls_or_name
    return str(cls_or_name.__dict__.get(_SERVICE_NAME_ATTR, cls_or_name.__name__))


def task_methods(cls: type[Any]) -> dict[str, TaskMethod[Any, Any, Any]]:
    """Every task method of a service class, by name (base classes included).

    A subclass that overrides a task method (or its batch twin) with a plain function keeps
    the task: the override runs, with the options (timeout, retry, batch limits) declared on
    the base class. An override that could not run that way (not a plain function, or the
    task's twin has the task's own name) is a ``ServiceDefinitionError``: silently running the
    base class's function instead is worse."""
    found: dict[str, TaskMethod[Any, Any, Any]] = {}
    for klass in reversed(cls.__mro__):
        for attr, value in vars(klass).items():
            if isinstance(value, TaskMethod):
                found[attr] = value
            elif attr in found:
                found[attr] = _override(klass, found[attr], attr, value)
    for attr, tm in found.items():
        spec = tm.batch_spec
        if spec is None or spec.fn.__name__ == attr:
            continue
        twin_name = spec.fn.__name__
        owner = next((k for k in cls.__mro__ if twin_name in vars(k)), None)
        twin = vars(owner)[twin_name] if owner is not None else spec.fn
        if twin is spec.fn:
            continue
        if not inspect.isfunction(twin):
            raise ServiceDefinitionError(
                f"{owner.__qualname__ if owner else cls.__qualname__}.{twin_name} overrides the "
                f"batch twin {twin_name!r} of task {attr!r} with a {type(twin).__name__}, which "
                f"would never run: override it with a plain method (def {twin_name}(self, ...))"
            )
        found[attr] = tm._overridden(batch_fn=twin)
    return found


def _override(
    klass: type[Any], tm: TaskMethod[Any, Any, Any], attr: str, value: Any
) -> TaskMethod[Any, Any, Any]:
    """``klass`` defines ``attr``, a task of a base class, as something else than a task."""
    where = f"{klass.__qualname__}.{attr}"
    if not inspect.isfunction(value):
        raise ServiceDefinitionError(
            f"{where} overrides task {attr!r} with a {type(value).__name__}, which would never "
            f"run: override it with a plain method (def {attr}(self, ...)) or re-decorate it "
            "with @task"
        )
    if tm.batch_spec is not None and tm.batch_spec.fn.__name__ == attr:
        raise ServiceDefinitionError(
            f"{where} overrides task {attr!r}, whose batch twin has the same name, with a plain "
            f"method: the worker runs the twin, so the override would never run. Re-decorate "
            f"both in the subclass (@task, then @{attr}.batch(...)), or give the twin another "
            "name in the base class"
        )
    return tm._overridden(fn=value)


# ---------------------------------------------------------------------------------------------
# Definitions checked at worker start (and by the client for typed stubs)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchDefinition:
    fn: Callable[[dict[str, Any]], Any]  # bound to the service instance
    is_async: bool
    fn_name: str
    item_type: Any  # I
    output_type: Any  # O
    # Decoded positional args -> I. Raises whatever I's constructor raises (a __post_init__
    # check, ...): the executor must catch it per task and fail that task alone (DecodeError).
    wrap: Callable[[tuple[Any, ...]], Any]
    limits: BatchLimits
    isolate_failures: bool


@dataclass(frozen=True)
class MethodDefinition:
    service: str
    name: str
    param_names: tuple[str, ...]
    param_types: tuple[Any, ...]
    return_type: Any
    signature: inspect.Signature  # without self
    fn: Callable[..., Any] | None  # bound single method (None only for client-side specs)
    is_async: bool
    timeout: float | None
    retry: RetryPolicy | None
    batch: BatchDefinition | None
    args_decoder: msgspec.msgpack.Decoder[tuple[Any, ...]] = dataclasses.field(repr=False)
    output_decoder: msgspec.msgpack.Decoder[Any] = dataclasses.field(repr=False)

    @property
    def qualified(self) -> str:
        return f"{self.service}.{self.name}"

    def bind_args(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        """Positional arguments in signature order (defaults applied). Raises TypeError."""
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{self.qualified}(): {exc}") from None
        bound.apply_defaults()
        return tuple(bound.arguments[name] for name in self.param_names)


@dataclass(frozen=True)
class ServiceDefinition:
    name: str
    instance: Any
    methods: dict[str, MethodDefinition]


def _is_async(fn: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(fn)


def _build_batch(
    service: str,
    instance: Any,
    method: str,
    spec: BatchSpec,
    param_names: tuple[str, ...],
    param_types: tuple[Any, ...],
    return_type: Any,
    limits: BatchLimits,
) -> BatchDefinition:
    fn = spec.fn
    where = f"service {service}: batch method {fn.__name__!r} (twin of {method!r})"
    check_plain_function(fn, where)
    sig = inspect.signature(fn)
    params = [p for p in sig.parameters.values()][1:]  # drop self
    if len(params) != 1 or params[0].kind not in (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    ):
        raise ServiceDefinitionError(
            f"{where}: must take exactly one parameter, dict[str, I] (task id -> input), "
            f"got ({', '.join(str(p) for p in params)})"
        )
    hints = type_hints(fn, where)
    param_hint = hints.get(params[0].name)
    item_type = dict_value_type(param_hint)
    if item_type is NOT_A_DICT:
        raise ServiceDefinitionError(
            f"{where}: parameter {params[0].name!r} must be annotated dict[str, I], "
            f"got {describe(param_hint)}"
        )
    wrap: Callable[[tuple[Any, ...]], Any]
    if len(param_names) == 1:
        if item_type not in (Any, param_types[0]):
            raise ServiceDefinitionError(
                f"{where}: input type {describe(item_type)} does not match "
                f"{method}({param_names[0]}: {describe(param_types[0])})"
            )

        def wrap(args: tuple[Any, ...]) -> Any:
            return args[0]

    else:
        fields = wrapper_fields(item_type)
        expected = ", ".join(f"{n}: {describe(t)}" for n, t in zip(param_names, param_types, strict=True))
        if fields is None or len(fields) != len(param_names):
            raise ServiceDefinitionError(
                f"{where}: {method} takes {len(param_names)} parameters ({expected}), so the "
                f"input type must be a msgspec.Struct, NamedTuple or dataclass with those fields "
                f"(named like them, or in order); got {describe(item_type)}"
            )
        if {fname for fname, _ in fields} == set(param_names):
            # Fields named like the parameters: each argument goes to its namesake, whatever
            # the field order (a Struct lists inherited kw_only fields last).
            by_name = dict(fields)
            fields = [(pname, by_name[pname]) for pname in param_names]
        for (fname, ftype), pname, ptype in zip(fields, param_names, param_types, strict=True):
            if ftype not in (Any, ptype) and ptype is not Any:
                raise ServiceDefinitionError(
                    f"{where}: field {fname!r} of {describe(item_type)} is {describe(ftype)} "
                    f"but parameter {pname!r} of {method} is {describe(ptype)}"
                )
        ctor = item_type
        names = tuple(fname for fname, _ in fields)

        def wrap(args: tuple[Any, ...]) -> Any:
            # By keyword: keyword-only fields (kw_only dataclasses and Structs) take no position.
            return ctor(**dict(zip(names, args, strict=True)))

    ret = hints.get("return", inspect.Signature.empty)
    ret = unwrap_awaitable(ret, _is_async(fn))
    output_type: Any
    if ret is type(None) or ret is None or ret is inspect.Signature.empty:
        output_type = return_type  # returns None (or is not annotated: nothing to check)
    else:
        options = [ret]
        if typing.get_origin(ret) in (typing.Union, types.UnionType):
            options = [a for a in typing.get_args(ret) if a is not type(None)]
        value_type = dict_value_type(options[0]) if len(options) == 1 else NOT_A_DICT
        if value_type is NOT_A_DICT:
            raise ServiceDefinitionError(
                f"{where}: must return dict[str, O] (task id -> output) or None, "
                f"got {describe(ret)}"
            )
        output_type = strip_exceptions(value_type)
        if output_type not in (Any, return_type) and return_type is not Any:
            raise ServiceDefinitionError(
                f"{where}: output type {describe(output_type)} does not match the return type "
                f"{describe(return_type)} of {method}"
            )
    return BatchDefinition(
        fn=types.MethodType(fn, instance) if instance is not None else fn,
        is_async=_is_async(fn),
        fn_name=fn.__name__,
        item_type=item_type,
        output_type=output_type,
        wrap=wrap,
        limits=limits,
        isolate_failures=spec.isolate_failures,
    )


def define_method(
    service: str,
    instance: Any,
    tm: TaskMethod[Any, Any, Any],
    *,
    limits: BatchLimits | None = None,
) -> MethodDefinition:
    where = f"service {service}: task {tm.name!r}"
    fn = tm.fn
    check_plain_function(fn, where)
    sig = inspect.signature(fn)
    params = list(sig.parameters.values())
    if not params:
        raise ServiceDefinitionError(f"{where}: a task method must take self")
    params = params[1:]
    for p in params:
        if p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            raise ServiceDefinitionError(f"{where}: *args / **kwargs are not supported ({p})")
    hints = type_hints(fn, where)
    is_async = _is_async(fn)
    param_names = tuple(p.name for p in params)
    param_types = tuple(hints.get(p.name, Any) for p in params)
    return_type = unwrap_awaitable(hints.get("return", Any), is_async)
    if return_type is None:
        return_type = type(None)
    check_codable(zip((*param_names, "return"), (*param_types, return_type), strict=True), where)
    batch = None
    if tm.batch_spec is not None:
        spec = tm.batch_spec
        batch = _build_batch(
            service, instance, tm.name, spec, param_names, param_types, return_type,
            limits or BatchLimits(spec.max_messages, spec.max_seconds),
        )
    return MethodDefinition(
        service=service,
        name=tm.name,
        param_names=param_names,
        param_types=param_types,
        return_type=return_type,
        signature=sig.replace(parameters=params),
        fn=positional_caller(types.MethodType(fn, instance), params, is_async)
        if instance is not None else None,
        is_async=is_async,
        timeout=tm.timeout,
        retry=tm.retry,
        batch=batch,
        args_decoder=msgspec.msgpack.Decoder(tuple[param_types] if param_types else tuple[()]),  # type: ignore[valid-type]
        # A batch twin returning None completes every task with None, whatever the type says.
        output_decoder=msgspec.msgpack.Decoder(return_type | None if batch else return_type),
    )


def define_service(
    instance: Any,
    *,
    name: str | None = None,
    batch_limits: dict[str, BatchLimits] | None = None,
) -> ServiceDefinition:
    """Check a service instance and build its definition. Raises ServiceDefinitionError naming
    the service, the method and what is wrong."""
    cls = type(instance)
    svc = name or service_name(cls)
    try:
        check_service_name(svc)
    except (TypeError, ValueError) as exc:
        raise ServiceDefinitionError(f"{cls.__qualname__}: {exc}") from None
    methods = task_methods(cls)
    if not methods:
        raise ServiceDefinitionError(
            f"service {svc} ({cls.__module__}.{cls.__qualname__}) has no @task method"
        )
    batch_limits = batch_limits or {}
    batched = {n for n, tm in methods.items() if tm.batch_spec is not None}
    unknown = set(batch_limits) - batched
    if unknown:
        raise ServiceDefinitionError(
            f"service {svc}: batch limits configured for {sorted(unknown)} but its batched "
            f"methods are {sorted(batched) or 'none'}"
        )
    defs = {
        n: define_method(svc, instance, tm, limits=batch_limits.get(n))
        for n, tm in methods.items()
    }
    return ServiceDefinition(svc, instance, defs)


def describe_class(cls: type[Any]) -> dict[str, MethodDefinition]:
    """Method definitions of a service class without an instance (for typed client stubs)."""
    svc = service_name(cls)
    return {n: define_method(svc, None, tm) for n, tm in task_methods(cls).items()}
