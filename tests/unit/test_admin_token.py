"""bearer_token: the one reading of the auth settings for the admin API."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from infinitic_py.client_admin import ClientAdmin
from infinitic_py.config import PulsarConfig
from infinitic_py.errors import ConfigError
from infinitic_py.ops.settings import ToolSettings
from infinitic_py.tokens import bearer_token

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


def test_token_forms_pulsar_accepts(tmp_path: Path) -> None:
    """A token file is read with its trailing newline stripped (pulsar-client sends it as is,
    and the broker refuses it), and the JSON form gives its token."""
    token_file = tmp_path / "token"
    token_file.write_text("abc.def.ghi\n")
    assert bearer_token(TOKEN_PLUGIN, f"file://{token_file}") == "abc.def.ghi"
    assert bearer_token(TOKEN_PLUGIN, '{"token": "xyz"}') == "xyz"
    assert bearer_token(TOKEN_PLUGIN, "token: xyz\n") == "xyz"
    with pytest.raises(ConfigError, match="cannot read the token file"):
        bearer_token(TOKEN_PLUGIN, f"file://{tmp_path}/missing")


def test_the_worker_admin_calls_carry_its_token() -> None:
    """Topic creation, the limit check and the backlog gauges: the worker made them with a
    tokenless admin client, refused by a broker with authentication."""
    from infinitic_py import Worker

    worker = Worker("pulsar://h:6650", admin_url="http://h:8080",
                    transport_options={"auth_plugin": TOKEN_PLUGIN, "auth_params": "token:xyz"})
    assert worker._credentials.admin(timeout=1.0)._headers["Authorization"] == "Bearer xyz"


def _jwt(claims: dict[str, object]) -> str:
    import base64
    import json

    def part(value: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()
    return f"{part({'alg': 'HS256'})}.{part(claims)}.c2ln"


def test_an_expired_token_is_named_before_any_request() -> None:
    from infinitic_py.credentials import credentials_problem, expired_token_problem, token_expiry

    token = _jwt({"sub": "app", "exp": 1_000})
    assert token_expiry(token) == 1_000
    assert token_expiry(_jwt({"sub": "app"})) is None
    assert token_expiry("not-a-jwt") is None
    assert expired_token_problem(TOKEN_PLUGIN, f"token:{token}", now=999) is None
    problem = expired_token_problem(TOKEN_PLUGIN, f"token:{token}", now=1_001)
    assert problem is not None and "expired at 1970-01-01T00:16:40Z" in problem
    assert "pulsar.auth_params" in problem
    # no admin API to ask: only what the token itself says
    assert credentials_problem(None, TOKEN_PLUGIN, f"token:{token}") == problem
    assert credentials_problem(None, TOKEN_PLUGIN, "token:abc") is None


def test_a_refused_role_is_named_with_the_grant_to_give() -> None:
    from infinitic_py.credentials import authorization_problem

    token = _jwt({"sub": "app"})
    error = ("cannot create a producer on persistent://acme/jobs/task-executor:Email: "
             "8 AuthorizationError: Client is not authorized to Get Partition Metadata")
    problem = authorization_problem(error, TOKEN_PLUGIN, f"token:{token}")
    assert problem is not None
    assert "role 'app'" in problem and "on persistent://acme/jobs/task-executor:Email " in problem
    assert "grant-permission acme/jobs --role app --actions produce,consume" in problem
    admin = ("GET http://h/admin/v2/persistent/acme/jobs -> HTTP 403: Unauthorized to "
             "validateNamespaceOperation for operation [GET_TOPICS] on namespace [acme/jobs]")
    assert "grant-permission acme/jobs --role ROLE" in (authorization_problem(admin, None, None)
                                                        or "")
    assert "grant-permission t/n " in (authorization_problem("AuthorizationError", None, None,
                                                             "t/n") or "")
    assert authorization_problem("3 Timeout", TOKEN_PLUGIN, f"token:{token}") is None


def test_the_admin_calls_read_a_rotated_token_file(tmp_path: Path) -> None:
    """The broker connection reads a token file at each reconnection; the worker's and the
    client's admin calls read it at each request too (they kept the first token: the backlog
    gauges failed with 401 once the file held a new token and the old one expired)."""
    from infinitic_py import Worker

    token_file = tmp_path / "token"
    token_file.write_text("first\n")
    options = {"auth_plugin": TOKEN_PLUGIN, "auth_params": f"file://{token_file}"}
    worker_admin = Worker("pulsar://h:6650", admin_url="http://h:8080",
                          transport_options=options)._credentials.admin(timeout=1.0)
    client_admin = ClientAdmin("http://h:8080", options)._admin
    assert worker_admin.auth_headers()["Authorization"] == "Bearer first"
    token_file.write_text("second\n")
    assert worker_admin.auth_headers()["Authorization"] == "Bearer second"
    assert client_admin.auth_headers()["Authorization"] == "Bearer second"


def test_not_ready_says_the_token_expired() -> None:
    """A token that expires while the worker runs: the broker drops the connection, and
    /readyz says why instead of only 'broker not connected'."""
    from infinitic_py import Worker

    class Disconnected:
        def is_connected(self) -> bool:
            return False

    worker = Worker("pulsar://h:6650", transport_options={
        "auth_plugin": TOKEN_PLUGIN, "auth_params": f"token:{_jwt({'sub': 'a', 'exp': 1000})}"})
    worker._started = True
    worker._transport = Disconnected()  # type: ignore[assignment]
    ready, reason = worker.ready()
    assert not ready and reason.startswith("broker not connected: the token in ")
    assert "expired at 1970-01-01T00:16:40Z" in reason


def test_an_admin_refusal_names_the_credentials_not_the_url() -> None:
    from infinitic_py.admin import PulsarAdminError
    from infinitic_py.ops.failures import describe

    line, code = describe(PulsarAdminError("GET http://h/x -> HTTP 401: Unauthorized",
                                           status=401), "status")
    assert "refused the credentials" in line and "--admin-url" not in line and code == 1


def test_a_rotated_kubernetes_secret_file_is_read_again(tmp_path: Path) -> None:
    """A Secret volume as the kubelet writes it (the chart's tokenSecret, deploy/k8s/token-file):
    ``token`` -> ``..data/token``, ``..data`` -> a timestamped directory; a rotation writes a new
    directory and swaps ``..data`` with one rename. The token is read through the path each
    time, so the broker connection (``AuthenticationToken`` with this supplier) and the admin
    calls see the new token; the old directory is gone at once."""
    from infinitic_py.tokens import token_source

    def write_version(name: str, token: str) -> None:
        (tmp_path / name).mkdir()
        (tmp_path / name / "token").write_text(token)
        (tmp_path / "..data_tmp").symlink_to(name)
        (tmp_path / "..data_tmp").rename(tmp_path / "..data")  # atomic, as the kubelet's

    write_version("..2026_12_01_06_00_00.1", "first\n")
    (tmp_path / "token").symlink_to("..data/token")
    read = token_source(TOKEN_PLUGIN, f"file://{tmp_path}/token")
    assert callable(read) and read() == "first"
    write_version("..2026_12_01_06_01_00.2", "second\n")
    shutil.rmtree(tmp_path / "..2026_12_01_06_00_00.1")
    assert read() == "second"
