#!/usr/bin/env bash
# Runs the gateway as a host process against the local cluster, with the
# API keys of hack/gateway-keys.sh.
#   hack/gateway.sh start|stop|restart|status|keys   (keys: as hack/gateway-keys.sh)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$repo/cluster/env.sh"

gateway_bin="$target_dir/debug/sandrun-gateway"
gateway_log="$SANDRUN_STATE/logs/gateway.log"
gateway_pid="$SANDRUN_STATE/run/gateway.pid"
addr="${SANDRUN_GATEWAY_ADDR:-127.0.0.1:8090}"

ensure_namespaces() {
  local ns
  for ns in sandrun-demo sandrun-other; do
    kubectl get namespace "$ns" >/dev/null 2>&1 || kubectl create namespace "$ns" >/dev/null
  done
}

start() {
  "$repo/hack/gateway-keys.sh" >/dev/null
  ensure_namespaces
  say "starting the gateway on http://$addr (log: $gateway_log)"
  SANDRUN_GATEWAY_ADDR="$addr" SANDRUN_GATEWAY_METRICS_ADDR="${SANDRUN_GATEWAY_METRICS_ADDR:-127.0.0.1:9091}" \
    RUST_LOG="${RUST_LOG:-info,kube=warn}" \
    daemon_start gateway "$gateway_pid" "$gateway_log" "http://$addr/readyz" "$gateway_bin" --keys-file "$gateway_keys"
}

stop() { daemon_stop "$gateway_pid" "$gateway_bin --keys-file $gateway_keys"; }

case "${1:-}" in
  start) daemon_running "$gateway_pid" || start ;;
  stop) stop ;;
  restart) stop; start ;;
  status) if daemon_running "$gateway_pid"; then echo "running, pid $(cat "$gateway_pid")"; else echo "stopped"; exit 1; fi ;;
  keys) exec "$repo/hack/gateway-keys.sh" ;;
  *) die "usage: hack/gateway.sh start|stop|restart|status|keys" ;;
esac
