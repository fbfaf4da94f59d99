// Command pgcluster-testenv runs a single-node Kubernetes control plane for
// pgcluster's end-to-end tests, built from the Go modules of k8s.io/kubernetes:
//
//	pgcluster-testenv up --dir DIR --address 10.213.0.2
//
// starts embedded etcd (in this process) and kube-apiserver,
// kube-controller-manager and kube-scheduler (each a child process running
// this same binary as `pgcluster-testenv kube-apiserver ...`, i.e. the
// component's own command line, so each is a separate PID that a test can
// stop or pause), with a real PKI generated in DIR/pki, and writes
// DIR/admin.kubeconfig (client certificate in group system:masters, the real
// CA) once /readyz answers. Kubeconfigs for a kubelet (system:node:NODE) and
// kube-proxy are written too. It stops everything on SIGTERM/SIGINT, when its
// stdin (a pipe) is closed, or when any component exits.
//
// The other subcommands run one component exactly as its upstream binary:
//
//	pgcluster-testenv kube-apiserver|kube-controller-manager|kube-scheduler [flags]
package main

import (
	"fmt"
	"os"

	"k8s.io/component-base/cli"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: pgcluster-testenv up|kube-apiserver|kube-controller-manager|kube-scheduler [flags]")
		os.Exit(2)
	}
	sub, args := os.Args[1], os.Args[2:]
	switch sub {
	case "up":
		os.Exit(up(args))
	case "kube-apiserver":
		cmd := apiserver.NewAPIServerCommand()
		cmd.SetArgs(args)
		os.Exit(cli.Run(cmd))
	case "kube-controller-manager":
		cmd := controllermanager.NewControllerManagerCommand()
		cmd.SetArgs(args)
		os.Exit(cli.Run(cmd))
	case "kube-scheduler":
		cmd := scheduler.NewSchedulerCommand()
		cmd.SetArgs(args)
		os.Exit(cli.Run(cmd))
	default:
		fmt.Fprintf(os.Stderr, "unknown subcommand %q\n", sub)
		os.Exit(2)
	}
}
