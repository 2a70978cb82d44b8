{{/* Chart name, truncated to the 63 characters a DNS label allows. */}}
{{- define "infinitic-py-worker.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: the release name, plus the chart name unless it already contains it. */}}
{{- define "infinitic-py-worker.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "infinitic-py-worker.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "infinitic-py-worker.selectorLabels" -}}
app.kubernetes.io/name: {{ include "infinitic-py-worker.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: worker
{{- end }}

{{- define "infinitic-py-worker.labels" -}}
helm.sh/chart: {{ include "infinitic-py-worker.chart" . }}
{{ include "infinitic-py-worker.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: infinitic-py
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "infinitic-py-worker.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "infinitic-py-worker.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "infinitic-py-worker.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) }}
{{- end }}

{{/*
The literal value the container's env gives a variable (dict "root" . "name" NAME): from the
`env` map, then `extraEnv` entries with a `value` (rendered after it, so they win, as Kubernetes
takes the last of duplicate names); "" when neither sets it. The worker reads INFINITIC_*
variables over its config file, so the port and grace below must see them too.
*/}}
{{- define "infinitic-py-worker.envValue" -}}
{{- $name := .name }}
{{- $out := "" }}
{{- with .root.Values.env }}{{- if hasKey . $name }}{{- $out = index . $name | toString }}{{- end }}{{- end }}
{{- range .root.Values.extraEnv }}{{- if and (eq (toString .name) $name) (hasKey . "value") }}{{- $out = .value | toString }}{{- end }}{{- end }}
{{- $out }}
{{- end }}

{{/* The worker's HTTP port (metrics, health): INFINITIC_WORKER__HTTP_PORT, else the config. */}}
{{- define "infinitic-py-worker.httpPort" -}}
{{- $w := .Values.config.worker | default dict }}
{{- $env := include "infinitic-py-worker.envValue" (dict "root" . "name" "INFINITIC_WORKER__HTTP_PORT") }}
{{- $port := $w.http_port | default 9090 | int }}
{{- if ne $env "" }}{{- $port = $env | int }}{{- end }}
{{- if le $port 0 }}
{{- fail (printf "the worker's HTTP port is %d (config.worker.http_port or INFINITIC_WORKER__HTTP_PORT): the chart's probes and metrics need it; set a port such as 9090" $port) }}
{{- end }}
{{- $port }}
{{- end }}

{{/*
Whether the container's env names a variable (dict "root" . "name" NAME): a key of `env` or
an `extraEnv` entry of that name, whatever its value or valueFrom. "true" or "".
*/}}
{{- define "infinitic-py-worker.envSets" -}}
{{- $name := .name }}
{{- $out := "" }}
{{- with .root.Values.env }}{{- if hasKey . $name }}{{- $out = "true" }}{{- end }}{{- end }}
{{- range .root.Values.extraEnv }}{{- if eq (toString .name) $name }}{{- $out = "true" }}{{- end }}{{- end }}
{{- $out }}
{{- end }}

{{/*
The token file the worker reads when tokenSecret.name is set: <tokenSecret.mountPath>/token,
the one item of the Secret volume (its key tokenSecret.key). "" when tokenSecret.name is empty.
*/}}
{{- define "infinitic-py-worker.tokenFile" -}}
{{- $ts := .Values.tokenSecret | default dict }}
{{- if $ts.name }}
{{- printf "%s/token" (($ts.mountPath | default "/var/run/secrets/pulsar") | trimSuffix "/") }}
{{- end }}
{{- end }}

{{/* The token plugin is given by env when tokenSecret is set and neither the config nor the
user's env / extraEnv names a plugin. "true" or "". */}}
{{- define "infinitic-py-worker.tokenPluginFromEnv" -}}
{{- if and (include "infinitic-py-worker.tokenFile" .) (not .Values.config.pulsar.auth_plugin) (not (include "infinitic-py-worker.envSets" (dict "root" . "name" "INFINITIC_PULSAR__AUTH_PLUGIN"))) }}
{{- "true" }}
{{- end }}
{{- end }}

{/* Drain grace, as a float: INFINITIC_WORKER__SHUTDOWN_GRACE_SECONDS, else the config. */}}
{{- define "infinitic-py-worker.shutdownGrace" -}}
{{- $w := .Values.config.worker | default dict }}
{{- $g := 30.0 }}
{{- if hasKey $w "shutdown_grace_seconds" }}{{- if not (kindIs "invalid" $w.shutdown_grace_seconds) }}{{- $g = $w.shutdown_grace_seconds }}{{- end }}{{- end }}
{{- $env := include "infinitic-py-worker.envValue" (dict "root" . "name" "INFINITIC_WORKER__SHUTDOWN_GRACE_SECONDS") }}
{{- if ne $env "" }}{{- $g = $env }}{{- end }}
{{- $g | float64 }}
{{- end }}

{{/*
terminationGracePeriodSeconds: the value given, or ceil(shutdown grace) + 15.
Fails when it would not leave the worker its full drain grace before SIGKILL.
*/}}
{{- define "infinitic-py-worker.terminationGracePeriodSeconds" -}}
{{- $grace := include "infinitic-py-worker.shutdownGrace" . | float64 }}
{{- $tgps := 0 }}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds }}
{{- $tgps = add (ceil $grace | int) 15 }}
{{- else if eq (toString .Values.terminationGracePeriodSeconds) "" }}
{{- $tgps = add (ceil $grace | int) 15 }}
{{- else }}
{{- $tgps = .Values.terminationGracePeriodSeconds | int }}
{{- end }}
{{- if le ($tgps | float64) $grace }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be greater than the worker's shutdown grace (%v: config.worker.shutdown_grace_seconds, or INFINITIC_WORKER__SHUTDOWN_GRACE_SECONDS in env / extraEnv): the kubelet would SIGKILL the worker before it finishes draining" $tgps $grace) }}
{{- end }}
{{- $tgps }}
{{- end }}

{{/* Service names whose topics KEDA watches (a JSON list). */}}
{{- define "infinitic-py-worker.kedaServices" -}}
{{- $names := list }}
{{- if .Values.autoscaling.keda.services }}
{{- $names = .Values.autoscaling.keda.services }}
{{- else }}
{{- range $i, $s := .Values.config.services }}
{{- if not $s.name }}
{{- fail (printf "autoscaling.keda: config.services[%d] (%s) has no name; set config.services[%d].name or list the service names in autoscaling.keda.services" $i (index $s "class") $i) }}
{{- end }}
{{- $names = append $names $s.name }}
{{- end }}
{{- end }}
{{- if not $names }}
{{- fail "autoscaling.keda: no services to scale on (config.services and autoscaling.keda.services are empty)" }}
{{- end }}
{{- toJson $names }}
{{- end }}

{{/* Service names for the HPA's ready-backlog metrics: autoscaling.hpa.readyBacklog.services, or
every config.services[].name. */}}
{{- define "infinitic-py-worker.hpaBacklogServices" -}}
{{- $names := list }}
{{- if .Values.autoscaling.hpa.readyBacklog.services }}
{{- $names = .Values.autoscaling.hpa.readyBacklog.services }}
{{- else }}
{{- range $i, $s := .Values.config.services }}
{{- if not $s.name }}
{{- fail (printf "autoscaling.hpa.readyBacklog: config.services[%d] (%s) has no name; set config.services[%d].name or list the service names in autoscaling.hpa.readyBacklog.services" $i (index $s "class") $i) }}
{{- end }}
{{- $names = append $names $s.name }}
{{- end }}
{{- end }}
{{- toJson $names }}
{{- end }}

{{/* Cross-field checks that values.schema.json cannot express. Rendered by deployment.yaml. */}}
{{- define "infinitic-py-worker.validate" -}}
{{- if and .Values.autoscaling.hpa.enabled .Values.autoscaling.keda.enabled }}
{{- fail "autoscaling.hpa.enabled and autoscaling.keda.enabled are mutually exclusive: KEDA manages its own HorizontalPodAutoscaler for the Deployment; enable only one" }}
{{- end }}
{{- if .Values.autoscaling.hpa.enabled }}
{{- if gt (.Values.autoscaling.hpa.minReplicas | int) (.Values.autoscaling.hpa.maxReplicas | int) }}
{{- fail "autoscaling.hpa.minReplicas must not exceed autoscaling.hpa.maxReplicas" }}
{{- end }}
{{- if and (not .Values.autoscaling.hpa.targetCPUUtilizationPercentage) (not .Values.autoscaling.hpa.targetMemoryUtilizationPercentage) (not .Values.autoscaling.hpa.readyBacklog.enabled) }}
{{- fail "autoscaling.hpa: set targetCPUUtilizationPercentage, targetMemoryUtilizationPercentage and/or readyBacklog.enabled" }}
{{- end }}
{{- if and .Values.autoscaling.hpa.readyBacklog.enabled (eq (toString .Values.config.worker.backlog_poll_seconds) "0") }}
{{- fail "autoscaling.hpa.readyBacklog needs the workers' backlog gauges: config.worker.backlog_poll_seconds must not be 0" }}
{{- end }}
{{- end }}
{{- if .Values.autoscaling.keda.enabled }}
{{- if gt (.Values.autoscaling.keda.minReplicaCount | int) (.Values.autoscaling.keda.maxReplicaCount | int) }}
{{- fail "autoscaling.keda.minReplicaCount must not exceed autoscaling.keda.maxReplicaCount" }}
{{- end }}
{{- if eq .Values.autoscaling.keda.trigger "prometheus" }}
{{- if not .Values.autoscaling.keda.prometheus.serverAddress }}
{{- fail "autoscaling.keda.trigger is prometheus: set autoscaling.keda.prometheus.serverAddress (the Prometheus that scrapes the workers' infinitic_backlog_ready_messages)" }}
{{- end }}
{{- if eq (toString .Values.config.worker.backlog_poll_seconds) "0" }}
{{- fail "autoscaling.keda.trigger is prometheus, which needs the workers' backlog gauges: config.worker.backlog_poll_seconds must not be 0" }}
{{- end }}
{{- if not .Values.config.pulsar.admin_url }}
{{- fail "autoscaling.keda.trigger is prometheus: the workers read the backlog from config.pulsar.admin_url, which is null" }}
{{- end }}
{{- end }}
{{- if not (or .Values.autoscaling.keda.adminURL .Values.config.pulsar.admin_url) }}
{{- fail "autoscaling.keda: set autoscaling.keda.adminURL or config.pulsar.admin_url (KEDA reads the subscription backlog from the Pulsar admin API)" }}
{{- end }}
{{- end }}
{{- $ts := .Values.tokenSecret | default dict }}
{{- if $ts.name }}
{{- if .Values.existingSecret }}
{{- fail (printf "tokenSecret.name (%s) and existingSecret (%s) are both set: each gives INFINITIC_PULSAR__AUTH_PARAMS; keep one (tokenSecret: a token file, picked up again when the Secret is rotated)" $ts.name .Values.existingSecret) }}
{{- end }}
{{- if .Values.config.pulsar.auth_params }}
{{- fail "config.pulsar.auth_params and tokenSecret.name are both set: keep the token in the Secret only" }}
{{- end }}
{{- if include "infinitic-py-worker.envSets" (dict "root" . "name" "INFINITIC_PULSAR__AUTH_PARAMS") }}
{{- fail "INFINITIC_PULSAR__AUTH_PARAMS is set in env / extraEnv, and tokenSecret.name sets it to the token file: keep one" }}
{{- end }}
{{- $plugin := .Values.config.pulsar.auth_plugin | default "" | toString }}
{{- $envPlugin := include "infinitic-py-worker.envValue" (dict "root" . "name" "INFINITIC_PULSAR__AUTH_PLUGIN") }}
{{- if ne $envPlugin "" }}{{- $plugin = $envPlugin }}{{- end }}
{{- if and (ne $plugin "") (not (contains "token" (lower $plugin))) }}
{{- fail (printf "tokenSecret.name gives the worker a token file, but the auth plugin is %s: the worker reads a token file only with a token plugin; set config.pulsar.auth_plugin to org.apache.pulsar.client.impl.auth.AuthenticationToken (or leave it null: the chart sets it)" $plugin) }}
{{- end }}
{{- end }}
{{- if and .Values.existingSecret (not .Values.config.pulsar.auth_plugin) }}
{{- fail "existingSecret sets INFINITIC_PULSAR__AUTH_PARAMS, which the worker refuses while config.pulsar.auth_plugin is null: set it (e.g. org.apache.pulsar.client.impl.auth.AuthenticationToken)" }}
{{- end }}
{{- if and .Values.config.pulsar.auth_params .Values.existingSecret }}
{{- fail "config.pulsar.auth_params and existingSecret are both set: keep the auth parameters in the Secret only" }}
{{- end }}
{{- end }}

{{/* The image ships no service: the user's service class is required (a clear render-time error). */}}
{{- define "infinitic-py-worker.requireServices" -}}
{{- if not .Values.config.services }}
{{- fail "config.services is empty: set your service class, e.g. --set 'config.services[0].class=mycompany.billing:InvoiceService' (module:Class, importable in the image)" }}
{{- end }}
{{- range $i, $s := .Values.config.services }}
{{- $_ := required (printf "config.services[%d].class is required: your service class as module:Class" $i) (index $s "class") }}
{{- end }}
{{- end }}
