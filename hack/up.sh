#!/usr/bin/env bash
# Builds everything, starts the local cluster and installs sandrun into it
# with its Helm chart. Idempotent; a warm run takes seconds.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo"

build_rust
say "building the cluster binaries (cached under $SANDRUN_CACHE)"
cluster/build.sh
say "building OCI images"
RUNNER_BIN="$runner_bin" images/build.sh
hack/tools.sh
say "starting the cluster"
cluster/up.sh >/dev/null
source cluster/env.sh
# Images may have been rebuilt while the cluster was already up.
images/import.sh

# The operator and gateway run in-cluster, installed by the Helm chart.
hack/install.sh
