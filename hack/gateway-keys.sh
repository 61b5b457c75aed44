#!/usr/bin/env bash
# The local cluster's gateway API keys: generated once under the state dir
# (two tenants; a slow key for rate-limit tests; a neighbour key that shares
# a namespace with another; capped and sockets keys for policy tests), then kept. Prints the
# keys file's path. hack/gateway.sh runs the host gateway with it;
# hack/install.sh puts it into the in-cluster gateway's Secret.
#   hack/gateway-keys.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

token() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

# A file from before the sockets key is made again.
if [[ ! -s $gateway_keys ]] || ! grep -q 'name: sockets' "$gateway_keys"; then
  mkdir -p "$(dirname "$gateway_keys")"
  umask 077
  cat > "$gateway_keys" <<KEYS
keys:
  - {name: demo, token: $(token), namespace: sandrun-demo, requestsPerSecond: 50, burst: 400, maxActive: 1000, maxSockets: 1000, images: ["localhost/*"]}
  - {name: other, token: $(token), namespace: sandrun-other, requestsPerSecond: 50, burst: 100}
  - {name: slow, token: $(token), namespace: sandrun-other, requestsPerSecond: 1, burst: 3}
  - {name: neighbour, token: $(token), namespace: sandrun-other, requestsPerSecond: 50, burst: 100}
  - {name: capped, token: $(token), namespace: sandrun-other, requestsPerSecond: 50, burst: 100, maxActive: 2, maxTimeoutSeconds: 30, maxMemory: 256Mi, maxCpu: "1", maxOutputBytes: 65536}
  - {name: sockets, token: $(token), namespace: sandrun-other, requestsPerSecond: 50, burst: 100, maxSockets: 3, maxSubscriptions: 2}
KEYS
fi
echo "$gateway_keys"
