#!/usr/bin/env bash
# Validate kind-config.yaml offline: no cluster, no container engine. Builds
# hack/kindcheck (Go, kind's own v1alpha4 types), runs it on the file, then
# proves the check can fail: broken copies of the file must be rejected.
#
#   hack/check-kind-config.sh           check kind-config.yaml (what CI runs)
#   hack/check-kind-config.sh --host    also check the host files the mounts
#                                       name; run before `kind create cluster`
#   hack/check-kind-config.sh FILE      check another file (no broken copies)
#
# The binary is cached as $SANDRUN_CACHE/tools/kindcheck-HASH/kindcheck, HASH
# covering hack/kindcheck/* and the Go version; a (re)build runs its tests
# first. Modules come from the Go module proxy, checked against go.sum.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[[ -x /usr/local/go/bin/go ]] && PATH="$PATH:/usr/local/go/bin"
# As the other Go builds here: no workspace, no silent toolchain download,
# and go.mod/go.sum are used as committed.
export GOWORK=off GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false"

src="$repo/hack/kindcheck"
tools="$SANDRUN_CACHE/tools"

host=() file=""
for arg in "$@"; do
  case "$arg" in
    --host) host=(-host) ;;
    -h|--help) sed -n '2,14s/^# \{0,1\}//p' "$0"; exit 0 ;;
    -*) die "unknown option $arg (see --help)" ;;
    *) [[ -z $file ]] || die "one file at most"; file=$arg ;;
  esac
done
self_test=1
if [[ -n $file ]]; then
  self_test=0
else
  cd "$repo"
  file=kind-config.yaml
fi

command -v go >/dev/null || die "Go is required to build hack/kindcheck"

# kindcheck_bin: path of the binary for the current sources, built if needed.
kindcheck_bin() {
  local key dir tmp start=$SECONDS
  key=$({
    go env GOVERSION
    (cd "$src" && find . -maxdepth 1 -type f | LC_ALL=C sort | while read -r f; do
      printf '== %s\n' "$f"; cat "$f"; done)
  } | sha256sum | cut -c1-16)
  dir="$tools/kindcheck-$key"
  if [[ ! -x $dir/kindcheck ]]; then
    say "building hack/kindcheck ($key)"
    mkdir -p "$tools"
    (cd "$src" && nice -n 10 go test -count=1 ./...) >&2 || die "hack/kindcheck: tests failed"
    tmp=$(mktemp -d "$tools/.kindcheck.XXXXXX")
    # Build to a temp dir and rename, so an interrupted build never leaves a
    # binary that the check above would trust.
    if ! (cd "$src" && nice -n 10 go build -trimpath -ldflags "-s -w" -o "$tmp/kindcheck" .); then
      rm -rf "$tmp"
      die "hack/kindcheck: build failed"
    fi
    rm -rf "$dir"
    mv "$tmp" "$dir"
    # Builds for older sources are dead weight.
    find "$tools" -maxdepth 1 -name 'kindcheck-*' ! -name "kindcheck-$key" -exec rm -rf {} +
    say "built hack/kindcheck in $((SECONDS - start))s"
  fi
  echo "$dir/kindcheck"
}

bin=$(kindcheck_bin)
"$bin" "${host[@]}" "$file"

((self_test)) || exit 0

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# broken NAME SED-SCRIPT: a copy of the file changed by SED-SCRIPT must be
# rejected (exit 1, not 2: 2 means the file could not be read at all).
broken() {
  local name=$1 script=$2 rc=0
  sed -e "$script" "$file" >"$work/broken.yaml"
  cmp -s "$file" "$work/broken.yaml" &&
    die "self-test '$name' no longer changes kind-config.yaml; update it in $0"
  "$bin" "$work/broken.yaml" >"$work/out" 2>&1 || rc=$?
  ((rc == 1)) || { cat "$work/out" >&2; die "self-test '$name': kindcheck exited $rc, want 1"; }
  printf 'rejected as it should be (%s): %s\n' "$name" "$(head -1 "$work/out" | sed "s|$work/||")"
}
broken "misspelt field" 's/^containerdConfigPatches:/containerdConfigPatchs:/'
broken "misspelt mount field" '0,/containerPath: \/usr\/local\/bin\/runsc$/s//containerPth: \/usr\/local\/bin\/runsc/'
broken "runc instead of runsc" 's/runtime_type = "io.containerd.runsc.v1"/runtime_type = "io.containerd.runc.v2"/'
broken "no shim mount" 's|containerPath: /usr/local/bin/containerd-shim-runsc-v1|containerPath: /usr/bin/containerd-shim-runsc-v1|'
