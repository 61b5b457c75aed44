# Shared by the hack/ scripts: paths, logging (cluster/lib/log.sh), the Rust
# build, host daemons.
# shellcheck shell=bash disable=SC2034 # paths used by the scripts that source it
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export SANDRUN_CACHE="${SANDRUN_CACHE:-/var/cache/sandrun}"
export SANDRUN_STATE="${SANDRUN_STATE:-/var/lib/sandrun-cluster}"
target_dir="${CARGO_TARGET_DIR:-$repo/target}"
static_dir="$target_dir/x86_64-unknown-linux-gnu/release"
runner_bin="$static_dir/sandrun-runner"
operator_bin="$target_dir/debug/sandrun-operator"
operator_log="$SANDRUN_STATE/logs/operator.log"
operator_pid="$SANDRUN_STATE/run/operator.pid"
gateway_keys="$SANDRUN_STATE/config/gateway-keys.yaml"

# shellcheck source=cluster/lib/log.sh
source "$repo/cluster/lib/log.sh"

# The playground page the gateway serves at / (web/dist/, embedded into the
# gateway binary at compile time): npm ci once per lockfile, cached under
# $SANDRUN_CACHE/web/; a warm build does nothing.
build_web() {
  say "building the playground page (web/)"
  "$repo/web/build.sh"
}

# The operator's allocator, jemalloc, is C built with make at cargo build
# time. Rust brings a linker, not always make.
need_c_build_tools() {
  command -v make >/dev/null && command -v cc >/dev/null && return 0
  say "installing make and gcc (jemalloc's build)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends make gcc libc6-dev >/dev/null
}

# What goes into images (runner, operator, gateway) is static, so images need
# no libc: explicit --target keeps crt-static away from build scripts and
# proc macros. Debug builds serve host processes, tests and the CLI.
# The image's gateway must carry the page: SANDRUN_WEB_REQUIRED=1 fails its
# build when web/dist/ is missing instead of embedding a placeholder.
build_rust() {
  need_c_build_tools
  build_web
  say "building the runner, operator and gateway (static, release) and the CLI"
  SANDRUN_WEB_REQUIRED=1 RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked \
    -p sandrun-runner -p sandrun-operator -p sandrun-gateway --target x86_64-unknown-linux-gnu
  cargo build --locked -p sandrun-operator -p sandrun-gateway -p sandrun-cli
}

# Host processes (operator, gateway) run detached, tracked by a pid file;
# a stop also finds one whose pid file went with a purged state dir.
daemon_running() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

# daemon_stop PIDFILE COMMAND-LINE
daemon_stop() {
  local pidfile=$1 cmdline=$2 pid
  if daemon_running "$pidfile"; then
    pid=$(cat "$pidfile")
    kill "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
  pkill -TERM -x -f "$cmdline" 2>/dev/null && sleep 1
  pkill -KILL -x -f "$cmdline" 2>/dev/null || true
}

# daemon_start NAME PIDFILE LOG READY-URL COMMAND [ARG...]
daemon_start() {
  local name=$1 pidfile=$2 log=$3 ready=$4
  shift 4
  [[ -x $1 ]] || die "no $name binary at $1: run hack/up.sh"
  mkdir -p "$(dirname "$log")" "$(dirname "$pidfile")"
  # setsid: it must outlive the shell that started it.
  setsid "$@" >>"$log" 2>&1 < /dev/null &
  echo $! > "$pidfile"
  for _ in $(seq 100); do
    curl -fsS "$ready" >/dev/null 2>&1 && return 0
    daemon_running "$pidfile" || { tail -20 "$log" >&2; die "the $name exited"; }
    sleep 0.2
  done
  tail -20 "$log" >&2
  die "the $name did not become ready"
}

# The in-cluster gateway's Service address, reachable from this host
# through kube-proxy.
gateway_addr() {
  printf '%s:80' "$(kubectl -n sandrun-system get service sandrun-gateway -o jsonpath='{.spec.clusterIP}')"
}
