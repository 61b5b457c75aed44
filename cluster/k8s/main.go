// Command sandrun-k8s is one binary holding every Kubernetes component the
// local cluster runs, plus etcd. Building them together compiles the shared
// dependency tree once, which is what makes a cold build fit on two cores.
// The component is picked from the name the binary is called by (symlinks)
// or, failing that, from the first argument.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	_ "time/tzdata" // CronJob time zones, as the upstream binaries do

	"github.com/spf13/cobra"
	"go.etcd.io/etcd/server/v3/etcdmain"
	_ "k8s.io/client-go/plugin/pkg/client/auth"
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	kubectl "k8s.io/kubectl/pkg/cmd"
	kubectlutil "k8s.io/kubectl/pkg/cmd/util"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	proxy "k8s.io/kubernetes/cmd/kube-proxy/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
	kubelet "k8s.io/kubernetes/cmd/kubelet/app"
)

var components = map[string]func() *cobra.Command{
	"kube-apiserver":          apiserver.NewAPIServerCommand,
	"kube-controller-manager": controllermanager.NewControllerManagerCommand,
	"kube-scheduler":          func() *cobra.Command { return scheduler.NewSchedulerCommand() },
	"kube-proxy":              proxy.NewProxyCommand,
	"kubelet":                 func() *cobra.Command { return kubelet.NewKubeletCommand(context.Background()) },
}

func main() {
	name := filepath.Base(os.Args[0])
	args := os.Args
	if !known(name) && len(os.Args) > 1 && known(os.Args[1]) {
		name, args = os.Args[1], os.Args[1:]
	}
	switch {
	case name == "etcd":
		etcdmain.Main(args)
	case name == "kubectl":
		os.Args = args
		if err := cli.RunNoErrOutput(kubectl.NewDefaultKubectlCommand()); err != nil {
			kubectlutil.CheckErr(err)
		}
	case components[name] != nil:
		os.Args = args
		os.Exit(cli.Run(components[name]()))
	default:
		fmt.Fprintf(os.Stderr, "usage: sandrun-k8s COMPONENT [flags]; components: etcd kubectl")
		for c := range components {
			fmt.Fprintf(os.Stderr, " %s", c)
		}
		fmt.Fprintln(os.Stderr)
		os.Exit(2)
	}
}

func known(name string) bool {
	return name == "etcd" || name == "kubectl" || components[name] != nil
}
