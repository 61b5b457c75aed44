package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The repository's own config is the fixture: it must pass, and each
// mutation below must be caught with a message that names the fault.
func repoConfig(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile("../../kind-config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

func TestRepoConfigPasses(t *testing.T) {
	c, problems := check([]byte(repoConfig(t)))
	if len(problems) > 0 {
		t.Fatalf("kind-config.yaml: %s", strings.Join(problems, "\n"))
	}
	if got := shimConfigPath(c); got != "/etc/containerd/runsc.toml" {
		t.Errorf("shim ConfigPath %q", got)
	}
}

func TestBrokenCopiesFail(t *testing.T) {
	cases := []struct {
		name, old, new, want string
	}{
		{"misspelt top-level field", "containerdConfigPatches:", "containerdConfigPatch:", "field containerdConfigPatch not found"},
		{"misspelt node field", "extraMounts: *gvisor", "extraMount: *gvisor", "field extraMount not found"},
		{"misspelt mount field", "containerPath: /usr/local/bin/runsc", "containerPth: /usr/local/bin/runsc", "field containerPth not found"},
		{"unknown propagation", "readOnly: true\n      - hostPath: /opt/sandrun/gvisor/containerd", "readOnly: true\n        propagation: Sideways\n      - hostPath: /opt/sandrun/gvisor/containerd", "Unknown MountPropagation"},
		{"duplicate key", "kind: Cluster\n", "kind: Cluster\nkind: Cluster\n", "already defined"},
		{"wrong apiVersion", "kind.x-k8s.io/v1alpha4\n", "kind.x-k8s.io/v1alpha3\n", "want Cluster, kind.x-k8s.io/v1alpha4"},
		{"bad role", "role: worker", "role: wroker", `role "wroker"`},
		{"no worker", "  - role: worker\n    extraMounts: *gvisor\n", "", "no worker node"},
		{"TOML syntax", `ConfigPath = "/etc/containerd/runsc.toml"`, `ConfigPath = "/etc/containerd/runsc.toml`, "not valid TOML"},
		{"runc instead of runsc", `runtime_type = "io.containerd.runsc.v1"`, `runtime_type = "io.containerd.runc.v2"`, `runtime_type = "io.containerd.runc.v2"`},
		{"wrong options type", `TypeUrl = "io.containerd.runsc.v1.options"`, `TypeUrl = "io.containerd.runc.v1.options"`, "options.TypeUrl"},
		{"relative ConfigPath", `ConfigPath = "/etc/containerd/runsc.toml"`, `ConfigPath = "runsc.toml"`, "want an absolute path on the node"},
		{"unversioned patch", "    version = 3\n", "", "no integer `version`"},
		{"version-3 names in a version-2 patch", "version = 2\n    [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runsc]\n      runtime_type = \"io.containerd.runsc.v1\"\n    [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runsc.options]",
			"version = 2\n    [plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.runsc]\n      runtime_type = \"io.containerd.runsc.v1\"\n    [plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.runsc.options]",
			"version 2 patch uses the version-3 section"},
		{"unknown config version", "version = 3\n", "version = 5\n", "version 5: want one of 2, 3"},
		{"runtime under another name", "grpc.v1.cri\".containerd.runtimes.runsc]\n      runtime_type = \"io.containerd.runsc.v1\"\n    [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runsc.options]",
			"grpc.v1.cri\".containerd.runtimes.gvisor]\n      runtime_type = \"io.containerd.runsc.v1\"\n    [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.gvisor.options]",
			"no version-2 patch registers runtimes.runsc"},
		{"shim mount missing", "      - hostPath: /opt/sandrun/gvisor/containerd-shim-runsc-v1\n        containerPath: /usr/local/bin/containerd-shim-runsc-v1\n        readOnly: true\n", "", "no extraMount with containerPath /usr/local/bin/containerd-shim-runsc-v1"},
		{"options file not mounted", "containerPath: /etc/containerd/runsc.toml", "containerPath: /etc/runsc.toml", "no extraMount with containerPath /etc/containerd/runsc.toml"},
		{"binaries swapped", "hostPath: /opt/sandrun/gvisor/runsc\n", "hostPath: /opt/sandrun/gvisor/containerd-shim-runsc-v1\n", "does not name runsc"},
		{"relative hostPath", "hostPath: /opt/sandrun/gvisor/runsc.toml", "hostPath: gvisor/runsc.toml", "is relative"},
		{"writable mount", "readOnly: true", "readOnly: false", "want readOnly: true"},
		{"CNI without NetworkPolicy", "nodes:\n", "networking:\n  disableDefaultCNI: true\nnodes:\n", "disableDefaultCNI"},
		{"second document", "extraMounts: *gvisor\n", "extraMounts: *gvisor\n---\nkind: Cluster\n", "more than one YAML document"},
	}
	base := repoConfig(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(base, tc.old) {
				t.Fatalf("kind-config.yaml no longer contains %q; update this case", tc.old)
			}
			broken := strings.Replace(base, tc.old, tc.new, 1)
			_, problems := check([]byte(broken))
			all := strings.Join(problems, "\n")
			if !strings.Contains(all, tc.want) {
				t.Fatalf("want a problem containing %q, got:\n%s", tc.want, all)
			}
		})
	}
}

func TestHostFiles(t *testing.T) {
	dir := t.TempDir()
	cfg := strings.ReplaceAll(repoConfig(t), "/opt/sandrun/gvisor/", dir+"/")
	c, problems := check([]byte(cfg))
	if len(problems) > 0 {
		t.Fatal(strings.Join(problems, "\n"))
	}
	write := func(name, body string, mode os.FileMode) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(dir, name), mode); err != nil {
			t.Fatal(err)
		}
	}
	expect := func(want string) {
		t.Helper()
		all := strings.Join(checkHost(c), "\n")
		if want == "" && all != "" || !strings.Contains(all, want) {
			t.Fatalf("want %q, got:\n%s", want, all)
		}
	}

	expect("no such file or directory")
	write("runsc", "#!/bin/true\n", 0o755)
	write("containerd-shim-runsc-v1", "#!/bin/true\n", 0o700)
	write("runsc.toml", "[runsc_config]\n  systemd-cgroup = \"true\"\n", 0o644)
	expect("want at least r-xr-xr-x")
	write("containerd-shim-runsc-v1", "#!/bin/true\n", 0o755)
	expect("")
	write("runsc.toml", "[runsc_config]\n  platform = \"systrap\"\n", 0o644)
	expect(`want systemd-cgroup = "true"`)
	write("runsc.toml", "[runsc_config]\n  systemd-cgroup = true\n", 0o644)
	expect("runsc.toml") // not a string: the shim could not read it either
	if err := os.Remove(filepath.Join(dir, "runsc")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "runsc"), 0o755); err != nil {
		t.Fatal(err)
	}
	expect("not a regular file") // what Docker leaves when the file was missing
}
