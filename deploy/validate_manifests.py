"""Offline validation of the worker's Kubernetes manifests (called by deploy/validate.sh).

Each ``--set NAME=FILE[,FILE...]`` is one deployable unit (deploy/k8s, or one `helm template`
output). Every document in it is checked against a schema:

* built-in kinds: the Kubernetes OpenAPI JSON schemas shipped by the `kubernetes-validate`
  package, strict mode (unknown fields are errors); a kind it has no schema for is an error;
* ServiceMonitor and ScaledObject (CRDs, not in those schemas): the pydantic models that
  `cloudcoil-models-prometheus-operator` / `cloudcoil-models-keda` generate from the
  upstream CRD OpenAPI schemas, validated in strict mode, plus a round trip that turns any
  field the model does not know into an error; KEDA's `pulsar` trigger metadata (a free
  string map in the CRD) is checked against the scaler's documented keys here.

Then the set is checked for consistency: the ConfigMap's worker.yaml against the chart's
config schema and through the worker's own loader (`infinitic-py check --offline --strict`
with the Deployment's literal INFINITIC_* env), terminationGracePeriodSeconds >
worker.shutdown_grace_seconds, ports and probes against worker.http_port, a token file
(``auth_params: file://...``) on a read-only Secret directory mount that the kubelet updates on
rotation (``--token-file`` names the sets that must have one), selectors against pod labels,
scale targets, KEDA topics against infinitic_py.topics.

Once per run, the chart's config schema is compared with the loader's msgspec Structs, so a
key added to (or dropped from) infinitic_py.config fails here until the schema follows.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

from infinitic_py.priority import BANDS, band_service
from infinitic_py.topics import WORKER_SUBSCRIPTION, service_topic

Doc = dict[str, Any]

# KEDA pulsar scaler trigger metadata (keda.sh/docs/2.16/scalers/pulsar).
PULSAR_TRIGGER_REQUIRED = {"adminURL", "topic", "subscription"}
PULSAR_TRIGGER_KNOWN = PULSAR_TRIGGER_REQUIRED | {
    "msgBacklogThreshold",
    "activationMsgBacklogThreshold",
    "isPartitionedTopic",
    "authModes",
    "oauthTokenURI",
    "scope",
    "clientID",
    "endpointParams",
    "unsafeSsl",
}
# KEDA prometheus scaler trigger metadata (keda.sh/docs/2.16/scalers/prometheus).
PROMETHEUS_TRIGGER_REQUIRED = {"serverAddress", "query", "threshold"}
PROMETHEUS_TRIGGER_KNOWN = PROMETHEUS_TRIGGER_REQUIRED | {
    "activationThreshold",
    "namespace",
    "customHeaders",
    "ignoreNullValues",
    "unsafeSsl",
    "authModes",
    "queryParameters",
}
READY_BACKLOG_METRIC = "infinitic_backlog_ready_messages"


class Problems:
    def __init__(self) -> None:
        self.errors: list[str] = []
        self.checked = 0

    def error(self, where: str, message: str) -> None:
        self.errors.append(f"{where}: {message}")
        print(f"  FAIL {where}: {message}")

    def ok(self, where: str, message: str) -> None:
        self.checked += 1
        print(f"  ok   {where}: {message}")


def ref(doc: Doc) -> str:
    return f"{doc.get('kind', '?')}/{(doc.get('metadata') or {}).get('name', '?')}"


def load_docs(path: Path) -> list[Doc]:
    docs = []
    for doc in yaml.safe_load_all(path.read_text()):
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise ValueError(f"{path}: a document is not a mapping")
        docs.append(doc)
    return docs


# --------------------------------------------------------------------------- schemas


def unknown_fields(given: Any, dumped: Any, path: str = "") -> Iterator[str]:
    """Paths present in ``given`` that a model round trip dropped (fields it does not know)."""
    if isinstance(given, dict):
        if not isinstance(dumped, dict):
            yield path or "."
            return
        for key, value in given.items():
            sub = f"{path}.{key}" if path else str(key)
            if key not in dumped:
                yield sub
            else:
                yield from unknown_fields(value, dumped[key], sub)
    elif isinstance(given, list):
        if not isinstance(dumped, list) or len(dumped) != len(given):
            yield path
            return
        for i, (g, d) in enumerate(zip(given, dumped, strict=True)):
            yield from unknown_fields(g, d, f"{path}[{i}]")


def crd_models() -> dict[tuple[str, str], Any]:
    from cloudcoil.models.keda import v1alpha1 as keda
    from cloudcoil.models.prometheus_operator import v1 as monitoring

    return {
        ("monitoring.coreos.com/v1", "ServiceMonitor"): monitoring.ServiceMonitor,
        ("keda.sh/v1alpha1", "ScaledObject"): keda.ScaledObject,
    }


def check_schema(
    doc: Doc, where: str, kube_version: str, models: dict[tuple[str, str], Any], problems: Problems
) -> None:
    key = (doc.get("apiVersion", ""), doc.get("kind", ""))
    if key in models:
        import pydantic

        model = models[key]
        try:
            # JSON input: strict types, while enums still accept their string values.
            obj = model.model_validate_json(json.dumps(doc), strict=True)
        except pydantic.ValidationError as exc:
            for err in exc.errors():
                loc = ".".join(str(p) for p in err["loc"])
                problems.error(where, f"{loc}: {err['msg']} (CRD model {model.__module__})")
            return
        dumped = obj.model_dump(mode="json", by_alias=True, exclude_unset=True)
        extra = list(unknown_fields(doc, dumped))
        if extra:
            for path in extra:
                problems.error(where, f"{path}: field not in the {key[1]} CRD schema")
            return
        problems.ok(where, f"{key[0]} {key[1]} CRD model ({model.__module__}), strict")
        return
    try:
        version = kubernetes_validate.validate(doc, kube_version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path)
        problems.error(where, f"{path}: {exc.message} (k8s {exc.version} schema)")
        return
    except kubernetes_validate.SchemaNotFoundError as exc:
        problems.error(where, f"no schema to validate against: {exc.message}")
        return
    problems.ok(where, f"k8s {version} schema, strict")


# --------------------------------------------------------------------------- set checks


def labels_match(selector: dict[str, str] | None, labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in (selector or {}).items())


def container_env(container: Doc) -> dict[str, str]:
    """The container's INFINITIC_* variables as the worker will see them (the last of duplicate
    names wins, as in Kubernetes); a required Secret's value is a placeholder."""
    env: dict[str, str] = {}
    for var in container.get("env", []):
        name = var["name"]
        if not name.startswith("INFINITIC_"):
            continue
        if "value" in var:
            env[name] = str(var["value"])
        elif (var.get("valueFrom") or {}).get("secretKeyRef", {}).get("optional") is not True:
            env[name] = "placeholder-from-secret"  # a required Secret: the variable will be set
        else:
            env.pop(name, None)
    return env


