#!/usr/bin/env bash
# End-to-end check of a running local cluster (cluster/up.sh first):
#   - a runc pod and a runsc (gVisor) pod start, log, and run the kernel
#     they should (gVisor reports its own kernel version);
#   - pod-to-pod and pod-to-Service TCP through the CNI bridge and kube-proxy,
#     and the Service's DNS name when cluster DNS (CoreDNS) is built;
#   - a Job under runsc completes.
# Prints the pod start time per runtime and a "N passed, N failed" line.
#
# Usage: cluster/smoke.sh        Env: SMOKE_IMAGE (needs python3),
#        SMOKE_KEEP=1 leaves the namespace for inspection.
set -euo pipefail
LOG_TAG=smoke
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/lib/common.sh"

NS=sandrun-smoke
IMAGE=${SMOKE_IMAGE:-localhost/sandrun-python:bookworm}
passed=0 failed=0

check() {
  local name=$1; shift
  if "$@"; then
    passed=$((passed + 1)); log "ok   $name"
  else
    failed=$((failed + 1)); log "FAIL $name"
  fi
}

# pod NAME RUNTIMECLASS PYTHON-CODE [EXTRA-SPEC-YAML]
# shellcheck disable=SC2001 # indenting a multi-line block
pod_manifest() {
  cat <<EOF
apiVersion: v1
kind: Pod
metadata: {name: $1, namespace: $NS, labels: {app: $1}}
spec:
  runtimeClassName: $2
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: $IMAGE
    imagePullPolicy: Never
    command:
    - python3
    - -c
    - |
$(sed 's/^/      /' <<<"$3")
${4:-}
EOF
}

# start_pod NAME RUNTIME CODE: create and wait for Ready; prints seconds taken.
start_pod() {
  local t0
  t0=$(now)
  pod_manifest "$1" "$2" "$3" | kctl apply -f - >/dev/null
  kctl -n "$NS" wait --for=condition=Ready "pod/$1" --timeout=90s >/dev/null || return 1
  elapsed "$t0"
}

runtime_pod() {
  local rt=$1 secs
  local code="import os,time; print('hello from $rt', os.uname().release, flush=True); time.sleep(3600)"
  secs=$(start_pod "hello-$rt" "$rt" "$code") || return 1
  log "$rt pod Ready in $secs (create -> Ready, includes sandbox + container start)"
  sleep 0.5
  kctl -n "$NS" logs "hello-$rt" | grep -q "hello from $rt"
}

# gVisor implements its own kernel and reports a fixed release, not the host's.
kernel_differs() {
  local host_release pod_release
  host_release=$(uname -r)
  pod_release=$(kctl -n "$NS" logs hello-runsc | awk '{print $4}')
  [[ -n $pod_release && $pod_release != "$host_release" ]]
}

tcp_checks() {
  local server='import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8080)); s.listen(); print("listening", flush=True)
while True:
    c, _ = s.accept(); c.sendall(b"pong"); c.close()'
  local probe='    readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}'
  start_pod echo-server runc "$server" "$probe" >/dev/null || return 1
  kctl -n "$NS" expose pod echo-server --name smoke-echo --port 8080 >/dev/null
}

job_manifest() {
  local server_ip=$1 dns_name=""
  # With cluster DNS, also reach the Service by name (search path: namespace).
  [[ -x $COREDNS_BIN ]] && dns_name=smoke-echo
  cat <<EOF
apiVersion: batch/v1
kind: Job
metadata: {name: tcp-client, namespace: $NS}
spec:
  backoffLimit: 0
  template:
    spec:
      runtimeClassName: runsc
      restartPolicy: Never
      containers:
      - name: main
        image: $IMAGE
        imagePullPolicy: Never
        env: [{name: SERVER_IP, value: "$server_ip"}, {name: DNS_NAME, value: "$dns_name"}]
        command:
        - python3
        - -c
        - |
          import os, socket, time
          # kube-proxy programs a new Service within a second or two; until
          # then its VIP rejects connections, so retry briefly.
          hosts = [os.environ["SERVER_IP"], os.environ["SMOKE_ECHO_SERVICE_HOST"], os.environ["DNS_NAME"]]
          for host in filter(None, hosts):
              for attempt in range(30):
                  try:
                      with socket.create_connection((host, 8080), timeout=5) as c:
                          print("reply from", host, c.recv(16).decode(), flush=True)
                      break
                  except OSError as e:
                      if attempt == 29:
                          raise
                      time.sleep(0.5)
EOF
}

job_finished() {
  [[ -n $(kctl -n "$NS" get job "$1" -o jsonpath='{.status.succeeded}{.status.failed}') ]]
}

job_checks() {
  local ip
  ip=$(kctl -n "$NS" get pod echo-server -o jsonpath='{.status.podIP}')
  job_manifest "$ip" | kctl apply -f - >/dev/null
  wait_until 120 "job tcp-client to finish" "" job_finished tcp-client
  if [[ $(kctl -n "$NS" get job tcp-client -o jsonpath='{.status.succeeded}') != 1 ]]; then
    kctl -n "$NS" logs job/tcp-client >&2 || true
    return 1
  fi
  local want=2
  [[ -x $COREDNS_BIN ]] && want=3
  [[ $(kctl -n "$NS" logs job/tcp-client | grep -c 'pong') == "$want" ]]
}

main() {
  [[ -s $KUBECONFIG_ADMIN ]] || die "no cluster: run cluster/up.sh"
  kctl delete namespace "$NS" --ignore-not-found --wait=true >/dev/null
  kctl create namespace "$NS" >/dev/null
  # Service env vars (SMOKE_ECHO_SERVICE_HOST) need the Service before the Job.
  check "runc pod runs and logs" runtime_pod runc
  check "runsc pod runs and logs" runtime_pod runsc
  check "runsc pod runs under gVisor's kernel" kernel_differs
  check "server pod + Service" tcp_checks
  check "runsc Job reaches the server by pod IP, Service IP (and DNS name) over TCP" job_checks
  if [[ ${SMOKE_KEEP:-0} != 1 ]]; then
    kctl delete namespace "$NS" --wait=false >/dev/null
  fi
  echo "smoke: $passed passed, $failed failed"
  ((failed == 0))
}

main "$@"
