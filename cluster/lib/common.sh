# Shared settings and helpers for the local cluster scripts. Sourced, not run.
# shellcheck shell=bash disable=SC2034 # paths used by the scripts that source it

CLUSTER_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REPO_DIR="$(cd "$CLUSTER_DIR/.." && pwd)"
# shellcheck source=cluster/versions.env
source "$CLUSTER_DIR/versions.env"
# shellcheck source=cluster/lib/log.sh
source "$CLUSTER_DIR/lib/log.sh"

SANDRUN_CACHE="${SANDRUN_CACHE:-/var/cache/sandrun}"
SANDRUN_STATE="${SANDRUN_STATE:-/var/lib/sandrun-cluster}"
K8S_BIN_DIR="$SANDRUN_CACHE/k8s-$K8S_VERSION/bin"
CRICTL_BIN_DIR="$SANDRUN_CACHE/crictl-$CRICTL_VERSION/bin"
CONTAINERD_BIN_DIR="$SANDRUN_CACHE/containerd-$CONTAINERD_VERSION/bin"
COREDNS_BIN="$SANDRUN_CACHE/coredns-$COREDNS_VERSION/bin/coredns"
KUBE_ROUTER_BIN="$SANDRUN_CACHE/kube-router-$KUBE_ROUTER_VERSION/bin/kube-router"
GVISOR_BIN_DIR="$SANDRUN_CACHE/gvisor-$GVISOR_VERSION/bin"
K8S_COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubelet kubectl)

# Layout of the state dir. run/ holds only what is meaningless after the
# daemons stop (sockets, containerd/runc/runsc runtime state, mounts);
# down.sh empties it, everything else survives a down/up cycle.
PKI_DIR="$SANDRUN_STATE/pki"
CONF_DIR="$SANDRUN_STATE/config"
LOG_DIR="$SANDRUN_STATE/logs"
PID_DIR="$SANDRUN_STATE/pids"
RUN_DIR="$SANDRUN_STATE/run"
ETCD_DIR="$SANDRUN_STATE/etcd"
CONTAINERD_ROOT="$SANDRUN_STATE/containerd"
CONTAINERD_STATE="$RUN_DIR/containerd"
CONTAINERD_SOCK="$RUN_DIR/containerd.sock"
RUNC_ROOT="$RUN_DIR/runc"
RUNSC_ROOT="$RUN_DIR/runsc"
RUNSC_CONFIG="$CONF_DIR/runsc.toml"
KUBELET_DIR="$SANDRUN_STATE/kubelet"
POD_LOG_DIR="$SANDRUN_STATE/pod-logs"
CNI_CONF_DIR="$CONF_DIR/cni"
CNI_IPAM_DIR="$RUN_DIR/cni-ipam"
CNI_BIN_DIR="/usr/lib/cni"
KUBECONFIG_ADMIN="$SANDRUN_STATE/kubeconfig"

# Cluster network. The pod range must not overlap the host's own networks.
CNI_NETWORK="sandrun"
CNI_BRIDGE="sandrun0"
POD_CIDR="${SANDRUN_POD_CIDR:-10.88.0.0/16}"
SERVICE_CIDR="${SANDRUN_SERVICE_CIDR:-10.96.0.0/16}"
API_SERVICE_IP="${SANDRUN_API_SERVICE_IP:-10.96.0.1}"
API_PORT=6443
ETCD_CLIENT_URL="http://127.0.0.1:2379"
ETCD_PEER_URL="http://127.0.0.1:2380"
PAUSE_IMAGE="localhost/pause:$PAUSE_VERSION"
CLUSTER_DOMAIN=cluster.local

# Daemons need /usr/sbin (iptables, runc) and the shims on PATH: containerd
# finds containerd-shim-runc-v2 and containerd-shim-runsc-v1 by name, and our
# containerd/ctr must win over any distribution copy.
export PATH="$K8S_BIN_DIR:$CONTAINERD_BIN_DIR:$CRICTL_BIN_DIR:$GVISOR_BIN_DIR:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:${PATH:-}"

# Seconds since the epoch with milliseconds, for the timings we print.
now() { date +%s.%N | cut -c1-14; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }

need_root() { [[ $(id -u) == 0 ]] || die "must run as root"; }

# One up.sh/down.sh at a time per state dir. The lock file sits next to the
# state dir so that down.sh --purge does not delete it while holding it.
lock_state() {
  mkdir -p "$(dirname "$SANDRUN_STATE")"
  exec 8>"${SANDRUN_STATE%/}.lock"
  flock -w 300 8 || die "another up.sh/down.sh holds ${SANDRUN_STATE%/}.lock"
}

