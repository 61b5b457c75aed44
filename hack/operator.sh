#!/usr/bin/env bash
# Runs the operator as a host process against the local cluster.
#   hack/operator.sh start|stop|restart|status
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$repo/cluster/env.sh"

running() { [[ -s $operator_pid ]] && kill -0 "$(cat "$operator_pid")" 2>/dev/null; }

stop() {
  if running; then
    local pid; pid=$(cat "$operator_pid")
    kill "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$operator_pid"
  # One whose pid file went with a purged state dir still holds the port.
  pkill -TERM -x -f "$operator_bin" 2>/dev/null && sleep 1
  pkill -KILL -x -f "$operator_bin" 2>/dev/null || true
}

start() {
  [[ -x $operator_bin ]] || die "no operator binary at $operator_bin: run hack/up.sh"
  mkdir -p "$(dirname "$operator_log")" "$(dirname "$operator_pid")"
  say "starting the operator (log: $operator_log)"
  # setsid: the operator must outlive the shell that started it.
  SANDRUN_HTTP_ADDR="${SANDRUN_HTTP_ADDR:-127.0.0.1:8080}" RUST_LOG="${RUST_LOG:-info,kube=warn}" \
    setsid "$operator_bin" >>"$operator_log" 2>&1 < /dev/null &
  echo $! > "$operator_pid"
  for _ in $(seq 100); do
    curl -fsS "http://${SANDRUN_HTTP_ADDR:-127.0.0.1:8080}/readyz" >/dev/null 2>&1 && return 0
    running || { tail -20 "$operator_log" >&2; die "the operator exited"; }
    sleep 0.2
  done
  tail -20 "$operator_log" >&2
  die "the operator did not become ready"
}

case "${1:-}" in
  start) running || start ;;
  stop) stop ;;
  restart) stop; start ;;
  status) if running; then echo "running, pid $(cat "$operator_pid")"; else echo "stopped"; exit 1; fi ;;
  *) die "usage: hack/operator.sh start|stop|restart|status" ;;
esac
