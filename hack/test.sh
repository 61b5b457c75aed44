#!/usr/bin/env bash
# The second README command: every test. Static checks and unit tests first
# (no cluster), then the end-to-end suite on the real local cluster.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo"

say "format and lints"
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings

say "unit tests (no cluster)"
cargo test --locked --workspace --exclude sandrun-e2e

hack/up.sh
source cluster/env.sh
say "end-to-end tests on the local cluster"
if ! cargo test --locked -p sandrun-e2e -- --test-threads="${E2E_THREADS:-4}"; then
  echo "--- last operator log lines" >&2
  tail -50 "$operator_log" >&2
  exit 1
fi