# wait_until SECONDS DESCRIPTION LOGNAME CMD...: poll CMD until it succeeds.
# On timeout, show the end of the daemon log that most likely explains why.
wait_until() {
  local timeout=$1 desc=$2 logname=$3; shift 3
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      log "timed out after ${timeout}s waiting for $desc"
      if [[ -n $logname && -f $LOG_DIR/$logname.log ]]; then
        log "last lines of $LOG_DIR/$logname.log:"
        tail -n 25 "$LOG_DIR/$logname.log" >&2
      fi
      return 1
    fi
    sleep 0.2
  done
}

# ---- daemons ---------------------------------------------------------------
# Each daemon runs in its own session (setsid) so it outlives the shell that
# started it, with stdio on its log file, and its pid in $PID_DIR/NAME.pid.
# A pid only counts as ours while its command line names the state dir, so a
# recycled pid never gets signalled.

daemon_pid() {
  local f="$PID_DIR/$1.pid" pid
  [[ -s $f ]] || return 1
  pid=$(<"$f")
  [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/cmdline ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$SANDRUN_STATE" || return 1
  echo "$pid"
}

daemon_running() { daemon_pid "$1" >/dev/null; }

# start_daemon NAME CMD...: start CMD unless NAME already runs.
start_daemon() {
  local name=$1; shift
  daemon_running "$name" && return 0
  local pidfile="$PID_DIR/$name.pid" logfile="$LOG_DIR/$name.log"
  rm -f "$pidfile"
  # Logs are appended across runs; keep one previous generation past 50 MiB.
  if [[ -f $logfile ]] && (($(stat -c %s "$logfile") > 50 * 1024 * 1024)); then
    mv -f "$logfile" "$logfile.1"
  fi
  # The inner shell writes its own pid and then execs, so the pid file holds
  # the daemon's pid whether or not setsid had to fork. Lock fds (8, 9) are
  # closed so a daemon never holds the up/down or build lock.
  # shellcheck disable=SC2016 # expanded by the inner shell
  setsid bash -c 'echo $$ >"$0.tmp" && mv "$0.tmp" "$0" && exec "$@"' "$pidfile" "$@" \
    </dev/null >>"$logfile" 2>&1 8>&- 9>&- &
  local i
  for i in $(seq 50); do [[ -s $pidfile ]] && return 0; sleep 0.05; done
  die "$name did not start (see $LOG_DIR/$name.log)"
}

# stop_daemons GRACE_SECONDS NAME...: SIGTERM all of them at once, then
# SIGKILL whatever still runs after the grace period.
stop_daemons() {
  local grace=$1 name pid i pids=()
  shift
  for name in "$@"; do
    if pid=$(daemon_pid "$name"); then
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid")
    fi
  done
  for ((i = 0; i < grace * 10; i++)); do
    alive_pids "${pids[@]}" || break
    sleep 0.1
  done
  if alive_pids "${pids[@]}"; then
    for pid in "${pids[@]}"; do
      kill -KILL "$pid" 2>/dev/null || true
    done
    while alive_pids "${pids[@]}"; do sleep 0.1; done
  fi
  for name in "$@"; do rm -f "$PID_DIR/$name.pid"; done
}

# alive_pids PID...: true while any of them still runs. A zombie counts as
# gone: our daemons are reparented to PID 1, which may reap them late.
alive_pids() {
  local pid state
  for pid in "$@"; do
    state=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1) || continue
    [[ -n $state && $state != Z ]] && return 0
  done
  return 1
}

# ---- host facts ------------------------------------------------------------

# The node IP is the address of the interface holding the default route:
# kubelet rejects loopback, and pods must reach the API server through it.
detect_node_ip() {
  if [[ -n ${SANDRUN_NODE_IP:-} ]]; then echo "$SANDRUN_NODE_IP"; return; fi
  local dev ip
  dev=$(ip -4 route show default 2>/dev/null | awk '{for (i=1;i<NF;i++) if ($i=="dev") {print $(i+1); exit}}')
  if [[ -n $dev ]]; then
    ip=$(ip -4 -o addr show dev "$dev" scope global | awk '{print $4; exit}' | cut -d/ -f1)
  fi
  if [[ -z ${ip:-} ]]; then
    ip=$(ip -4 -o addr show scope global | awk '{print $4; exit}' | cut -d/ -f1)
  fi
  [[ -n ${ip:-} ]] || die "no global IPv4 address found; set SANDRUN_NODE_IP"
  echo "$ip"
}

# Node names must be lowercase DNS labels; the hostname usually is one.
detect_node_name() {
  local n=${SANDRUN_NODE_NAME:-$(hostname)}
  echo "${n,,}"
}

kctl() { kubectl --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }
