#!/usr/bin/env bash
# Fuzzes the gateway's REST API from its own OpenAPI document with
# schemathesis: once with the `demo` key, once without a key. Every answer
# must be a documented status with a body that matches the document, never
# a 5xx, and every error a JSON ErrorBody.
#
# Bounded for CI: a fixed number of examples per operation and a fixed
# seed. Valid submissions start real sandboxes, so the hooks below keep them
# short (2 s timeout, a short ?wait=) and on a local image; the ones still
# running at the end are cancelled, and the gateway's TTL deletes the rest.
#
#   hack/fuzz-gateway.sh        # against $SANDRUN_GATEWAY_ADDR, default the in-cluster Service
#   FUZZ_EXAMPLES=100 FUZZ_SEED=7 hack/fuzz-gateway.sh
#
# schemathesis is installed once from PyPI into a venv under the cache; a
# second run does not touch the network (but for the gateway).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo"

source "$repo/cluster/versions.env"
version=$SCHEMATHESIS_VERSION
venv="$SANDRUN_CACHE/tools/schemathesis-$version"
examples="${FUZZ_EXAMPLES:-50}"
seed="${FUZZ_SEED:-20261125}"
# A runtime image every node has (charts/sandrun/values.yaml): an image
# name made up by the fuzzer would make containerd try to pull it.
local_image="${FUZZ_LOCAL_IMAGE:-localhost/sandrun-bash:bookworm}"

install_schemathesis() {
  [[ -f $venv/.installed ]] && return 0
  say "installing schemathesis $version into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$version"
  touch "$venv/.installed"
}
install_schemathesis

if [[ -z ${SANDRUN_GATEWAY_ADDR:-} ]]; then
  source "$repo/cluster/env.sh"
  SANDRUN_GATEWAY_ADDR=$(gateway_addr)
fi
base="http://$SANDRUN_GATEWAY_ADDR"
curl -fsS --max-time 10 "$base/readyz" >/dev/null || die "no ready gateway at $base (hack/up.sh starts one)"
keys_file=$(hack/gateway-keys.sh)
token=$("$venv/bin/python" - "$keys_file" <<'PY'
import sys, yaml
keys = yaml.safe_load(open(sys.argv[1]))["keys"]
print(next(k["token"] for k in keys if k["name"] == "demo"))
PY
)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
created="$work/created"
touch "$created"

cat > "$work/hooks.py" <<'PY'
"""schemathesis hooks and checks for hack/fuzz-gateway.sh."""
import json
import os
import re

import schemathesis

SUBMIT = "POST /v1/executions"
SHORT = 2  # seconds: the longest a fuzzed program may run or a request may wait
LOCAL_IMAGE = os.environ["FUZZ_LOCAL_IMAGE"]
CREATED = os.environ["FUZZ_CREATED"]
WITHOUT_KEY = os.environ.get("FUZZ_WITHOUT_KEY") == "1"


def is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


@schemathesis.hook
def before_call(context, case, kwargs):
    """Valid submissions start real sandboxes: keep them short and local.
    Here rather than in map_case, which the stateful phase skips."""
    if case.operation.label != SUBMIT:
        return
    body = case.body
    if isinstance(body, dict):
        if isinstance(body.get("image"), str):
            body["image"] = LOCAL_IMAGE
        if "limits" not in body:
            body["limits"] = {"timeoutSeconds": SHORT}
        elif isinstance(body["limits"], dict):
            limits = body["limits"]
            timeout = limits.get("timeoutSeconds")
            if "timeoutSeconds" not in limits or (is_int(timeout) and SHORT < timeout <= 3600):
                limits["timeoutSeconds"] = SHORT
    query = case.query
    if isinstance(query, dict) and isinstance(query.get("wait"), str):
        number = re.match(r"\s*(\d+)", query["wait"])
        if number and int(number.group(1)) > SHORT:
            query["wait"] = f"{SHORT}s"


@schemathesis.hook
def after_call(context, case, response):
    """Notes what the run created, to cancel what is still running at the end."""
    if case.operation.label == SUBMIT and case.method.upper() == "POST" and response.status_code in (200, 202):
        try:
            created = json.loads(response.content)["id"]
        except (ValueError, KeyError, TypeError):
            return
        with open(CREATED, "a") as f:
            f.write(f"{created}\n")


@schemathesis.check
def error_body_shape(ctx, response, case):
    """Every 4xx and 5xx is JSON: {"error": {"code", "message", "field"?}}."""
    if response.status_code < 400:
        return None
    try:
        body = json.loads(response.content)
    except ValueError:
        raise AssertionError(f"{response.status_code} with a body that is not JSON: {response.content[:200]!r}")
    error = body.get("error") if isinstance(body, dict) else None
    ok = (
        isinstance(error, dict)
        and set(body) == {"error"}
        and set(error) <= {"code", "message", "field"}
        and all(isinstance(error.get(k), str) and error[k] for k in ("code", "message"))
        and isinstance(error.get("field", ""), str)
    )
    if not ok:
        raise AssertionError(f"{response.status_code} whose body is not an ErrorBody: {response.content[:200]!r}")
    return None


@schemathesis.check
def needs_a_key(ctx, response, case):
    """Without a valid key, every operation answers 401 (other methods: 405 first)."""
    if WITHOUT_KEY and case.method.upper() == case.operation.method.upper() and response.status_code != 401:
        raise AssertionError(f"without a valid key: {response.status_code}, not 401")
    return None
PY

# st_run NAME [ARG...]: one schemathesis run; its output also goes to $work/NAME.log.
# One worker: with two threads, hypothesis' lambda descriptions call ast.parse
# concurrently, which Python 3.11 can fail ("AST constructor recursion depth
# mismatch"), failing the run for a reason that is not the gateway's.
st_run() {
  local name=$1
  shift
  local status=0
  (cd "$work" && "$venv/bin/st" run "$base/v1/openapi.json" --url "$base" \
    --seed "$seed" --max-examples "$examples" --generation-database none \
    --request-timeout 30 --rate-limit 40/s --workers 1 --no-color "$@") 2>&1 | tee "$work/$name.log" || status=$?
  return "$status"
}

# One line per run: its verdict and schemathesis' own count of test cases.
verdict() {
  local name=$1 status=$2 cases
  cases=$(grep -A1 '^Test cases:' "$work/$name.log" | tail -1 | sed 's/^ *//')
  if [[ $status == 0 ]]; then printf '  %-16s passed: %s\n' "$name" "$cases"; else printf '  %-16s FAILED (exit %s): %s\n' "$name" "$status" "$cases"; fi
}

# Cancels what the run created and is not finished yet; says how many.
cancel_leftovers() {
  FUZZ_BASE="$base" FUZZ_TOKEN="$token" "$venv/bin/python" - "$created" <<'PY'
import os, sys, requests
base, headers = os.environ["FUZZ_BASE"], {"Authorization": f"Bearer {os.environ['FUZZ_TOKEN']}"}
ids = sorted(set(open(sys.argv[1]).read().split()))
cancelled = 0
for i in ids:
    current = requests.get(f"{base}/v1/executions/{i}", headers=headers, timeout=30)
    if current.status_code == 200 and current.json()["status"] in ("queued", "running"):
        cancelled += requests.delete(f"{base}/v1/executions/{i}", headers=headers, timeout=30).status_code == 202
print(f"{len(ids)} created, {cancelled} cancelled at the end; the gateway's TTL deletes them")
PY
}

checks=not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance
checks+=,response_headers_conformance,negative_data_rejection,unsupported_method,error_body_shape
started=$SECONDS

say "fuzzing $base with the demo key (seed $seed, $examples examples per operation)"
status_key=0
FUZZ_LOCAL_IMAGE="$local_image" FUZZ_CREATED="$created" SCHEMATHESIS_HOOKS="$work/hooks.py" \
  st_run "with a key" -H "Authorization: Bearer $token" --checks "$checks,ignored_auth" \
  --phases examples,coverage,fuzzing,stateful || status_key=$?

say "fuzzing $base without a key"
status_nokey=0
FUZZ_LOCAL_IMAGE="$local_image" FUZZ_CREATED="$created" FUZZ_WITHOUT_KEY=1 SCHEMATHESIS_HOOKS="$work/hooks.py" \
  st_run "without a key" --checks "$checks,needs_a_key" --phases coverage,fuzzing || status_nokey=$?

leftovers=$(cancel_leftovers)
echo
say "gateway fuzz summary: $base, seed $seed, $examples examples per operation, $((SECONDS - started)) s"
verdict "with a key" "$status_key"
verdict "without a key" "$status_nokey"
echo "  executions       $leftovers"
[[ $status_key == 0 && $status_nokey == 0 ]]
