// Command kindcheck checks the repository's kind-config.yaml without a
// cluster or a container engine: it decodes the file the way kind does,
// strictly, and checks that every node is set up to run gVisor.
//
//	kindcheck [-host] [FILE]    FILE defaults to kind-config.yaml
//
// -host also checks the files the mounts bring in from this machine (run it
// on the machine that will run `kind create cluster`).
//
// Exit status 0 when the file is fine; 1 with one line per problem; 2 when
// the file cannot be read. hack/check-kind-config.sh builds and runs it.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	toml "github.com/pelletier/go-toml/v2"
	yamlv3 "go.yaml.in/yaml/v3"
	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
	sigsyaml "sigs.k8s.io/yaml"
)

const (
	handler     = "runsc"                          // RuntimeClass handler = containerd runtime name
	runtimeType = "io.containerd.runsc.v1"         // containerd derives the shim's name from it
	optionsType = "io.containerd.runsc.v1.options" // what the gVisor shim's options are typed as
	runscPath   = "/usr/local/bin/runsc"           // on containerd's PATH in kind's node image
	shimPath    = "/usr/local/bin/containerd-shim-runsc-v1"
)

// criRuntimePlugin is the plugin holding containerd's CRI runtimes, for each
// containerd config version a patch may target. kind's node image writes
// version 2 today; version 3 is what containerd 2.x writes itself.
var criRuntimePlugin = map[int64]string{
	2: "io.containerd.grpc.v1.cri",
	3: "io.containerd.cri.v1.runtime",
}

func main() {
	host := flag.Bool("host", false, "also check the host files the mounts name")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: %s [-host] [kind-config.yaml]\n", os.Args[0])
		flag.PrintDefaults()
	}
	flag.Parse()
	path := "kind-config.yaml"
	switch flag.NArg() {
	case 0:
	case 1:
		path = flag.Arg(0)
	default:
		flag.Usage()
		os.Exit(2)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	c, problems := check(raw)
	if c != nil && *host {
		problems = append(problems, checkHost(c)...)
	}
	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintf(os.Stderr, "%s: %s\n", path, oneLine(p))
		}
		os.Exit(1)
	}
	msg := fmt.Sprintf("%s: ok: %d nodes, each with runsc, its shim and %s", path, len(c.Nodes), shimConfigPath(c))
	if *host {
		msg += "; host files present"
	}
	fmt.Println(msg)
}

// check returns the decoded cluster (nil when it does not decode) and the
// problems found in it.
func check(raw []byte) (*v1alpha4.Cluster, []string) {
	c, err := decode(raw)
	if err != nil {
		return nil, []string{err.Error()}
	}
	var p []string
	p = append(p, checkShape(c)...)
	configPath, patchProblems := checkPatches(c.ContainerdConfigPatches)
	p = append(p, patchProblems...)
	p = append(p, checkMounts(c, configPath)...)
	return c, p
}

// decode reads raw as kind does and, in addition, as sigs.k8s.io/yaml would
// with strict checks, so that a misspelt or misplaced field fails either way.
func decode(raw []byte) (*v1alpha4.Cluster, error) {
	// kind decodes with go.yaml.in/yaml/v3 and KnownFields (its
	// pkg/internal/apis/config/encoding), so unknown fields fail there too.
	var c v1alpha4.Cluster
	d := yamlv3.NewDecoder(bytes.NewReader(raw))
	d.KnownFields(true)
	if err := d.Decode(&c); err != nil {
		return nil, fmt.Errorf("does not decode as kind decodes it: %w", err)
	}
	// kind reads the first YAML document only; a second one would be ignored.
	var extra any
	if err := d.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("has more than one YAML document; kind reads only the first")
	}
	// The same through JSON field names: unknown fields and duplicate keys fail.
	var viaJSON v1alpha4.Cluster
	if err := sigsyaml.UnmarshalStrict(raw, &viaJSON); err != nil {
		return nil, fmt.Errorf("does not decode strictly: %w", err)
	}
	return &c, nil
}

