"""The client's typed surface: ``Call`` (one dispatch with options), ``Deferred`` (a task's
future result), ``StubMethod`` / ``ServiceStub`` (``client.service(EmailService).send(...)``).
They hand every dispatch to their ``AsyncClient``."""

from __future__ import annotations

import asyncio
import copy
import math
from collections.abc import Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypedDict, TypeVar, Unpack

import msgspec

from infinitic_py.errors import DecodeError, ResultTimeout, TaskFailed
from infinitic_py.priority import check_priority
from infinitic_py.service import MethodDefinition, TaskMethod
from infinitic_py.wire import MAX_ID_CHARS, MAX_TAGS
from infinitic_py.wire import native as wire

if TYPE_CHECKING:
    from infinitic_py.client.core import AsyncClient

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


class CallOptions(TypedDict, total=False):
    """The per-call options of ``StubMethod.options`` / ``SyncStubMethod.options`` (see
    ``Call``)."""

    meta: Mapping[str, Any] | None
    delay: float | None
    run_at: datetime | None
    task_id: str | None
    tags: Sequence[str] | None
    priority: int | None


@dataclass(frozen=True, init=False)
class Call:
    """One item of ``many()``: the arguments plus per-item options.

    ``meta`` is merged over the stub's meta (``batchKey`` included), ``delay`` (seconds) or
    ``run_at`` (an aware datetime) postpone delivery, ``task_id`` is the caller-chosen id (the
    idempotency key), ``tags`` are added to the stub's tags, ``priority`` is 0 (lowest) to 9
    (highest), default 5 (``infinitic_py.priority``: three bands, each its own topic).
    """

    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]
    meta: Mapping[str, Any] | None
    delay: float | None
    run_at: datetime | None
    task_id: str | None
    tags: Sequence[str] | None
    priority: int | None

    def __init__(
        self,
        *args: Any,
        meta: Mapping[str, Any] | None = None,
        delay: float | None = None,
        run_at: datetime | None = None,
        task_id: str | None = None,
        tags: Sequence[str] | None = None,
        priority: int | None = None,
        **kwargs: Any,
    ) -> None:
        object.__setattr__(self, "args", args)
        object.__setattr__(self, "kwargs", kwargs)
        object.__setattr__(self, "meta", meta)
        object.__setattr__(self, "delay", delay)
        object.__setattr__(self, "run_at", run_at)
        object.__setattr__(self, "task_id", task_id)
        object.__setattr__(self, "tags", tags)
        object.__setattr__(self, "priority", priority)

    @classmethod
    def build(
        cls,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        meta: Mapping[str, Any] | None = None,
        delay: float | None = None,
        run_at: datetime | None = None,
        task_id: str | None = None,
        tags: Sequence[str] | None = None,
        priority: int | None = None,
    ) -> Call:
        """A Call with the task's keyword arguments as a mapping: for a task parameter named
        like an option (``meta``, ``delay``, ``run_at``, ``task_id``, ``tags``), which
        ``Call(...)`` would take as the option."""
        return cls(meta=meta, delay=delay, run_at=run_at, task_id=task_id, tags=tags,
                   priority=priority)._bind(args, kwargs or {})

    def _bind(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Call:
        """This call's options with the task's arguments (the keywords as a mapping: they may be
        named like an option)."""
        call = copy.copy(self)
        object.__setattr__(call, "args", tuple(args))
        object.__setattr__(call, "kwargs", dict(kwargs))
        return call


class Deferred(Generic[R]):
    """A dispatched task. ``await d.result(timeout=...)`` returns its output or raises
    ``TaskFailed``; ``ResultTimeout`` when the time runs out (the task may still complete)."""

    __slots__ = ("__weakref__", "_client", "_decoder", "_future", "task_id")

    def __init__(
        self,
        task_id: str,
        future: asyncio.Future[wire.Reply] | None,
        decoder: msgspec.msgpack.Decoder[Any] | None,
        client: AsyncClient,
    ) -> None:
        self.task_id = task_id
        self._future = future
        self._decoder = decoder
        self._client = client

    def done(self) -> bool:
        return self._future is not None and self._future.done()

    async def result(self, timeout: float | None = None) -> R:
        """The task's output, waiting at most ``timeout`` seconds (None: as long as it takes;
        0 or less: only if it is already there)."""
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(
                timeout, int | float) or math.isnan(timeout)):
            raise (ValueError if isinstance(timeout, float) else TypeError)(
                f"timeout must be a number of seconds or None, got {timeout!r}")
        if self._future is None:
            raise RuntimeError(
                f"task {self.task_id} was dispatched without asking for its result "
                "(client or stub created with results=False)"
            )
        if self._future.get_loop() is not asyncio.get_running_loop():
            raise RuntimeError(wrong_loop(self._client.name))
        try:
            reply = await asyncio.wait_for(asyncio.shield(self._future), timeout)
        except TimeoutError:
            raise ResultTimeout(
                f"no result for task {self.task_id} within {timeout}s (it may still complete)"
            ) from None
        if isinstance(reply, wire.TaskFailedReply):
            raise TaskFailed(
                reply.task_id, reply.error_type, reply.message, reply.retry_index,
                reply.traceback, reply.service, reply.method,
            )
        try:
            output: R = (self._decoder or _any_decoder).decode(reply.output)
        except msgspec.DecodeError as exc:  # ValidationError included
            raise DecodeError(
                f"task {self.task_id} ({reply.service}.{reply.method}) completed, but its result "
                f"does not match the return type the client's service class declares: {exc} "
                "(the client's copy of the class differs from the worker's, or the worker's "
                "method is declared -> Any: a worker checks the type its method declares)"
            ) from None
        return output

    def __repr__(self) -> str:
        return f"Deferred(task_id={self.task_id!r}, done={self.done()})"


