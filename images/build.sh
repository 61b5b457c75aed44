#!/usr/bin/env bash
# Build sandrun's OCI image archives without a Docker engine.
#
#   images/build.sh [pause|python|node|bash|runner|operator|gateway ...]   (default: all)
#
# Output: $SANDRUN_CACHE/images/<name>_<tag>.oci.tar, one image per archive,
# named so that `ctr -n k8s.io images import <archive>` (or images/import.sh)
# registers exactly:
#   localhost/pause:$PAUSE_VERSION            static C pause binary
#   localhost/sandrun-python:$DEBIAN_SUITE    python3 / python
#   localhost/sandrun-node:$DEBIAN_SUITE      node
#   localhost/sandrun-bash:$DEBIAN_SUITE      bash
#   localhost/sandrun-runner:dev              static /sandrun-runner only
#   localhost/sandrun-operator:dev            static /sandrun-operator only
#   localhost/sandrun-gateway:dev             static /sandrun-gateway only
#
# Each archive is rebuilt only when its key (hash of this script, versions.env
# and the image's own inputs) changes. The Debian rootfs comes from
# debootstrap --variant=minbase (built once, then copied per runtime image);
# umoci turns a layer tarball into an OCI layout, and tar makes the archive.
#
# Env:
#   SANDRUN_CACHE  cache root (default /var/cache/sandrun)
#   RUNNER_BIN     static sandrun-runner binary (default
#                  ${CARGO_TARGET_DIR:-<repo>/target}/release/sandrun-runner, else
#                  the same under x86_64-unknown-linux-{gnu,musl}/)
#   OPERATOR_BIN, GATEWAY_BIN  static operator and gateway binaries (default:
#                  the x86_64-unknown-linux-gnu/release ones of CARGO_TARGET_DIR)
#   DEBIAN_MIRROR  override the mirror taken from the host's apt config
#   FORCE=1        rebuild even when the key matches
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
# shellcheck source=cluster/versions.env
source "$repo/cluster/versions.env"
LOG_TAG=images
# shellcheck source=cluster/lib/log.sh
source "$repo/cluster/lib/log.sh"

cache="${SANDRUN_CACHE:-/var/cache/sandrun}"
out_dir="$cache/images"
work="$out_dir/work"

# default_runner_bin: the plain `cargo build --release` output, or else a
# static build made with an explicit --target (crt-static needs one).
default_runner_bin() {
  local t="${CARGO_TARGET_DIR:-$repo/target}" c
  for c in "$t/release/sandrun-runner" \
    "$t/x86_64-unknown-linux-gnu/release/sandrun-runner" \
    "$t/x86_64-unknown-linux-musl/release/sandrun-runner"; do
    [[ -f "$c" ]] && { echo "$c"; return; }
  done
  echo "$t/release/sandrun-runner"
}
runner_bin="${RUNNER_BIN:-$(default_runner_bin)}"
static_dir="${CARGO_TARGET_DIR:-$repo/target}/x86_64-unknown-linux-gnu/release"
operator_bin="${OPERATOR_BIN:-$static_dir/sandrun-operator}"
gateway_bin="${GATEWAY_BIN:-$static_dir/sandrun-gateway}"

readonly SANDBOX_UID=65532
readonly PATH_ENV="PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
readonly ALL_IMAGES=(pause python node bash runner operator gateway)

# ---------------------------------------------------------------- naming

# image_ref IMG -> full reference containerd must end up with.
image_ref() {
  case "$1" in
    pause)  echo "localhost/pause:$PAUSE_VERSION" ;;
    python) echo "localhost/sandrun-python:$DEBIAN_SUITE" ;;
    node)   echo "localhost/sandrun-node:$DEBIAN_SUITE" ;;
    bash)   echo "localhost/sandrun-bash:$DEBIAN_SUITE" ;;
    runner|operator|gateway) echo "localhost/sandrun-$1:dev" ;;
    *) die "unknown image '$1' (known: ${ALL_IMAGES[*]})" ;;
  esac
}

# archive_path IMG -> where the oci-archive lives (localhost/a:b -> a_b.oci.tar).
archive_path() {
  local ref name
  ref="$(image_ref "$1")"
  name="${ref#localhost/}"
  echo "$out_dir/${name/:/_}.oci.tar"
}

