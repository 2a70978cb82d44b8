"""One readable line for each way a command fails, and its exit code (2 usage/config, 1 runtime).

``cli.main`` hands every exception it did not expect to :func:`describe`; ``--debug`` shows the
traceback instead.
"""

from __future__ import annotations

import errno
import os
import socket
import sysconfig
import traceback
import urllib.parse
from types import TracebackType

from infinitic_py.errors import ConfigError, ResultTimeout

__all__ = [
    "EXIT_CONFIG",
    "EXIT_RUNTIME",
    "BrokerFailure",
    "BrokerUnreachable",
    "describe",
    "port_in_use",
    "probe_broker",
    "user_code_location",
]

EXIT_RUNTIME = 1
EXIT_CONFIG = 2

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_STDLIB_DIR = os.path.abspath(sysconfig.get_paths()["stdlib"]) + os.sep


class BrokerUnreachable(Exception):
    """Nothing answers at the broker's address (checked before a client is built); ``reason``
    is why, e.g. ``Connection refused``."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason or message


class BrokerFailure(Exception):
    """A tool's request to the broker failed; the message names the broker (its URL redacted)."""


def port_in_use(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE


def user_code_location(exc: BaseException) -> str:
    """`` (at FILE:LINE)`` of the innermost frame of the user's code in the cause of ``exc``
    (a service module that fails to import, a constructor that raises); ``""`` if none."""
    cause = _cause(exc)
    seen = 0
    while cause is not None and seen < 5:
        if isinstance(cause, SyntaxError) and cause.filename and cause.lineno:
            return f" (at {_rel(cause.filename)}:{cause.lineno})"
        where = _innermost_user_frame(cause.__traceback__)
        if where:
            return f" (at {where})"
        cause = _cause(cause)
        seen += 1
    return ""


def _cause(exc: BaseException) -> BaseException | None:
    """What ``exc`` was raised from; none after ``raise ... from None`` (the error already says
    all: e.g. a YAML syntax error, whose context is inside the YAML library)."""
    if exc.__cause__ is not None:
        return exc.__cause__
    return None if exc.__suppress_context__ else exc.__context__


def _innermost_user_frame(tb: TracebackType | None) -> str | None:
    found = None
    for frame, line in traceback.walk_tb(tb):
        filename = frame.f_code.co_filename
        if filename.startswith("<") or os.path.abspath(filename).startswith(_PACKAGE_DIR):
            continue
        if os.path.abspath(filename).startswith(_STDLIB_DIR):
            continue
        found = f"{_rel(filename)}:{line}"
    return found


def _rel(path: str) -> str:
    try:
        relative = os.path.relpath(path)
    except ValueError:
        return path
    return path if relative.startswith("..") else relative


def probe_broker(url: str, timeout: float) -> None:
    """Open (and close) a TCP connection to the broker, within ``timeout`` seconds: a wrong
    address fails here at once instead of in the client's reconnect loop. Raises
    BrokerUnreachable."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("pulsar", "pulsar+ssl"):
        return
    host = (parts.netloc.rsplit("@", 1)[-1].split(",")[0]).strip()
    default_port = 6651 if parts.scheme == "pulsar+ssl" else 6650
    name, _, port_text = host.rpartition(":") if host.count(":") == 1 else (host, "", "")
    try:
        port = int(port_text) if port_text else default_port
    except ValueError:
        return
    try:
        with socket.create_connection((name or host, port), timeout=timeout):
            return
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        if isinstance(exc, TimeoutError | socket.timeout):
            reason = f"no answer within {timeout:g}s"
        raise BrokerUnreachable(f"cannot reach the broker at {url}: {reason}", reason) from None


def describe(exc: BaseException, command: str) -> tuple[str, int]:
    """The line to print (without the ``infinitic-py`` prefix) and the exit code."""
    from infinitic_py.admin import PulsarAdminError
    from infinitic_py.transport.base import TransportError

    if isinstance(exc, ConfigError):
        return f"{exc}{user_code_location(exc)}", EXIT_CONFIG
    if isinstance(exc, BrokerUnreachable):
        return (f"{exc} (check --url, pulsar.url in the config file or INFINITIC_PULSAR__URL)",
                EXIT_RUNTIME)
    if isinstance(exc, ResultTimeout):
        return (f"{exc}: is a worker consuming this service? The task stays queued; "
                "`infinitic-py status` shows the service's workers", EXIT_RUNTIME)
    if isinstance(exc, PulsarAdminError):
        if exc.status == 404 and any(w in (exc.reason or "").lower()
                                     for w in ("namespace", "tenant")):
            return (f"admin API: {exc} (check --tenant / --namespace, pulsar.tenant / "
                    "pulsar.namespace, a service's own tenant / namespace in the config's "
                    "services, or INFINITIC_PULSAR__TENANT / INFINITIC_PULSAR__NAMESPACE)",
                    EXIT_RUNTIME)
        if exc.status in (401, 403):
            return (f"admin API: {exc} (the admin API refused the credentials: it is sent the "
                    "token of pulsar.auth_params / INFINITIC_PULSAR__AUTH_PARAMS when "
                    "pulsar.auth_plugin is a token plugin, nothing for other plugins)",
                    EXIT_RUNTIME)
        return (f"admin API: {exc} (check --admin-url, pulsar.admin_url or "
                "INFINITIC_PULSAR__ADMIN_URL)", EXIT_RUNTIME)
    if isinstance(exc, BrokerFailure):
        return (f"{exc} (check --url, pulsar.url in the config file or INFINITIC_PULSAR__URL)",
                EXIT_RUNTIME)
    if isinstance(exc, TransportError):
        return f"broker: {exc}", EXIT_RUNTIME
    if isinstance(exc, TimeoutError):
        return f"timed out: {exc or 'the broker did not answer'}", EXIT_RUNTIME
    text = " ".join(str(exc).split()) or type(exc).__name__
    return (f"{command}: {type(exc).__name__}: {text} (run with --debug for the traceback)",
            EXIT_RUNTIME)
