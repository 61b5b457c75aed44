#!/usr/bin/env bash
# Install and build everything the local cluster needs. Idempotent: apt
# packages already present and binaries already in the cache are skipped, so a
# warm run takes about a second.
#
# Outputs (keyed by version, outside the repo, kept between runs):
#   $SANDRUN_CACHE/k8s-$K8S_VERSION/bin/sandrun-k8s  + one symlink per component
#                                                     (etcd kube-apiserver ... kubectl)
#   $SANDRUN_CACHE/containerd-$CONTAINERD_VERSION/bin/{containerd,containerd-shim-runc-v2,ctr}
#   $SANDRUN_CACHE/crictl-$CRICTL_VERSION/bin/crictl
#   $SANDRUN_CACHE/coredns-$COREDNS_VERSION/bin/coredns
#   $SANDRUN_CACHE/kube-router-$KUBE_ROUTER_VERSION/bin/kube-router
#   $SANDRUN_CACHE/gvisor-$GVISOR_VERSION/bin/{runsc,containerd-shim-runsc-v1}
#     (by cluster/build-gvisor.sh, when present)
# Go's own build and module caches stay at their defaults (~/.cache/go-build,
# ~/go/pkg/mod), so a rebuild after a version bump reuses unchanged packages.
set -euo pipefail
LOG_TAG=build
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/lib/common.sh"

APT_PACKAGES=(
  runc containernetworking-plugins             # OCI runtime + CNI plugins
  iptables nftables conntrack iproute2         # kubelet, kube-proxy, CNI
  ipset                                        # kube-router (NetworkPolicy)
  openssl curl jq socat util-linux procps      # PKI, health checks, port-forward
  umoci debootstrap                            # local images without a registry
  python3-yaml                                 # hack/k8s-json-schemas.py (chart lint)
  ca-certificates
)