# ---------------------------------------------------------------- cache keys

sha() { sha256sum "$@" | cut -d' ' -f1; }

# Common inputs: this script and the versions images are built from (not all
# of versions.env, so a Kubernetes or gVisor bump doesn't rebuild images).
# Anything else an image depends on is appended per image.
common_key() {
  { cat "$here/build.sh"; echo "$DEBIAN_SUITE $PAUSE_VERSION"; } | sha
}

image_key() {
  local img=$1
  {
    common_key
    echo "$img"
    case "$img" in
      pause) cat "$here/pause/pause.c" ;;
      runner|operator|gateway) sha "$(binary_of "$img")" ;;
      python|node|bash) debian_mirror ;;
    esac
  } | sha
}

# binary_of IMG -> the static binary a one-binary image holds.
binary_of() {
  case "$1" in
    runner) echo "$runner_bin" ;;
    operator) echo "$operator_bin" ;;
    gateway) echo "$gateway_bin" ;;
  esac
}

# up_to_date IMG KEY: archive exists and was built from the same inputs.
up_to_date() {
  local archive
  archive="$(archive_path "$1")"
  [[ "${FORCE:-0}" != 1 && -f "$archive" && -f "$archive.key" ]] &&
    [[ "$(cat "$archive.key")" == "$2" ]]
}

# ---------------------------------------------------------------- apt config

# Print "URI SUITES..." for each deb822 stanza of the host's apt sources, so
# images use the same mirror the machine is configured (and allowed) to use.
host_apt_sources() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -f "$f" ]] || continue
    awk '
      /^[[:space:]]*$/ { if (u != "") print u, s; u = ""; s = ""; next }
      /^URIs:/   { u = $2 }
      /^Suites:/ { $1 = ""; s = $0 }
      END { if (u != "") print u, s }' "$f"
  done
  if [[ -f /etc/apt/sources.list ]]; then
    awk '$1 == "deb" && $2 !~ /^\[/ { print $2, $3 }' /etc/apt/sources.list
  fi
}

# Main archive mirror: the source carrying the plain suite.
debian_mirror() {
  if [[ -n "${DEBIAN_MIRROR:-}" ]]; then echo "$DEBIAN_MIRROR"; return; fi
  host_apt_sources | awk -v s="$DEBIAN_SUITE" \
    '{ for (i = 2; i <= NF; i++) if ($i == s) { print $1; exit } }' |
    grep . || die "no apt source for suite $DEBIAN_SUITE; set DEBIAN_MIRROR"
}

# Security mirror (optional): the source carrying <suite>-security.
security_mirror() {
  host_apt_sources | awk -v s="$DEBIAN_SUITE-security" \
    '{ for (i = 2; i <= NF; i++) if ($i == s) { print $1; exit } }'
}

# ---------------------------------------------------------------- chroot

# Unmount anything we mounted below $work (also run on exit/interrupt).
unmount_work() {
  local m
  # Deepest first; /proc/mounts escapes spaces, our paths have none.
  awk -v w="$work/" 'index($2, w) == 1 { print $2 }' /proc/mounts | sort -r |
    while read -r m; do umount -l "$m" || true; done
}

# in_chroot ROOT CMD...: run CMD inside ROOT with /proc and DNS available.
in_chroot() {
  local root=$1 rc=0
  shift
  mountpoint -q "$root/proc" || mount -t proc proc "$root/proc"
  cp -L /etc/resolv.conf "$root/etc/resolv.conf"
  env -i PATH="${PATH_ENV#PATH=}" HOME=/root LC_ALL=C.UTF-8 \
    DEBIAN_FRONTEND=noninteractive chroot "$root" "$@" || rc=$?
  umount "$root/proc"
  # The runtime bind-mounts its own resolv.conf; ship an empty one.
  : >"$root/etc/resolv.conf"
  chmod 0644 "$root/etc/resolv.conf"
  return "$rc"
}

