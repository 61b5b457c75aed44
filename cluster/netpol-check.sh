#!/usr/bin/env bash
# NetworkPolicy check of a running local cluster (cluster/up.sh first;
# kube-router is its policy engine). Two namespaces:
#   sandrun-netpol-deny  the deny-all policy sandrun gives sandbox pods
#                        (podSelector sandrun.dev/role=execution, policyTypes
#                        Ingress and Egress, no rules);
#   sandrun-netpol-open  no policy: the control. Every probe that must be
#                        blocked in the other namespace must succeed here, so
#                        a "blocked" is the policy's doing and not a broken probe.
# From a pod labelled sandrun.dev/role=execution in each, per runtime class,
# a bash probe (/dev/tcp, getent) tries TCP to the API server's ClusterIP,
# TCP to another pod's IP and a DNS lookup at CoreDNS; the control pod also
# tries TCP into an execution pod of the deny namespace (ingress).
# It also measures the time from creating the policy to its enforcement, how
# long a new pod in a namespace that has the policy can reach the network
# before kube-router has programmed it, and kube-router's memory.
# Prints a table (case, expected, observed) and "N passed, N failed".
# Every address probed is on this machine: pod IPs, the node's (CoreDNS, and
# the API server behind its Service IP); no probe leaves it.
#
# Usage: cluster/netpol-check.sh
# Env:   NETPOL_RUNTIMES (default "runc": this cluster runs runsc sandboxes
#        with network=none, so they have no network to filter; "runc runsc"
#        needs that line dropped from cluster/lib/config.sh), NETPOL_IMAGE (default
#        localhost/sandrun-bash:bookworm: bash, timeout, getent and perl),
#        NETPOL_KEEP=1 leaves the namespaces for inspection.
set -euo pipefail
LOG_TAG=netpol
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/lib/common.sh"

DENY_NS=sandrun-netpol-deny
OPEN_NS=sandrun-netpol-open
IMAGE=${NETPOL_IMAGE:-localhost/sandrun-bash:bookworm}
read -r -a RUNTIMES <<<"${NETPOL_RUNTIMES:-runc}"
API_IP=$API_SERVICE_IP
DNS_NAME=kubernetes.default.svc.$CLUSTER_DOMAIN
# How long each new prober pod probes from its first instant, to see when
# kube-router starts filtering it.
EARLY_SECONDS=6

# Shell functions every probe runs inside the pods. Each prints one word:
# ok, refused, timeout, unreachable, or failed(...).
# shellcheck disable=SC2016 # expanded inside the pods
PROBES='
T=${T:-3}
probe_tcp() { # HOST PORT [REPLY]: connect, and read REPLY if given
  local out rc
  out=$(timeout "$T" bash -c '\''exec 3<>"/dev/tcp/$1/$2" || exit 1
    [[ -z $3 ]] || { read -r -t 2 line <&3 && [[ $line == "$3" ]]; }'\'' _ "$@" 2>&1) && rc=0 || rc=$?
  if ((rc == 0)); then echo ok
  elif ((rc == 124)); then echo timeout
  elif [[ $out == *refused* ]]; then echo refused
  elif [[ $out == *nreachable* || $out == *"No route"* ]]; then echo unreachable
  else echo "failed(${out##*: })"; fi
}
probe_dns() { # NAME WANT-IP: an A lookup at the pod'\''s nameserver (CoreDNS)
  local out rc
  out=$(timeout "$T" getent ahostsv4 "$1." 2>&1) && rc=0 || rc=$?
  if ((rc == 0)) && [[ $out == *"$2"* ]]; then echo ok
  elif ((rc == 124)); then echo timeout
  else echo "failed(exit $rc)"; fi
}
# probe_loop HOST SECONDS: TCP every 50 ms, one "EPOCHREALTIME result" line
# each (SECONDS 0: forever), then "done".
probe_loop() {
  local end=$((${EPOCHREALTIME%.*} + $2))
  while (($2 == 0 || ${EPOCHREALTIME%.*} < end)); do
    echo "$EPOCHREALTIME $(T=1 probe_tcp "$1" 8080 pong)"
    sleep 0.05
  done
  echo done
}
'
# A TCP server that answers "pong" (perl-base is in every Debian image).
# shellcheck disable=SC2016 # perl code
SERVER='use IO::Socket::INET; $| = 1;
my $s = IO::Socket::INET->new(LocalPort => 8080, Listen => 64, ReuseAddr => 1) or die "listen: $!";
print "listening\n";
while (my $c = $s->accept) { print $c "pong\n"; close $c }'

