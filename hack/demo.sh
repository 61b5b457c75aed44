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
echo "Use the cluster yourself: source cluster/env.sh && kubectl get executions"
