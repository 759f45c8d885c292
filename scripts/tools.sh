#!/usr/bin/env bash
# Builds Castellan's external tools from source, pinned by scripts/versions.env.
#
#   scripts/tools.sh [all|nats|etcd|kube|kwok|helm|versions]
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
  local out=$1; local mod="$out/src"
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
  cat >"$mod/tools.go" <<'GO'
//go:build tools

// Pins the commands built from k8s.io/kubernetes.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
  local minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
  local ld="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld="$ld -X $p.gitVersion=$KUBE_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  ( cd "$mod" && go mod tidy \
      && go build -tags tools -ldflags "$ld" -o "$out/" \
        k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
        k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl )
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
}

cmd=${1:-all}
case "$cmd" in
  all) t0=$SECONDS; nats; etcd; kwok; helm; kube; versions; log "tools ready in $((SECONDS - t0))s" ;;
  nats|etcd|kube|kwok|helm|versions) "$cmd" ;;
  *) die "unknown tool '$cmd' (all|nats|etcd|kube|kwok|helm|versions)" ;;
esac
