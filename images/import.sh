#!/usr/bin/env bash
# Import sandrun's OCI archives (from images/build.sh) into containerd's k8s.io
# namespace, so kubelet finds them locally and never pulls (the pods use
# imagePullPolicy: IfNotPresent and the localhost/ names resolve nowhere).
#
#   images/import.sh [ARCHIVE ...]   (default: $SANDRUN_CACHE/images/*.oci.tar)
#
# Idempotent and fast: an image already present under the same name with the
# same manifest digest is skipped.
#
# Env:
#   CONTAINERD_ADDRESS  containerd socket (default /run/containerd/containerd.sock)
#   SANDRUN_CACHE       cache root (default /var/cache/sandrun)
#   SNAPSHOTTER         snapshotter to unpack into (default: containerd's default,
#                       which is what the CRI plugin uses unless configured)
set -euo pipefail

cache="${SANDRUN_CACHE:-/var/cache/sandrun}"
address="${CONTAINERD_ADDRESS:-/run/containerd/containerd.sock}"
readonly NS=k8s.io

LOG_TAG=import
# shellcheck source=cluster/lib/log.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/cluster/lib/log.sh"

ctr_() { ctr --address "$address" -n "$NS" "$@"; }

# archive_meta ARCHIVE -> "NAME DIGEST" of the single image in the archive.
archive_meta() {
  tar -xOf "$1" index.json |
    jq -r '.manifests | if length == 1 then .[0] else error("want 1 manifest") end
      | "\(.annotations["io.containerd.image.name"] // "") \(.digest)"'
}

# present_digest NAME -> digest containerd has for NAME, empty if none.
present_digest() {
  # `ctr images ls` columns: REF TYPE DIGEST SIZE PLATFORMS LABELS
  ctr_ images ls "name==$1" | awk -v n="$1" 'NR > 1 && $1 == n { print $3 }'
}

import_one() {
  local archive=$1 name digest have
  read -r name digest < <(archive_meta "$archive")
  [[ -n "$name" ]] || die "$archive has no io.containerd.image.name annotation (rebuild with images/build.sh)"
  have="$(present_digest "$name")"
  if [[ "$have" == "$digest" ]]; then
    # Re-label even when skipping: cheap, and repairs images imported by hand.
    pin "$name"
    log "$name: present ($digest)"
    return
  fi
  log "$name: importing $archive"
  # --base-name NAME-without-tag: containerd names the image from the
  # io.containerd.image.name annotation (exactly NAME) and uses base-name only
  # to filter, so nothing lands under an "import-<date>" name.
  # Unpacking (the default) creates the snapshot the CRI plugin runs from.
  ctr_ images import --base-name "${name%:*}" ${SNAPSHOTTER:+--snapshotter "$SNAPSHOTTER"} "$archive" >/dev/null
  have="$(present_digest "$name")"
  [[ "$have" == "$digest" ]] || die "$name: after import containerd has '${have:-nothing}', want $digest"
  pin "$name"
}

# pin NAME: containerd >= 1.7 CRI treats io.cri-containerd.pinned=pinned images
# as exempt from kubelet image GC, which would otherwise delete idle images
# that can't be pulled back. Older containerd ignores the label.
pin() {
  ctr_ images label "$1" io.cri-containerd.pinned=pinned >/dev/null
}

main() {
  local -a archives=("$@")
  if [[ ${#archives[@]} -eq 0 ]]; then
    shopt -s nullglob
    archives=("$cache"/images/*.oci.tar)
    shopt -u nullglob
  fi
  [[ ${#archives[@]} -gt 0 ]] || die "no archives in $cache/images; run images/build.sh first"
  [[ -S "$address" ]] || die "containerd socket $address not found (set CONTAINERD_ADDRESS)"
  local a
  for a in "${archives[@]}"; do import_one "$a"; done
}

main "$@"
