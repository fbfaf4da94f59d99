// Command coredns is the test node's cluster DNS: CoreDNS (its Go module, the
// release K3s ships) with only the plugins the node's Corefile uses, so the
// build compiles none of the cloud providers' SDKs that its full plugin list
// pulls in. scripts/test-k8s runs it in the node's network namespace behind
// the kube-dns Service (10.43.0.10), fed from the API server.
package main

import (
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
)

func main() { coremain.Run() }
