package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

// Controllers kube-controller-manager runs (by their --controllers aliases): what pgcluster's objects need
// (workloads, garbage collection, namespaces, ServiceAccounts and their
// tokens, kube-root-ca.crt, EndpointSlices/Endpoints, PV binding and
// protection, jobs, PodDisruptionBudgets) and what a node needs (pod CIDRs,
// node lifecycle, pod GC, TTL).
var controllers = []string{
	"statefulset", "deployment", "replicaset", "garbagecollector", "namespace",
	"serviceaccount", "serviceaccount-token", "root-ca-cert-publisher",
	"endpointslice", "endpoint", "persistentvolume-binder", "pvc-protection",
	"pv-protection", "job", "cronjob", "ttl-after-finished", "disruption",
	"nodeipam", "nodelifecycle", "podgc", "ttl",
	"clusterrole-aggregation",
}

type options struct {
	dir           string
	address       string
	port          int
	etcdPort      int
	kcmPort       int
	schedulerPort int
	nodeName      string
	serviceCIDR   string
	clusterCIDR   string
	timeout       time.Duration
	noFsync       bool
	verbosity     int
}

type component struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// AuditLog is the API server's audit log in the state directory.
const AuditLog = "audit.log"

// The audit policy: metadata of every request a ServiceAccount makes,
// except kube-system's (the controller-manager's controllers), once per
// request (at ResponseComplete; a watch also at ResponseStarted).
const auditPolicyYAML = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  userGroups: ["system:serviceaccounts:kube-system"]
- level: Metadata
  userGroups: ["system:serviceaccounts"]
