#!/usr/bin/env bash
# Installs (or upgrades) sandrun into the local cluster with Helm, the way a
# platform team would: operator and gateway as pods from the locally built
# images. Idempotent.
#   hack/install.sh            install or upgrade, wait until ready
#   hack/install.sh install ARGS...  the same, with more helm arguments
#                              (hack/bench.sh: -f charts/sandrun/ci/bench-values.yaml)
#   hack/install.sh uninstall  helm uninstall, wait until it is all gone
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$repo/cluster/env.sh"
cd "$repo"

helm="$(hack/tools.sh path helm)"
release=sandrun
namespace=sandrun-system
values=charts/sandrun/ci/local-values.yaml

# adopt KIND NAME [NAMESPACE]: let the release take over an object made
# before it (by an older hack/up.sh), the way Helm documents it.
adopt() {
  local -a ns=()
  [[ -n ${3:-} ]] && ns=(-n "$3")
  kubectl get "$1" "$2" "${ns[@]}" >/dev/null 2>&1 || return 0
  kubectl label "$1" "$2" "${ns[@]}" --overwrite app.kubernetes.io/managed-by=Helm >/dev/null
  kubectl annotate "$1" "$2" "${ns[@]}" --overwrite \
    meta.helm.sh/release-name="$release" meta.helm.sh/release-namespace="$namespace" >/dev/null
}

install() {
  kubectl get namespace "$namespace" >/dev/null 2>&1 || kubectl create namespace "$namespace" >/dev/null
  # The gateway's keys: the file hack/gateway-keys.sh generates, as a Secret.
  kubectl -n "$namespace" create secret generic sandrun-gateway-keys \
    --from-file=keys.yaml="$(hack/gateway-keys.sh)" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  if ! "$helm" status "$release" -n "$namespace" >/dev/null 2>&1; then
    adopt crd executions.sandrun.dev
    adopt crd sandboxpools.sandrun.dev
    adopt namespace sandrun-demo
    adopt namespace sandrun-other
  fi
  say "helm upgrade --install $release (namespace $namespace)"
  # The image tags stay :dev; a new binary rolls the pods through an annotation.
  "$helm" upgrade --install "$release" charts/sandrun -n "$namespace" -f "$values" \
    --set-string "operator.podAnnotations.sandrun\.dev/build=$(sha256sum "$static_dir/sandrun-operator" | cut -c1-16)" \
    --set-string "gateway.podAnnotations.sandrun\.dev/build=$(sha256sum "$static_dir/sandrun-gateway" | cut -c1-16)" \
    "$@" --wait --timeout 5m >/dev/null
  kubectl -n "$namespace" rollout status deployment/sandrun-operator --timeout=2m >/dev/null
  kubectl -n "$namespace" rollout status deployment/sandrun-gateway --timeout=2m >/dev/null
  say "sandrun is running in-cluster; gateway at http://$(gateway_addr)"
}

uninstall() {
  "$helm" uninstall "$release" -n "$namespace" --wait --timeout 5m
}

# One helm operation at a time: a second would fail with "another operation
# is in progress".
mkdir -p "$SANDRUN_STATE/run"
exec 8>"$SANDRUN_STATE/run/install.lock"
flock 8

case "${1:-install}" in
  install) shift || true; install "$@" ;;
  uninstall) uninstall ;;
  *) die "usage: hack/install.sh [install [HELM_ARGS...]|uninstall]" ;;
esac
