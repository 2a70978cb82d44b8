"""Client SDK: dispatch tasks (one, or many in one round trip) and await their results.

- ``core``: ``AsyncClient`` (dispatch, the response topic, producers);
- ``stubs``: ``Call``, ``Deferred``, ``StubMethod``, ``ServiceStub`` (the typed surface);
- ``sync``: ``Client`` and its sync stubs (an ``AsyncClient`` on a private loop thread).

The client never imports the worker.
"""

from infinitic_py.client.core import DEFAULT_MAX_PRODUCERS, AsyncClient
from infinitic_py.client.stubs import Call, Deferred, ServiceStub, StubMethod
from infinitic_py.client.sync import Client, SyncDeferred, SyncServiceStub, SyncStubMethod

__all__ = [
    "DEFAULT_MAX_PRODUCERS",
    "AsyncClient",
    "Call",
    "Client",
    "Deferred",
    "ServiceStub",
    "StubMethod",
    "SyncDeferred",
    "SyncServiceStub",
    "SyncStubMethod",
]
