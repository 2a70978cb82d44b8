"""infinitic-py: batched tasks over Apache Pulsar — a worker service and a client SDK."""

from infinitic_py.client import AsyncClient, Call, Client, Deferred, ServiceStub, SyncDeferred
from infinitic_py.context import TaskContext, current_context, get_context
from infinitic_py.errors import (
    ClientClosed,
    ConfigError,
    DecodeError,
    InfiniticError,
    MissingBatchResult,
    ResultTimeout,
    ServiceDefinitionError,
    TaskFailed,
    TaskTimeout,
)
from infinitic_py.retry import RetryPolicy
from infinitic_py.service import TaskMethod, service, task
from infinitic_py.worker import Worker
from infinitic_py.worker.accumulator import BatchLimits, FlushReason

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
