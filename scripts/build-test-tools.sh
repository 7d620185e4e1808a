#!/usr/bin/env bash
# Builds the binaries the API-server, chart and alert-rule tests run for real:
# kube-apiserver + kubectl, etcd and helm from the Go module proxy, and Debian's prometheus/promtool;
# and, only when named, envoy-ratelimit (envoyproxy/ratelimit, bench:quota's peer service).
# Output goes to the git-ignored .tools/<name>-<version>/, so a second run only checks and exits.
#
#   scripts/build-test-tools.sh [--print-env] [TOOL...]
#     TOOL: etcd, kubernetes (kube-apiserver + kubectl), helm, prometheus (+ promtool), envoy-ratelimit;
#     default all but envoy-ratelimit (only benchmarks run it).
#     Builds what is missing, then prints each tool's path, or with --print-env `export TOKENLEASE_...=`
#     lines only (progress goes to stderr): eval "$(scripts/build-test-tools.sh --print-env)"
#
# GOPATH and GOCACHE stay at Go's defaults (~/go, ~/.cache/go-build) on purpose: CI runs in a fresh
# clone whose .tools/ is empty, and a warm module and build cache outside the clone turns the
# multi-minute first build into a relink. The ~1 GB of modules is shared with any other Go work too.
set -euo pipefail

KUBERNETES_VERSION=v1.34.2
ETCD_VERSION=v3.6.16
HELM_VERSION=v3.22.0
# envoyproxy/ratelimit tags no releases as Go module versions; this is main on 2026-01-22.
ENVOY_RATELIMIT_VERSION=v1.4.1-0.20260122083618-3fb702589d36

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS=$ROOT/.tools
K8S_DIR=$TOOLS/kubernetes-$KUBERNETES_VERSION
ETCD_DIR=$TOOLS/etcd-$ETCD_VERSION
HELM_DIR=$TOOLS/helm-$HELM_VERSION
ENVOY_RATELIMIT_DIR=$TOOLS/envoy-ratelimit-$ENVOY_RATELIMIT_VERSION

PRINT_ENV=0
SELECTED=()
for arg in "$@"; do
  case "$arg" in
    --print-env) PRINT_ENV=1 ;;
    etcd | kubernetes | helm | prometheus | envoy-ratelimit) SELECTED+=("$arg") ;;
    *) echo "usage: $0 [--print-env] [etcd|kubernetes|helm|prometheus|envoy-ratelimit]..." >&2; exit 2 ;;
  esac