func checkShape(c *v1alpha4.Cluster) []string {
	var p []string
	if c.Kind != "Cluster" || c.APIVersion != "kind.x-k8s.io/v1alpha4" {
		p = append(p, fmt.Sprintf("kind %q apiVersion %q: want Cluster, kind.x-k8s.io/v1alpha4", c.Kind, c.APIVersion))
	}
	roles := map[v1alpha4.NodeRole]int{}
	for i, n := range c.Nodes {
		switch n.Role {
		case v1alpha4.ControlPlaneRole, v1alpha4.WorkerRole:
			roles[n.Role]++
		default:
			p = append(p, fmt.Sprintf("nodes[%d]: role %q: want %q or %q", i, n.Role, v1alpha4.ControlPlaneRole, v1alpha4.WorkerRole))
		}
	}
	if roles[v1alpha4.ControlPlaneRole] == 0 {
		p = append(p, "nodes: no control-plane node")
	}
	if roles[v1alpha4.WorkerRole] == 0 {
		p = append(p, "nodes: no worker node (sandboxes run on workers: kind keeps the control-plane taint in multi-node clusters)")
	}
	if c.Networking.DisableDefaultCNI {
		p = append(p, "networking.disableDefaultCNI: kindnet is the CNI that enforces sandrun's deny-all NetworkPolicy; keep it")
	}
	return p
}

// checkPatches checks that, for each containerd config version kind may use,
// exactly one patch registers the runsc handler under that version's section
// names, and that every patch states its version. It returns the ConfigPath
// the patches give the shim.
func checkPatches(patches []string) (string, []string) {
	var p []string
	found := map[int64]int{}
	configPaths := map[string]bool{}
	for i, text := range patches {
		where := fmt.Sprintf("containerdConfigPatches[%d]", i)
		var doc map[string]any
		if err := toml.Unmarshal([]byte(text), &doc); err != nil {
			p = append(p, fmt.Sprintf("%s: not valid TOML: %v", where, err))
			continue
		}
		version, ok := doc["version"].(int64)
		if !ok {
			// kind merges an unversioned patch into whatever version the node
			// config has, so its section names would be wrong for one of them.
			p = append(p, fmt.Sprintf("%s: no integer `version`; kind applies a versioned patch only to a node config of that version", where))
			continue
		}
		plugin, known := criRuntimePlugin[version]
		if !known {
			p = append(p, fmt.Sprintf("%s: version %d: want one of %s", where, version, versionList()))
			continue
		}
		plugins, _ := doc["plugins"].(map[string]any)
		for name := range plugins {
			for v, other := range criRuntimePlugin {
				if v != version && name == other {
					p = append(p, fmt.Sprintf("%s: version %d patch uses the version-%d section plugins.%q", where, version, v, other))
				}
			}
		}
		rt, ok := table(doc, "plugins", plugin, "containerd", "runtimes", handler)
		if !ok {
			continue // a patch for something else
		}
		found[version]++
		if got := rt["runtime_type"]; got != runtimeType {
			p = append(p, fmt.Sprintf("%s: runtimes.%s.runtime_type = %#v, want %q", where, handler, got, runtimeType))
		}
		opts, ok := rt["options"].(map[string]any)
		if !ok {
			p = append(p, fmt.Sprintf("%s: runtimes.%s has no options table (TypeUrl, ConfigPath)", where, handler))
			continue
		}
		if got := opts["TypeUrl"]; got != optionsType {
			p = append(p, fmt.Sprintf("%s: runtimes.%s.options.TypeUrl = %#v, want %q", where, handler, got, optionsType))
		}
		cp, _ := opts["ConfigPath"].(string)
		if !filepath.IsAbs(cp) {
			p = append(p, fmt.Sprintf("%s: runtimes.%s.options.ConfigPath = %q, want an absolute path on the node", where, handler, cp))
			continue
		}
		configPaths[cp] = true
	}
	for _, v := range sortedVersions() {
		switch found[v] {
		case 0:
			p = append(p, fmt.Sprintf("containerdConfigPatches: no version-%d patch registers runtimes.%s under plugins.%q", v, handler, criRuntimePlugin[v]))
		case 1:
		default:
			p = append(p, fmt.Sprintf("containerdConfigPatches: %d version-%d patches register runtimes.%s; want one", found[v], v, handler))
		}
	}
	if len(configPaths) > 1 {
		p = append(p, fmt.Sprintf("containerdConfigPatches: the patches name different ConfigPaths %v; want one file", keys(configPaths)))
	}
	for cp := range configPaths {
		return cp, p
	}
	return "", p
}