# trim ROOT: drop caches, docs and logs nothing at runtime reads.
trim_rootfs() {
  local root=$1
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* \
    "$root"/var/cache/debconf/*-old "$root"/var/lib/dpkg/*-old \
    "$root"/var/log/* "$root"/root/.cache "$root"/tmp/* "$root"/var/tmp/* \
    "$root"/usr/share/man/* "$root"/usr/share/info/* \
    "$root"/usr/share/lintian "$root"/usr/share/linda
  # Keep copyright files (licences), drop the rest of /usr/share/doc.
  find "$root/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete 2>/dev/null || true
  find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
  # Locales other than the C/POSIX ones built into libc.
  find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias \
    -exec rm -rf {} + 2>/dev/null || true
}

# ---------------------------------------------------------------- rootfs

# Write apt config into ROOT: mirrors from the host, no recommends, and dpkg
# path excludes so later installs don't bring docs/man pages back.
configure_apt() {
  local root=$1 mirror sec
  mirror="$(debian_mirror)"
  sec="$(security_mirror)"
  {
    printf 'Types: deb\nURIs: %s\nSuites: %s %s-updates\nComponents: main\n' \
      "$mirror" "$DEBIAN_SUITE" "$DEBIAN_SUITE"
    printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
    if [[ -n "$sec" ]]; then
      printf '\nTypes: deb\nURIs: %s\nSuites: %s-security\nComponents: main\n' \
        "$sec" "$DEBIAN_SUITE"
      printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
    fi
  } >"$root/etc/apt/sources.list.d/debian.sources"
  rm -f "$root/etc/apt/sources.list"
  cat >"$root/etc/apt/apt.conf.d/90sandrun" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
// No pty in the build chroot; avoids "Can not write log (Is /dev/pts mounted?)".
Dpkg::Use-Pty "0";
EOF
  cat >"$root/etc/dpkg/dpkg.cfg.d/90sandrun-nodoc" <<'EOF'
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-include=/usr/share/locale/locale.alias
path-exclude=/usr/share/lintian/*
EOF
  # Nothing we install should start services inside the chroot.
  printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
  chmod 0755 "$root/usr/sbin/policy-rc.d"
}

# Add the unprivileged sandbox user by editing the files directly: minbase
# has no useradd (the passwd package is not Essential).
add_sandbox_user() {
  local root=$1 u=$SANDBOX_UID
  grep -q "^sandbox:" "$root/etc/group" ||
    echo "sandbox:x:$u:" >>"$root/etc/group"
  grep -q "^sandbox:" "$root/etc/passwd" ||
    echo "sandbox:x:$u:$u:sandbox:/workspace:/usr/sbin/nologin" >>"$root/etc/passwd"
  if [[ -f "$root/etc/shadow" ]] && ! grep -q "^sandbox:" "$root/etc/shadow"; then
    echo "sandbox:!:19000::::::" >>"$root/etc/shadow"
  fi
  # Mount points for the pod's emptyDirs; owned by the sandbox user so the
  # image also works without them (e.g. plain `ctr run`).
  install -d -m 0755 -o "$u" -g "$u" "$root/workspace"
  install -d -m 1777 "$root/tmp"
}

# The debootstrapped, upgraded, trimmed base shared by python/node/bash.
# Built once per key into $work/base-<key>/ (a "done" marker guards partials).
base_rootfs() {
  local key dir mirror start
  key="$(printf '%s\n%s\n' "$(common_key)" "$(debian_mirror)" | sha | cut -c1-16)"
  dir="$work/base-$key"
  if [[ -f "$dir.done" ]]; then echo "$dir"; return; fi
  # Older bases are dead weight once the key changes.
  rm -rf "$work"/base-* "$dir"
  mirror="$(debian_mirror)"
  log "debootstrap $DEBIAN_SUITE (minbase) from $mirror"
  start=$SECONDS
  debootstrap --variant=minbase --components=main \
    "$DEBIAN_SUITE" "$dir" "$mirror" >"$work/debootstrap.log" 2>&1 ||
    { tail -20 "$work/debootstrap.log" >&2; die "debootstrap failed"; }
  log "debootstrap took $((SECONDS - start))s"
  configure_apt "$dir"
  # Pick up bookworm-updates / -security fixes the release pool lacks.
  in_chroot "$dir" sh -c 'apt-get update -qq && apt-get -y -qq upgrade && apt-get clean' >&2
  add_sandbox_user "$dir"
  trim_rootfs "$dir"
  touch "$dir.done"
  log "base rootfs ready ($(du -sh "$dir" | cut -f1)) in $((SECONDS - start))s"
  echo "$dir"
}

# runtime_rootfs IMG DIR: copy of the base plus IMG's packages.
runtime_rootfs() {
  local img=$1 dir=$2 base pkgs
  case "$img" in
    python) pkgs="python3 python-is-python3" ;;
    node)   pkgs="nodejs" ;;
    bash)   pkgs="" ;;   # bash is Essential: already in minbase
  esac
  base="$(base_rootfs)"
  rm -rf "$dir"
  cp -a "$base" "$dir"
  if [[ -n "$pkgs" ]]; then
    log "$img: apt-get install $pkgs"
    # shellcheck disable=SC2086 # word splitting of the package list is wanted
    in_chroot "$dir" sh -c "apt-get update -qq && apt-get install -y -qq $pkgs && apt-get clean" >&2
  fi
  trim_rootfs "$dir"
  # Sanity: the interpreters the pods call must exist under these names.
  case "$img" in
    python) check_exists "$dir" /usr/bin/python3 /usr/bin/python ;;
    node)   check_exists "$dir" /usr/bin/node ;;
    bash)   check_exists "$dir" /usr/bin/bash ;;
  esac
}

check_exists() {
  local root=$1 p
  shift
  for p in "$@"; do
    [[ -e "$root$p" || -L "$root$p" ]] || die "missing $p in $root"
  done
}

# ---------------------------------------------------------------- layers

# layer_tar DIR OUT: uncompressed layer tarball of DIR with numeric owners,
# sorted entries, and empty /dev /proc /sys (the runtime provides those).
layer_tar() {
  local dir=$1 out=$2
  tar -C "$dir" --numeric-owner --sort=name --one-file-system \
    --xattrs --xattrs-include='security.capability' \
    --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' \
    --exclude='./run/*' \
    -cf "$out" .
}

# static_check BIN: refuse binaries that need a dynamic loader, since the
# pause and one-binary images contain no libc.
static_check() {
  local bin=$1
  if readelf -lW "$bin" 2>/dev/null | grep -q 'Requesting program interpreter'; then
    die "$bin is dynamically linked; the image has no libc. Build it static, e.g.
  RUSTFLAGS='-C target-feature=+crt-static' cargo build --release -p sandrun-runner --target x86_64-unknown-linux-gnu
  (or --target x86_64-unknown-linux-musl) and point RUNNER_BIN at the result."
  fi
}

# ---------------------------------------------------------------- OCI

# oci_archive IMG LAYER_TAR OUT CONFIG_ARGS...: wrap one layer into an OCI
# layout with umoci, name it for containerd and tar the layout up.
oci_archive() {
  local img=$1 layer=$2 out=$3 ref tag layout
  shift 3
  ref="$(image_ref "$img")"
  tag="${ref##*:}"
  layout="$work/$img-layout"
  rm -rf "$layout"
  umoci init --layout "$layout"
  umoci new --image "$layout:$tag"
  umoci raw add-layer --image "$layout:$tag" \
    --history.created_by "sandrun images/build.sh ($img)" "$layer"
  umoci config --image "$layout:$tag" \
    --config.label "org.opencontainers.image.title=$ref" \
    --config.label "org.opencontainers.image.source=sandrun" \
    "$@"
  umoci gc --layout "$layout"
  name_index "$layout" "$ref" "$tag"
  # oci-archive = the layout directory as a plain tar (what ctr import reads).
  tar -C "$layout" --numeric-owner --sort=name -cf "$out.tmp" oci-layout index.json blobs
  mv -f "$out.tmp" "$out"
  rm -rf "$layout"
}

# name_index LAYOUT REF TAG: containerd's importer takes the image name from
# io.containerd.image.name first; org.opencontainers.image.ref.name (the bare
# tag umoci writes) is combined with `ctr import --base-name`. Set both so
# either import style yields exactly REF.
name_index() {
  local layout=$1 ref=$2 tag=$3 tmp
  tmp="$layout/index.json.tmp"
  jq --arg ref "$ref" --arg tag "$tag" '
    .manifests |= map(select(.annotations["org.opencontainers.image.ref.name"] == $tag)
      | .annotations["io.containerd.image.name"] = $ref)' \
    "$layout/index.json" >"$tmp"
  [[ "$(jq '.manifests | length' "$tmp")" == 1 ]] || die "expected one manifest in $layout"
  mv "$tmp" "$layout/index.json"
}

# ---------------------------------------------------------------- images

build_pause() {
  local out=$1 root="$work/pause-root"
  rm -rf "$root"
  install -d "$root"
  gcc -static -Os -s -Wall -Wextra -Werror -o "$root/pause" "$here/pause/pause.c"
  static_check "$root/pause"
  layer_tar "$root" "$work/pause.tar"
  # 65535 like the upstream pause image: the sandbox needs no privileges.
  oci_archive pause "$work/pause.tar" "$out" \
    --config.user 65535:65535 --config.entrypoint /pause --config.env "$PATH_ENV"
  rm -rf "$root" "$work/pause.tar"
}

# build_binary_image IMG OUT: a single static binary, no libc, no shell,
# run as the unprivileged sandbox uid.
build_binary_image() {
  local img=$1 out=$2 bin
  local root="$work/$img-root"
  bin="$(binary_of "$img")"
  static_check "$bin"
  rm -rf "$root"
  install -d "$root"
  install -m 0755 -o 0 -g 0 "$bin" "$root/sandrun-$img"
  layer_tar "$root" "$work/$img.tar"
  oci_archive "$img" "$work/$img.tar" "$out" \
    --config.user "$SANDBOX_UID:$SANDBOX_UID" --config.entrypoint "/sandrun-$img" \
    --config.env "$PATH_ENV"
  rm -rf "$root" "$work/$img.tar"
}

build_runtime() {
  local img=$1 out=$2 cmd
  local dir="$work/$img-rootfs"
  local -a env=(--config.env "$PATH_ENV" --config.env "HOME=/workspace"
    --config.env "LANG=C.UTF-8")
  case "$img" in
    python) cmd=python3
      env+=(--config.env PYTHONDONTWRITEBYTECODE=1 --config.env PYTHONUNBUFFERED=1) ;;
    node) cmd=node ;;
    bash) cmd=bash ;;
  esac
  runtime_rootfs "$img" "$dir"
  layer_tar "$dir" "$work/$img.tar"
  oci_archive "$img" "$work/$img.tar" "$out" \
    --config.user "$SANDBOX_UID:$SANDBOX_UID" --config.workingdir /workspace \
    --config.cmd "$cmd" "${env[@]}"
  rm -rf "$dir" "$work/$img.tar"
}

build_image() {
  local img=$1 key out start
  case "$img" in
    runner|operator|gateway)
      [[ -f "$(binary_of "$img")" ]] || die "$img binary not found: $(binary_of "$img")
  Build it static: RUSTFLAGS='-C target-feature=+crt-static' cargo build --release -p sandrun-$img --target x86_64-unknown-linux-gnu" ;;
  esac
  key="$(image_key "$img")"
  out="$(archive_path "$img")"
  if up_to_date "$img" "$key"; then
    log "$(image_ref "$img"): up to date ($out)"
    return
  fi
  start=$SECONDS
  log "$(image_ref "$img"): building"
  rm -f "$out.key"
  case "$img" in
    pause) build_pause "$out" ;;
    runner|operator|gateway) build_binary_image "$img" "$out" ;;
    python|node|bash) build_runtime "$img" "$out" ;;
  esac
  echo "$key" >"$out.key"
  log "$(image_ref "$img"): $(du -h "$out" | cut -f1) archive in $((SECONDS - start))s -> $out"
}

main() {
  local -a imgs=("$@")
  [[ ${#imgs[@]} -gt 0 ]] || imgs=("${ALL_IMAGES[@]}")
  [[ $EUID -eq 0 ]] || die "must run as root (debootstrap, chroot, file ownership)"
  local tool
  for tool in debootstrap umoci jq gcc readelf; do
    command -v "$tool" >/dev/null || die "missing $tool (apt-get install debootstrap umoci jq gcc binutils)"
  done
  mkdir -p "$work"
  # One build at a time per cache: concurrent debootstraps would trample $work.
  exec 9>"$out_dir/.lock"
  flock 9
  trap unmount_work EXIT
  trap 'unmount_work; exit 130' INT TERM
  for tool in "${imgs[@]}"; do image_ref "$tool" >/dev/null; done
  for tool in "${imgs[@]}"; do build_image "$tool"; done
}

main "$@"
