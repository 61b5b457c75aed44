#!/usr/bin/env bash
# Build gVisor's runsc and containerd-shim-runsc-v1 from the Go module proxy.
#
# Output: $SANDRUN_CACHE/gvisor-$GVISOR_VERSION/bin/{runsc,containerd-shim-runsc-v1}
# Idempotent: does nothing when both binaries already exist for this version.
#
# Usage: cluster/build-gvisor.sh [--check]
#   --check  also run sanity sandboxes (ptrace and systrap) after building.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"

cache="${SANDRUN_CACHE:-/var/cache/sandrun}"
out="$cache/gvisor-$GVISOR_VERSION"
bin="$out/bin"
# gVisor's go.mod has no replace directives, so `go install pkg@version` works
# without a wrapper module. Both packages live in the same module version.
pkgs=(gvisor.dev/gvisor/runsc gvisor.dev/gvisor/shim)

log() { printf '[build-gvisor] %s\n' "$*" >&2; }

built() {
  [[ -x "$bin/runsc" && -x "$bin/containerd-shim-runsc-v1" ]]
}

build() {
  local tmp
  # Build into a temp dir and move in at the end so an interrupted build never
  # leaves a half-populated bin/ that the "skip when present" check trusts.
  tmp="$(mktemp -d "$cache/.gvisor-build.XXXXXX")"
  log "building gVisor $GVISOR_VERSION (cold build takes several minutes on 2 cores)"
  local p start=$SECONDS
  for p in "${pkgs[@]}"; do
    # CGO_ENABLED=0: a dynamically linked runsc fails to re-exec itself
    # (fork/exec /proc/self/exe) inside its sandbox.
    # GOWORK=off keeps a go.work in a parent directory from interfering.
    # The -X stamps the version `runsc --version` prints (else VERSION_MISSING).
    GOBIN="$tmp" CGO_ENABLED=0 GOWORK=off GOTOOLCHAIN=local \
      go install -trimpath \
      -ldflags="-s -w -X gvisor.dev/gvisor/runsc/version.version=$GVISOR_VERSION" \
      "$p@$GVISOR_VERSION" || { rm -rf "$tmp"; return 1; }
  done
  # The shim package builds a binary named "shim"; containerd looks it up by
  # the runtime type io.containerd.runsc.v1 -> containerd-shim-runsc-v1.
  mv "$tmp/shim" "$tmp/containerd-shim-runsc-v1"
  mkdir -p "$bin"
  mv "$tmp/runsc" "$tmp/containerd-shim-runsc-v1" "$bin/"
  rmdir "$tmp"
  log "built in $((SECONDS - start))s -> $bin"
}

# sanity PLATFORM: run a trivial command in a throwaway rootless sandbox.
sanity() {
  local platform=$1 root
  root="$(mktemp -d /tmp/runsc-sanity.XXXXXX)"
  if timeout 60 "$bin/runsc" --root="$root" --platform="$platform" \
      --network=none --ignore-cgroups do echo "hello from $platform" >&2; then
    log "platform $platform: OK"
  else
    log "platform $platform: FAILED"
    rm -rf "$root"
    return 1
  fi
  rm -rf "$root"
}

main() {
  mkdir -p "$cache"
  if built; then
    log "present: $bin (skip)"
  else
    build
  fi
  "$bin/runsc" --version >&2
  if [[ "${1:-}" == "--check" ]]; then
    sanity ptrace
    sanity systrap || log "systrap unavailable here; use ptrace"
  fi
  echo "$bin"
}

main "$@"