MAX_DELAY_SECONDS = 10 * 365 * 86_400
"""The longest ``delay`` (or ``run_at`` ahead) a dispatch takes: 10 years. Far beyond it the
client's clocks and timers overflow (pulsar-client's deliver_after, the embedded broker's)."""


def wrong_loop(name: str) -> str:
    """Why a client may not be used from another event loop (one line)."""
    return (f"client {name} is used from another event loop than the one it first ran in (e.g. "
            "a second asyncio.run()): its results are received in that first loop; create an "
            "AsyncClient in each loop (async with AsyncClient(...) inside the coroutine you run), "
            "or use the sync Client, which runs its own loop")


def check_task_id(task_id: Any) -> None:
    """A caller-chosen task id is a non-empty str (None: the client chooses)."""
    if task_id is None:
        return
    if not isinstance(task_id, str):
        raise TypeError(f"task_id must be a str, got {type(task_id).__name__}")
    if not task_id:
        raise ValueError("task_id must not be empty (None lets the client choose one)")
    if len(task_id) > MAX_ID_CHARS:  # a worker would dead-letter it (invalid_envelope)
        raise ValueError(f"task_id must be at most {MAX_ID_CHARS} characters, got "
                         f"{len(task_id)}")


def delay_of(call: Call) -> float | None:
    """A call's delivery delay in seconds (``delay`` or ``run_at``), checked; None: at once."""
    if call.delay is not None and call.run_at is not None:
        raise TypeError("give either delay or run_at, not both")
    if call.delay is not None:
        if isinstance(call.delay, bool) or not isinstance(call.delay, int | float):
            raise TypeError(f"delay must be a number of seconds, got {type(call.delay).__name__}")
        if not (math.isfinite(call.delay) and call.delay >= 0):
            raise ValueError(f"delay must be a finite number of seconds >= 0, got {call.delay}")
        if call.delay > MAX_DELAY_SECONDS:
            raise ValueError(f"delay must be at most {MAX_DELAY_SECONDS} seconds (10 years), "
                             f"got {call.delay}")
        return float(call.delay)
    if call.run_at is not None:
        if not isinstance(call.run_at, datetime) or call.run_at.tzinfo is None:
            raise TypeError(f"run_at must be a timezone-aware datetime, got {call.run_at!r}")
        ahead = (call.run_at - datetime.now(UTC)).total_seconds()
        if ahead > MAX_DELAY_SECONDS:
            raise ValueError(f"run_at must be at most {MAX_DELAY_SECONDS} seconds ahead (10 "
                             f"years), got {call.run_at.isoformat()}")
        return max(0.0, ahead)
    return None


_any_decoder: msgspec.msgpack.Decoder[Any] = msgspec.msgpack.Decoder()
_NO_OPTIONS = Call()


