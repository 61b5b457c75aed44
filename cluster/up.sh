#!/usr/bin/env bash
# Bring up the local single-node Kubernetes cluster (containerd + runc/gVisor,
# CNI bridge, etcd, control plane, kubelet, kube-proxy, CoreDNS, kube-router
# as the NetworkPolicy engine) as plain background processes. Idempotent:
# when the cluster is already healthy it returns at once; otherwise it starts
# whatever is missing.
#
# Usage: cluster/up.sh
# Env:   SANDRUN_STATE (default /var/lib/sandrun-cluster), SANDRUN_CACHE
#        (default /var/cache/sandrun), SANDRUN_NODE_IP, SANDRUN_NODE_NAME,
#        SANDRUN_RUNSC_PLATFORM (skip the systrap/ptrace probe).
# Stdout: the lines to eval for using the cluster (export KUBECONFIG=...).
set -euo pipefail
LOG_TAG=up
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/lib/common.sh"
source "$here/lib/pki.sh"
source "$here/lib/config.sh"
source "$here/lib/daemons.sh"
source "$here/lib/host.sh"

ALL_DAEMONS=(containerd etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)
with_dns() { [[ -x $COREDNS_BIN ]]; }
with_netpol() { [[ -x $KUBE_ROUTER_BIN ]]; }

print_env() {
  echo "export KUBECONFIG=$KUBECONFIG_ADMIN"
  echo "export CONTAINERD_ADDRESS=$CONTAINERD_SOCK"
}

# Fast path: every daemon alive, API ready and the node Ready.
already_up() {
  local d
  for d in "${ALL_DAEMONS[@]}"; do daemon_running "$d" || return 1; done
  if with_dns; then daemon_running coredns || return 1; fi
  if with_netpol; then daemon_running kube-router || return 1; fi
  [[ -s $KUBECONFIG_ADMIN ]] && apiserver_healthy >/dev/null 2>&1 || return 1
  [[ $(kctl get node "$(detect_node_name)" \
    -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]
}

ensure_binaries() {
  local gvisor_ok=1
  [[ -f $here/build-gvisor.sh && ! -x $GVISOR_BIN_DIR/containerd-shim-runsc-v1 ]] && gvisor_ok=0
  [[ -x $K8S_BIN_DIR/sandrun-k8s && -x $CRICTL_BIN_DIR/crictl && -x $CONTAINERD_BIN_DIR/containerd && -x $COREDNS_BIN &&
    -x $KUBE_ROUTER_BIN ]] &&
    ((gvisor_ok)) && return 0
  log "binaries missing; running cluster/build.sh"
  "$here/build.sh"
}

# Images are optional here: images/import.sh belongs to the images build.
import_images() {
  local script="$REPO_DIR/images/import.sh"
  if [[ -x $script || -f $script ]]; then
    CONTAINERD_ADDRESS="$CONTAINERD_SOCK" bash "$script" >>"$LOG_DIR/image-import.log" 2>&1 ||
      log "warning: images/import.sh failed (see $LOG_DIR/image-import.log)"
  fi
  local images
  images=$(ctr --address "$CONTAINERD_SOCK" -n k8s.io images ls -q 2>/dev/null) || true
  if ! grep -qxF "$PAUSE_IMAGE" <<<"$images"; then
    log "warning: sandbox image $PAUSE_IMAGE is not in containerd; pods will not start until it is imported"
  fi
}

# RuntimeClasses for the two handlers containerd knows, and read access for
# CoreDNS (same rules as upstream's system:coredns role) and for kube-router
# (every informer it starts even with only its policy controller on; upstream's
# role minus the node and event writes that its BGP router needs).
apply_cluster_objects() {
  kctl apply -f - >/dev/null <<'EOF'
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: sandrun:coredns
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: sandrun:coredns
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "sandrun:coredns"}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: "system:sandrun-coredns"}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: sandrun:kube-router
rules:
- apiGroups: [""]
  resources: [namespaces, pods, services, endpoints]
  verbs: [list, watch]
- apiGroups: [""]
  resources: [nodes]
  verbs: [get, list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: sandrun:kube-router
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "sandrun:kube-router"}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: "system:sandrun-kube-router"}
---
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata:
  name: runc
