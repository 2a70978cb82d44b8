"""A private Pulsar standalone broker with token authentication and authorization, for the tests
that check every surface against a broker that refuses anonymous or under-privileged callers.

Started from ``deploy/pulsar-standalone/pulsar.sh`` with its own run directory and free ports
(the shared broker on 6650 is never touched), configured through ``PULSAR_CONF_EXTRA``:
``AuthenticationProviderToken`` with an HS256 secret made here, ``authorizationEnabled``, the
super-user role ``admin`` (also the broker's own client role). Tokens are HS256 JWTs
(``{"sub": role}``, optional ``exp``) signed with the standard library.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PULSAR_SH = ROOT / "deploy" / "pulsar-standalone" / "pulsar.sh"
RUN_DIR = ROOT / ".cache" / "pulsar-auth-run"
TOKEN_PLUGIN = "org.apache.pulsar.client.impl.auth.AuthenticationToken"
SUPER_USER = "admin"


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def make_token(secret: bytes, subject: str, *, expires_at: float | None = None) -> str:
    """An HS256 JWT whose ``sub`` claim is the Pulsar role (what ``pulsar tokens create``
    makes)."""
    header = _b64url(json.dumps({"alg": "HS256"}).encode())
    claims: dict[str, object] = {"sub": subject}
    if expires_at is not None:
        claims["exp"] = int(expires_at)
    payload = _b64url(json.dumps(claims).encode())
    signing_input = f"{header}.{payload}".encode()
    signature = hmac.new(secret, signing_input, hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64url(signature)}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class AuthBroker:
    service_url: str
    admin_url: str
    secret: bytes
    super_token: str
    env: dict[str, str]  # what pulsar.sh needs to find / stop this broker

    def token(self, role: str, *, expires_at: float | None = None) -> str:
        return make_token(self.secret, role, expires_at=expires_at)


@contextlib.contextmanager
def auth_broker_lock(run_dir: Path = RUN_DIR) -> Iterator[None]:
    """Held while a session uses the broker of ``run_dir``: a second session in the same
    checkout waits instead of stopping it as a leftover."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / "session.lock").open("wb") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def java_available() -> bool:
    return bool(os.environ.get("JAVA_HOME") or shutil.which("java"))


def start_auth_broker(run_dir: Path = RUN_DIR) -> AuthBroker:
    """Start the broker (fresh data) and wait until the super-user can produce and consume.
    Raises RuntimeError with pulsar.sh's output when it cannot be started."""
    secret = secrets.token_bytes(32)
    super_token = make_token(secret, SUPER_USER)
    run_dir.mkdir(parents=True, exist_ok=True)
    extra = run_dir / "auth.conf"
    key = base64.b64encode(secret).decode()
    extra.write_text(
        "authenticationEnabled=true\n"
        "authenticationProviders=org.apache.pulsar.broker.authentication."
        "AuthenticationProviderToken\n"
        f"tokenSecretKey=data:;base64,{key}\n"
        "authorizationEnabled=true\n"
        f"superUserRoles={SUPER_USER}\n"
        f"brokerClientAuthenticationPlugin={TOKEN_PLUGIN}\n"
        f"brokerClientAuthenticationParameters=token:{super_token}\n"
    )
    broker_port, web_port = _free_port(), _free_port()
    env = {
        **os.environ,
        "PULSAR_RUN_DIR": str(run_dir),
        "PULSAR_BROKER_PORT": str(broker_port),
        "PULSAR_WEB_PORT": str(web_port),
        "PULSAR_CONF_EXTRA": str(extra),
        "PULSAR_AUTH_TOKEN": super_token,
        "PULSAR_MEM": os.environ.get("PULSAR_AUTH_MEM", "-Xms256m -Xmx768m "
                                                      "-XX:MaxDirectMemorySize=512m"),
    }
    stop_auth_broker(env)  # a broker left by an interrupted run (its ports are unknown now)
    started = time.monotonic()
    proc = subprocess.run([str(PULSAR_SH), "up"], env=env, capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        stop_auth_broker(env)
        raise RuntimeError(f"could not start the auth broker ({PULSAR_SH} up, exit "
                           f"{proc.returncode}, {time.monotonic() - started:.0f}s):\n"
                           f"{proc.stdout}\n{proc.stderr}")
    return AuthBroker(f"pulsar://127.0.0.1:{broker_port}", f"http://127.0.0.1:{web_port}",
                      secret, super_token, env)


def stop_auth_broker(env: dict[str, str]) -> None:
    subprocess.run([str(PULSAR_SH), "down"], env=env, capture_output=True, check=False)
