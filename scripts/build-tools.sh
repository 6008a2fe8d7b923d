#!/usr/bin/env bash
# Builds the real control plane and ecosystem tools from the Go module proxy (no release downloads exist here).
# Every binary lands in a versioned cache shared by developer runs and CI on the same machine; a binary that is
# already there is not rebuilt, so a warm run takes seconds.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.37.2}
ETCD_VERSION=${ETCD_VERSION:-v3.7.3}
KWOK_VERSION=${KWOK_VERSION:-v0.8.0}
OPA_VERSION=${OPA_VERSION:-v1.22.3}
HELM_VERSION=${HELM_VERSION:-v3.22.0}
PROMETHEUS_VERSION=${PROMETHEUS_VERSION:-v0.316.0}   # Go module version of Prometheus 3.16
ALERTMANAGER_VERSION=${ALERTMANAGER_VERSION:-v0.35.0}

CACHE_ROOT=${BALLAST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ballast}
GO_VERSION=$(go env GOVERSION)
TOOLS_DIR="$CACHE_ROOT/tools/$GO_VERSION"
BIN_DIR="$TOOLS_DIR/bin"
WORK_DIR="$TOOLS_DIR/build"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false
mkdir -p "$BIN_DIR" "$WORK_DIR"

START=$SECONDS
step=""
log() { printf '[tools %4ds] %s\n' "$((SECONDS - START))" "$*" >&2; }
on_error() {
  log "FAILED at step: $step"
  log "fix: check network access to the Go module proxy (go env GOPROXY), free disk (df -h $CACHE_ROOT),"
  log "     and that 'go version' is $GO_VERSION; the step's log is in $WORK_DIR/$step.log; rerun 'make tools'."
  tail -n 30 "$WORK_DIR/$step.log" 2>/dev/null >&2 || true
}
trap on_error ERR

# have NAME VERSION: true when BIN_DIR/NAME was built from VERSION (stamp file next to the binary).
have() { [ -x "$BIN_DIR/$1" ] && [ "$(cat "$BIN_DIR/.$1.version" 2>/dev/null)" = "$2" ]; }
stamp() { echo "$2" > "$BIN_DIR/.$1.version"; }

# wrapper_module DIR: an empty module that binaries are built through, so only its (generated) replaces apply.
wrapper_module() {
  mkdir -p "$1"
  [ -f "$1/go.mod" ] || (cd "$1" && go mod init "local.invalid/$(basename "$1")" >/dev/null 2>&1 && go mod edit -go=1.26.0)
}

build_kubernetes() {
  local names=(kube-apiserver kube-controller-manager kube-scheduler) missing=0 n
  for n in "${names[@]}"; do have "$n" "$K8S_VERSION" || missing=1; done
  [ $missing = 1 ] || { log "kubernetes $K8S_VERSION: cached"; return; }
  step=kubernetes
  local dir="$WORK_DIR/kubernetes-$K8S_VERSION" staging="v0.${K8S_VERSION#v1.}" minor="${K8S_VERSION#v1.}"
  minor=${minor%%.*}
  wrapper_module "$dir"
  cd "$dir"
  log "kubernetes $K8S_VERSION: reading upstream go.mod from the module proxy"
  local upstream
  upstream=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')
  [ -f "$upstream" ] || { log "no go.mod for k8s.io/kubernetes@$K8S_VERSION"; false; }
  # Upstream maps every staging module to ./staging; the proxy serves each at v0.<minor>.<patch> instead.
  local modules
  modules=$(sed -n 's#^[[:space:]]*\(k8s\.io/[^[:space:]]*\)[[:space:]]*=>[[:space:]]*\./staging/.*#\1#p' "$upstream")
  local other
  other=$(grep -E '=>' "$upstream" | grep -v '=> \./staging/' | grep -v '^replace ($' || true)
  [ -z "$other" ] || log "note: upstream has non-staging replaces (not applied): $other"
  for m in $modules; do go mod edit -replace="$m=$m@$staging"; done
  log "kubernetes $K8S_VERSION: $(echo "$modules" | wc -w) staging modules replaced with $staging; resolving dependencies"
  go get -tool "k8s.io/kubernetes/cmd/kube-apiserver@$K8S_VERSION" \
    "k8s.io/kubernetes/cmd/kube-controller-manager@$K8S_VERSION" \
    "k8s.io/kubernetes/cmd/kube-scheduler@$K8S_VERSION" >"$WORK_DIR/$step.log" 2>&1
  local bd ldf="-s -w" p
  bd=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldf+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean -X $p.buildDate=$bd"
  done
  log "kubernetes $K8S_VERSION: compiling kube-apiserver, kube-controller-manager, kube-scheduler (cold: ~20-30 min on 2 cores)"
  go build -trimpath -tags=selinux,notest -ldflags="$ldf" -o "$BIN_DIR/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler >>"$WORK_DIR/$step.log" 2>&1
  for n in "${names[@]}"; do stamp "$n" "$K8S_VERSION"; done
  log "kubernetes: $("$BIN_DIR/kube-apiserver" --version)"
}