handler: runc
---
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata:
  name: runsc
handler: runsc
EOF
}

main() {
  need_root
  lock_state
  local t0 node ip platform kubelet_since
  t0=$(now)
  ensure_binaries
  if already_up; then
    log "cluster already up ($(elapsed "$t0"))"
    print_env
    return 0
  fi

  mkdir -p "$CONF_DIR" "$LOG_DIR" "$PID_DIR" "$RUN_DIR"
  node=$(detect_node_name)
  ip=$(detect_node_ip)

  # Runtime state left by a crash or reboot (mounts, netns, pod processes)
  # would confuse a fresh containerd; clear it while nothing uses it. A
  # kube-router left running would not notice its rules and ipsets going.
  if ! daemon_running containerd && ! daemon_running kubelet; then
    stop_daemons 5 kube-router
    cleanup_runtime_leftovers
    mkdir -p "$RUN_DIR"
  fi
  host_sysctls_up
  setup_pki "$node" "$ip"

  if [[ -x $GVISOR_BIN_DIR/runsc ]]; then
    platform=$(runsc_platform)
  else
    platform=ptrace
    log "warning: gVisor not built ($GVISOR_BIN_DIR); runtimeClassName runsc will fail"
  fi
  write_runsc_config "$platform"
  write_containerd_config
  write_cni_config
  write_resolv_conf
  with_dns && write_corefile "$ip"
  write_kubelet_config "$node" "$ip"
  write_kube_proxy_config "$node"
  write_crictl_config

  start_containerd
  start_etcd
  wait_until 30 containerd containerd containerd_healthy
  # Importing images takes seconds on a fresh state dir; it overlaps with the
  # control plane starting and is waited for before pods can need them.
  import_images &
  local import_pid=$!
  wait_until 30 etcd etcd etcd_healthy
  log "containerd + etcd ready ($(elapsed "$t0"))"

  start_apiserver "$ip"
  wait_until 90 kube-apiserver kube-apiserver apiserver_healthy
  log "kube-apiserver ready ($(elapsed "$t0"))"

  # A kubelet already running has posted its status; a new one must post anew.
  if daemon_running kubelet; then kubelet_since=0; else kubelet_since=$(date +%s); fi
  start_controller_manager
  start_scheduler
  start_kubelet "$node" "$ip"
  start_kube_proxy
  apply_cluster_objects
  with_dns && start_coredns
  # kube-router looks its node up once at start, so it waits for the node
  # object, and is running before the node turns Ready and takes new pods.
  # Pods of the previous run that kubelet restarts meanwhile are filtered from
  # kube-router's first sync on, a second or two later.
  if with_netpol; then
    wait_until 90 "node $node registered" kubelet kctl get node "$node"
    start_kube_router "$node"
  fi

  wait_until 60 kube-controller-manager kube-controller-manager controller_manager_healthy
  wait_until 60 kube-scheduler kube-scheduler scheduler_healthy
  wait_until 60 kubelet kubelet kubelet_healthy
  wait_until 90 "node $node Ready" kubelet node_ready_since "$node" "$kubelet_since"
  log "node Ready ($(elapsed "$t0"))"
  wait_until 60 kube-proxy kube-proxy kube_proxy_healthy
  if with_dns; then wait_until 60 coredns coredns coredns_healthy; fi
  if with_netpol; then wait_until 60 "kube-router first policy sync" kube-router kube_router_healthy; fi
  wait_until 60 "default ServiceAccount" kube-controller-manager kctl get serviceaccount default -n default
  wait "$import_pid" || true
  log "cluster up in $(elapsed "$t0"): node $node ($ip), gVisor platform $platform"
  log "logs: $LOG_DIR  containerd: $CONTAINERD_SOCK  runsc config: $RUNSC_CONFIG"
  print_env
}

main "$@"
