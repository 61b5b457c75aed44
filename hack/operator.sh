#!/usr/bin/env bash
# Runs a debug build of the operator as a host process against the local
# cluster. It takes turns with the in-cluster replicas through their Lease, so
# it never reconciles alongside them; to make it lead, scale them down:
#   kubectl -n sandrun-system scale deployment/sandrun-operator --replicas=0
#   hack/operator.sh start|stop|restart|status
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$repo/cluster/env.sh"

addr="${SANDRUN_HTTP_ADDR:-127.0.0.1:8080}"
command=("$operator_bin" --leader-elect --lease-namespace sandrun-system --lease-name sandrun-operator)

start() {
  say "starting the operator (log: $operator_log)"
  SANDRUN_HTTP_ADDR="$addr" RUST_LOG="${RUST_LOG:-info,kube=warn}" \
    daemon_start operator "$operator_pid" "$operator_log" "http://$addr/readyz" "${command[@]}"
}

case "${1:-}" in
  start) daemon_running "$operator_pid" || start ;;
  stop) daemon_stop "$operator_pid" "${command[*]}" ;;
  restart) daemon_stop "$operator_pid" "${command[*]}"; start ;;
  status) if daemon_running "$operator_pid"; then echo "running, pid $(cat "$operator_pid")"; else echo "stopped"; exit 1; fi ;;
  *) die "usage: hack/operator.sh start|stop|restart|status" ;;
esac
