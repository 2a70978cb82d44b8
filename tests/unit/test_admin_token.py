"""bearer_token: the one reading of the auth settings for the admin API."""

from __future__ import annotations

import pytest

from infinitic_py.admin import bearer_token
from infinitic_py.client_admin import ClientAdmin
from infinitic_py.config import PulsarConfig
from infinitic_py.ops.settings import ToolSettings

TOKEN_PLUGIN = "org.apache.pulsar.client.impl.auth.AuthenticationToken"


@pytest.mark.parametrize(("plugin", "params", "token"), [
    (TOKEN_PLUGIN, "token:abc", "abc"),
    (TOKEN_PLUGIN, "abc", "abc"),
    ("org.apache.pulsar.client.impl.auth.AuthenticationTls", "tlsCertFile:/c", None),
    (None, "token:abc", None),
    (TOKEN_PLUGIN, None, None),
])
def test_bearer_token(plugin: str | None, params: str | None, token: str | None) -> None:
    assert bearer_token(plugin, params) == token


def test_the_tools_and_the_client_read_the_same_token() -> None:
    pulsar = PulsarConfig(url="pulsar://h:6650", auth_plugin=TOKEN_PLUGIN, auth_params="token:xyz")
    assert ToolSettings(pulsar, "x.yaml").admin_token() == "xyz"
    admin = ClientAdmin("http://h:8080", pulsar.transport_options())
    assert admin._admin._headers["Authorization"] == "Bearer xyz"


async def test_the_client_creates_topics_with_its_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """An Infinitic namespace has auto topic creation off: the client creates the topics it
    needs over the admin API, with the same token as its other admin calls (a broker with
    auth refused the tokenless call, and the dispatch failed)."""
    from infinitic_py import AsyncClient
    from infinitic_py.admin import PulsarAdmin

    seen: list[tuple[str, str | None]] = []

    def ensure_topic(self: PulsarAdmin, topic: str, partitions: int) -> None:
        seen.append((topic, self._headers.get("Authorization")))

    monkeypatch.setattr(PulsarAdmin, "ensure_topic", ensure_topic)
    pulsar = PulsarConfig(url="pulsar://h:6650", auth_plugin=TOKEN_PLUGIN, auth_params="token:xyz")
    client = AsyncClient("pulsar://h:6650", admin_url="http://h:8080",
                         transport_options=pulsar.transport_options())
    await client._create_topics({"persistent://t/ns/task-executor:S": 3})
    assert seen == [("persistent://t/ns/task-executor:S", "Bearer xyz")]
