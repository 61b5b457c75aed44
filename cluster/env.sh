# Source this to use the local cluster from a shell:
#   source cluster/env.sh
# Sets KUBECONFIG, CONTAINERD_ADDRESS + CONTAINERD_NAMESPACE (for ctr),
# CRI_CONFIG_FILE (for crictl) and puts our kubectl/ctr/crictl/runsc first on PATH.
# shellcheck shell=bash
_sandrun_cluster_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=cluster/versions.env
source "$_sandrun_cluster_dir/versions.env"
: "${SANDRUN_CACHE:=/var/cache/sandrun}"
: "${SANDRUN_STATE:=/var/lib/sandrun-cluster}"
export SANDRUN_CACHE SANDRUN_STATE
export KUBECONFIG="$SANDRUN_STATE/kubeconfig"
export CONTAINERD_ADDRESS="$SANDRUN_STATE/run/containerd.sock"
export CONTAINERD_NAMESPACE=k8s.io
export CRI_CONFIG_FILE="$SANDRUN_STATE/config/crictl.yaml"
export SANDRUN_RUNSC_CONFIG="$SANDRUN_STATE/config/runsc.toml"
_sandrun_path="$SANDRUN_CACHE/k8s-$K8S_VERSION/bin:$SANDRUN_CACHE/containerd-$CONTAINERD_VERSION/bin:$SANDRUN_CACHE/crictl-$CRICTL_VERSION/bin:$SANDRUN_CACHE/gvisor-$GVISOR_VERSION/bin"
case ":$PATH:" in
  *":$_sandrun_path:"*) ;;
  *) export PATH="$_sandrun_path:$PATH" ;;
esac
unset _sandrun_cluster_dir _sandrun_path
