{{- define "ballast.labels" -}}
app.kubernetes.io/part-of: ballast
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{- define "ballast.image" -}}
{{- $root := index . 0 -}}{{- $service := index . 1 -}}
{{- printf "%s/%s/%s:%s" $root.Values.image.registry $root.Values.image.repository $service (default $root.Chart.AppVersion $root.Values.image.tag) -}}
{{- end }}

{{- /* Restricted Pod Security Standard, as the services' images are built for (uid 65532, read-only root). */ -}}
{{- define "ballast.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "ballast.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end }}

{{- /* ---- Shared by the services' templates (slo-engine, policy-gate, chaos-runner, incident-bot) ---------------- */ -}}

{{- /* The labels a service's pods carry and its Deployment, Service, PDB and NetworkPolicy select on. */ -}}
{{- define "ballast.selectorLabels" -}}
app.kubernetes.io/part-of: ballast
app.kubernetes.io/name: {{ . }}
{{- end }}

{{- /* A service's image: its own full reference if set, else <registry>/<repository>/<service>:<tag>. */ -}}
{{- define "ballast.serviceImage" -}}
{{- $root := index . 0 -}}{{- $service := index . 1 -}}{{- $values := index . 2 -}}
{{- default (include "ballast.image" (list $root $service)) $values.image -}}
{{- end }}

{{- /* Where the replicas run: spread over nodes and zones (a standby on the leader's node dies with it) unless the
values give their own topologySpreadConstraints; affinity, nodeSelector and tolerations from the values. */ -}}
{{- define "ballast.placement" -}}
{{- $service := index . 0 -}}{{- $values := index . 1 -}}
topologySpreadConstraints:
{{- if $values.topologySpreadConstraints }}
  {{- toYaml $values.topologySpreadConstraints | nindent 2 }}
{{- else }}
{{- range list "kubernetes.io/hostname" "topology.kubernetes.io/zone" }}
  - maxSkew: 1
    topologyKey: {{ . }}
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "ballast.selectorLabels" $service | nindent 8 }}
{{- end }}
{{- end }}
{{- with $values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{- /* The settings every service reads (ballast.runtime.config), its health port from ballast.runtime.ports. */ -}}
{{- define "ballast.serviceEnv" -}}
{{- $root := index . 0 -}}{{- $healthPort := index . 1 -}}
- {name: BALLAST_NATS_URL, value: {{ $root.Values.nats.url | quote }}}
- {name: BALLAST_CLUSTER, value: {{ $root.Values.cluster | quote }}}
- {name: BALLAST_LOG_LEVEL, value: {{ $root.Values.logLevel | quote }}}
- {name: BALLAST_HTTP_HOST, value: "0.0.0.0"}
- {name: BALLAST_HTTP_PORT, value: {{ $healthPort | quote }}}
- name: BALLAST_IDENTITY
  valueFrom: {fieldRef: {fieldPath: metadata.name}}
{{- end }}

{{- /* Leader election on a Lease in the release namespace (the Role that allows it is in the service's rbac.yaml). */ -}}
{{- define "ballast.leaseEnv" -}}
{{- $root := index . 0 -}}{{- $lease := index . 1 -}}
- {name: BALLAST_LEASE_NAMESPACE, value: {{ $root.Release.Namespace | quote }}}
- {name: BALLAST_LEASE_DURATION, value: {{ $lease.duration | quote }}}
- {name: BALLAST_RENEW_DEADLINE, value: {{ $lease.renewDeadline | quote }}}
- {name: BALLAST_RETRY_PERIOD, value: {{ $lease.retryPeriod | quote }}}
{{- end }}

{{- /* Liveness and readiness on the service's plain-HTTP health port (named http). */ -}}
{{- define "ballast.probes" -}}
livenessProbe:
  httpGet: {path: /healthz, port: http}
  periodSeconds: 10
readinessProbe:
  httpGet: {path: /readyz, port: http}
  periodSeconds: 5
{{- end }}

{{- /* The root filesystem is read-only; /tmp is a small emptyDir (the HTTPS server's self-signed certificate files,
Python's tempfile). */ -}}
{{- define "ballast.tmpVolume" -}}
- name: tmp
  emptyDir: {sizeLimit: 64Mi}
{{- end }}

{{- define "ballast.tmpMount" -}}
- {name: tmp, mountPath: /tmp}
{{- end }}

{{- /* A service's ServiceAccount: the token is mounted only where the service talks to the Kubernetes API. */ -}}
{{- define "ballast.serviceAccount" -}}
{{- $root := index . 0 -}}{{- $service := index . 1 -}}{{- $token := index . 2 -}}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: ballast-{{ $service }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "ballast.labels" $root | nindent 4 }}
    app.kubernetes.io/name: {{ $service }}
