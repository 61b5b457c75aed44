#!/usr/bin/env bash
# The playground page's tests: unit tests of its modules (Node's test
# runner, no browser), then end-to-end tests in headless Chromium (Debian's
# package, driven by playwright-core; no browser download) against the
# in-cluster gateway of `make up`, with the `demo` key. The screenshots in
# docs/playground.md are taken by this run, into docs/images/.
#
#   hack/test-web.sh            needs the local cluster up (make up)
#   SANDRUN_GATEWAY_ADDR=HOST:PORT hack/test-web.sh   another gateway
#   SANDRUN_SCREENSHOTS=DIR     where the screenshots go (default docs/images;
#                               empty: none)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo"

chromium_bin="${CHROMIUM:-/usr/bin/chromium}"
if [[ ! -x $chromium_bin ]]; then
  say "installing Debian's chromium for the browser tests"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
# Debian's /usr/bin/chromium is a wrapper script; this says whether it runs.
"$chromium_bin" --version >&2 2>/dev/null || true

build_web

say "playground: unit tests"
(cd web && node --test test/unit/)

source cluster/env.sh
addr="${SANDRUN_GATEWAY_ADDR:-$(gateway_addr)}"
keys_file="$(hack/gateway-keys.sh)"
key=$(sed -n 's/.*name: *demo, *token: *\([^,} ]*\).*/\1/p' "$keys_file")
[[ -n $key ]] || die "no demo key in $keys_file"
curl -fsS "http://$addr/readyz" >/dev/null || die "the gateway at $addr is not ready: run make up"

say "playground: browser tests against http://$addr"
export SANDRUN_URL="http://$addr" SANDRUN_KEY="$key" CHROMIUM="$chromium_bin"
export SANDRUN_SCREENSHOTS="${SANDRUN_SCREENSHOTS-$repo/docs/images}"
cd web
if ! node --test --test-concurrency=1 test/browser/; then
  echo "--- last gateway log lines" >&2
  kubectl -n sandrun-system logs --tail=40 -l app.kubernetes.io/component=gateway >&2 || true
  exit 1
fi
