#!/usr/bin/env bash
# Simulated nodes on the local cluster for throughput benchmarks: kwok
# (sigs.k8s.io/kwok, built from the Go module proxy) runs as a host daemon and
# plays "kubelet" for fake Nodes kwok-0..N-1. Pods bound to them turn Running,
# then (restartPolicy Never/OnFailure, so every Job's pods) Succeeded with exit
# code 0, and are removed once deleted (cluster/kwok/stages.yaml).
# `kubectl logs` of any container on them returns the file you give, and
# MESSAGE_FILE (first 4096 bytes, as the kubelet keeps) becomes the
# termination message of every container that finishes.
#
# Usage: cluster/kwok.sh build
#        cluster/kwok.sh start N [LOG_FILE [MESSAGE_FILE]]
#                   (or KWOK_LOG_FILE=... KWOK_MESSAGE_FILE=...)
#        cluster/kwok.sh stop
# start is idempotent: run again to change N or to pick up a new LOG_FILE.
# Fake nodes carry the label type=kwok and the taint
# sandrun.dev/simulated=true:NoSchedule, so nothing lands on them by chance;
# pods of RuntimeClass "kwok" (created here) are steered there and tolerate it.
set -euo pipefail
LOG_TAG=kwok
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/lib/common.sh"
source "$here/lib/pki.sh"

KWOK_BIN="$SANDRUN_CACHE/kwok-$KWOK_VERSION/bin/kwok"
KWOK_STATE="$SANDRUN_STATE/kwok"
# kwok's kubelet API. The real kubelet has 10250; loopback only, since the
# only client is the API server on this host (so fake nodes' InternalIP is
# 127.0.0.1, which the API server dials first: --kubelet-preferred-address-types).
KWOK_IP=127.0.0.1
KWOK_PORT=${KWOK_PORT:-10247}
# kwok manages only nodes with this label, never the real one.
MANAGE_LABEL=kwok.x-k8s.io/node=fake
# Fake pod IPs: outside the real pod (10.88/16) and Service (10.96/16) ranges,
# and large enough for tens of thousands of pods (kwok's default is a /24).
KWOK_POD_CIDR=10.240.0.0/16
SIMULATED_TAINT=sandrun.dev/simulated

build() {
  if [[ -x $KWOK_BIN ]]; then
    log "kwok $KWOK_VERSION present (skip)"
    return 0
  fi
  [[ -x /usr/local/go/bin/go ]] && PATH="$PATH:/usr/local/go/bin"
  command -v go >/dev/null || die "Go is required to build kwok"
  mkdir -p "$(dirname "$KWOK_BIN")"
  # Same lock as build.sh: two Go builds at once on 2 cores only slow both.
  exec 9>"$SANDRUN_CACHE/.cluster-build.lock"
  flock 9
  [[ -x $KWOK_BIN ]] && return 0
  log "building kwok $KWOK_VERSION"
  local start=$SECONDS tmp
  tmp=$(mktemp -d "$(dirname "$KWOK_BIN")/.build.XXXXXX")
  # Into a temp dir, then renamed, so an interrupted build is never trusted.
  GOBIN="$tmp" GOWORK=off GOTOOLCHAIN=local CGO_ENABLED=0 nice go install -trimpath -ldflags "-s -w" \
    "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" || { rm -rf "$tmp"; die "kwok build failed"; }
  mv "$tmp/kwok" "$KWOK_BIN"
  rm -rf "$tmp"
  exec 9>&-
  log "built kwok in $((SECONDS - start))s"
}

# kwok serves logs through the kubelet's own reader, which takes only CRI log
# lines ("<time> stdout F <text>"). Wrap each line of the caller's file; a
# last line without a newline becomes a partial (P) line, so `kubectl logs`
# returns the file byte for byte.
write_cri_log() {
  local src=$1 dst=$2 ts partial=0
  ts=$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)
  [[ -s $src && $(tail -c1 "$src" | od -An -c | tr -d ' ') != '\n' ]] && partial=1
  awk -v ts="$ts" -v partial="$partial" '
    NR > 1 { print ts " stdout F " prev }
    { prev = $0 }
    END { if (NR) print ts " stdout " (partial ? "P" : "F") " " prev }' "$src" >"$dst.tmp"
  mv "$dst.tmp" "$dst"
}

