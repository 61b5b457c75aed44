#!/usr/bin/env bash
# The first README command: everything up, then one Execution through kubectl.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo"
hack/up.sh
source cluster/env.sh

say "running examples/hello-python.yaml"
kubectl delete -f examples/hello-python.yaml --ignore-not-found --wait=true >/dev/null
started=$(date +%s%N)
kubectl apply -f examples/hello-python.yaml
kubectl wait --for=condition=Complete execution/hello-python --timeout=180s >/dev/null
elapsed_ms=$(( ($(date +%s%N) - started) / 1000000 ))
kubectl get execution hello-python -o wide
echo "--- stdout"
kubectl get execution hello-python -o jsonpath='{.status.stdout}'
echo "--- stderr"
kubectl get execution hello-python -o jsonpath='{.status.stderr}'
echo "---"
say "apply → Complete in ${elapsed_ms} ms"

gateway="$(gateway_addr)"
say "the same kind of run through the in-cluster gateway at $gateway (REST, ?wait=30s)"
token=$(sed -n 's/.*name: demo, token: \([0-9a-f]*\),.*/\1/p' "$(hack/gateway-keys.sh)")
curl -fsS -H "Authorization: Bearer $token" -H 'content-type: application/json' \
  "http://$gateway/v1/executions?wait=30s" \
  -d '{"language":"python","code":"import sys; print(sys.stdin.read().upper())","stdin":"hello through the gateway"}'
echo
echo "Use the cluster yourself: source cluster/env.sh && kubectl get executions -A"
echo "Gateway: http://$gateway (keys: $(hack/gateway-keys.sh))"
echo "Operator and gateway pods: kubectl -n sandrun-system get pods"
