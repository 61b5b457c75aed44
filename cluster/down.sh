#!/usr/bin/env bash
# Stop the local cluster and remove everything it put on the host: processes,
# mounts, pod network namespaces, the CNI bridge, KUBE-/CNI- iptables rules,
# kube-router's ipsets and changed sysctls. Safe to run when nothing is up.
#
# Usage: cluster/down.sh [--purge]
#   --purge (or SANDRUN_PURGE=1): also delete the state dir (PKI, etcd data,
#   images in containerd, logs). Build caches are never touched.
set -euo pipefail
LOG_TAG=down
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/lib/common.sh"
source "$here/lib/host.sh"

# Ask containerd to stop every pod sandbox while it still runs: that kills
# the containers, runs CNI DEL for each pod (veth, IPAM lease, masquerade
# rules) and unmounts container filesystems the proper way. Pods are stopped,
# not removed, so logs of finished containers stay readable after the next
# up.sh. Best effort: the brute-force cleanup afterwards catches the rest.
stop_pods_via_cri() {
  daemon_running containerd || return 0
  command -v crictl >/dev/null && [[ -f $CONF_DIR/crictl.yaml ]] || return 0
  local cri=(crictl --config "$CONF_DIR/crictl.yaml") pods
  pods=$("${cri[@]}" pods -q --state ready 2>/dev/null) || return 0
  [[ -n $pods ]] || return 0
  # shellcheck disable=SC2086
  timeout 60 "${cri[@]}" stopp $pods >/dev/null 2>&1 ||
    log "warning: could not stop all pods through CRI; cleaning up by force"
}

main() {
  local purge=${SANDRUN_PURGE:-0} arg t0
  for arg in "$@"; do
    case $arg in
      --purge) purge=1 ;;
      -h | --help) sed -n '2,9p' "$0"; exit 0 ;;
      *) die "unknown argument: $arg" ;;
    esac
  done
  need_root
  lock_state
  t0=$(now)

  # Simulated nodes first, while the API server can still delete them and
  # their pods (cluster/kwok.sh, used by benchmarks).
  if daemon_running kwok; then
    "$here/kwok.sh" stop || log "warning: cluster/kwok.sh stop failed"
  fi

  # Controllers and node agents first, so nothing reschedules or restarts
  # pods meanwhile; then the pods; then the runtime and the API; etcd last.
  # Only etcd and containerd keep state worth a graceful stop; the others
  # get a short grace (kube-apiserver can linger for minutes after draining).
  stop_daemons 5 kube-controller-manager kube-scheduler kubelet kube-proxy coredns kube-router
  stop_pods_via_cri
  stop_daemons 3 kube-apiserver
  stop_daemons 15 containerd
  stop_daemons 15 etcd

  cleanup_runtime_leftovers
  host_sysctls_restore
  if [[ $purge == 1 && -d $SANDRUN_STATE ]]; then
    rm -rf --one-file-system "$SANDRUN_STATE"
    log "state dir $SANDRUN_STATE removed"
  fi
  log "cluster down ($(elapsed "$t0"))"
}

main "$@"