done
[[ ${#SELECTED[@]} -gt 0 ]] || SELECTED=(etcd kubernetes helm prometheus)
selected() { [[ " ${SELECTED[*]} " == *" $1 "* ]]; }

log() { echo "build-test-tools: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

export PATH=/usr/local/go/bin:$PATH
# The binaries come from dependency modules; nothing here should ask git about the enclosing repo.
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-buildvcs=false"
# The tools build one after another: a single go build already uses both cores of these machines.

need_go() {
  command -v go >/dev/null || die "go not found (expected at /usr/local/go/bin/go)"
}

# Runs a command, printing it and how long it took.
timed() {
  local start=$SECONDS
  log "\$ $*"
  "$@" >&2 || die "failed: $*"
  log "  done in $((SECONDS - start))s"
}

# A fresh wrapper module in $1 named $2, matching upstream's language version so the GODEBUG
# defaults are the ones upstream ships with.
init_module() {
  local dir=$1 name=$2 go_version=$3
  rm -f "$dir/go.mod" "$dir/go.sum"
  mkdir -p "$dir"
  (cd "$dir" && go mod init "$name" >/dev/null 2>&1 && go mod edit -go="$go_version") ||
    die "cannot create wrapper module in $dir"
}

build_kubernetes() {
  if [[ -x $K8S_DIR/kube-apiserver && -x $K8S_DIR/kubectl ]]; then
    log "kube-apiserver and kubectl $KUBERNETES_VERSION already built in $K8S_DIR"
    return
  fi
  need_go
  log "building kube-apiserver and kubectl $KUBERNETES_VERSION (first time: several minutes, ~1 GB of modules)"
  local staging_version="v0.${KUBERNETES_VERSION#v1.}"
  # k8s.io/kubernetes replaces its staging modules with ./staging paths; list them from its own go.mod
  # so the wrapper replaces exactly those with their published versions.
  local modfile
  modfile=$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
  [[ -f $modfile ]] || die "could not download the go.mod of k8s.io/kubernetes@$KUBERNETES_VERSION"
  local staging
  staging=$(sed -n 's#^[[:space:]]*\(k8s\.io/[a-z0-9-]*\) => \./staging/src/.*#\1#p' "$modfile")
  [[ -n $staging ]] || die "found no staging replace lines in $modfile"
  log "replacing $(wc -w <<<"$staging") staging modules with $staging_version"

  local go_version godebug
  go_version=$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$modfile")
  godebug=$(sed -n 's/^godebug \(.*\)$/\1/p' "$modfile")
  init_module "$K8S_DIR" tokenlease.local/tools/kubernetes "$go_version"
  local m args=()
  for m in $staging; do args+=("-replace=$m=$m@$staging_version"); done
  [[ -n $godebug ]] && args+=("-godebug=$godebug")
  (cd "$K8S_DIR" && go mod edit "${args[@]}") || die "go mod edit failed"

  cd "$K8S_DIR"
  timed go get -tool "k8s.io/kubernetes/cmd/kube-apiserver@$KUBERNETES_VERSION" "k8s.io/kubernetes/cmd/kubectl@$KUBERNETES_VERSION"
  # What Kubernetes' own build stamps in (hack/lib/version.sh); without it the server reports
  # v0.0.0-master and clients warn about version skew.
  local minor=${KUBERNETES_VERSION#v1.}
  minor=${minor%%.*}
  local ldflags="-s -w" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  timed go build -trimpath -ldflags "$ldflags" -o kube-apiserver.tmp k8s.io/kubernetes/cmd/kube-apiserver
  mv kube-apiserver.tmp kube-apiserver
  timed go build -trimpath -ldflags "$ldflags" -o kubectl.tmp k8s.io/kubernetes/cmd/kubectl
  mv kubectl.tmp kubectl
  ./kube-apiserver --version >&2 || die "the built kube-apiserver does not run"
}

build_etcd() {
  if [[ -x $ETCD_DIR/etcd ]]; then
    log "etcd $ETCD_VERSION already built in $ETCD_DIR"
    return
  fi
  need_go
  log "building etcd $ETCD_VERSION"
  init_module "$ETCD_DIR" tokenlease.local/tools/etcd 1.24.0
  cd "$ETCD_DIR"
  timed go get -tool "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  timed go build -trimpath -ldflags "-s -w" -o etcd.tmp go.etcd.io/etcd/server/v3
  mv etcd.tmp etcd
  ./etcd --version >&2 || die "the built etcd does not run"
}

build_helm() {
  if [[ -x $HELM_DIR/helm ]]; then
    log "helm $HELM_VERSION already built in $HELM_DIR"
    return
  fi
  need_go
  log "building helm $HELM_VERSION"
  init_module "$HELM_DIR" tokenlease.local/tools/helm 1.24.0
  cd "$HELM_DIR"
  timed go get -tool "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  # Helm's Makefile stamps its version and the Kubernetes version it assumes (client-go's minor,
  # major + 1); without them it reports an empty version and believes the cluster is 1.20.
  local client_go major minor
  client_go=$(go list -m -f '{{.Version}}' k8s.io/client-go) || die "cannot read helm's client-go version"
  client_go=${client_go#v}
  major=$((${client_go%%.*} + 1))
  minor=${client_go#*.}
  minor=${minor%%.*}
  local ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  local pkg
  for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    ldflags+=" -X $pkg.k8sVersionMajor=$major -X $pkg.k8sVersionMinor=$minor"
  done
  timed go build -trimpath -ldflags "$ldflags" -o helm.tmp helm.sh/helm/v3/cmd/helm
  mv helm.tmp helm
  ./helm version >&2 || die "the built helm does not run"
}

build_envoy_ratelimit() {
  if [[ -x $ENVOY_RATELIMIT_DIR/ratelimit ]]; then
    log "envoyproxy/ratelimit already built in $ENVOY_RATELIMIT_DIR"
    return
  fi
  need_go
  log "building envoyproxy/ratelimit $ENVOY_RATELIMIT_VERSION"
  mkdir -p "$ENVOY_RATELIMIT_DIR"
  # Its own go.mod, unchanged: go install builds it with exactly the dependencies upstream pins.
  GOBIN=$ENVOY_RATELIMIT_DIR timed go install -trimpath -ldflags "-s -w" \
    "github.com/envoyproxy/ratelimit/src/service_cmd@$ENVOY_RATELIMIT_VERSION"
  mv "$ENVOY_RATELIMIT_DIR/service_cmd" "$ENVOY_RATELIMIT_DIR/ratelimit"
}

install_prometheus() {
  if command -v promtool >/dev/null && command -v prometheus >/dev/null; then
    log "prometheus and promtool already installed ($(command -v promtool))"
    return
  fi
  command -v apt-get >/dev/null || die "promtool is missing and apt-get is not available to install Debian's prometheus"
  local sudo=()
  [[ $(id -u) -eq 0 ]] || sudo=(sudo)
  log "installing Debian's prometheus (gives prometheus and promtool)"
  timed "${sudo[@]}" apt-get update -q
  DEBIAN_FRONTEND=noninteractive timed "${sudo[@]}" apt-get install -y -q --no-install-recommends prometheus
  # The package starts a system-wide prometheus on :9090; tests run their own on free ports.
  if command -v systemctl >/dev/null && systemctl is-active --quiet prometheus 2>/dev/null; then
    "${sudo[@]}" systemctl stop prometheus || true
  fi
}

mkdir -p "$TOOLS"
# Two runs at once (a test run's global setup and a manual run) would build into the same folders.
exec 9>"$TOOLS/.build.lock"
if ! flock -n 9; then
  log "another build-test-tools run holds $TOOLS/.build.lock; waiting for it"
  flock 9
fi
total=$SECONDS
selected etcd && build_etcd
selected kubernetes && build_kubernetes
selected helm && build_helm
selected prometheus && install_prometheus
selected envoy-ratelimit && build_envoy_ratelimit
log "ready in $((SECONDS - total))s"

# One line per selected tool: `export VAR=path` with --print-env, `name path` otherwise.
emit() {
  if [[ $PRINT_ENV == 1 ]]; then
    echo "export $2=$3"
  else
    printf '%-15s %s\n' "$1" "$3"
  fi
}
if selected etcd; then emit etcd TOKENLEASE_ETCD "$ETCD_DIR/etcd"; fi
if selected kubernetes; then
  emit kube-apiserver TOKENLEASE_KUBE_APISERVER "$K8S_DIR/kube-apiserver"
  emit kubectl TOKENLEASE_KUBECTL "$K8S_DIR/kubectl"
fi
if selected helm; then emit helm TOKENLEASE_HELM "$HELM_DIR/helm"; fi
if selected envoy-ratelimit; then emit envoy-ratelimit TOKENLEASE_ENVOY_RATELIMIT "$ENVOY_RATELIMIT_DIR/ratelimit"; fi
if selected prometheus; then
  emit prometheus TOKENLEASE_PROMETHEUS "$(command -v prometheus)"
  emit promtool TOKENLEASE_PROMTOOL "$(command -v promtool)"
fi
