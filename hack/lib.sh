# Shared by the hack/ scripts: paths, logging, the Rust build.
# shellcheck shell=bash
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export SANDRUN_CACHE="${SANDRUN_CACHE:-/var/cache/sandrun}"
export SANDRUN_STATE="${SANDRUN_STATE:-/var/lib/sandrun-cluster}"
target_dir="${CARGO_TARGET_DIR:-$repo/target}"
runner_bin="$target_dir/x86_64-unknown-linux-gnu/release/sandrun-runner"
operator_bin="$target_dir/debug/sandrun-operator"
operator_log="$SANDRUN_STATE/logs/operator.log"
operator_pid="$SANDRUN_STATE/run/operator.pid"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# The runner goes into every sandbox, so it is a static binary: explicit
# --target keeps crt-static away from build scripts and proc macros.
build_rust() {
  say "building the runner (static), the operator, the gateway and the CLI"
  RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --release --locked -p sandrun-runner --target x86_64-unknown-linux-gnu
  cargo build --locked -p sandrun-operator -p sandrun-gateway -p sandrun-cli
}
