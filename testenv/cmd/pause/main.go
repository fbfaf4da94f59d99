// Command pause is the pod sandbox's process for the test node: it waits
// for SIGTERM/SIGINT and reaps nothing else (like registry.k8s.io/pause,
// which no registry here can serve). testenv/oci-archive packs it into an
// OCI image archive for `ctr -n k8s.io images import`.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	<-signals
}