install_apt_packages() {
  local p missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  log "installing apt packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

check_go() {
  [[ -x /usr/local/go/bin/go ]] && PATH="$PATH:/usr/local/go/bin"
  command -v go >/dev/null || die "Go is required (>= 1.24) to build Kubernetes"
  local v
  v=$(go env GOVERSION | sed 's/^go//')
  # Kubernetes 1.34 needs Go 1.24; GOTOOLCHAIN=local forbids silent downloads.
  [[ $(printf '1.24\n%s\n' "$v" | sort -V | head -1) == 1.24 ]] ||
    die "Go $v is too old; Kubernetes $K8S_VERSION needs Go >= 1.24"
  return 0
}

build_k8s() {
  local out="$K8S_BIN_DIR/sandrun-k8s" c
  mkdir -p "$K8S_BIN_DIR"
  if [[ -x $out ]]; then
    log "sandrun-k8s $K8S_VERSION present (skip)"
  else
    local minor=${K8S_VERSION#v*.} major=${K8S_VERSION#v}
    minor=${minor%%.*} major=${major%%.*}
    local ldflags="-s -w"
    ldflags+=" -X k8s.io/component-base/version.gitVersion=$K8S_VERSION"
    ldflags+=" -X k8s.io/component-base/version.gitMajor=$major"
    ldflags+=" -X k8s.io/component-base/version.gitMinor=$minor"
    ldflags+=" -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
    log "building sandrun-k8s $K8S_VERSION (cold: tens of minutes on 2 cores; warm Go cache: ~1 min)"
    local start=$SECONDS tmp="$out.tmp.$$"
    # Build to a temp name and rename, so an interrupted build never leaves a
    # binary that the "present" check above would trust.
    (cd "$CLUSTER_DIR/k8s" && GOWORK=off GOTOOLCHAIN=local go build -trimpath -ldflags "$ldflags" -o "$tmp" .) ||
      { rm -f "$tmp"; die "sandrun-k8s build failed"; }
    mv "$tmp" "$out"
    log "built sandrun-k8s in $((SECONDS - start))s"
  fi
  for c in "${K8S_COMPONENTS[@]}"; do
    ln -sfn sandrun-k8s "$K8S_BIN_DIR/$c"
  done
}

build_containerd() {
  local bin=$CONTAINERD_BIN_DIR mod="$CLUSTER_DIR/containerd"
  if [[ -x $bin/containerd && -x $bin/containerd-shim-runc-v2 && -x $bin/ctr ]]; then
    log "containerd $CONTAINERD_VERSION present (skip)"
    return 0
  fi
  grep -q "containerd/containerd/v2 $CONTAINERD_VERSION" "$mod/go.mod" ||
    die "cluster/containerd/go.mod does not require containerd $CONTAINERD_VERSION (versions.env)"
  log "building containerd $CONTAINERD_VERSION"
  local start=$SECONDS tmp p
  mkdir -p "$bin"
  tmp=$(mktemp -d "$bin/.build.XXXXXX")
  # Static (CGO off): the btrfs/devmapper snapshotters that need cgo are not
  # used here; overlayfs is.
  (cd "$mod" && GOWORK=off GOTOOLCHAIN=local CGO_ENABLED=0 go build -trimpath \
    -ldflags "-s -w -X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION" \
    -o "$tmp/" github.com/containerd/containerd/v2/cmd/{containerd,containerd-shim-runc-v2,ctr}) ||
    { rm -rf "$tmp"; die "containerd build failed"; }
  for p in containerd containerd-shim-runc-v2 ctr; do mv "$tmp/$p" "$bin/$p"; done
  rm -rf "$tmp"
  log "built containerd in $((SECONDS - start))s"
}

# CoreDNS with the few plugins we use (wrapper module ../coredns).
build_coredns() {
  local mod="$CLUSTER_DIR/coredns" tmp start=$SECONDS
  if [[ -x $COREDNS_BIN ]]; then
    log "coredns $COREDNS_VERSION present (skip)"
    return 0
  fi
  grep -q "coredns/coredns $COREDNS_VERSION" "$mod/go.mod" ||
    die "cluster/coredns/go.mod does not require coredns $COREDNS_VERSION (versions.env)"
  log "building coredns $COREDNS_VERSION"
  mkdir -p "$(dirname "$COREDNS_BIN")"
  tmp="$COREDNS_BIN.tmp.$$"
  (cd "$mod" && GOWORK=off GOTOOLCHAIN=local CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$tmp" .) ||
    { rm -f "$tmp"; die "coredns build failed"; }
  mv "$tmp" "$COREDNS_BIN"
  log "built coredns in $((SECONDS - start))s"
}

# kube-router, run only as the NetworkPolicy engine (wrapper module
# ../kube-router). CGO off: it shells out to iptables and ipset, and its
# netlink use is pure Go.
build_kube_router() {
  local mod="$CLUSTER_DIR/kube-router" tmp start=$SECONDS
  if [[ -x $KUBE_ROUTER_BIN ]]; then
    log "kube-router $KUBE_ROUTER_VERSION present (skip)"
    return 0
  fi
  grep -q "cloudnativelabs/kube-router/v2 $KUBE_ROUTER_VERSION" "$mod/go.mod" ||
    die "cluster/kube-router/go.mod does not require kube-router $KUBE_ROUTER_VERSION (versions.env)"
  log "building kube-router $KUBE_ROUTER_VERSION"
  mkdir -p "$(dirname "$KUBE_ROUTER_BIN")"
  tmp="$KUBE_ROUTER_BIN.tmp.$$"
  (cd "$mod" && GOWORK=off GOTOOLCHAIN=local CGO_ENABLED=0 go build -trimpath \
    -ldflags "-s -w -X github.com/cloudnativelabs/kube-router/v2/pkg/version.Version=$KUBE_ROUTER_VERSION" \
    -o "$tmp" github.com/cloudnativelabs/kube-router/v2/cmd/kube-router) ||
    { rm -f "$tmp"; die "kube-router build failed"; }
  mv "$tmp" "$KUBE_ROUTER_BIN"
  log "built kube-router in $((SECONDS - start))s"
}

build_crictl() {
  local out="$CRICTL_BIN_DIR/crictl"
  if [[ -x $out ]]; then
    log "crictl $CRICTL_VERSION present (skip)"
    return 0
  fi
  log "building crictl $CRICTL_VERSION"
  local start=$SECONDS tmp
  mkdir -p "$CRICTL_BIN_DIR"
  tmp=$(mktemp -d "$CRICTL_BIN_DIR/.build.XXXXXX")
  GOBIN="$tmp" GOWORK=off GOTOOLCHAIN=local CGO_ENABLED=0 go install -trimpath \
    -ldflags "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION" \
    "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION" || { rm -rf "$tmp"; die "crictl build failed"; }
  mv "$tmp/crictl" "$out"
  rm -rf "$tmp"
  log "built crictl in $((SECONDS - start))s"
}

# gVisor has its own script (another owner); it may not exist yet.
build_gvisor() {
  if [[ -f $CLUSTER_DIR/build-gvisor.sh ]]; then
    bash "$CLUSTER_DIR/build-gvisor.sh" >/dev/null
  else
    log "cluster/build-gvisor.sh not found: skipping gVisor (runtimeClassName runsc will not work)"
  fi
}

# Every pod needs the sandbox image localhost/pause; the images build (another
# owner) makes it in seconds. Other images are built by images/build.sh itself.
build_pause_image() {
  if [[ -f $REPO_DIR/images/build.sh ]]; then
    bash "$REPO_DIR/images/build.sh" pause >/dev/null ||
      log "warning: images/build.sh pause failed; pods need $PAUSE_IMAGE"
  else
    log "images/build.sh not found: import $PAUSE_IMAGE yourself"
  fi
}

main() {
  need_root
  local t0
  t0=$(now)
  mkdir -p "$SANDRUN_CACHE"
  # One build at a time: two concurrent Kubernetes builds on 2 cores would
  # each take twice as long and race on the output.
  exec 9>"$SANDRUN_CACHE/.cluster-build.lock"
  flock 9
  install_apt_packages
  check_go
  build_k8s
  build_containerd
  build_crictl
  build_coredns
  build_kube_router
  build_gvisor
  build_pause_image
  log "build complete ($(elapsed "$t0")): $K8S_BIN_DIR"
}

main "$@"
