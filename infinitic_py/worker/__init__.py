"""The worker wing: ``Worker`` (daemon.py) runs one ``ServiceExecutor`` (executor.py) per
service; the executor orchestrates parts that each do one job (routing, ledger, accumulator,
invoke, outcomes). See the README's architecture section for the flow of one task."""

from infinitic_py.worker.daemon import Worker

__all__ = ["Worker"]
