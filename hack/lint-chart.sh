#!/usr/bin/env bash
# Lint the Helm chart and validate everything it renders, offline:
#   helm lint --strict, and helm template | kubeconform -strict, with the
#   default values and with each ci/*-values.yaml;
#   values that the chart's values.schema.json must reject;
#   examples/*.yaml.
# kubeconform reads only the schemas hack/tools.sh generates from Kubernetes'
# own OpenAPI spec (K8S_VERSION) and crds/, never the network.
# Usage: hack/lint-chart.sh [CHART_DIR]   (default charts/sandrun)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$repo/cluster/versions.env"
chart=$(realpath -m "${1:-$repo/charts/sandrun}")
[[ -f $chart/Chart.yaml ]] || die "no Helm chart at $chart"

# Wrong values the chart must refuse, as helm arguments: one case per entry.
rejects=(
  "--set operator.replicas=-1"
  "--set operator.replicsa=2"
  "--set-string operator.concurrency=many"
  "--set operator.leaderElection.leaseDurationSeconds=1"
  "--set gateway.service.type=Bogus"
  "--set gateway.keys.entries[0].name=nokey"
  "--set runtimeClass.name=Not_A_Name"
  "--set sandbox.imagePullPolicy=Sometimes"
  "--set executionNamespaces[0]=UPPER"
  "--set pools[0].name=py --set pools[0].size=-1 --set pools[0].language=python"
  "--set pools[0].name=py --set pools[0].size=1"
  "--set pools[0].name=py --set pools[0].size=1 --set pools[0].language=cobol"
)

"$repo/hack/tools.sh"
helm=$("$repo/hack/tools.sh" path helm)
schemas=$("$repo/hack/tools.sh" path schemas)
kubeconform=("$("$repo/hack/tools.sh" path kubeconform)" -strict -summary
  -schema-location "$schemas/{{ .ResourceKind }}{{ .KindSuffix }}.json")
# Render for the Kubernetes we run, not helm's built-in default.
kube=${K8S_VERSION#v}
failed=0

# failure LINE [OUTPUT]: a failed step, with its output indented below.
failure() {
  printf 'FAIL  %s\n' "$1"
  [[ -z ${2:-} ]] || printf '      %s\n' "${2//$'\n'/$'\n'      }"
  failed=1
}

# step DESCRIPTION COMMAND...: one line per step; the output's last line
# (helm's or kubeconform's summary) on success, all of it on failure.
step() {
  local desc=$1 out
  shift
  if out=$("$@" 2>&1); then
    printf 'ok    %s: %s\n' "$desc" "$(grep . <<<"$out" | tail -1)"
  else
    failure "$desc" "$out"
  fi
}

render() {
  "$helm" template sandrun "$chart" --include-crds --kube-version "$kube" "$@" | "${kubeconform[@]}" -
}

say "linting $chart"
shopt -s nullglob
values=("" "$chart"/ci/*-values.yaml)  # "": the chart's own defaults
for f in "${values[@]}"; do
  args=() name="default values"
  [[ -n $f ]] && args=(-f "$f") name=${f#"$chart"/}
  step "helm lint --strict ($name)" "$helm" lint --strict --kube-version "$kube" "$chart" "${args[@]}"
  step "helm template | kubeconform ($name)" render "${args[@]}"
done

for case in "${rejects[@]}"; do
  read -ra args <<<"$case"
  if out=$("$helm" template sandrun "$chart" "${args[@]}" 2>&1 >/dev/null); then
    failure "$case: accepted, values.schema.json should reject it"
  elif grep -q "don't meet the specifications of the schema" <<<"$out"; then
    printf 'ok    rejected %s: %s\n' "$case" "$(grep '^- ' <<<"$out" | paste -sd ' ')"
  else  # a template error is not the schema doing its job
    failure "$case: failed, but not on values.schema.json" "$out"
  fi
done

step "deploy/ is the chart rendered" "$repo/hack/render-deploy.sh" --check
step "kubeconform deploy/*.yaml" "${kubeconform[@]}" "$repo"/deploy/*.yaml
step "kubeconform examples/*.yaml" "${kubeconform[@]}" "$repo"/examples/*.yaml

((failed == 0)) || die "chart lint failed"
say "chart lint passed"
