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