- level: None
`

func up(args []string) int {
	var o options
	fs := flag.NewFlagSet("up", flag.ExitOnError)
	fs.StringVar(&o.dir, "dir", "", "state directory (PKI, etcd data, logs, kubeconfigs); created, should be empty")
	fs.StringVar(&o.address, "address", "127.0.0.1", "address kube-apiserver binds and advertises")
	fs.IntVar(&o.port, "port", 6443, "kube-apiserver's secure port")
	fs.IntVar(&o.etcdPort, "etcd-port", 2379, "embedded etcd's client port on 127.0.0.1 (peer port: +1)")
	fs.IntVar(&o.kcmPort, "controller-manager-port", 10257, "kube-controller-manager's secure port on 127.0.0.1")
	fs.IntVar(&o.schedulerPort, "scheduler-port", 10259, "kube-scheduler's secure port on 127.0.0.1")
	fs.StringVar(&o.nodeName, "node-name", "pgc-node", "name of the node a kubelet kubeconfig is written for")
	fs.StringVar(&o.serviceCIDR, "service-cidr", "10.43.0.0/16", "Service CIDR (K3s's default)")
	fs.StringVar(&o.clusterCIDR, "cluster-cidr", "10.42.0.0/16", "pod CIDR (K3s's default)")
	fs.DurationVar(&o.timeout, "timeout", 3*time.Minute, "how long to wait for every component to be ready")
	fs.BoolVar(&o.noFsync, "etcd-unsafe-no-fsync", false, "run etcd without fsync (faster, not crash-safe)")
	fs.IntVar(&o.verbosity, "v", 1, "klog verbosity of the components")
	_ = fs.Parse(args)
	if o.dir == "" {
		fmt.Fprintln(os.Stderr, "up: --dir is required")
		return 2
	}
	if err := run(o); err != nil {
		fmt.Fprintf(os.Stderr, "pgcluster-testenv: %v\n", err)
		return 1
	}
	return 0
}

func logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "pgcluster-testenv: "+format+"\n", a...)
}

func run(o options) error {
	dir, err := filepath.Abs(o.dir)
	if err != nil {
		return err
	}
	logs := filepath.Join(dir, "logs")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return err
	}
	ip := net.ParseIP(o.address)
	if ip == nil {
		return fmt.Errorf("--address %q is not an IP address", o.address)
	}
	serviceIP, err := firstServiceIP(o.serviceCIDR)
	if err != nil {
		return err
	}
	server := "https://" + net.JoinHostPort(o.address, strconv.Itoa(o.port))

	// PKI and kubeconfigs.
	p, err := newPKI(filepath.Join(dir, "pki"))
	if err != nil {
		return fmt.Errorf("PKI: %w", err)
	}
	if err := p.serviceAccountKey(); err != nil {
		return err
	}
	dnsNames := []string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "localhost"}
	if _, err := p.issue("apiserver", "kube-apiserver", nil, true, []net.IP{ip, serviceIP, net.ParseIP("127.0.0.1")}, dnsNames); err != nil {
		return err
	}
	if _, err := p.issue("apiserver-kubelet-client", "kube-apiserver-kubelet-client", []string{"system:masters"}, false, nil, nil); err != nil {
		return err
	}
	// The aggregation layer's front proxy (kubeadm's front-proxy-client);
	// with it, the components' requestheader authenticators are configured
	// as on a real cluster instead of logging a missing CA every second.
	if _, err := p.issue("front-proxy-client", "front-proxy-client", nil, false, nil, nil); err != nil {
		return err
	}
	clients := []struct{ file, cn, org string }{
		{"admin", "pgcluster-testenv-admin", "system:masters"},
		{"controller-manager", "system:kube-controller-manager", ""},
		{"scheduler", "system:kube-scheduler", ""},
		{"kubelet", "system:node:" + o.nodeName, "system:nodes"},
		{"kube-proxy", "system:kube-proxy", ""},
	}
	for _, c := range clients {
		var orgs []string
		if c.org != "" {
			orgs = []string{c.org}
		}
		pair, err := p.issue(c.file+"-client", c.cn, orgs, false, nil, nil)
		if err != nil {
			return err
		}
		// admin.kubeconfig is written last, once everything is ready: its
		// presence means "ready".
		name := filepath.Join(dir, c.file+".kubeconfig")
		if c.file == "admin" {
			name = filepath.Join(dir, "pki", "admin.kubeconfig")
		}
		if err := p.kubeconfig(name, server, c.cn, pair); err != nil {
			return err
		}
	}

	// Signals, stdin, and the components' exits all end the run.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if fi, err := os.Stdin.Stat(); err == nil && fi.Mode()&os.ModeNamedPipe != 0 {
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			cancel(errors.New("stdin closed"))
		}()
	}

	// etcd, in this process.
	etcd, err := startEtcd(ctx, o, dir)
	if err != nil {
		return err
	}
	defer func() {
		etcd.Close()
		logf("etcd stopped")
	}()

	var running []*component
	defer func() {
		for i := len(running) - 1; i >= 0; i-- {
			running[i].stop()
		}
	}()
	start := func(name string, args ...string) (*component, error) {
		c, err := startComponent(dir, name, append(args, "--v="+strconv.Itoa(o.verbosity)))
		if err != nil {
			return nil, err
		}
		running = append(running, c)
		go func() {
			select {
			case <-c.done:
				cancel(fmt.Errorf("%s exited: %v (see %s)", name, c.err, c.logPath(dir)))
			case <-ctx.Done():
			}
		}()
		return c, nil
	}

	pki := p.path
	auditPolicy := filepath.Join(dir, "audit-policy.yaml")
	if err := os.WriteFile(auditPolicy, []byte(auditPolicyYAML), 0o644); err != nil {
		return err
	}
	_, err = start("kube-apiserver",
		"--etcd-servers=http://127.0.0.1:"+strconv.Itoa(o.etcdPort),
		"--bind-address="+o.address,
		"--advertise-address="+o.address,
		"--secure-port="+strconv.Itoa(o.port),
		"--cert-dir="+filepath.Join(dir, "apiserver-certs"),
		"--tls-cert-file="+pki("apiserver.crt"),
		"--tls-private-key-file="+pki("apiserver.key"),
		"--client-ca-file="+pki("ca.crt"),
		"--kubelet-client-certificate="+pki("apiserver-kubelet-client.crt"),
		"--kubelet-client-key="+pki("apiserver-kubelet-client.key"),
		// Reach kubelets by the node address (as K3s does), not by a host name
		// nothing resolves.
		"--kubelet-preferred-address-types=InternalIP,Hostname",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+pki("sa.pub"),
		"--service-account-signing-key-file="+pki("sa.key"),
		"--service-cluster-ip-range="+o.serviceCIDR,
		"--authorization-mode=Node,RBAC",
		// On top of the default plugins (NamespaceLifecycle, ServiceAccount,
		// PodSecurity, ResourceQuota, StorageObjectInUseProtection, ...):
		// NodeRestriction as K3s enables it, and
		// OwnerReferencesPermissionEnforcement, stricter than K3s, so that an
		// owner reference the controller may not set fails here first.
		"--enable-admission-plugins=NodeRestriction,OwnerReferencesPermissionEnforcement",
		"--requestheader-client-ca-file="+pki("ca.crt"),
		"--requestheader-allowed-names=front-proxy-client",
		"--requestheader-username-headers=X-Remote-User",
		"--requestheader-group-headers=X-Remote-Group",
		"--requestheader-extra-headers-prefix=X-Remote-Extra-",
		"--proxy-client-cert-file="+pki("front-proxy-client.crt"),
		"--proxy-client-key-file="+pki("front-proxy-client.key"),
		"--allow-privileged=true",
		"--profiling=false",
		// Every request of a ServiceAccount outside kube-system, one JSON
		// line each: the tests count the agents' and the controller's
		// requests by verb and resource (pgcluster bench kubernetes).
		"--audit-policy-file="+auditPolicy,
		"--audit-log-path="+filepath.Join(dir, AuditLog),
		"--audit-log-format=json",
		"--audit-log-maxsize=200",
		"--audit-log-maxbackup=1",
	)
	if err != nil {
		return err
	}
	if err := waitAPIServer(ctx, o, p, server, dir); err != nil {
		return err
	}
	logf("kube-apiserver ready at %s", server)

	_, err = start("kube-controller-manager",
		"--kubeconfig="+filepath.Join(dir, "controller-manager.kubeconfig"),
		"--authentication-kubeconfig="+filepath.Join(dir, "controller-manager.kubeconfig"),
		"--authorization-kubeconfig="+filepath.Join(dir, "controller-manager.kubeconfig"),
		"--bind-address=127.0.0.1",
		"--secure-port="+strconv.Itoa(o.kcmPort),
		"--cert-dir="+filepath.Join(dir, "controller-manager-certs"),
		"--leader-elect=false",
		"--controllers="+strings.Join(controllers, ","),
		"--use-service-account-credentials=true",
		"--service-account-private-key-file="+pki("sa.key"),
		"--root-ca-file="+pki("ca.crt"),
		"--cluster-signing-cert-file="+pki("ca.crt"),
		"--cluster-signing-key-file="+pki("ca.key"),
		"--service-cluster-ip-range="+o.serviceCIDR,
		"--cluster-cidr="+o.clusterCIDR,
		"--allocate-node-cidrs=true",
		"--node-cidr-mask-size=24",
		"--profiling=false",
	)
	if err != nil {
		return err
	}
	_, err = start("kube-scheduler",
		"--kubeconfig="+filepath.Join(dir, "scheduler.kubeconfig"),
		"--authentication-kubeconfig="+filepath.Join(dir, "scheduler.kubeconfig"),
		"--authorization-kubeconfig="+filepath.Join(dir, "scheduler.kubeconfig"),
		"--bind-address=127.0.0.1",
		"--secure-port="+strconv.Itoa(o.schedulerPort),
		"--leader-elect=false",
		"--profiling=false",
	)
	if err != nil {
		return err
	}
	for name, port := range map[string]int{"kube-controller-manager": o.kcmPort, "kube-scheduler": o.schedulerPort} {
		if err := waitHealthz(ctx, o.timeout, name, port); err != nil {
			return err
		}
		logf("%s healthy", name)
	}

	admin := filepath.Join(dir, "admin.kubeconfig")
	if err := os.Rename(filepath.Join(dir, "pki", "admin.kubeconfig"), admin); err != nil {
		return err
	}
	logf("ready: KUBECONFIG=%s", admin)
	fmt.Println("ready")

	<-ctx.Done()
	cause := context.Cause(ctx)
	logf("stopping: %v", cause)
	if errors.Is(cause, context.Canceled) || (cause != nil && cause.Error() == "stdin closed") {
		return nil
	}
	return cause
}

func firstServiceIP(cidr string) (net.IP, error) {
	_, n, err := net.ParseCIDR(cidr)
	if err != nil {
		return nil, fmt.Errorf("--service-cidr: %w", err)
	}
	ip := n.IP.To4()
	if ip == nil {
		return nil, fmt.Errorf("--service-cidr %s: only IPv4 is supported", cidr)
	}
	next := make(net.IP, 4)
	copy(next, ip)
	next[3]++
	return next, nil
}

func startEtcd(ctx context.Context, o options, dir string) (*embed.Etcd, error) {
	cfg := embed.NewConfig()
	cfg.Name = "pgcluster-testenv"
	cfg.Dir = filepath.Join(dir, "etcd")
	client := url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(o.etcdPort))}
	peer := url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(o.etcdPort+1))}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.LogLevel = "warn"
	cfg.LogOutputs = []string{filepath.Join(dir, "logs", "etcd.log")}
	cfg.UnsafeNoFsync = o.noFsync
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("etcd: %w", err)
	}
	select {
	case <-e.Server.ReadyNotify():
		logf("etcd ready at %s", client.String())
		return e, nil
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("etcd: %w", err)
	case <-time.After(o.timeout):
		e.Close()
		return nil, fmt.Errorf("etcd not ready after %s", o.timeout)
	case <-ctx.Done():
		e.Close()
		return nil, context.Cause(ctx)
	}
}

func (c *component) logPath(dir string) string {
	return filepath.Join(dir, "logs", c.name+".log")
}

func startComponent(dir, name string, args []string) (*component, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	c := &component{name: name, done: make(chan struct{})}
	log, err := os.OpenFile(c.logPath(dir), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	c.cmd = exec.Command(self, append([]string{name}, args...)...)
	c.cmd.Stdout, c.cmd.Stderr = log, log
	// Never outlive this process, even if it is killed with SIGKILL.
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := c.cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	pid := c.cmd.Process.Pid
	if err := os.WriteFile(filepath.Join(dir, name+".pid"), []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
		return nil, err
	}
	logf("%s started, pid %d, log %s", name, pid, c.logPath(dir))
	go func() {
		c.err = c.cmd.Wait()
		log.Close()
		close(c.done)
	}()
	return c, nil
}

// stop sends SIGTERM, waits up to 20 s, then SIGKILL.
func (c *component) stop() {
	select {
	case <-c.done:
		return
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
		logf("%s stopped", c.name)
	case <-time.After(20 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
		logf("%s killed after 20 s", c.name)
	}
}

// poll calls check every 200 ms until it returns nil, the timeout passes or ctx ends.
func poll(ctx context.Context, timeout time.Duration, what string, check func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s: %v", what, timeout, err)
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func get(client *http.Client, url string) error {
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

func waitAPIServer(ctx context.Context, o options, p *pki, server, dir string) error {
	pool := x509.NewCertPool()
	pool.AddCert(p.caCert)
	cert, err := tls.LoadX509KeyPair(p.path("admin-client.crt"), p.path("admin-client.key"))
	if err != nil {
		return err
	}
	client := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}},
	}
	if err := poll(ctx, o.timeout, "kube-apiserver", func() error { return get(client, server+"/readyz") }); err != nil {
		return err
	}
	// The bootstrap RBAC policy and the default namespace exist once these answer.
	return poll(ctx, o.timeout, "kube-apiserver bootstrap", func() error {
		if err := get(client, server+"/api/v1/namespaces/default"); err != nil {
			return err
		}
		return get(client, server+"/apis/rbac.authorization.k8s.io/v1/clusterroles/system:kube-controller-manager")
	})
}

func waitHealthz(ctx context.Context, timeout time.Duration, name string, port int) error {
	client := &http.Client{
		Timeout: 5 * time.Second,
		// Their serving certificates are self-signed in their cert dirs; this
		// only checks liveness on loopback.
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
	}
	return poll(ctx, timeout, name, func() error {
		return get(client, "https://127.0.0.1:"+strconv.Itoa(port)+"/healthz")
	})
}
