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

running() { [[ -s $gateway_pid ]] && kill -0 "$(cat "$gateway_pid")" 2>/dev/null; }

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

stop() {
  if running; then
    local pid; pid=$(cat "$gateway_pid")
    kill "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$gateway_pid"
  pkill -TERM -x -f "$gateway_bin --keys-file $keys_file" 2>/dev/null && sleep 1
  pkill -KILL -x -f "$gateway_bin --keys-file $keys_file" 2>/dev/null || true
}

start() {
  [[ -x $gateway_bin ]] || die "no gateway binary at $gateway_bin: run hack/up.sh"
  ensure_keys
  ensure_namespaces
  mkdir -p "$(dirname "$gateway_log")" "$(dirname "$gateway_pid")"
  say "starting the gateway on http://$addr (log: $gateway_log)"
  SANDRUN_GATEWAY_ADDR="$addr" RUST_LOG="${RUST_LOG:-info,kube=warn}" \
    setsid "$gateway_bin" --keys-file "$keys_file" >>"$gateway_log" 2>&1 < /dev/null &
  echo $! > "$gateway_pid"
  for _ in $(seq 100); do
    curl -fsS "http://$addr/readyz" >/dev/null 2>&1 && return 0
    running || { tail -20 "$gateway_log" >&2; die "the gateway exited"; }
    sleep 0.2
  done
  tail -20 "$gateway_log" >&2
  die "the gateway did not become ready"
}

case "${1:-}" in
  start) running || start ;;
  stop) stop ;;
  restart) stop; start ;;
  status) if running; then echo "running, pid $(cat "$gateway_pid")"; else echo "stopped"; exit 1; fi ;;
  keys) ensure_keys; echo "$keys_file" ;;
  *) die "usage: hack/gateway.sh start|stop|restart|status|keys" ;;
esac