class StubMethod(Generic[P, R]):
    """A task method seen from the client. Calling it dispatches one task."""

    def __init__(
        self,
        stub: ServiceStub,
        name: str,
        definition: MethodDefinition | None,
        options: Call | None = None,
    ) -> None:
        self._stub = stub
        self._name = name
        self._definition = definition
        self._options = options

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, Deferred[R]]:
        return self._dispatch_one(args, kwargs)

    async def _dispatch_one(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Deferred[R]:
        call = (self._options or _NO_OPTIONS)._bind(args, kwargs)
        (deferred,) = await self._stub._client._dispatch(self._stub, self._name, self._definition, [call])
        return deferred

    def options(self, **options: Unpack[CallOptions]) -> StubMethod[P, R]:
        """The same method with per-call options: ``await stub.send.options(delay=2)(req)``
        (``CallOptions``: meta, delay, run_at, task_id, tags, priority)."""
        unknown = sorted(options.keys() - CallOptions.__annotations__.keys())
        if unknown:  # Call(**options) would take them as the task's keyword arguments
            raise TypeError(f"options() got unexpected keyword argument(s) {', '.join(unknown)}; "
                            f"it takes {', '.join(CallOptions.__annotations__)}")
        priority = options.get("priority")
        if priority is not None:
            check_priority(priority)
        return StubMethod(self._stub, self._name, self._definition, Call(**options))

    async def many(self, items: Iterable[Any], *, atomic: bool = False) -> list[Deferred[R]]:
        """Dispatch many tasks in one producer flush; returns the Deferreds in order.

        Each item is a ``Call(...)`` (arguments + per-item options), a tuple of positional
        arguments, or — for a one-parameter method — the argument itself. Every item is validated
        before anything is sent: one bad item rejects the whole call.

        ``atomic=True``: every task is dispatched or none (one broker message carries them all,
        so it must fit ``AsyncClient.max_bulk_bytes``, and every item has the same delay). A
        broker failure raises ``DispatchFailed`` saying nothing was dispatched. Without it, a
        failure part-way raises ``DispatchFailed`` whose ``sent`` / ``unsent`` name the tasks.
        """
        if isinstance(items, str | bytes | Mapping) or not isinstance(items, Iterable):
            raise TypeError(f"many() takes a list of items (Call(...), a tuple of arguments, or "
                            f"the argument itself), got {type(items).__name__}")
        calls = [self._as_call(item) for item in items]
        return await self._stub._client._dispatch(self._stub, self._name, self._definition, calls,
                                                  atomic)

    def _as_call(self, item: Any) -> Call:
        if isinstance(item, Call):
            return item
        if self._definition is not None and len(self._definition.param_names) == 1:
            return Call(item)
        if isinstance(item, tuple):
            return Call(*item)
        return Call(item)

    def __repr__(self) -> str:
        return f"<stub {self._stub.name}.{self._name}>"


class ServiceStub:
    """``client.service(EmailService)``: attribute access gives ``StubMethod``s."""

    def __init__(
        self,
        client: AsyncClient,
        name: str,
        methods: Mapping[str, MethodDefinition] | None,
        meta: Mapping[str, Any] | None,
        tags: Sequence[str] | None,
        results: bool,
    ) -> None:
        self._client = client
        self.name = name
        self._methods = methods
        self.meta: dict[str, Any] = dict(check_meta(meta) or {})
        self.tags: list[str] = list(check_tags(tags) or [])
        self.results = results
        check_batch_key(self.meta)

    def __getattr__(self, method: str) -> StubMethod[..., Any]:
        if method.startswith("_"):
            raise AttributeError(method)
        return StubMethod(self, method, self._definition_of(method))

    def method(self, task_method: TaskMethod[Any, P, R]) -> StubMethod[P, R]:
        """The typed route: ``stub.method(EmailService.send)`` is a ``StubMethod`` whose
        parameters and result type checkers see."""
        if not isinstance(task_method, TaskMethod):
            raise TypeError(f"method() takes a task method of the service class (e.g. "
                            f"stub.method(EmailService.send)), got {type(task_method).__name__}")
        return StubMethod(self, task_method.name, self._definition_of(task_method.name))

    def _definition_of(self, name: str) -> MethodDefinition | None:
        """The class's definition of ``name`` (None for a stub made from a name); a name the
        class has no task method for is an AttributeError listing the ones it has."""
        if self._methods is None:
            return None
        definition = self._methods.get(name)
        if definition is None:
            raise AttributeError(
                f"service {self.name} has no task method {name!r} "
                f"(it has: {', '.join(sorted(self._methods)) or 'none'})"
            )
        return definition

    def __repr__(self) -> str:
        return f"<ServiceStub {self.name} meta={self.meta!r}>"


def check_meta(meta: Any) -> Mapping[str, Any] | None:
    """``meta`` itself, if it is None or a mapping (else TypeError naming it)."""
    if meta is not None and not isinstance(meta, Mapping):
        raise TypeError(f"meta must be a mapping (a dict), got {type(meta).__name__}")
    return meta


def check_tags(tags: Any) -> Sequence[str] | None:
    """``tags`` itself, if it is None or a list / tuple / set of str: a lone str would be
    read as one tag per character."""
    if tags is None:
        return None
    if isinstance(tags, str | bytes) or not isinstance(tags, Sequence | set | frozenset) or any(
            not isinstance(tag, str) for tag in tags):
        shown = repr(tags) if isinstance(tags, str | bytes) else type(tags).__name__
        raise TypeError(f"tags must be a list of str, got {shown}")
    return list(tags)


def check_tag_count(tags: Sequence[str]) -> None:
    """A task's tags (its stub's and its own) are at most ``MAX_TAGS``: a worker would
    dead-letter it (invalid_envelope)."""
    if len(tags) > MAX_TAGS:
        raise ValueError(f"a task has at most {MAX_TAGS} tags, got {len(tags)}")


def check_batch_key(meta: Mapping[str, Any]) -> None:
    key = meta.get(wire.META_BATCH_KEY)
    if key is not None and not isinstance(key, str | bytes):
        raise TypeError(f"meta['batchKey'] must be str or bytes, got {type(key).__name__}")
