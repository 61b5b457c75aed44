# How each daemon is started and how we know it is healthy. Sourced by up.sh
# after common.sh. Control-plane components talk to each other over loopback;
# only the API server (6443) and the kubelet (10250) listen on the node IP.
# shellcheck shell=bash

CURL=(curl -sf --max-time 2)

start_containerd() {
  mkdir -p "$CONTAINERD_ROOT" "$CONTAINERD_STATE"
  start_daemon containerd containerd --config "$CONF_DIR/containerd.toml"
}
containerd_healthy() { ctr --address "$CONTAINERD_SOCK" version; }

start_etcd() {
  mkdir -p "$ETCD_DIR" && chmod 700 "$ETCD_DIR"
  # Plain HTTP on loopback only: etcd is reachable from this host alone, and
  # only the API server talks to it.
  start_daemon etcd etcd \
    --name sandrun \
    --data-dir "$ETCD_DIR" \
    --listen-client-urls "$ETCD_CLIENT_URL" \
    --advertise-client-urls "$ETCD_CLIENT_URL" \
    --listen-peer-urls "$ETCD_PEER_URL" \
    --initial-advertise-peer-urls "$ETCD_PEER_URL" \
    --initial-cluster "sandrun=$ETCD_PEER_URL" \
    --initial-cluster-state new \
    --log-level warn
}
etcd_healthy() { "${CURL[@]}" "$ETCD_CLIENT_URL/health" | grep -q '"health":"true"'; }

start_apiserver() {
  local ip=$1
  start_daemon kube-apiserver kube-apiserver \
    --etcd-servers="$ETCD_CLIENT_URL" \
    --bind-address=0.0.0.0 \
    --secure-port="$API_PORT" \
    --advertise-address="$ip" \
    --tls-cert-file="$PKI_DIR/apiserver.crt" \
    --tls-private-key-file="$PKI_DIR/apiserver.key" \
    --client-ca-file="$PKI_DIR/ca.crt" \
    --authorization-mode=Node,RBAC \
    --enable-admission-plugins=NodeRestriction \
    --allow-privileged=true \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$PKI_DIR/sa.pub" \
    --service-account-signing-key-file="$PKI_DIR/sa.key" \
    --kubelet-client-certificate="$PKI_DIR/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$PKI_DIR/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority="$PKI_DIR/ca.crt" \
    --kubelet-preferred-address-types=InternalIP,Hostname \
    --requestheader-client-ca-file="$PKI_DIR/front-proxy-ca.crt" \
    --requestheader-allowed-names=front-proxy-client \
    --requestheader-username-headers=X-Remote-User \
    --requestheader-group-headers=X-Remote-Group \
    --requestheader-extra-headers-prefix=X-Remote-Extra- \
    --proxy-client-cert-file="$PKI_DIR/front-proxy-client.crt" \
    --proxy-client-key-file="$PKI_DIR/front-proxy-client.key" \
    --profiling=false
}
apiserver_healthy() {
  "${CURL[@]}" --cacert "$PKI_DIR/ca.crt" --cert "$PKI_DIR/admin.crt" --key "$PKI_DIR/admin.key" \
    "https://127.0.0.1:$API_PORT/readyz" | grep -q '^ok'
}

# One instance of each: leader election would only make a restart wait for
# the previous lease to expire.
# The client-side rate limits of kube-controller-manager and the scheduler
# default to 20 and 50 requests/s, sized for 2014's clusters: at a thousand
# Jobs they, not the machine, set the pace (and then sandrun's benchmark
# would measure the limiter). Managed control planes raise them the same way.
CONTROL_PLANE_CLIENT_LIMITS=(--kube-api-qps=300 --kube-api-burst=600)