def effective_worker(config_text: str, container: Doc) -> Any:
    """The WorkerConfig the worker runs with: its config file under the container's literal
    INFINITIC_* env, read by the worker's own loader. None if it does not load (the worker
    check says why)."""
    from infinitic_py.config import load_config
    from infinitic_py.errors import ConfigError

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "worker.yaml")
        path.write_text(config_text)
        try:
            return load_config(path, env=container_env(container))
        except ConfigError:
            return None


TOKEN_VOLUME = "pulsar-token"  # the chart's and deploy/k8s/token-file's Secret volume


def token_file_source(spec: Doc, worker: Doc, path: str) -> tuple[str, str] | str:
    """(Secret name, key) of the Secret volume the worker container reads ``path`` from, or
    what is wrong: the kubelet must be able to update the file when the Secret is rotated."""
    mounts = [m for m in worker.get("volumeMounts", [])
              if path.startswith(m["mountPath"].rstrip("/") + "/")]
    if not mounts:
        return f"{path} is on no volume mount of the worker container"
    mount = max(mounts, key=lambda m: len(m["mountPath"]))
    at = f"{path} (volumeMount {mount['name']} at {mount['mountPath']})"
    if mount.get("subPath") or mount.get("subPathExpr"):
        return (f"{at} is a subPath mount: the kubelet never updates those, so a rotated "
                "Secret would not reach the worker; mount the whole volume")
    if mount.get("readOnly") is not True:
        return f"{at} is not readOnly"
    volume = next((v for v in spec.get("volumes", []) if v["name"] == mount["name"]), None)
    secrets = ([volume["secret"]] if volume and "secret" in volume else
               [src["secret"] for src in ((volume or {}).get("projected") or {}).get("sources", [])
                if "secret" in src])
    if not secrets:
        return f"{at} is not on a Secret volume"
    rel = path[len(mount["mountPath"].rstrip("/")) + 1:]
    for secret in secrets:
        name = secret.get("secretName") or secret.get("name") or ""
        items = secret.get("items")
        item = next((i for i in items or [] if i.get("path") == rel), None)
        if items is not None and item is None:
            continue
        key = item["key"] if item else rel  # without items, every key is a file of its name
        # Secret files are owned by root; with an fsGroup, by that group too, and the kubelet
        # then adds group read to the mode.
        mode = (item or {}).get("mode", secret.get("defaultMode",
                                                   (volume or {}).get("projected", {}).get(
                                                       "defaultMode", 0o644)))
        psc = spec.get("securityContext") or {}
        csc = worker.get("securityContext") or {}
        root = csc.get("runAsUser", psc.get("runAsUser")) == 0
        if not (mode & 0o004 or psc.get("fsGroup") is not None or (mode & 0o400 and root)):
            return (f"{at}: mode {mode:#o} does not let the worker read it (it runs as "
                    f"{'root' if root else 'a non-root user'}, fsGroup "
                    f"{psc.get('fsGroup')})")
        return name, key
    return f"{at}: no item of the Secret volume is at {rel!r}"


