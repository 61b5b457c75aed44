#!/usr/bin/env bash
# Build gVisor's runsc and containerd-shim-runsc-v1 from the Go module proxy.
#
# Output: $SANDRUN_CACHE/gvisor-$GVISOR_VERSION/bin/{runsc,containerd-shim-runsc-v1}
# Idempotent: does nothing when both binaries exist and were built from the
# same patch set (bin/.patches holds its hash).
#
# Source: module gvisor.dev/gvisor@$GVISOR_VERSION (gVisor's `go` branch) from
# the module proxy, copied to $SANDRUN_CACHE/gvisor-$GVISOR_VERSION/src and
# patched with cluster/gvisor/*.patch. A plain `go install pkg@version` would
# work (no replace directives) but cannot carry patches, and the stock shim
# refuses to start on hosts without CAP_SYS_RESOURCE (see the patch).
#
# Usage: cluster/build-gvisor.sh [--check]
#   --check  also run sanity sandboxes (ptrace and systrap) after building.
# Prints the bin directory on stdout.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=cluster/versions.env
source "$here/versions.env"

cache="${SANDRUN_CACHE:-/var/cache/sandrun}"
out="$cache/gvisor-$GVISOR_VERSION"
bin="$out/bin"
module=gvisor.dev/gvisor

LOG_TAG=build-gvisor
# shellcheck source=cluster/lib/log.sh
source "$here/lib/log.sh"

patches() {
  shopt -s nullglob
  local -a p=("$here"/gvisor/*.patch)
  shopt -u nullglob
  ((${#p[@]})) && printf '%s\n' "${p[@]}"
  return 0
}

patches_hash() {
  local p
  { echo "$GVISOR_VERSION"; patches | while read -r p; do cat "$p"; done; } |
    sha256sum | cut -d' ' -f1
}

built() {
  [[ -x "$bin/runsc" && -x "$bin/containerd-shim-runsc-v1" && -f "$bin/.patches" ]] &&
    [[ "$(cat "$bin/.patches")" == "$(patches_hash)" ]]
}

# prepare_source: fresh patched copy of the module at $out/src.
prepare_source() {
  local dir p
  dir="$(GOFLAGS=-mod=mod GOWORK=off go mod download -json "$module@$GVISOR_VERSION" | jq -r .Dir)"
  [[ -d "$dir" ]] || die "go mod download $module@$GVISOR_VERSION failed"
  rm -rf "$out/src"
  cp -a "$dir" "$out/src"
  # The module cache is read-only; the copy must be writable for patch.
  chmod -R u+w "$out/src"
  while read -r p; do
    [[ -n "$p" ]] || continue
    log "applying $(basename "$p")"
    patch -s -p1 -d "$out/src" --forward <"$p" || die "patch $(basename "$p") does not apply to $GVISOR_VERSION"
  done < <(patches)
}

build() {
  local tmp start=$SECONDS
  log "building gVisor $GVISOR_VERSION (cold build ~2-4 min on 2 cores)"
  mkdir -p "$out"
  prepare_source
  # Build into a temp dir and move in at the end so an interrupted build never
  # leaves a half-populated bin/ that the "skip when present" check trusts.
  tmp="$(mktemp -d "$out/.build.XXXXXX")"
  # CGO_ENABLED=0: a dynamically linked runsc fails to re-exec itself
  # (fork/exec /proc/self/exe) inside its sandbox.
  # The -X stamps what `runsc --version` prints (else VERSION_MISSING).
  # The shim binary's name is what containerd derives from the runtime type
  # io.containerd.runsc.v1.
  if ! (cd "$out/src" && CGO_ENABLED=0 GOWORK=off GOTOOLCHAIN=local \
      go build -trimpath \
        -ldflags="-s -w -X gvisor.dev/gvisor/runsc/version.version=$GVISOR_VERSION" \
        -o "$tmp/runsc" ./runsc &&
      CGO_ENABLED=0 GOWORK=off GOTOOLCHAIN=local \
      go build -trimpath -ldflags="-s -w" \
        -o "$tmp/containerd-shim-runsc-v1" ./shim); then
    rm -rf "$tmp"
    die "go build failed"
  fi
  mkdir -p "$bin"
  mv "$tmp/runsc" "$tmp/containerd-shim-runsc-v1" "$bin/"
  patches_hash >"$bin/.patches"
  rm -rf "$tmp" "$out/src"
  log "built in $((SECONDS - start))s -> $bin"
}

# sanity PLATFORM: run a trivial command in a throwaway sandbox (host rootfs,
# no network) to see whether PLATFORM works on this machine.
sanity() {
  local platform=$1 root rc=0
  root="$(mktemp -d /tmp/runsc-sanity.XXXXXX)"
  timeout 60 "$bin/runsc" --root="$root" --platform="$platform" \
    --network=none --ignore-cgroups "do" echo "hello from $platform" >&2 || rc=$?
  rm -rf "$root"
  if ((rc == 0)); then log "platform $platform: OK"; else log "platform $platform: FAILED ($rc)"; fi
  return "$rc"
}

main() {
  mkdir -p "$cache"
  # cluster/build.sh calls this script too; concurrent builds would trample
  # each other's $out/src (seen as "open ...: no such file" from the compiler).
  exec 9>"$cache/.gvisor-$GVISOR_VERSION.lock"
  flock 9
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