start_controller_manager() {
  local kc="$CONF_DIR/controller-manager.kubeconfig"
  start_daemon kube-controller-manager kube-controller-manager \
    --kubeconfig="$kc" \
    --authentication-kubeconfig="$kc" \
    --authorization-kubeconfig="$kc" \
    --bind-address=127.0.0.1 \
    --leader-elect=false \
    --use-service-account-credentials=true \
    --service-account-private-key-file="$PKI_DIR/sa.key" \
    --root-ca-file="$PKI_DIR/ca.crt" \
    --cluster-signing-cert-file="$PKI_DIR/ca.crt" \
    --cluster-signing-key-file="$PKI_DIR/ca.key" \
    --controllers='*' \
    --flex-volume-plugin-dir="$KUBELET_DIR/volume-plugins" \
    --profiling=false \
    "${CONTROL_PLANE_CLIENT_LIMITS[@]}" \
    --concurrent-job-syncs=20 \
    --concurrent-gc-syncs=40
}
controller_manager_healthy() { "${CURL[@]}" -k https://127.0.0.1:10257/healthz | grep -q '^ok'; }

start_scheduler() {
  local kc="$CONF_DIR/scheduler.kubeconfig"
  start_daemon kube-scheduler kube-scheduler \
    --kubeconfig="$kc" \
    --authentication-kubeconfig="$kc" \
    --authorization-kubeconfig="$kc" \
    --bind-address=127.0.0.1 \
    --leader-elect=false \
    --profiling=false \
    "${CONTROL_PLANE_CLIENT_LIMITS[@]}"
}
scheduler_healthy() { "${CURL[@]}" -k https://127.0.0.1:10259/healthz | grep -q '^ok'; }

start_kubelet() {
  local node=$1 ip=$2
  mkdir -p "$KUBELET_DIR" "$POD_LOG_DIR"
  start_daemon kubelet kubelet \
    --config="$CONF_DIR/kubelet.yaml" \
    --kubeconfig="$CONF_DIR/kubelet.kubeconfig" \
    --root-dir="$KUBELET_DIR" \
    --cert-dir="$KUBELET_DIR/pki" \
    --hostname-override="$node" \
    --node-ip="$ip"
}
kubelet_healthy() { "${CURL[@]}" http://127.0.0.1:10248/healthz | grep -q '^ok'; }

start_kube_proxy() {
  start_daemon kube-proxy kube-proxy --config="$CONF_DIR/kube-proxy.yaml"
}
kube_proxy_healthy() { "${CURL[@]}" http://127.0.0.1:10256/healthz >/dev/null; }

start_coredns() {
  start_daemon coredns "$COREDNS_BIN" -conf "$CONF_DIR/Corefile"
}
# ready answers 200 once the kubernetes plugin has synced with the API.
coredns_healthy() { "${CURL[@]}" http://127.0.0.1:10055/ready >/dev/null; }

# NetworkPolicy: kube-router's network policy controller and nothing else
# (no BGP routing, no IPVS service proxy). It programs iptables (filter table:
# KUBE-ROUTER-*, KUBE-POD-FW-*, KUBE-NWPLCY-* chains) and ipsets (KUBE-SRC-*,
# KUBE-DST-*) on every change to pods, namespaces or policies, and in full
# every 5 minutes. Its health server would listen on all addresses and share
# a mux with pprof, so it is off; kube_router_healthy reads iptables instead.
# It looks its node up by name at start, so the node must be registered.
start_kube_router() {
  local node=$1
  start_daemon kube-router "$KUBE_ROUTER_BIN" \
    --kubeconfig="$CONF_DIR/kube-router.kubeconfig" \
    --hostname-override="$node" \
    --run-firewall=true \
    --run-router=false \
    --run-service-proxy=false \
    --run-loadbalancer=false \
    --enable-ipv4=true \
    --enable-ipv6=false \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --health-port=0 \
    --metrics-port=0
}
# The rule that accepts policy-checked traffic is appended by the end of a
# full sync, so its presence means pods and policies have been programmed.
# (When only kube-router had died, the rule of its previous run is still
# there, and the new one's first sync follows within a second of its start.)
kube_router_healthy() {
  iptables -w 5 -S KUBE-ROUTER-FORWARD 2>/dev/null | grep -q -- '--mark 0x20000/0x20000 -j ACCEPT'
}

# The node counts as up once kubelet has posted Ready since it was started;
# etcd keeps the Ready status of the previous run, which proves nothing.
node_ready_since() {
  local node=$1 since=$2 out status beat
  out=$(kctl get node "$node" -o jsonpath='{range .status.conditions[?(@.type=="Ready")]}{.status} {.lastHeartbeatTime}{end}') || return 1
  read -r status beat <<<"$out"
  [[ $status == True ]] || return 1
  (($(date -d "$beat" +%s) >= since))
}
