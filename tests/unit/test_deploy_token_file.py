"""deploy/validate_manifests.py's token-file check (run by `make deploy-check` on the chart and
deploy/k8s): a worker given ``pulsar.auth_params: file://...`` must read it from a Secret volume
that the kubelet updates when the Secret is rotated."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOKEN_PLUGIN = "org.apache.pulsar.client.impl.auth.AuthenticationToken"
FILE = "file:///var/run/secrets/pulsar/token"


@pytest.fixture(scope="module")
def vm() -> Any:
    spec = importlib.util.spec_from_file_location(
        "validate_manifests", ROOT / "deploy" / "validate_manifests.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("validate_manifests", module)
    spec.loader.exec_module(module)
    return module


def pod(mount: dict[str, Any] | None = None, volume: dict[str, Any] | None = None,
        ) -> tuple[dict[str, Any], dict[str, Any]]:
    """(pod spec, worker container) with the chart's token volume, or the given variants."""
    mount = mount if mount is not None else {
        "name": "pulsar-token", "mountPath": "/var/run/secrets/pulsar", "readOnly": True}
    volume = volume if volume is not None else {
        "name": "pulsar-token",
        "secret": {"secretName": "pulsar-token", "items": [{"key": "jwt", "path": "token"}]}}
    worker = {"name": "worker", "volumeMounts": [
        {"name": "config", "mountPath": "/etc/infinitic-py", "readOnly": True}, mount]}
    return {"volumes": [{"name": "config", "configMap": {"name": "c"}}, volume]}, worker


def check(vm: Any, spec: dict[str, Any], worker: dict[str, Any], *,
          plugin: str | None = TOKEN_PLUGIN, params: str | None = FILE,
          expected: str | None = "pulsar-token/jwt") -> list[str]:
    problems = vm.Problems()
    vm.check_token_file("here", spec, worker, plugin, params, expected, problems)
    assert not (problems.errors and problems.checked)
    return list(problems.errors)


def test_a_secret_directory_mount_passes(vm: Any) -> None:
    assert check(vm, *pod()) == []
    # without items, every key is a file of its own name
    spec, worker = pod(volume={"name": "pulsar-token", "secret": {"secretName": "s"}})
    assert check(vm, spec, worker, expected="s/token") == []
    # a projected volume with a Secret source
    spec, worker = pod(volume={"name": "pulsar-token", "projected": {"sources": [
        {"secret": {"name": "s", "items": [{"key": "k", "path": "token"}]}}]}})
    assert check(vm, spec, worker, expected="s/k") == []


def test_a_subpath_mount_is_refused_since_the_kubelet_never_updates_it(vm: Any) -> None:
    spec, worker = pod(mount={"name": "pulsar-token", "mountPath": "/var/run/secrets/pulsar",
                              "readOnly": True, "subPath": "token"})
    [error] = check(vm, spec, worker)
    assert "subPath" in error and "rotated" in error


@pytest.mark.parametrize(("mount", "volume", "expected", "says"), [
    ({"name": "pulsar-token", "mountPath": "/var/run/secrets/pulsar"}, None, "pulsar-token/jwt",
     "not readOnly"),
    ({"name": "pulsar-token", "mountPath": "/elsewhere", "readOnly": True}, None,
     "pulsar-token/jwt", "on no volume mount"),
    (None, {"name": "pulsar-token", "emptyDir": {}}, "pulsar-token/jwt", "not on a Secret volume"),
    (None, {"name": "pulsar-token", "secret": {"secretName": "pulsar-token",
                                               "items": [{"key": "jwt", "path": "jwt"}]}},
     "pulsar-token/jwt", "no item of the Secret volume is at 'token'"),
    (None, None, "other/jwt", "expected other/jwt"),
])
def test_a_token_file_the_worker_cannot_read_fresh_is_refused(
        vm: Any, mount: dict[str, Any] | None, volume: dict[str, Any] | None, expected: str,
        says: str) -> None:
    [error] = check(vm, *pod(mount, volume), expected=expected)
    assert says in error


def test_the_worker_must_be_able_to_read_the_file(vm: Any) -> None:
    """0440 is read through fsGroup (the chart's and deploy/k8s' pod security context: the
    kubelet gives that group the files and adds group read); without one, a non-root worker
    needs other-read."""
    def volume(mode: int) -> dict[str, Any]:
        return {"name": "pulsar-token", "secret": {
            "secretName": "pulsar-token", "defaultMode": mode,
            "items": [{"key": "jwt", "path": "token"}]}}
    spec, worker = pod(volume=volume(0o440))
    spec["securityContext"] = {"runAsUser": 10001, "fsGroup": 10001}
    assert check(vm, spec, worker) == []
    del spec["securityContext"]["fsGroup"]
    [error] = check(vm, spec, worker)
    assert "mode 0o440 does not let the worker read it" in error
    spec, worker = pod(volume=volume(0o444))
    spec["securityContext"] = {"runAsUser": 10001}
    assert check(vm, spec, worker) == []
    spec, worker = pod(volume=volume(0o400))
    spec["securityContext"] = {"runAsUser": 0}
    assert check(vm, spec, worker) == []


def test_a_token_file_needs_a_token_plugin(vm: Any) -> None:
    [error] = check(vm, *pod(), plugin="org.apache.pulsar.client.impl.auth.AuthenticationTls")
    assert "only with a token plugin" in error


def test_sets_without_a_token_file_have_none(vm: Any) -> None:
    """A set named with --token-file must have it; every other set must have none."""
    spec, worker = pod()
    [error] = check(vm, spec, worker, params="token:abc")
    assert "no token file" in error
    [error] = check(vm, spec, worker, expected=None)
    assert "expects none" in error
    [error] = check(vm, spec, worker, params=None, expected=None)
    assert "pulsar-token volume" in error
    bare = {"volumes": [{"name": "config", "configMap": {"name": "c"}}]}
    assert check(vm, bare, {"name": "worker"}, params=None, expected=None) == []
