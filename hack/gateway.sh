#!/usr/bin/env bash
# Runs the gateway as a host process against the local cluster, with API
# keys generated once under the state dir (two tenants, plus a slow key for
# rate-limit tests).
#   hack/gateway.sh start|stop|restart|status|keys
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$repo/cluster/env.sh"

gateway_bin="$target_dir/debug/sandrun-gateway"
gateway_log="$SANDRUN_STATE/logs/gateway.log"
gateway_pid="$SANDRUN_STATE/run/gateway.pid"
keys_file="$SANDRUN_STATE/config/gateway-keys.yaml"
addr="${SANDRUN_GATEWAY_ADDR:-127.0.0.1:8090}"

token() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

ensure_keys() {
  [[ -s $keys_file ]] && return 0
  mkdir -p "$(dirname "$keys_file")"
  umask 077
  cat > "$keys_file" <<KEYS
keys:
  - {name: demo, token: $(token), namespace: sandrun-demo, requestsPerSecond: 50, burst: 400}
  - {name: other, token: $(token), namespace: sandrun-other, requestsPerSecond: 50, burst: 100}
  - {name: slow, token: $(token), namespace: sandrun-other, requestsPerSecond: 1, burst: 3}
KEYS
}

ensure_namespaces() {
  local ns
  for ns in sandrun-demo sandrun-other; do
    kubectl get namespace "$ns" >/dev/null 2>&1 || kubectl create namespace "$ns" >/dev/null
  done
}

start() {
  ensure_keys
  ensure_namespaces
  say "starting the gateway on http://$addr (log: $gateway_log)"
  SANDRUN_GATEWAY_ADDR="$addr" RUST_LOG="${RUST_LOG:-info,kube=warn}" \
    daemon_start gateway "$gateway_pid" "$gateway_log" "http://$addr/readyz" "$gateway_bin" --keys-file "$keys_file"
}

stop() { daemon_stop "$gateway_pid" "$gateway_bin --keys-file $keys_file"; }

case "${1:-}" in
  start) daemon_running "$gateway_pid" || start ;;
  stop) stop ;;
  restart) stop; start ;;
  status) if daemon_running "$gateway_pid"; then echo "running, pid $(cat "$gateway_pid")"; else echo "stopped"; exit 1; fi ;;
  keys) ensure_keys; echo "$keys_file" ;;
  *) die "usage: hack/gateway.sh start|stop|restart|status|keys" ;;
esac