rows=() passed=0 failed=0
declare -A FIGURES=()

# json_list ARG...: the arguments as a JSON (so also YAML) list of strings.
json_list() {
  local a sep="" out="["
  for a in "$@"; do out+="$sep$(printf '%s' "$a" | jq -Rs .)"; sep=", "; done
  echo "$out]"
}

# pod_manifest NS NAME RUNTIME ROLE-LABEL(0/1) SERVER(0/1) ARGV...
# The sandbox pods' own security settings: uid 65532, nothing writable, no
# capabilities, no token, no service links. DNS goes to CoreDNS only, with
# short timeouts.
pod_manifest() {
  local ns=$1 name=$2 rt=$3 role=$4 server=$5 labels probe=""
  shift 5
  labels="app: $name"
  ((role)) && labels+=", sandrun.dev/role: execution"
  ((server)) && probe='    readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}'
  cat <<EOF
apiVersion: v1
kind: Pod
metadata: {name: $name, namespace: $ns, labels: {$labels}}
spec:
  runtimeClassName: $rt
  restartPolicy: Never
  terminationGracePeriodSeconds: 0
  automountServiceAccountToken: false
  enableServiceLinks: false
  dnsPolicy: None
  dnsConfig:
    nameservers: [$NODE_IP]
    options: [{name: timeout, value: "1"}, {name: attempts, value: "1"}]
  securityContext:
    runAsNonRoot: true
    runAsUser: 65532
    runAsGroup: 65532
    seccompProfile: {type: RuntimeDefault}
  containers:
  - name: main
    image: $IMAGE
    imagePullPolicy: Never
    command: $(json_list "$@")
    resources: {requests: {cpu: 10m, memory: 16Mi}, limits: {cpu: 500m, memory: 64Mi}}
    securityContext:
      allowPrivilegeEscalation: false
      readOnlyRootFilesystem: true
      capabilities: {drop: [ALL]}
$probe
EOF
}

# start_pod NS NAME RUNTIME ROLE SERVER ARGV...
start_pod() { pod_manifest "$@" | kctl apply -f - >/dev/null; }

ready() { kctl -n "$1" wait --for=condition=Ready "pod/$2" --timeout=90s >/dev/null; }
pod_ip() { kctl -n "$1" get pod "$2" -o jsonpath='{.status.podIP}'; }
# in_pod NS POD SHELL-CODE: run CODE after the probe functions, in the pod.
in_pod() { kctl -n "$1" exec "$2" -- bash -c "$PROBES"$'\n'"$3" 2>&1 | tail -n 1 || true; }

deny_policy() {
  kctl apply -f - >/dev/null <<EOF
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: sandrun-deny-all, namespace: $DENY_NS}
spec:
  podSelector:
    matchLabels:
      sandrun.dev/role: execution
  policyTypes: [Ingress, Egress]
EOF
}

# record CASE EXPECTED OBSERVED: expected "open" passes on ok only,
# "blocked" on anything but ok.
record() {
  local case=$1 want=$2 got=$3 verdict
  if [[ $want == open && $got == ok ]] || [[ $want == blocked && $got != ok ]]; then
    verdict=pass; passed=$((passed + 1))
  else
    verdict=FAIL; failed=$((failed + 1))
  fi
  rows+=("$case|$want|$got|$verdict")
}