# build_tool NAME MODULE VERSION PACKAGE [LDFLAGS] [TAGS]: one main package through its own wrapper module.
build_tool() {
  local name=$1 module=$2 version=$3 pkg=$4 ldflags=${5:-} tags=${6:-}
  have "$name" "$version" && { log "$name $version: cached"; return; }
  step=$name
  local dir="$WORK_DIR/$name-$version"
  wrapper_module "$dir"
  cd "$dir"
  log "$name $version: resolving $module"
  go get -tool "$pkg@$version" >"$WORK_DIR/$step.log" 2>&1
  log "$name $version: compiling $pkg"
  go build -trimpath -tags="$tags" -ldflags="-s -w $ldflags" -o "$BIN_DIR/$name" "$pkg" >>"$WORK_DIR/$step.log" 2>&1
  stamp "$name" "$version"
  log "$name $version: built"
}

build_kubernetes
build_tool etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION" go.etcd.io/etcd/server/v3 \
  "-X go.etcd.io/etcd/api/v3/version.GitSHA=gomod"
build_tool kwok sigs.k8s.io/kwok "$KWOK_VERSION" sigs.k8s.io/kwok/cmd/kwok \
  "-X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=$K8S_VERSION"
build_tool opa github.com/open-policy-agent/opa "$OPA_VERSION" github.com/open-policy-agent/opa
build_tool helm helm.sh/helm/v3 "$HELM_VERSION" helm.sh/helm/v3/cmd/helm \
  "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
build_tool promtool github.com/prometheus/prometheus "$PROMETHEUS_VERSION" github.com/prometheus/prometheus/cmd/promtool \
  "-X github.com/prometheus/common/version.Version=${PROMETHEUS_VERSION/v0./3.}"
# The server for the local platform: without `builtinassets` there is no web UI (the API, /metrics and the lifecycle
# endpoints are all there), and `remove_all_sd` keeps only static, file and HTTP service discovery, which spares the
# cloud SDKs a third of the build. Release 3.16.0 is module v0.316.0: the minor is the module minor's last digits.
PROMETHEUS_MINOR=${PROMETHEUS_VERSION#v0.}
PROMETHEUS_MINOR=${PROMETHEUS_MINOR%%.*}
PROMETHEUS_RELEASE="${PROMETHEUS_MINOR:0:1}.$((10#${PROMETHEUS_MINOR:1})).${PROMETHEUS_VERSION##*.}"
build_tool prometheus github.com/prometheus/prometheus "$PROMETHEUS_VERSION" github.com/prometheus/prometheus/cmd/prometheus \
  "-X github.com/prometheus/common/version.Version=$PROMETHEUS_RELEASE" remove_all_sd

# Alertmanager embeds its web UI from ui/app/dist, which the module zip leaves out (it is built with npm): it is built
# from a writable copy of the module with a one-page placeholder there. The API and webhooks do not need the UI.
build_alertmanager() {
  have alertmanager "$ALERTMANAGER_VERSION" && { log "alertmanager $ALERTMANAGER_VERSION: cached"; return; }
  step=alertmanager
  local src="$WORK_DIR/alertmanager-$ALERTMANAGER_VERSION" module
  cd "$WORK_DIR"
  log "alertmanager $ALERTMANAGER_VERSION: fetching github.com/prometheus/alertmanager"
  module=$(go mod download -json "github.com/prometheus/alertmanager@$ALERTMANAGER_VERSION" 2>"$WORK_DIR/$step.log" \
    | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')
  [ -d "$module" ] || { log "no module directory for alertmanager@$ALERTMANAGER_VERSION"; false; }
  rm -rf "$src" && cp -r "$module" "$src" && chmod -R u+w "$src"
  mkdir -p "$src/ui/app/dist"
  echo '<!doctype html><title>Alertmanager</title><p>UI not built; use the API.</p>' > "$src/ui/app/dist/index.html"
  log "alertmanager $ALERTMANAGER_VERSION: compiling ./cmd/alertmanager"
  (cd "$src" && go build -trimpath \
    -ldflags="-s -w -X github.com/prometheus/common/version.Version=${ALERTMANAGER_VERSION#v}" \
    -o "$BIN_DIR/alertmanager" ./cmd/alertmanager) >>"$WORK_DIR/$step.log" 2>&1
  stamp alertmanager "$ALERTMANAGER_VERSION"
  log "alertmanager $ALERTMANAGER_VERSION: built"
}
build_alertmanager

# kwok needs its stage definitions; the module zip ships the fast ones kwokctl embeds.
step=kwok-stages
KWOK_SRC=$(cd "$WORK_DIR/kwok-$KWOK_VERSION" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)
STAGES="$TOOLS_DIR/kwok-stages.yaml"
if [ ! -s "$STAGES" ]; then
  for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
           pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    cat "$KWOK_SRC/kustomize/stage/$f"; echo "---"
  done > "$STAGES"
fi
trap - ERR
log "all tools ready in $BIN_DIR"
echo "$BIN_DIR"
