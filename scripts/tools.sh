#!/usr/bin/env bash
# Builds Castellan's external tools from source, pinned by scripts/versions.env.
#
#   scripts/tools.sh [all|nats|etcd|kube|kubenode|kwok|helm|node-runtime|versions]
#
# Each tool is built once per version into a cache outside the work tree
# ($CASTELLAN_TOOLS_CACHE, default ~/.cache/castellan/tools) and linked into
# .tools/bin, so a fresh clone on a machine that built them before is ready in
# seconds. A tool whose pinned version is already present is skipped.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=versions.env
. "$root/scripts/versions.env"
cache=${CASTELLAN_TOOLS_CACHE:-$HOME/.cache/castellan/tools}
bin="$root/.tools/bin"
mkdir -p "$cache" "$bin"

export GOFLAGS="${GOFLAGS:--buildvcs=false} -trimpath"
export CGO_ENABLED=0

log() { printf '[tools %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

command -v go >/dev/null || { [ -x /usr/local/go/bin/go ] && export PATH="/usr/local/go/bin:$PATH"; } || true
command -v go >/dev/null || die "Go is required to build the tools (https://go.dev/dl); none on PATH or at /usr/local/go/bin"

# link NAME... from a built directory into .tools/bin
link() {
  local dir=$1; shift
  for n in "$@"; do
    [ -x "$dir/$n" ] || die "$dir/$n was not built"
    ln -sfn "$dir/$n" "$bin/$n"
  done
}

# run a build step with timing; a failed step removes its half-built dir
build() {
  local name=$1 dir=$2; shift 2
  local t0=$SECONDS tmp="$dir.partial"
  rm -rf "$tmp"; mkdir -p "$tmp"
  log "building $name (first build only; cached afterwards)"
  if ! ( "$@" "$tmp" ); then rm -rf "$tmp"; die "building $name failed"; fi
  rm -rf "$dir"; mv "$tmp" "$dir"
  log "built $name in $((SECONDS - t0))s"
}

nats() {
  local dir="$cache/nats-server-$NATS_SERVER_VERSION"
  [ -x "$dir/nats-server" ] || build "nats-server $NATS_SERVER_VERSION" "$dir" _nats
  link "$dir" nats-server
}
_nats() { GOBIN="$1" go install "github.com/nats-io/nats-server/v2@$NATS_SERVER_VERSION"; }

etcd() {
  local dir="$cache/etcd-$ETCD_VERSION"
  [ -x "$dir/etcd" ] || build "etcd $ETCD_VERSION" "$dir" _etcd
  link "$dir" etcd
}
_etcd() {
  local out=$1; local mod="$out/src"
  mkdir -p "$mod"
  cat >"$mod/go.mod" <<MOD
module castellan.dev/tools/etcd

go 1.26

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
MOD
  cat >"$mod/main.go" <<'GO'
// etcd built from go.etcd.io/etcd/server/v3 for Castellan's test control plane.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  ( cd "$mod" && go mod tidy && go build -ldflags "-s -w" -o "$out/etcd" . )
}

kube() {
  local dir="$cache/kubernetes-$KUBE_VERSION"
  [ -x "$dir/kube-apiserver" ] && [ -x "$dir/kubectl" ] || build "kubernetes $KUBE_VERSION (kube-apiserver, kube-controller-manager, kube-scheduler, kubectl)" "$dir" _kube
  link "$dir" kube-apiserver kube-controller-manager kube-scheduler kubectl
}
_kube() {
  _kube_build "$1" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl
}
# _kube_build OUT PKG...: builds commands of k8s.io/kubernetes@$KUBE_VERSION into OUT
_kube_build() {
  local out=$1; shift; local mod="$out/src"
  mkdir -p "$mod"
  # k8s.io/kubernetes replaces its staging modules with ./staging paths that do
  # not exist in the module download; replace each with its published version.
  local gomod
  gomod=$(cd "$mod" && go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
  [ -f "$gomod" ] || die "could not download k8s.io/kubernetes@$KUBE_VERSION"
  {
    printf 'module castellan.dev/tools/kubernetes\n\ngo 1.26\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n' "$KUBE_VERSION"
    sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\t\1 => \1 '"$KUBE_STAGING_VERSION"'#p' "$gomod"
    printf ')\n'
  } >"$mod/go.mod"
  {
    printf '//go:build tools\n\n// Pins the commands built from k8s.io/kubernetes.\npackage tools\n\nimport (\n'
    for p in "$@"; do printf '\t_ "%s"\n' "$p"; done
    printf ')\n'
  } >"$mod/tools.go"
  local minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
  local ld="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld="$ld -X $p.gitVersion=$KUBE_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  ( cd "$mod" && go mod tidy \
      && go build -tags tools -ldflags "$ld" -o "$out/" "$@" )
}

# kubelet and kube-proxy for real local nodes (`castellan cluster up --nodes N`),
# from the same pinned k8s.io/kubernetes source as the control plane. Their own
# cache directory, so adding them never rebuilds the control plane; the Go build
# cache shares every package the two builds have in common.
kubenode() {
  local dir="$cache/kubernetes-node-$KUBE_VERSION"
  [ -x "$dir/kubelet" ] && [ -x "$dir/kube-proxy" ] || build "kubernetes $KUBE_VERSION node (kubelet, kube-proxy)" "$dir" _kubenode
  link "$dir" kubelet kube-proxy
  pause
}
_kubenode() { _kube_build "$1" k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy; }

# The pod sandbox process (what registry.k8s.io/pause does: sleep, reap zombies,
# exit on SIGINT/SIGTERM), static, for the locally built sandbox image.
pause() {
  local dir="$cache/pause-$PAUSE_VERSION"
  [ -x "$dir/pause" ] || build "pause $PAUSE_VERSION" "$dir" _pause
  link "$dir" pause
}
_pause() {
  local out=$1; local mod="$out/src"
  mkdir -p "$mod"
  printf 'module castellan.dev/tools/pause\n\ngo 1.26\n' >"$mod/go.mod"
  cat >"$mod/main.go" <<'GO'
// pause: the pod sandbox process. Holds the pod's namespaces, reaps orphaned
// children (it is PID 1 of the pod), exits 0 on SIGINT or SIGTERM.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
GO
  ( cd "$mod" && go build -ldflags "-s -w" -o "$out/pause" . )
}

# The container runtime of real nodes comes from the distribution: containerd
# (CRI v1, which kubelet 1.34 requires; Debian bookworm ships 1.6.20), runc, the
# CNI plugins (bridge, host-local, loopback, portmap), and iptables/conntrack for
# kube-proxy. Installed with apt-get where missing (needs root, like the nodes).
node_runtime() {
  local missing=()
  command -v containerd >/dev/null || missing+=(containerd)
  command -v runc >/dev/null || missing+=(runc)
  [ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
  command -v iptables >/dev/null || missing+=(iptables)
  command -v conntrack >/dev/null || missing+=(conntrack)
  if [ ${#missing[@]} -gt 0 ]; then
    command -v apt-get >/dev/null || die "real nodes need ${missing[*]}; install them with your package manager"
    log "installing ${missing[*]} (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  log "containerd: $(containerd --version 2>&1)"
}

# `all` installs the node runtime only as root (CI, the dev VM); elsewhere it says how.
runtime_if_root() {
  if [ "$(id -u)" = 0 ]; then node_runtime
  else log "real nodes (castellan cluster up --nodes N) need root and containerd, runc, CNI plugins: sudo scripts/tools.sh node-runtime"; fi
}

kwok() {
  local dir="$cache/kwok-$KWOK_VERSION"
  [ -x "$dir/kwokctl" ] && [ -x "$dir/kwok" ] || build "kwok $KWOK_VERSION" "$dir" _kwok
  link "$dir" kwok kwokctl
}
_kwok() {
  local ld="-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=$KUBE_VERSION"
  GOBIN="$1" go install -ldflags "$ld" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" "sigs.k8s.io/kwok/cmd/kwokctl@$KWOK_VERSION"
}

helm() {
  local dir="$cache/helm-$HELM_VERSION"
  [ -x "$dir/helm" ] || build "helm $HELM_VERSION" "$dir" _helm
  link "$dir" helm
}
_helm() {
  local major=${HELM_VERSION%%.*}
  local ld="-s -w -X helm.sh/helm/$major/internal/version.version=$HELM_VERSION"
  GOBIN="$1" go install -ldflags "$ld" "helm.sh/helm/$major/cmd/helm@$HELM_VERSION"
}

versions() {
  log "nats-server: $("$bin/nats-server" --version 2>&1)"
  log "etcd: $("$bin/etcd" --version 2>&1 | head -1)"
  log "kube-apiserver: $("$bin/kube-apiserver" --version 2>&1)"
  log "kubectl: $("$bin/kubectl" version --client 2>&1 | head -1)"
  log "kwokctl: $("$bin/kwokctl" --version 2>&1)"
  log "helm: $("$bin/helm" version --short 2>&1)"
  [ -x "$bin/kubelet" ] && log "kubelet: $("$bin/kubelet" --version 2>&1)"
  true
}

cmd=${1:-all}
case "$cmd" in
  all) t0=$SECONDS; nats; etcd; kwok; helm; kube; kubenode; runtime_if_root; versions; log "tools ready in $((SECONDS - t0))s" ;;
  nats|etcd|kube|kubenode|pause|kwok|helm|versions) "$cmd" ;;
  node-runtime) node_runtime ;;
  *) die "unknown tool '$cmd' (all|nats|etcd|kube|kubenode|pause|kwok|helm|node-runtime|versions)" ;;
esac
