#!/usr/bin/env bash
# Builds everything, starts the local cluster, installs the CRD and (re)starts
# the operator against it. Idempotent; a warm run takes seconds.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo"

build_rust
say "building the cluster binaries (cached under $SANDRUN_CACHE)"
cluster/build.sh
say "building OCI images"
RUNNER_BIN="$runner_bin" images/build.sh
say "starting the cluster"
cluster/up.sh >/dev/null
source cluster/env.sh
# Images may have been rebuilt while the cluster was already up.
images/import.sh

say "installing the Execution CRD"
kubectl apply --server-side --force-conflicts -f crds/executions.sandrun.dev.yaml >/dev/null
kubectl wait --for=condition=Established crd/executions.sandrun.dev --timeout=60s >/dev/null

hack/operator.sh restart
hack/gateway.sh restart