# ---- measurements from probe_loop logs -------------------------------------

# loop_lines NS POD: the "time result" lines of its log.
loop_lines() { kctl -n "$1" logs "$2" 2>/dev/null | grep -E '^[0-9]+\.[0-9]+ ' || true; }

# blocked_since / connected_since NS POD T0: true once a probe started after
# T0 was blocked / got through.
blocked_since() {
  loop_lines "$1" "$2" | awk -v t0="$3" '$1 > t0 && $2 != "ok" { found = 1 } END { exit !found }'
}
connected_since() {
  loop_lines "$1" "$2" | awk -v t0="$3" '$1 > t0 && $2 == "ok" { found = 1 } END { exit !found }'
}

# Seconds from T0 to the first blocked probe started after it, and how many
# probes after T0 still got through.
enforcement_after() {
  loop_lines "$1" "$2" | awk -v t0="$3" '
    $1 <= t0 { next }
    $2 == "ok" && !blocked { through++; next }
    !blocked { blocked = $1 }
    END { printf "%.2f s (%d probes after it still connected)", blocked - t0, through }'
}

# What a pod that probes from its first instant saw: the first probe after
# creation, and how long it kept connecting.
exposure() {
  loop_lines "$1" "$2" | awk -v t0="$3" -v secs="$EARLY_SECONDS" '
    NR == 1 { first = $1 }
    $2 == "ok" && !blocked { through++; last = $1; next }
    !blocked { blocked = $1 }
    END {
      if (!first) { print "no probe ran"; exit }
      printf "first probe %.2f s after create; ", first - t0
      if (!through) printf "blocked from the first probe"
      else if (!blocked) printf "%d probes connected, never blocked in %d s", through, secs
      else printf "%d probes connected, the last %.2f s after the first; blocked from %.2f s", through, last - first, blocked - first
    }'
}

loop_done() { kctl -n "$1" logs "$2" 2>/dev/null | grep -qx 'done'; }

kube_router_memory() {
  local pid
  pid=$(daemon_pid kube-router) || { echo "kube-router not running"; return; }
  awk '/^VmRSS|^VmHWM/ { printf "%s %.1f MiB  ", $1, $2 / 1024 }' "/proc/$pid/status"
}

# ---- the check ---------------------------------------------------------------

