"""infinitic-py: batched tasks over Apache Pulsar."""

from infinitic_py.errors import (
    ConfigError,
    InfiniticError,
    MissingBatchResult,
    ServiceDefinitionError,
    TaskFailed,
)

__all__ = [
    "ConfigError",
    "InfiniticError",
    "MissingBatchResult",
    "ServiceDefinitionError",
    "TaskFailed",
]