# cluster/kwok/stages.yaml with the termination message put in as a Go
# template string (a JSON string is one). Returns 1 when the file changed.
write_stages() {
  local file=$1 literal='""' stages
  [[ -z $file ]] || literal=$(head -c 4096 "$file" | jq -Rs .)
  stages=$(<"$CLUSTER_DIR/kwok/stages.yaml")
  # Bash 5.2 would read & in the replacement as the match.
  shopt -u patsub_replacement 2>/dev/null || true
  printf '%s\n' "${stages//@TERMINATION_MESSAGE@/$literal}" >"$KWOK_STATE/stages.yaml.tmp"
  if cmp -s "$KWOK_STATE/stages.yaml.tmp" "$KWOK_STATE/stages.yaml"; then
    rm "$KWOK_STATE/stages.yaml.tmp"
    return 0
  fi
  mv "$KWOK_STATE/stages.yaml.tmp" "$KWOK_STATE/stages.yaml"
  return 1
}

# kwok's options (it applies no defaults once a config file names any, so
# all are here; pprof off, as for kube-router), and one ClusterLogs rule:
# every container of every pod shows the same file.
write_config() {
  cat >"$KWOK_STATE/kwok.yaml.tmp" <<EOF
apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokConfiguration
options:
  manageNodesWithLabelSelector: "$MANAGE_LABEL"
  nodeIP: "$KWOK_IP"
  nodePort: $KWOK_PORT
  serverAddress: "$KWOK_IP:$KWOK_PORT"
  tlsCertFile: "$PKI_DIR/kwok-server.crt"
  tlsPrivateKeyFile: "$PKI_DIR/kwok-server.key"
  cidr: "$KWOK_POD_CIDR"
  manageAllNodes: false
  nodeLeaseDurationSeconds: 40
  nodeLeaseParallelism: 4
  nodePlayStageParallelism: 4
  podPlayStageParallelism: 8
  podsOnNodeSyncParallelism: 1
  enablePodsOnNodeSyncListPager: true
  enablePodsOnNodeSyncStreamWatch: false
  enableDebuggingHandlers: true
  enableProfilingHandler: false
  enableContentionProfiling: false
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: ClusterLogs
metadata:
  name: sandrun-all-pods
spec:
  logs:
  - logsFile: "$KWOK_STATE/container.log"
EOF
  mv "$KWOK_STATE/kwok.yaml.tmp" "$KWOK_STATE/kwok.yaml"
}

# The way in: a pod of this RuntimeClass goes to a fake node, others never do.
runtime_class_manifest() {
  cat <<EOF
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata:
  name: kwok
handler: runsc
scheduling:
  nodeSelector: {type: kwok}
  tolerations: [{key: $SIMULATED_TAINT, operator: Exists, effect: NoSchedule}]
EOF
}

