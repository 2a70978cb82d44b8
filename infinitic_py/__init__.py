"""infinitic-py: batched tasks over Apache Pulsar — a worker service and a client SDK.

``import infinitic_py`` (what a client needs) does not import the worker: ``Worker`` is loaded
on first use (``from infinitic_py import Worker``)."""

from typing import TYPE_CHECKING, Any

from infinitic_py.batching import BatchLimits, FlushReason
from infinitic_py.client import AsyncClient, Call, Client, Deferred, ServiceStub, SyncDeferred
from infinitic_py.context import TaskContext, current_context, get_context
from infinitic_py.errors import (
    ClientClosed,
    ConfigError,
    DecodeError,
    InfiniticError,
    MissingBatchResult,
    ResultTimeout,
    ResultTypeError,
    ServiceDefinitionError,
    TaskFailed,
    TaskTimeout,
)
from infinitic_py.retry import RetryPolicy
from infinitic_py.service import TaskMethod, service, task

if TYPE_CHECKING:
    from infinitic_py.worker import Worker

__version__ = "0.1.0"

__all__ = [
    "AsyncClient",
    "BatchLimits",
    "Call",
    "Client",
    "ClientClosed",
    "ConfigError",
    "DecodeError",
    "Deferred",
    "FlushReason",
    "InfiniticError",
    "MissingBatchResult",
    "ResultTimeout",
    "ResultTypeError",
    "RetryPolicy",
    "ServiceDefinitionError",
    "ServiceStub",
    "SyncDeferred",
    "TaskContext",
    "TaskFailed",
    "TaskMethod",
    "TaskTimeout",
    "Worker",
    "__version__",
    "current_context",
    "get_context",
    "service",
    "task",
]


def __getattr__(name: str) -> Any:
    if name == "Worker":
        from infinitic_py.worker import Worker

        return Worker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