main() {
  [[ -s $KUBECONFIG_ADMIN ]] || die "no cluster: run cluster/up.sh"
  daemon_running kube-router || log "warning: kube-router is not running; nothing enforces NetworkPolicy"
  NODE_IP=$(kctl get nodes -o jsonpath='{.items[0].status.addresses[?(@.type=="InternalIP")].address}')
  local ns rt t0 target guarded
  kctl delete namespace "$DENY_NS" "$OPEN_NS" --ignore-not-found --wait=true >/dev/null
  kctl create namespace "$DENY_NS" >/dev/null
  kctl create namespace "$OPEN_NS" >/dev/null

  # The peer pods: a server in the control namespace (the "other pod" that
  # egress goes to), and an execution-labelled server in the deny namespace
  # (the target of the ingress case).
  start_pod "$OPEN_NS" target runc 0 1 perl -e "$SERVER"
  start_pod "$DENY_NS" guarded runc 1 1 perl -e "$SERVER"
  ready "$OPEN_NS" target || die "pod target did not get Ready"
  ready "$DENY_NS" guarded || die "pod guarded did not get Ready"
  target=$(pod_ip "$OPEN_NS" target)
  guarded=$(pod_ip "$DENY_NS" guarded)

  # Policy creation to enforcement: an execution pod of the deny namespace
  # probes the target every 50 ms; once it connects, the policy is created.
  start_pod "$DENY_NS" watch runc 1 0 bash -c "$PROBES"$'\n'"probe_loop $target 0"
  ready "$DENY_NS" watch || die "pod watch did not get Ready"
  t0=$(now)
  wait_until 30 "watch to connect before the policy" "" connected_since "$DENY_NS" watch "$t0" ||
    log "warning: watch never connected before the policy; the timing below means little"
  t0=$(now)
  deny_policy
  if wait_until 30 "the deny-all policy to be enforced" kube-router blocked_since "$DENY_NS" watch "$t0"; then
    FIGURES[policy]=$(enforcement_after "$DENY_NS" watch "$t0")
  else
    FIGURES[policy]="not enforced within 30 s"
  fi

  # Probers, created once the policy exists, as sandrun's pods are. Each
  # probes the target from its first instant for a few seconds (the window
  # before kube-router programs a new pod), then idles for the probes below.
  declare -A created=()
  for rt in "${RUNTIMES[@]}"; do
    for ns in "$DENY_NS" "$OPEN_NS"; do
      created[$ns/$rt]=$(now)
      start_pod "$ns" "probe-$rt" "$rt" 1 0 bash -c \
        "$PROBES"$'\n'"probe_loop $target $EARLY_SECONDS; exec sleep infinity"
    done
  done
  for rt in "${RUNTIMES[@]}"; do
    for ns in "$DENY_NS" "$OPEN_NS"; do
      ready "$ns" "probe-$rt" || die "pod $ns/probe-$rt did not get Ready"
    done
  done
  for rt in "${RUNTIMES[@]}"; do
    for ns in "$DENY_NS" "$OPEN_NS"; do
      wait_until $((EARLY_SECONDS + 30)) "$ns/probe-$rt's first probes" "" loop_done "$ns" "probe-$rt"
      FIGURES[early-$ns-$rt]=$(exposure "$ns" "probe-$rt" "${created[$ns/$rt]}")
    done
  done

  for rt in "${RUNTIMES[@]}"; do
    for ns in "$DENY_NS" "$OPEN_NS"; do
      local want=blocked where=deny
      [[ $ns == "$OPEN_NS" ]] && want=open where=open
      record "$rt $where: TCP to API ClusterIP $API_IP:443" "$want" \
        "$(in_pod "$ns" "probe-$rt" "probe_tcp $API_IP 443")"
      record "$rt $where: TCP to another pod $target:8080" "$want" \
        "$(in_pod "$ns" "probe-$rt" "probe_tcp $target 8080 pong")"
      record "$rt $where: DNS lookup at CoreDNS $NODE_IP:53" "$want" \
        "$(in_pod "$ns" "probe-$rt" "probe_dns $DNS_NAME $API_IP")"
    done
    record "$rt open: TCP into deny ns execution pod $guarded:8080" blocked \
      "$(in_pod "$OPEN_NS" "probe-$rt" "probe_tcp $guarded 8080 pong")"
  done

  printf '\n%-62s %-8s %-15s %s\n' case expected observed verdict
  local row c w g v
  for row in "${rows[@]}"; do
    IFS='|' read -r c w g v <<<"$row"
    printf '%-62s %-8s %-15s %s\n' "$c" "$w" "$g" "$v"
  done
  echo
  echo "policy created -> enforced (runc pod probing every 50 ms): ${FIGURES[policy]}"
  for rt in "${RUNTIMES[@]}"; do
    echo "new $rt pod, deny ns: ${FIGURES[early-$DENY_NS-$rt]}"
    echo "new $rt pod, open ns: ${FIGURES[early-$OPEN_NS-$rt]}"
  done
  echo "kube-router memory: $(kube_router_memory)"

  if [[ ${NETPOL_KEEP:-0} != 1 ]]; then
    kctl delete namespace "$DENY_NS" "$OPEN_NS" --wait=false >/dev/null
  fi
  echo "netpol: $passed passed, $failed failed"
  ((failed == 0))
}

main "$@"
