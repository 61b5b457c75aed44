#!/usr/bin/env bash
# Tools that lint and validate the Helm chart, built from the Go module proxy
# and cached by version, so a second run is instant:
#   $SANDRUN_CACHE/tools/helm-$HELM_VERSION/helm
#   $SANDRUN_CACHE/tools/kubeconform-$KUBECONFORM_VERSION/kubeconform
#   $SANDRUN_CACHE/tools/k8s-schemas-$K8S_VERSION-HASH/  JSON schemas for kubeconform
#     (Kubernetes' OpenAPI spec and our CRDs; HASH covers the converter and CRDs)
# Usage: hack/tools.sh             build all three (progress on stderr only)
#        hack/tools.sh path NAME   print the path of helm, kubeconform or schemas
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$repo/cluster/versions.env"
[[ -x /usr/local/go/bin/go ]] && PATH="$PATH:/usr/local/go/bin"
# As cluster/build.sh: Go's default build and module caches (shared with the
# cluster build), no workspace, no silent toolchain download.
export GOWORK=off GOTOOLCHAIN=local CGO_ENABLED=0
tools="$SANDRUN_CACHE/tools"

helm_path() { echo "$tools/helm-$HELM_VERSION/helm"; }
kubeconform_path() { echo "$tools/kubeconform-$KUBECONFORM_VERSION/kubeconform"; }
schemas_path() {
  local hash
  hash=$(cat "$repo/hack/k8s-json-schemas.py" "$repo"/crds/*.yaml | sha256sum | cut -c1-12)
  echo "$tools/k8s-schemas-$K8S_VERSION-$hash"
}

# go_install OUT PACKAGE@VERSION LDFLAGS: build into a temp dir and rename, so an
# interrupted build never leaves a binary the cache check would trust.
go_install() {
  local out=$1 pkg=$2 ldflags=$3 tmp start=$SECONDS
  [[ -x $out ]] && return 0
  say "building $(basename "$out") ${pkg#*@}"
  mkdir -p "$(dirname "$out")"
  tmp=$(mktemp -d "$tools/.build.XXXXXX")
  GOBIN=$tmp go install -trimpath -ldflags "-s -w $ldflags" "$pkg" || { rm -rf "$tmp"; die "building $pkg failed"; }
  mv "$tmp/$(basename "$out")" "$out"
  rm -rf "$tmp"
  say "built $(basename "$out") in $((SECONDS - start))s"
}

# Module source directory (downloaded if needed; instant when cached).
mod_dir() {
  local d
  d=$(go mod download -json "$1" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
  [[ -d $d ]] || die "could not download Go module $1"
  echo "$d"
}

build_helm() {
  [[ -x $(helm_path) ]] && return 0
  # As helm's Makefile: the version for `helm version`, and the default
  # Kubernetes version of .Capabilities taken from the client-go it uses.
  local v=helm.sh/helm/v3 kv major minor
  kv=$(awk '$1 == "k8s.io/client-go" { print $2 }' "$(mod_dir "$v@$HELM_VERSION")/go.mod")
  major=$(( $(cut -d. -f1 <<<"${kv#v}") + 1 )) minor=$(cut -d. -f2 <<<"$kv")
  go_install "$(helm_path)" "$v/cmd/helm@$HELM_VERSION" "-X $v/internal/version.version=$HELM_VERSION
    -X $v/internal/version.gitTreeState=clean
    -X $v/pkg/chartutil.k8sVersionMajor=$major -X $v/pkg/chartutil.k8sVersionMinor=$minor
    -X $v/pkg/lint/rules.k8sVersionMajor=$major -X $v/pkg/lint/rules.k8sVersionMinor=$minor"
}

build_kubeconform() {
  go_install "$(kubeconform_path)" "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION" \
    "-X main.version=$KUBECONFORM_VERSION"
}

build_schemas() {
  local out tmp swagger
  out=$(schemas_path)
  [[ -f $out/.complete ]] && return 0
  say "generating JSON schemas for Kubernetes $K8S_VERSION and crds/"
  swagger="$(mod_dir "k8s.io/kubernetes@$K8S_VERSION")/api/openapi-spec/swagger.json"
  tmp=$(mktemp -d "$tools/.schemas.XXXXXX")
  python3 "$repo/hack/k8s-json-schemas.py" "$swagger" "$repo"/crds/*.yaml "$tmp" || { rm -rf "$tmp"; die "schema generation failed"; }
  touch "$tmp/.complete"
  # Older generations of the same version are stale: replace them.
  rm -rf "$tools/k8s-schemas-$K8S_VERSION-"*
  mv "$tmp" "$out"
}

mkdir -p "$tools"
# One build at a time: concurrent lint runs would race on the same outputs.
exec 9>"$tools/.lock"
flock 9
case "${1:-}" in
  "") build_helm; build_kubeconform; build_schemas ;;
  path)
    case "${2:-}" in
      helm | kubeconform | schemas) "build_$2"; "${2}_path" ;;
      *) die "usage: hack/tools.sh path helm|kubeconform|schemas" ;;
    esac ;;
  *) die "usage: hack/tools.sh [path helm|kubeconform|schemas]" ;;
esac