def check_token_file(where: str, spec: Doc, worker: Doc, plugin: str | None,
                     params: str | None, expected: str | None, problems: Problems) -> None:
    """A token given as a file (``pulsar.auth_params: file://...``) must be read from a Secret
    volume the kubelet keeps up to date: a read-only directory mount (never a subPath), whose
    items put a key at that path. ``expected`` (``SECRET/KEY``): the set must read its token
    from that Secret's key; None: the set gives no token file at all (and no pulsar-token
    volume)."""
    import urllib.parse

    is_file = (params or "").strip().startswith("file:")
    if not is_file:
        if expected:
            problems.error(where, f"no token file: expected pulsar.auth_params "
                           f"file://... from Secret {expected}, got "
                           f"{'a value' if params else 'none'}")
        elif any(v.get("name") == TOKEN_VOLUME for v in spec.get("volumes", [])):
            problems.error(where, f"a {TOKEN_VOLUME} volume, but no token file is expected")
        return
    path = urllib.parse.unquote(urllib.parse.urlsplit((params or "").strip()).path)
    if expected is None:
        problems.error(where, f"a token file {path}, but this set expects none")
        return
    if "token" not in (plugin or "").lower():
        problems.error(where, f"pulsar.auth_params is the token file {path} but the auth plugin "
                       f"is {plugin!r}: the worker reads a token file only with a token plugin")
        return
    source = token_file_source(spec, worker, path)
    if isinstance(source, str):
        problems.error(where, f"token file {source}")
        return
    if f"{source[0]}/{source[1]}" != expected:
        problems.error(where, f"token file {path} comes from Secret {source[0]} key "
                       f"{source[1]}, expected {expected}")
        return
    problems.ok(where, f"token file {path}: Secret {source[0]} key {source[1]}, read-only "
                "directory mount (a rotated Secret reaches the worker)")