automountServiceAccountToken: {{ $token }}
{{- end }}

{{- /* Cluster-wide rules (ClusterRole and binding) and the leader lease (Role and binding in the release namespace). */ -}}
{{- define "ballast.clusterRole" -}}
{{- $root := index . 0 -}}{{- $service := index . 1 -}}{{- $rules := index . 2 -}}
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: {{ printf "%s-%s" $root.Release.Name $service }}
  labels:
    {{- include "ballast.labels" $root | nindent 4 }}
rules:
  {{- toYaml $rules | nindent 2 }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: {{ printf "%s-%s" $root.Release.Name $service }}
  labels:
    {{- include "ballast.labels" $root | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: {{ printf "%s-%s" $root.Release.Name $service }}
subjects:
  - kind: ServiceAccount
    name: ballast-{{ $service }}
    namespace: {{ $root.Release.Namespace }}
{{- end }}

{{- define "ballast.leaseRole" -}}
{{- $root := index . 0 -}}{{- $service := index . 1 -}}{{- $rules := index . 2 -}}
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: ballast-{{ $service }}-leader-election
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "ballast.labels" $root | nindent 4 }}
rules:
  {{- toYaml $rules | nindent 2 }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: ballast-{{ $service }}-leader-election
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "ballast.labels" $root | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: ballast-{{ $service }}-leader-election
subjects:
  - kind: ServiceAccount
    name: ballast-{{ $service }}
    namespace: {{ $root.Release.Namespace }}
{{- end }}

{{- /* The rules of a files/<service>-rbac.yaml, by kind: the one copy that deploy/rbac/<service>.yaml links to. */ -}}
{{- define "ballast.rbacRules" -}}
{{- $root := index . 0 -}}{{- $file := index . 1 -}}
{{- $rules := dict }}
{{- range splitList "\n---" ($root.Files.Get $file) }}
{{- $doc := fromYaml . }}
{{- if $doc.kind }}{{- $_ := set $rules $doc.kind $doc.rules }}{{- end }}
{{- end }}
{{- toJson $rules }}
{{- end }}

{{- /* At least one replica through voluntary disruptions (drains), when there is a second to stand in. */ -}}
{{- define "ballast.pdb" -}}
{{- $root := index . 0 -}}{{- $service := index . 1 -}}{{- $values := index . 2 -}}
{{- if gt (int $values.replicas) 1 }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: ballast-{{ $service }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "ballast.labels" $root | nindent 4 }}
    app.kubernetes.io/name: {{ $service }}
spec:
  minAvailable: 1
  selector:
    matchLabels:
      {{- include "ballast.selectorLabels" $service | nindent 6 }}
{{- end }}
{{- end }}

{{- /* NetworkPolicy building blocks (values: networkPolicy.*). */ -}}
{{- define "ballast.np.metricsIngress" -}}
{{- $root := index . 0 -}}{{- $healthPort := index . 1 -}}
# /metrics (and the health endpoints) for Prometheus; kubelet probes come from the node.
- from:
    {{- toYaml $root.Values.networkPolicy.prometheus | nindent 4 }}
  ports:
    - {protocol: TCP, port: {{ $healthPort }}}
{{- end }}

{{- define "ballast.np.busEgress" -}}
{{- $np := .Values.networkPolicy -}}
# Cluster DNS.
- to:
    {{- toYaml $np.dns | nindent 4 }}
  ports:
    - {protocol: UDP, port: 53}
    - {protocol: TCP, port: 53}
# NATS JetStream, the bus.
- to:
    {{- toYaml $np.nats.peers | nindent 4 }}
  ports:
    {{- range $np.nats.ports }}
    - {protocol: TCP, port: {{ . }}}
    {{- end }}
{{- end }}

{{- define "ballast.np.apiServerEgress" -}}
{{- $np := .Values.networkPolicy -}}
# The Kubernetes API server (networkPolicy.apiServer.peers; none given: any address, these ports only).
- ports:
    {{- range $np.apiServer.ports }}
    - {protocol: TCP, port: {{ . }}}
    {{- end }}
  {{- with $np.apiServer.peers }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

{{- /* A refusal at render for a secret put into values: it would be stored in the release, readable by anyone who can
read the release's Secret, and shown by `helm get values`. */ -}}
{{- define "ballast.noPlainSecret" -}}
{{- $values := index . 0 -}}{{- $path := index . 1 -}}{{- $keys := index . 2 -}}
{{- range $keys }}
{{- if hasKey $values . }}
{{- fail (printf "%s.%s: a secret does not go into values; put it in a Secret and name that Secret in %s.existingSecret" $path . $path) }}
{{- end }}
{{- end }}
{{- end }}
