#!/usr/bin/env bash
# The second README command: every test. Static checks and unit tests first
# (no cluster), then the end-to-end suite on the real local cluster.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo"

say "shell scripts: shellcheck"
hack/lint-shell.sh

say "format and lints"
need_c_build_tools
build_web
cargo fmt --all -- --check
cargo clippy --locked --workspace --all-targets -- -D warnings

say "kind-config.yaml: kind's own config types, containerd patches, gVisor mounts"
hack/check-kind-config.sh

# The workspace's default members are the crates whose tests need no
# cluster (all but tests/, the end-to-end crate).
say "unit tests (no cluster)"
cargo test --locked

hack/up.sh
source cluster/env.sh
export SANDRUN_GATEWAY_ADDR="${SANDRUN_GATEWAY_ADDR:-$(gateway_addr)}"

say "chart: lint, render, validate against the Kubernetes schemas"
hack/lint-chart.sh

logs_on_failure() {
  echo "--- last operator and gateway log lines" >&2
  kubectl -n sandrun-system logs --prefix --tail=40 -l app.kubernetes.io/name=sandrun --max-log-requests=10 >&2 || true
}

say "NetworkPolicy enforcement on the local cluster (kube-router)"
cluster/netpol-check.sh

say "end-to-end tests on the local cluster"
if ! cargo test --locked -p sandrun-e2e -- --test-threads="${E2E_THREADS:-4}"; then
  logs_on_failure
  exit 1
fi

say "playground page: unit tests, then headless Chromium against the in-cluster gateway"
if ! hack/test-web.sh; then
  logs_on_failure
  exit 1
fi

say "gateway fuzzing (schemathesis against its OpenAPI document)"
hack/fuzz-gateway.sh

# The security, warm-sandbox and fault suites run alone, each printing its
# table: the first fills the node with hostile programs (cold and warm), the
# second fills it with warm pools, the third kills sandrun's pods and the
# API server.
for suite in hostile warm faults; do
  say "$suite suite"
  if ! cargo test --locked -p sandrun-e2e --test "$suite" -- --ignored --nocapture; then
    logs_on_failure
    exit 1
  fi
done

# Last, alone: it uninstalls sandrun, installs it again and kills the leader.
say "install lifecycle: helm uninstall leaves nothing, install runs, leader failover"
if ! cargo test --locked -p sandrun-e2e --test install -- --ignored --nocapture; then
  logs_on_failure
  exit 1
fi
