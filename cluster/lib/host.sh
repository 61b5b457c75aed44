# Host-level setup and teardown: sysctls, leftover processes, cgroups, mounts,
# links and iptables rules. Sourced after common.sh.
# Everything removed here is identified by our state dir (process command
# lines, mount points), the kubepods cgroup tree, our bridge name, KUBE-*
# chains, the CNI network name in rule comments or kube-router's ipset names,
# so other containerd or CNI users on the machine are left alone.
# shellcheck shell=bash

# Sysctls that up.sh sets or that kubelet/kube-proxy change on their own.
# Their original values are saved once and put back by down.sh.
MANAGED_SYSCTLS=(
  net.ipv4.ip_forward
  net.bridge.bridge-nf-call-iptables
  net.bridge.bridge-nf-call-ip6tables
  net.ipv4.conf.all.route_localnet
  vm.overcommit_memory
  vm.panic_on_oom
  kernel.panic
  kernel.panic_on_oops
  kernel.keys.root_maxkeys
  kernel.keys.root_maxbytes
)
SYSCTL_SAVE="$SANDRUN_STATE/sysctl.orig"

host_sysctls_up() {
  if [[ ! -f $SYSCTL_SAVE ]]; then
    local k v
    for k in "${MANAGED_SYSCTLS[@]}"; do
      v=$(sysctl -n "$k" 2>/dev/null) && printf '%s=%s\n' "$k" "$v"
    done >"$SYSCTL_SAVE.tmp"
    mv "$SYSCTL_SAVE.tmp" "$SYSCTL_SAVE"
  fi
  # Routing for pods, and bridged pod-to-pod traffic through iptables so that
  # Service DNAT applies between pods on the same bridge.
  sysctl -qw net.ipv4.ip_forward=1
  sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null ||
    log "warning: br_netfilter unavailable; pod-to-service traffic on the bridge may fail"
  sysctl -qw net.bridge.bridge-nf-call-ip6tables=1 2>/dev/null || true
}

host_sysctls_restore() {
  [[ -f $SYSCTL_SAVE ]] || return 0
  local line
  while IFS= read -r line; do
    sysctl -qw "$line" 2>/dev/null || true
  done <"$SYSCTL_SAVE"
  rm -f "$SYSCTL_SAVE"
}

# ---- processes -------------------------------------------------------------

# Pids of runtime processes started for this cluster that have no pid file:
# shims (their -address is our socket), runsc sandboxes/gofers (their root is
# under our state dir) and orphaned daemons. Matches the executable too, so a
# shell or editor that merely mentions the state dir is never hit.
stray_pids() {
  local p exe
  for p in /proc/[0-9]*; do
    p=${p#/proc/}
    [[ $p == "$$" || $p == "$BASHPID" ]] && continue
    exe=$(readlink "/proc/$p/exe" 2>/dev/null) || continue
    case ${exe##*/} in
      sandrun-k8s | containerd | containerd-shim-runc-v2 | containerd-shim-runsc-v1 | runsc | runc | "runsc (deleted)" | kube-router | kwok) ;;
      *) continue ;;
    esac
    tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -qF -- "$SANDRUN_STATE" && echo "$p"
  done
}

kill_stray_processes() {
  local pids
  pids=$(stray_pids)
  [[ -z $pids ]] && return 0
  # shellcheck disable=SC2086
  kill -TERM $pids 2>/dev/null || true
  for _ in $(seq 30); do
    pids=$(stray_pids)
    [[ -z $pids ]] && return 0
    sleep 0.1
  done
  # shellcheck disable=SC2086
  kill -KILL $pids 2>/dev/null || true
  sleep 0.2
}

# Container processes live in the kubepods cgroup tree (cgroupfs driver).
# Killing the shim does not kill them, so empty that tree and remove it.
kubepods_cgroups() {
  find /sys/fs/cgroup -mindepth 1 -maxdepth 2 -type d -name kubepods 2>/dev/null
}