def worker_check(where: str, config_text: str, container: Doc, problems: Problems) -> None:
    """Run the worker's own offline check on the config, with the container's INFINITIC_* env."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFINITIC_")}
    env.update(container_env(container))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "worker.yaml")
        path.write_text(config_text)
        cmd = [sys.executable, "-m", "infinitic_py.cli", "check", "--offline", "--strict"]
        proc = subprocess.run(
            [*cmd, "-c", str(path)], env=env, capture_output=True, text=True, timeout=120
        )
    if proc.returncode != 0:
        out = (proc.stdout + proc.stderr).strip().replace("\n", " | ")
        problems.error(
            where, f"`infinitic-py check --offline --strict` exit {proc.returncode}: {out}"
        )
    else:
        n = len([ln for ln in proc.stdout.splitlines() if ln.startswith("ok    service")])
        extra = sorted(k for k in env if k.startswith("INFINITIC_"))
        problems.ok(
            where,
            f"infinitic-py check --offline --strict: ok ({n} service(s) imported"
            + (f"; env {', '.join(extra)})" if extra else ")"),
        )


# A config value -> the project extra the worker needs for it (ServiceConfig.wire).
WIRE_EXTRAS = {"infinitic": "infinitic"}
ROOT = Path(__file__).resolve().parents[1]


def image_dependencies(problems: Problems) -> None:
    """The image installs what every config the chart accepts needs: the extra of each `wire`
    (a `wire: infinitic` worker refuses to start without fastavro), and every requirement of
    the project and of those extras is pinned in deploy/constraints.txt."""
    from importlib.metadata import requires

    import msgspec.inspect as mi
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    from infinitic_py.config.schema import ServiceConfig

    where = "[image] deploy/Dockerfile"
    info = mi.type_info(ServiceConfig)
    assert isinstance(info, mi.StructType)
    wire = next(f.type for f in info.fields if f.name == "wire")
    wires = set(wire.values) if isinstance(wire, mi.LiteralType) else set()
    needed = {WIRE_EXTRAS[w] for w in wires if w in WIRE_EXTRAS}
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    installed = re.search(r'"infinitic-py\[([a-z,]+)\]"', dockerfile)
    extras = set(installed[1].split(",")) if installed else set()
    if needed - extras:
        problems.error(where, f"the runtime stage does not install the extra(s) "
                       f"{sorted(needed - extras)} that config values need (wire: "
                       f"{sorted(wires)}): install \"infinitic-py[{','.join(sorted(needed))}]\"")
    else:
        problems.ok(where, f"installs infinitic-py[{','.join(sorted(extras))}] (wire: "
                    f"{', '.join(sorted(wires))})")
    pinned = {canonicalize_name(line.split("==")[0]) for line in
              (ROOT / "deploy" / "constraints.txt").read_text().splitlines()
              if "==" in line and not line.startswith("#")}
    wanted = {canonicalize_name(r.name) for r in map(Requirement, requires("infinitic-py") or [])
              if r.marker is None or any(r.marker.evaluate({"extra": e}) for e in extras)}
    if wanted - pinned:
        problems.error("[image] deploy/constraints.txt", f"not pinned: {sorted(wanted - pinned)} "
                       "(run `make lock`)")
    else:
        problems.ok("[image] deploy/constraints.txt", f"pins all {len(wanted)} requirements")


def _resolve(node: Doc, definitions: Doc) -> Doc:
    while "$ref" in node:
        node = definitions[node["$ref"].rsplit("/", 1)[1]]
    if node.get("type") == "array" and "items" in node:
        return _resolve(node["items"], definitions)
    if "properties" not in node and isinstance(node.get("additionalProperties"), dict):
        return _resolve(node["additionalProperties"], definitions)
    return node


def schema_drift(config_schema: Doc, problems: Problems) -> None:
    """The chart's config schema must have exactly the keys of infinitic_py.config's Structs."""
    import msgspec.inspect as mi

    from infinitic_py.config import WorkerConfig

    def struct_of(t: Any) -> Any:
        while True:
            if isinstance(t, mi.Metadata):
                t = t.type
            elif isinstance(t, mi.UnionType):
                inner = [x for x in t.types if not isinstance(x, mi.NoneType)]
                if len(inner) != 1:
                    return None
                t = inner[0]
            elif isinstance(t, mi.ListType | mi.VarTupleType | mi.SetType | mi.FrozenSetType):
                t = t.item_type
            elif isinstance(t, mi.DictType):
                t = t.value_type
            else:
                return t if isinstance(t, mi.StructType) else None

    definitions = config_schema.get("definitions", {})
    drift = 0

    def walk(struct: Any, node: Doc, path: str) -> None:
        nonlocal drift
        node = _resolve(node, definitions)
        fields = {f.encode_name: f for f in struct.fields}
        props = node.get("properties", {})
        for key in sorted(set(fields) - set(props)):
            drift += 1
            problems.error(
                "[schema]",
                f"config{path}.{key} is a worker config key missing from values.schema.json",
            )
        for key in sorted(set(props) - set(fields)):
            drift += 1
            problems.error(
                "[schema]",
                f"config{path}.{key} is in values.schema.json but not a worker config key",
            )
        if node.get("additionalProperties", True) is not False:
            drift += 1
            problems.error("[schema]", f"config{path} should set additionalProperties: false")
        for key in sorted(set(fields) & set(props)):
            sub = struct_of(fields[key].type)
            if sub is not None:
                walk(sub, props[key], f"{path}.{key}")

    walk(mi.type_info(WorkerConfig), config_schema, "")
    if not drift:
        problems.ok("[schema]", "values.schema.json config keys == infinitic_py.config Structs")


def check_set(
    name: str, docs: list[tuple[str, Doc]], config_schema: Doc, expect: set[str],
    problems: Problems, token_file: str | None = None,
) -> None:
    by_kind: dict[str, list[tuple[str, Doc]]] = {}
    for where, doc in docs:
        by_kind.setdefault(doc.get("kind", "?"), []).append((where, doc))
    here = f"[{name}]"

    missing = sorted(expect - set(by_kind))
    if missing:
        problems.error(here, f"expected kinds not rendered: {', '.join(missing)}")

    deployments = by_kind.get("Deployment", [])
    if len(deployments) != 1:
        problems.error(here, f"expected exactly one Deployment, found {len(deployments)}")
        return
    dwhere, deploy = deployments[0]
    dname = deploy["metadata"]["name"]
    pod = deploy["spec"]["template"]
    pod_labels: dict[str, str] = pod["metadata"].get("labels", {})
    spec = pod["spec"]
    containers = spec.get("containers", [])
    worker = next((c for c in containers if c.get("name") == "worker"), None)
    if worker is None:
        problems.error(dwhere, "no container named 'worker'")
        return

    if not labels_match(deploy["spec"]["selector"].get("matchLabels"), pod_labels):
        problems.error(dwhere, "spec.selector does not match the pod template labels")

    # -- the worker config: the ConfigMap mounted where `-c` points
    args = worker.get("args", [])
    config_path = args[args.index("-c") + 1] if "-c" in args[:-1] else None
    if config_path is None:
        problems.error(dwhere, "worker args carry no `-c FILE`")
        return
    mount = next(
        (
            m
            for m in worker.get("volumeMounts", [])
            if config_path.startswith(m["mountPath"].rstrip("/") + "/")
        ),
        None,
    )
    volume = mount and next(
        (v for v in spec.get("volumes", []) if v["name"] == mount["name"]), None
    )
    cm_name = volume and (volume.get("configMap") or {}).get("name")
    if not cm_name:
        problems.error(dwhere, f"{config_path} is not on a ConfigMap volume")
        return
    cm = next(
        (d for _, d in by_kind.get("ConfigMap", []) if d["metadata"]["name"] == cm_name), None
    )
    key = config_path[len(mount["mountPath"].rstrip("/")) + 1 :]
    if cm is None or key not in (cm.get("data") or {}):
        problems.error(dwhere, f"ConfigMap {cm_name} with key {key} is not in the set")
        return
    try:
        config = yaml.safe_load(cm["data"][key])
    except yaml.YAMLError as exc:
        problems.error(f"{here} ConfigMap/{cm_name}", f"{key} is not valid YAML: {exc}")
        return
    errors = sorted(jsonschema.Draft7Validator(config_schema).iter_errors(config), key=str)
    for err in errors:
        loc = "/".join(str(p) for p in err.absolute_path)
        problems.error(f"{here} ConfigMap/{cm_name}", f"{key} /{loc}: {err.message}")
    if errors:
        return
    problems.ok(f"{here} ConfigMap/{cm_name}", f"{key} matches the worker config schema")
    worker_check(f"{here} ConfigMap/{cm_name}", cm["data"][key], worker, problems)
    wcfg = config.get("worker") or {}
    pcfg = config.get("pulsar") or {}
    # What the worker runs with: the file under the Deployment's INFINITIC_* env (an env
    # override of the port or the grace was not seen before: probes on the wrong port).
    effective = effective_worker(cm["data"][key], worker)
    if effective is None:
        return  # the worker check above names the error
    grace, port = effective.worker.shutdown_grace_seconds, effective.worker.http_port
    check_token_file(dwhere, spec, worker, effective.pulsar.auth_plugin,
                     effective.pulsar.auth_params_string(), token_file, problems)

    # -- drain grace vs SIGKILL
    tgps = spec.get("terminationGracePeriodSeconds", 30)  # Kubernetes' default when unset
    if not tgps > grace:
        problems.error(
            dwhere,
            f"terminationGracePeriodSeconds {tgps} must exceed "
            f"worker.shutdown_grace_seconds {grace}",
        )
    else:
        problems.ok(
            dwhere, f"terminationGracePeriodSeconds {tgps} > shutdown_grace_seconds {grace:g}"
        )

    # -- port, probes
    ports = {p.get("name"): p["containerPort"] for p in worker.get("ports", [])}
    if ports.get("http") != port:
        problems.error(
            dwhere, f"container port 'http' is {ports.get('http')!r}, the worker listens on "
            f"{port!r} (worker.http_port, INFINITIC_WORKER__HTTP_PORT)"
        )
    for probe, path in (("startupProbe", "/healthz"), ("livenessProbe", "/healthz"),
                        ("readinessProbe", "/readyz")):
        get = (worker.get(probe) or {}).get("httpGet") or {}
        if get.get("path") != path or get.get("port") not in ("http", port):
            problems.error(
                dwhere, f"{probe} should be GET {path} on the http port, is {get or None}"
            )
    sc = worker.get("securityContext") or {}
    psc = spec.get("securityContext") or {}
    if not (psc.get("runAsNonRoot") or sc.get("runAsNonRoot")):
        problems.error(dwhere, "runAsNonRoot is not set")
    if sc.get("readOnlyRootFilesystem") and not any(
        m["mountPath"] == "/tmp" for m in worker.get("volumeMounts", [])
    ):
        problems.error(dwhere, "read-only root filesystem without a writable /tmp")
    problems.ok(dwhere, f"port http={port}, probes /healthz + /readyz, non-root")

    # -- selectors of the other objects
    autoscaled = False
    for kind in ("Service", "PodDisruptionBudget"):
        for where, doc in by_kind.get(kind, []):
            sel = (
                doc["spec"]["selector"]
                if kind == "Service"
                else doc["spec"]["selector"].get("matchLabels")
            )
            if not labels_match(sel, pod_labels):
                problems.error(where, f"selector {sel} does not select the worker pods")
            elif kind == "Service" and not any(
                p.get("targetPort") in ("http", port) for p in doc["spec"].get("ports", [])
            ):
                problems.error(where, "no port targets the worker's http port")
            else:
                problems.ok(where, "selects the worker pods")
    for where, doc in by_kind.get("ServiceMonitor", []):
        sel = doc["spec"]["selector"].get("matchLabels")
        svc = next(
            (
                s
                for _, s in by_kind.get("Service", [])
                if labels_match(sel, s["metadata"].get("labels", {}))
            ),
            None,
        )
        if svc is None:
            problems.error(where, f"selector {sel} matches no Service in the set")
            continue
        names = {p.get("name") for p in svc["spec"]["ports"]}
        bad = [e.get("port") for e in doc["spec"]["endpoints"] if e.get("port") not in names]
        if bad:
            problems.error(
                where, f"endpoint ports {bad} are not ports of Service/{svc['metadata']['name']}"
            )
        else:
            problems.ok(
                where,
                f"scrapes Service/{svc['metadata']['name']} port(s) "
                f"{[e.get('port') for e in doc['spec']['endpoints']]}",
            )
    for kind in ("HorizontalPodAutoscaler", "ScaledObject"):
        for where, doc in by_kind.get(kind, []):
            autoscaled = True
            target = doc["spec"]["scaleTargetRef"]
            if target.get("name") != dname or target.get("kind", "Deployment") != "Deployment":
                problems.error(where, f"scaleTargetRef {target} is not Deployment/{dname}")
            else:
                problems.ok(where, f"scales Deployment/{dname}")
    if "HorizontalPodAutoscaler" in by_kind and "ScaledObject" in by_kind:
        problems.error(here, "both an HPA and a KEDA ScaledObject target the Deployment")
    if autoscaled and "replicas" in deploy["spec"]:
        problems.error(dwhere, "spec.replicas is set although an autoscaler owns the replica count")

    # -- KEDA prometheus (ready backlog) and pulsar triggers
    for where, doc in by_kind.get("ScaledObject", []):
        names = [s.get("name") for s in config.get("services", [])]
        for i, trig in enumerate(doc["spec"].get("triggers", [])):
            at = f"{where} triggers[{i}]"
            if trig.get("type") == "prometheus":
                check_prometheus_trigger(at, trig.get("metadata") or {}, names, wcfg,
                                         problems)
                continue
            if trig.get("type") != "pulsar":
                problems.error(at, f"type {trig.get('type')!r}, expected 'prometheus' or 'pulsar'")
                continue
            meta = trig.get("metadata") or {}
            missing_keys = PULSAR_TRIGGER_REQUIRED - set(meta)
            unknown = set(meta) - PULSAR_TRIGGER_KNOWN
            if missing_keys or unknown:
                problems.error(
                    at, f"missing {sorted(missing_keys)} / unknown {sorted(unknown)} metadata keys"
                )
                continue
            for k in ("msgBacklogThreshold", "activationMsgBacklogThreshold"):
                if k in meta and not re.fullmatch(r"\d+", meta[k]):
                    problems.error(at, f"{k} {meta[k]!r} is not an integer string")
            if meta.get("isPartitionedTopic", "false") not in ("true", "false"):
                problems.error(
                    at, f"isPartitionedTopic {meta['isPartitionedTopic']!r} is not true/false"
                )
            if not re.match(r"https?://", meta["adminURL"]):
                problems.error(at, f"adminURL {meta['adminURL']!r} is not an http(s) URL")
            if meta["subscription"] != WORKER_SUBSCRIPTION:
                problems.error(
                    at,
                    f"subscription {meta['subscription']!r} is not the worker's "
                    f"{WORKER_SUBSCRIPTION!r}",
                )
            tenant, namespace = pcfg.get("tenant", "public"), pcfg.get("namespace", "default")
            # Each service's topics live in its own tenant/namespace (services[].tenant /
            # .namespace override pulsar's), every priority band's topic.
            topics = {service_topic(s.get("tenant") or tenant, s.get("namespace") or namespace,
                                    band_service(s["name"], band))
                      for s in config.get("services", []) if s.get("name") for band in BANDS}
            if meta["topic"] not in topics:
                named = re.search(r"task-executor:(.+?)(:high|:low)?$", meta["topic"])
                if named and named[1] in {s.get("name") for s in config.get("services", [])}:
                    problems.error(at, f"topic {meta['topic']!r} is not in the tenant/namespace "
                                   "of its service (services[].tenant / .namespace)")
                    continue
                # Service names may come from autoscaling.keda.services; the shape must still hold.
                prefix = service_topic(tenant, namespace, "")
                if not (meta["topic"].startswith(prefix) and len(meta["topic"]) > len(prefix)):
                    problems.error(
                        at,
                        f"topic {meta['topic']!r} is not a service topic of {tenant}/{namespace}",
                    )
                    continue
            problems.ok(at, f"pulsar backlog of {meta['subscription']} on {meta['topic']}")


def check_prometheus_trigger(
    at: str, meta: dict[str, Any], names: list[Any], worker_cfg: dict[str, Any],
    problems: Problems,
) -> None:
    """A KEDA prometheus trigger on the workers' ready-backlog gauge of one of the services."""
    missing_keys = PROMETHEUS_TRIGGER_REQUIRED - set(meta)
    unknown = set(meta) - PROMETHEUS_TRIGGER_KNOWN
    if missing_keys or unknown:
        problems.error(at, f"missing {sorted(missing_keys)} / unknown {sorted(unknown)} metadata keys")
        return
    for k in ("threshold", "activationThreshold"):
        if k in meta and not re.fullmatch(r"\d+(\.\d+)?", meta[k]):
            problems.error(at, f"{k} {meta[k]!r} is not a number string")
    if not re.match(r"https?://[^/]", meta["serverAddress"]):
        problems.error(at, f"serverAddress {meta['serverAddress']!r} is not an http(s) URL")
    match = re.fullmatch(r'max\(' + READY_BACKLOG_METRIC + r'\{service="([^"]+)"(,[^}]*)?\}\)',
                         meta["query"])
    if match is None:
        problems.error(at, f"query {meta['query']!r} is not max({READY_BACKLOG_METRIC}{{service=...}})")
        return
    if names and all(names) and match.group(1) not in names:
        problems.error(at, f"query names service {match.group(1)!r}, not one of {names}")
        return
    if float(worker_cfg.get("backlog_poll_seconds", 15.0)) <= 0:
        problems.error(at, "worker.backlog_poll_seconds is 0: the workers export no backlog gauge")
        return
    problems.ok(at, f"prometheus: ready backlog of service {match.group(1)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kube-version", required=True)
    parser.add_argument(
        "--values-schema",
        required=True,
        type=Path,
        help="the chart's values.schema.json (its config subtree checks worker.yaml)",
    )
    parser.add_argument(
        "--set", dest="sets", action="append", default=[], metavar="NAME=FILE[,FILE]"
    )
    parser.add_argument(
        "--expect",
        action="append",
        default=[],
        metavar="NAME=Kind[,Kind]",
        help="kinds that set must contain",
    )
    parser.add_argument(
        "--token-file",
        action="append",
        default=[],
        metavar="NAME=SECRET/KEY",
        help="that set's worker reads its token file from this Secret key (others: no token file)",
    )
    args = parser.parse_args(argv)

    schema = json.loads(args.values_schema.read_text())
    config_schema = dict(schema["properties"]["config"], definitions=schema.get("definitions", {}))
    expects: dict[str, set[str]] = {}
    for item in args.expect:
        n, _, kinds = item.partition("=")
        expects[n] = set(filter(None, kinds.split(",")))
    token_files = dict(item.partition("=")[::2] for item in args.token_file)

    models: dict[tuple[str, str], Any] = {}
    problems = Problems()
    print("== values.schema.json vs the worker's config loader")
    schema_drift(config_schema, problems)
    print("== the image's dependencies")
    image_dependencies(problems)
    total_docs = 0
    for item in args.sets:
        name, _, files = item.partition("=")
        print(f"== {name}")
        docs: list[tuple[str, Doc]] = []
        for f in filter(None, files.split(",")):
            try:
                loaded = load_docs(Path(f))
            except (OSError, ValueError, yaml.YAMLError) as exc:
                problems.error(f"[{name}] {f}", str(exc))
                continue
            docs += [(f"[{name}] {ref(d)}", d) for d in loaded]
        if not docs:
            problems.error(f"[{name}]", "no documents")
            continue
        total_docs += len(docs)
        for where, doc in docs:
            if not models and doc.get("apiVersion", "").split("/")[0] in (
                "keda.sh",
                "monitoring.coreos.com",
            ):
                models = crd_models()  # slow import: only when a CRD is present
            check_schema(doc, where, args.kube_version, models, problems)
        check_set(name, docs, config_schema, expects.get(name, set()), problems,
                  token_files.get(name))

    n_err = len(problems.errors)
    print(
        f"manifests: {len(args.sets)} sets, {total_docs} documents, {problems.checked} checks passed, "
        f"{n_err} failed"
    )
    return 1 if n_err else 0


if __name__ == "__main__":
    sys.exit(main())