// checkMounts checks that every node mounts the runsc binary, the shim and
// the shim's options file read-only from absolute host paths: the
// containerd patches apply to every node.
func checkMounts(c *v1alpha4.Cluster, configPath string) []string {
	var p []string
	want := []struct{ containerPath, hostBase string }{
		{runscPath, "runsc"},
		{shimPath, "containerd-shim-runsc-v1"},
	}
	if configPath != "" {
		want = append(want, struct{ containerPath, hostBase string }{configPath, ""})
	}
	for i, n := range c.Nodes {
		where := fmt.Sprintf("nodes[%d] (%s)", i, n.Role)
		mounts := map[string]v1alpha4.Mount{}
		for _, m := range n.ExtraMounts {
			if _, dup := mounts[m.ContainerPath]; dup {
				p = append(p, fmt.Sprintf("%s: two extraMounts at %s", where, m.ContainerPath))
			}
			mounts[m.ContainerPath] = m
		}
		for _, w := range want {
			m, ok := mounts[w.containerPath]
			if !ok {
				p = append(p, fmt.Sprintf("%s: no extraMount with containerPath %s", where, w.containerPath))
				continue
			}
			if !filepath.IsAbs(m.HostPath) {
				p = append(p, fmt.Sprintf("%s: %s: hostPath %q is relative (kind resolves it against the directory it runs in); use an absolute path", where, w.containerPath, m.HostPath))
			}
			if w.hostBase != "" && filepath.Base(m.HostPath) != w.hostBase {
				p = append(p, fmt.Sprintf("%s: %s: hostPath %q does not name %s", where, w.containerPath, m.HostPath, w.hostBase))
			}
			if !m.Readonly {
				p = append(p, fmt.Sprintf("%s: %s: want readOnly: true (nothing on the node should change it)", where, w.containerPath))
			}
		}
	}
	return p
}

// checkHost checks the host side of the mounts: Docker bind-mounts whatever
// is there, and creates an empty directory where nothing is.
func checkHost(c *v1alpha4.Cluster) []string {
	var p []string
	configPath := shimConfigPath(c)
	seen := map[string]bool{}
	for _, n := range c.Nodes {
		for _, m := range n.ExtraMounts {
			if seen[m.HostPath] {
				continue
			}
			seen[m.HostPath] = true
			switch m.ContainerPath {
			case runscPath, shimPath:
				p = append(p, checkHostExecutable(m.HostPath)...)
			case configPath:
				p = append(p, checkHostShimConfig(m.HostPath)...)
			}
		}
	}
	return p
}

func checkHostExecutable(path string) []string {
	fi, err := os.Stat(path)
	if err != nil {
		return []string{fmt.Sprintf("host: %v", err)}
	}
	if !fi.Mode().IsRegular() {
		return []string{fmt.Sprintf("host: %s is not a regular file", path)}
	}
	// runsc re-executes itself as an unprivileged user: everyone needs r-x.
	if fi.Mode().Perm()&0o555 != 0o555 {
		return []string{fmt.Sprintf("host: %s has mode %v; want at least r-xr-xr-x", path, fi.Mode().Perm())}
	}
	return nil
}

func checkHostShimConfig(path string) []string {
	raw, err := os.ReadFile(path)
	if err != nil {
		return []string{fmt.Sprintf("host: %v", err)}
	}
	// The shim reads runsc flags as strings from [runsc_config].
	var opts struct {
		RunscConfig map[string]string `toml:"runsc_config"`
	}
	if err := toml.Unmarshal(raw, &opts); err != nil {
		return []string{fmt.Sprintf("host: %s: %v", path, err)}
	}
	if opts.RunscConfig["systemd-cgroup"] != "true" {
		return []string{fmt.Sprintf("host: %s: want systemd-cgroup = \"true\" under [runsc_config] (kind's kubelet uses the systemd cgroup driver)", path)}
	}
	return nil
}

// shimConfigPath is the ConfigPath the patches give the shim, or "" when
// they give none.
func shimConfigPath(c *v1alpha4.Cluster) string {
	cp, _ := checkPatches(c.ContainerdConfigPatches)
	return cp
}

// oneLine joins a multi-line message (the YAML decoder's) into one line.
func oneLine(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimSpace(l)
	}
	return strings.Join(lines, " ")
}

// table walks nested TOML tables.
func table(doc map[string]any, path ...string) (map[string]any, bool) {
	cur := doc
	for _, k := range path {
		next, ok := cur[k].(map[string]any)
		if !ok {
			return nil, false
		}
		cur = next
	}
	return cur, true
}

func sortedVersions() []int64 {
	var vs []int64
	for v := range criRuntimePlugin {
		vs = append(vs, v)
	}
	sort.Slice(vs, func(i, j int) bool { return vs[i] < vs[j] })
	return vs
}

func versionList() string {
	var s []string
	for _, v := range sortedVersions() {
		s = append(s, fmt.Sprint(v))
	}
	return strings.Join(s, ", ")
}

func keys(m map[string]bool) []string {
	var s []string
	for k := range m {
		s = append(s, k)
	}
	sort.Strings(s)
	return s
}
