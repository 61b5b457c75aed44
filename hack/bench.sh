#!/usr/bin/env bash
# sandrun's benchmarks on the local cluster: each prints its figures beside a
# baseline measured in the same run (bench/, docs/benchmarks.md).
#   hack/bench.sh                      all four, as in docs/benchmarks.md
#   hack/bench.sh overhead|reaction|throughput|fanout|delivery|warm [ARGS...]   one of them
# Brings the cluster up with sandrun first (hack/up.sh), installs it with
# charts/sandrun/ci/bench-values.yaml, and puts the usual install back after.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo"

hack/up.sh
source cluster/env.sh
say "building the benchmarks (release)"
# Same flags and target as the images' binaries, so their build is reused.
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked -q \
  -p sandrun-bench --target x86_64-unknown-linux-gnu
bench="$static_dir/sandrun-bench"

bench_values=(-f charts/sandrun/ci/bench-values.yaml)
restore() {
  say "putting the usual install back"
  cluster/kwok.sh stop >/dev/null 2>&1 || true
  hack/install.sh >/dev/null
}
trap restore EXIT
trap 'exit 143' TERM INT
hack/install.sh install "${bench_values[@]}"

machine() {
  say "machine"
  printf '%s, %s cores, %s GiB RAM, kernel %s; Kubernetes %s, containerd %s, gVisor %s\n' \
    "$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)" "$(nproc)" \
    "$(awk '/MemTotal/ { printf "%.0f", $2 / 1048576 }' /proc/meminfo)" "$(uname -r)" \
    "$K8S_VERSION" "$CONTAINERD_VERSION" "$GVISOR_VERSION"
}

# The overhead on runc needs sandrun's default RuntimeClass switched to runc
# (the gateway's API has no per-run choice); the baseline Jobs follow it.
overhead() {
  "$bench" overhead --runtime runsc "$@"
  hack/install.sh install "${bench_values[@]}" --set runtimeClass.name=runc
  "$bench" overhead --runtime runc "$@"
  hack/install.sh install "${bench_values[@]}"
}

machine
case ${1:-all} in
  all)
    overhead
    "$bench" reaction
    "$bench" throughput
    "$bench" fanout --rounds 1
    "$bench" delivery
    "$bench" warm
    ;;
  overhead) shift; overhead "$@" ;;
  reaction | throughput | fanout) "$bench" "$@" ;;
  delivery) shift; "$bench" delivery "$@" ;;
  warm) shift; "$bench" warm "$@" ;;
  *) die "usage: hack/bench.sh [overhead|reaction|throughput|fanout|delivery|warm [ARGS...]]" ;;
esac