node_manifests() {
  local n=$1 i
  for ((i = 0; i < n; i++)); do
    cat <<EOF
apiVersion: v1
kind: Node
metadata:
  name: kwok-$i
  labels: {type: kwok, ${MANAGE_LABEL%=*}: ${MANAGE_LABEL#*=}, kubernetes.io/hostname: kwok-$i, kubernetes.io/os: linux, kubernetes.io/arch: amd64}
  annotations: {${MANAGE_LABEL%=*}: ${MANAGE_LABEL#*=}}
spec:
  taints: [{key: $SIMULATED_TAINT, value: "true", effect: NoSchedule}]
status:
  allocatable: {cpu: "1000", memory: 4Ti, ephemeral-storage: 1Pi, pods: "20000"}
  capacity: {cpu: "1000", memory: 4Ti, ephemeral-storage: 1Pi, pods: "20000"}
---
EOF
  done
}

# Every fake node Ready and without the not-ready taint the API server puts
# on new nodes (the node lifecycle controller lifts it a moment later): ours
# is then the only one.
nodes_ready() {
  local want=$1
  daemon_running kwok || { kwok_died=1; return 0; }
  [[ $(kctl get nodes -l "$MANAGE_LABEL" -o json | jq '[.items[] | select(
      any(.status.conditions[]?; .type == "Ready" and .status == "True")
      and ([.spec.taints[]? | select(.key != "'"$SIMULATED_TAINT"'")] | length == 0))] | length') == "$want" ]]
}

start() {
  local n=${1:-} file=${2:-${KWOK_LOG_FILE:-}} message=${3:-${KWOK_MESSAGE_FILE:-}} t0 extra old
  [[ $n =~ ^[0-9]+$ ]] || die "usage: kwok.sh start N [LOG_FILE [MESSAGE_FILE]] (or KWOK_LOG_FILE=..., KWOK_MESSAGE_FILE=...)"
  [[ -n $file && -f $file && -r $file ]] || die "log file '${file}' is not a readable file (argument or KWOK_LOG_FILE)"
  [[ -z $message || (-f $message && -r $message) ]] || die "message file '${message}' is not a readable file"
  need_root
  t0=$(now)
  build
  kctl get --raw /readyz >/dev/null 2>&1 || die "the local cluster is not up (cluster/up.sh)"
  mkdir -p "$KWOK_STATE" "$LOG_DIR" "$PID_DIR"
  # The API server checks kubelet serving certs against the cluster CA, and
  # dials 127.0.0.1, so that is the name the cert must carry.
  pki_cert kwok-server "/CN=sandrun-kwok" serverAuth "IP:$KWOK_IP"
  write_cri_log "$file" "$KWOK_STATE/container.log"
  write_config
  # kwok reads its stages once, at start.
  write_stages "$message" || ! daemon_running kwok || stop_daemons 5 kwok
  # A new kwok takes a node over only once the Lease a previous (killed) one
  # held has expired, 40 s later; the previous one is gone, so drop them.
  if ! daemon_running kwok; then
    old=$(kctl get nodes -l "$MANAGE_LABEL" -o jsonpath='{.items[*].metadata.name}')
    # shellcheck disable=SC2086 # one word per node
    [[ -z $old ]] || kctl -n kube-node-lease delete lease $old --ignore-not-found >/dev/null
  fi
  start_daemon kwok "$KWOK_BIN" --kubeconfig="$KUBECONFIG_ADMIN" \
    --config="$KWOK_STATE/kwok.yaml" --config="$KWOK_STATE/stages.yaml"
  runtime_class_manifest | kctl apply -f - >/dev/null
  ((n == 0)) || node_manifests "$n" | kctl apply -f - >/dev/null
  # Fewer nodes than last time: drop the rest.
  extra=$(kctl get nodes -l "$MANAGE_LABEL" -o name | awk -F/ -v n="$n" '{ i = $2; sub(/^kwok-/, "", i); if (i + 0 >= n) print }')
  [[ -z $extra ]] || stop_nodes "$extra"
  kwok_died=0
  wait_until 60 "$n kwok nodes Ready" kwok nodes_ready "$n"
  ((!kwok_died)) || { tail -n 5 "$LOG_DIR/kwok.log" >&2; die "kwok exited (log: $LOG_DIR/kwok.log)"; }
  log "$n kwok nodes Ready ($(elapsed "$t0")); logs of their pods: $file"
}

# Pods bound to a node that no longer exists, as "namespace node" lines.
orphan_pods() {
  kctl get pods -A -o json | jq -r --argjson nodes "$(kctl get nodes -o json | jq '[.items[].metadata.name]')" \
    '.items[] | select(.spec.nodeName != null and (.spec.nodeName | IN($nodes[]) | not))
      | "\(.metadata.namespace) \(.spec.nodeName)"' | sort -u
}
no_orphan_pods() { [[ -z $(orphan_pods) ]]; }

# Delete the given nodes, then force-delete pods left on nodes that no longer
# exist (pod GC would only get to them after a while). Job pods keep their
# job-tracking finalizer until the Job controller drops it: wait for that.
stop_nodes() {
  local ns node
  # shellcheck disable=SC2086 # one word per node
  kctl delete --request-timeout=30s $1 >/dev/null
  # One delete-collection call per namespace and node: kubectl deleting pod
  # by pod is held to its client's 5 requests/s (100 s for 500 pods).
  while read -r ns node; do
    [[ -z $ns ]] || kctl delete --raw \
      "/api/v1/namespaces/$ns/pods?fieldSelector=spec.nodeName%3D$node&gracePeriodSeconds=0" >/dev/null || true
  done <<<"$(orphan_pods)"
  wait_until 60 "pods of deleted nodes gone" kwok no_orphan_pods
}

stop() {
  need_root
  local t0 nodes
  t0=$(now)
  if kctl get --raw /readyz --request-timeout=5s >/dev/null 2>&1; then
    nodes=$(kctl get nodes -l "$MANAGE_LABEL" -o name)
    # Whatever happens to the nodes, the daemon below is stopped.
    [[ -z $nodes ]] || stop_nodes "$nodes" || log "warning: fake nodes or their pods may be left"
    kctl delete runtimeclass kwok --ignore-not-found >/dev/null
  else
    log "warning: API server not reachable; fake nodes (if any) stay in etcd"
  fi
  stop_daemons 5 kwok
  rm -rf "$KWOK_STATE"
  log "kwok stopped ($(elapsed "$t0"))"
}

case ${1:-} in
  build) build ;;
  start) shift; start "$@" ;;
  stop) stop ;;
  *) sed -n '2,15p' "$0" >&2; exit 2 ;;
esac
