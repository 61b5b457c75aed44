#!/usr/bin/env bash
# Runs the operator as a host process against the local cluster.
#   hack/operator.sh start|stop|restart|status
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$repo/cluster/env.sh"

addr="${SANDRUN_HTTP_ADDR:-127.0.0.1:8080}"

start() {
  say "starting the operator (log: $operator_log)"
  SANDRUN_HTTP_ADDR="$addr" RUST_LOG="${RUST_LOG:-info,kube=warn}" \
    daemon_start operator "$operator_pid" "$operator_log" "http://$addr/readyz" "$operator_bin"
}

case "${1:-}" in
  start) daemon_running "$operator_pid" || start ;;
  stop) daemon_stop "$operator_pid" "$operator_bin" ;;
  restart) daemon_stop "$operator_pid" "$operator_bin"; start ;;
  status) if daemon_running "$operator_pid"; then echo "running, pid $(cat "$operator_pid")"; else echo "stopped"; exit 1; fi ;;
  *) die "usage: hack/operator.sh start|stop|restart|status" ;;
esac