kill_pod_cgroups() {
  local roots root procs
  roots=$(kubepods_cgroups)
  [[ -z $roots ]] && return 0
  # Frozen tasks cannot die; thaw first.
  for root in $roots; do
    [[ $root == /sys/fs/cgroup/freezer/* ]] &&
      find "$root" -name freezer.state -exec sh -c 'echo THAWED >"$1"' _ {} \; 2>/dev/null
  done
  for _ in $(seq 50); do
    # shellcheck disable=SC2086
    procs=$(find $roots -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u)
    [[ -z $procs ]] && break
    # shellcheck disable=SC2086
    kill -KILL $procs 2>/dev/null || true
    sleep 0.1
  done
  for root in $roots; do
    find "$root" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
}

# ---- mounts and namespaces -------------------------------------------------

# Mount points under the state dir: container rootfs, shm, kubelet volumes
# and pod network namespaces (containerd keeps those under run/ here).
our_mounts() {
  awk '{print $5}' /proc/self/mountinfo | grep -F "$SANDRUN_STATE/" | sort -r | uniq
}

unmount_all() {
  local m
  for _ in 1 2 3; do
    local left=0
    while IFS= read -r m; do
      [[ -z $m ]] && continue
      left=1
      # mountinfo escapes spaces etc. as octal; printf %b undoes it.
      m=$(printf '%b' "$m")
      umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done < <(our_mounts)
    ((left)) || return 0
  done
  our_mounts | sed 's/^/  still mounted: /' >&2 || true
}

# Deleting the pod namespaces removes their veth pairs; whatever is still
# attached to our bridge goes with it.
delete_links() {
  local l
  if ip link show "$CNI_BRIDGE" >/dev/null 2>&1; then
    for l in $(ip -o link show master "$CNI_BRIDGE" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
      ip link delete "$l" 2>/dev/null || true
    done
    ip link delete "$CNI_BRIDGE" 2>/dev/null || true
  fi
}

# ---- iptables ----------------------------------------------------------------

# Remove our rules from every table, IPv4 and IPv6: all KUBE-* chains
# (kube-proxy, kubelet) and the CNI chains of our network only. CNI plugins
# tag their rules with a comment naming the network (name: "sandrun"), so
# another CNI user's chains on the same host stay. Each changed table is
# rewritten from its own dump minus those lines; other rules stay as they are.
clean_iptables() {
  local fam table dump kept
  for fam in iptables ip6tables; do
    command -v "$fam-save" >/dev/null || continue
    for table in filter nat mangle raw security; do
      dump=$("$fam-save" -t "$table" 2>/dev/null) || continue
      grep -qE 'KUBE-|CNI-' <<<"$dump" || continue
      kept=$(filter_iptables_dump <<<"$dump")
      [[ $kept == "$dump" ]] && continue
      "$fam-restore" -w 5 -T "$table" <<<"$kept" || log "warning: could not clean $fam table $table"
    done
  done
  drop_empty_nft_tables
}

# stdin: iptables-save output of one table; stdout: the same minus our rules.
filter_iptables_dump() {
  awk -v net="$CNI_NETWORK" '
    function chain_of(l,   a) { if (l ~ /^[:]/ || l ~ /^-A /) { split(substr(l, l ~ /^:/ ? 2 : 4), a, " "); return a[1] } return "" }
    function target_of(l) { return match(l, /-j [^ ]+/) ? substr(l, RSTART + 3, RLENGTH - 3) : "" }
    function ours(c) { return c ~ /^KUBE-/ || (c in mine) }
    { line[NR] = $0 }
    END {
      tag = "name: \\\"" net "\\\""
      for (i = 1; i <= NR; i++)
        if (index(line[i], tag) && target_of(line[i]) ~ /^CNI-/) mine[target_of(line[i])] = 1
      n = 0
      for (i = 1; i <= NR; i++) {
        l = line[i]
        if (index(l, tag) || ours(chain_of(l)) || ours(target_of(l))) continue
        keep[++n] = l
        if (l ~ /^-A CNI-HOSTPORT-DNAT /) hostport_used = 1
      }
      # portmap chains are shared by all CNI networks: drop them only when no
      # other network still has a port mapping in them.
      for (i = 1; i <= n; i++) {
        l = keep[i]
        if (!hostport_used && (chain_of(l) ~ /^CNI-HOSTPORT-/ || target_of(l) ~ /^CNI-HOSTPORT-/)) continue
        print l
      }
    }'
}

# iptables-nft creates the nft tables on first use. Drop the ones we leave
# empty (only base chains, no rules, policy accept) so the host looks as it
# did before up.sh; a table holding anything else is left alone.
drop_empty_nft_tables() {
  command -v nft >/dev/null || return 0
  local fam table body
  for fam in ip ip6; do
    for table in filter nat mangle raw security; do
      body=$(nft list table "$fam" "$table" 2>/dev/null) || continue
      # Anything but table/chain headers, base-chain type lines and braces
      # is a rule or a set: keep the table.
      if grep -vE '^\s*(table .*\{|chain [A-Za-z_-]+ \{|type .* policy accept;|\}|)\s*$' <<<"$body" | grep -q .; then
        continue
      fi
      grep -qE '^\s*chain (KUBE-|CNI-)' <<<"$body" && continue
      nft delete table "$fam" "$table" 2>/dev/null || true
    done
  done
}

# kube-router's policy ipsets: KUBE-SRC-/KUBE-DST- plus 16 base32 characters
# of a hash, and TMP- sets of the same shape that live only during a swap
# (IPv6 twins carry an "inet6:" prefix). Sets still used by a rule cannot be
# destroyed, so this runs after clean_iptables.
KUBE_ROUTER_IPSET_RE='^(inet6:)?(KUBE-SRC-|KUBE-DST-|TMP-)[A-Z2-7]{16}$'

clean_ipsets() {
  command -v ipset >/dev/null || return 0
  local set
  for set in $(ipset list -n 2>/dev/null | grep -E "$KUBE_ROUTER_IPSET_RE"); do
    ipset destroy "$set" 2>/dev/null || log "warning: could not destroy ipset $set"
  done
}

# ---- files -------------------------------------------------------------------

# kubelet uses two fixed host paths whatever its root dir:
# /var/log/containers (links to container logs) and
# /var/lib/kubelet/device-plugins (its registration socket and checkpoint).
# Drop what our kubelet put there, the CNI result cache for our network, and
# the directories if that leaves them empty.
delete_host_files() {
  local f
  for f in /var/log/containers/*.log; do
    [[ -L $f && $(readlink "$f") == "$POD_LOG_DIR"/* ]] && rm -f "$f"
  done
  rmdir /var/log/containers 2>/dev/null || true
  if ! pgrep -x kubelet >/dev/null; then
    rm -f /var/lib/kubelet/device-plugins/{kubelet.sock,kubelet_internal_checkpoint}
    rmdir /var/lib/kubelet/device-plugins /var/lib/kubelet 2>/dev/null || true
  fi
  rm -f /var/lib/cni/results/"$CNI_NETWORK"-* 2>/dev/null || true
  rmdir /var/lib/cni/results /var/lib/cni 2>/dev/null || true
}

# Full teardown of runtime leftovers; safe when nothing is there. Used by
# down.sh and by up.sh before starting containerd after a crash or reboot.
cleanup_runtime_leftovers() {
  kill_stray_processes
  kill_pod_cgroups
  unmount_all
  delete_links
  clean_iptables
  clean_ipsets
  delete_host_files
  # run/ only ever holds state of processes that are now gone.
  [[ -d $RUN_DIR ]] && rm -rf --one-file-system "$RUN_DIR"
  return 0
}
