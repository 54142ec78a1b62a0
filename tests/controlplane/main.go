// Command controlplane runs a real kube-apiserver and an embedded etcd on 127.0.0.1 for the
// binauthz integration tests (see README.md).
//
//	controlplane serve   start etcd + kube-apiserver in the foreground until SIGTERM/SIGINT
//	controlplane ready   exit 0 when the apiserver of the state dir answers /readyz with "ok"
//
// Configuration comes from the environment, never from flags, so that nothing in os.Args
// reaches kube-apiserver's own flag parsing:
//
//	CONTROLPLANE_DIR                 state dir (required): certs, etcd data, kubeconfig, pid
//	CONTROLPLANE_APISERVER_PORT      default 16443
//	CONTROLPLANE_ETCD_PORT           default 12379
//	CONTROLPLANE_ETCD_PEER_PORT      default 12380
//	CONTROLPLANE_ADVERTISE_ADDRESS   default: first non-loopback IPv4 of the host
//	CONTROLPLANE_APISERVER_ARGS      extra kube-apiserver flags, separated by spaces
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // CronJob time zones, as upstream kube-apiserver

	"go.etcd.io/etcd/server/v3/embed"
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // as upstream kube-apiserver
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // as upstream kube-apiserver
	_ "k8s.io/component-base/metrics/prometheus/version"  // as upstream kube-apiserver
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

type settings struct {
	dir           string
	apiPort       int
	etcdPort      int
	etcdPeerPort  int
	advertiseAddr string
	extraArgs     []string
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: controlplane serve|ready (configured by CONTROLPLANE_* env, see main.go)")
		os.Exit(2)
	}
	s, err := loadSettings()
	if err != nil {
		fatal(err)
	}
	switch os.Args[1] {
	case "serve":
		os.Exit(serve(s))
	case "ready":
		if err := probeReady(s, 3*time.Second); err != nil {
			fmt.Fprintln(os.Stderr, "not ready:", err)
			os.Exit(1)
		}
	default:
		fmt.Fprintf(os.Stderr, "unknown command %q: use serve or ready\n", os.Args[1])
		os.Exit(2)
	}
}

func loadSettings() (settings, error) {
	s := settings{dir: os.Getenv("CONTROLPLANE_DIR")}
	if s.dir == "" {
		return s, errors.New("CONTROLPLANE_DIR is not set: point it at the state dir, e.g. target/cluster")
	}
	abs, err := filepath.Abs(s.dir)
	if err != nil {
		return s, fmt.Errorf("CONTROLPLANE_DIR %q: %w", s.dir, err)
	}
	s.dir = abs
	for _, p := range []struct {
		env  string
		def  int
		dest *int
	}{
		{"CONTROLPLANE_APISERVER_PORT", 16443, &s.apiPort},
		{"CONTROLPLANE_ETCD_PORT", 12379, &s.etcdPort},
		{"CONTROLPLANE_ETCD_PEER_PORT", 12380, &s.etcdPeerPort},
	} {
		*p.dest = p.def
		if v := os.Getenv(p.env); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 || n > 65535 {
				return s, fmt.Errorf("%s=%q is not a port number (1-65535)", p.env, v)
			}
			*p.dest = n
		}
	}
	s.advertiseAddr = os.Getenv("CONTROLPLANE_ADVERTISE_ADDRESS")
	s.extraArgs = strings.Fields(os.Getenv("CONTROLPLANE_APISERVER_ARGS"))
	return s, nil
}

func (s settings) path(name string) string { return filepath.Join(s.dir, name) }

func (s settings) apiURL() string { return fmt.Sprintf("https://127.0.0.1:%d", s.apiPort) }

func serve(s settings) int {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		fatal(fmt.Errorf("create state dir: %w", err))
	}
	pidFile := s.path("controlplane.pid")
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		fatal(fmt.Errorf("write pid file: %w", err))
	}
	defer os.Remove(pidFile)

	pki, err := ensurePKI(s)
	if err != nil {
		fatal(err)
	}
	if err := writeKubeconfig(s, pki); err != nil {
		fatal(err)
	}

	etcd, err := startEtcd(s)
	if err != nil {
		fatal(err)
	}
	defer etcd.Close()

	advertise := s.advertiseAddr
	if advertise == "" {
		advertise = hostAddress()
	}
	args := []string{
		"--etcd-servers=" + fmt.Sprintf("http://127.0.0.1:%d", s.etcdPort),
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(s.apiPort),
		// Only goes into the `kubernetes` Service/Endpoints, never dialled; loopback is rejected,
		// and without a default route the apiserver cannot pick one itself.
		"--advertise-address=" + advertise,
		"--endpoint-reconciler-type=none",
		"--cert-dir=" + s.path("apiserver-certs"),
		"--tls-cert-file=" + s.path("apiserver.crt"),
		"--tls-private-key-file=" + s.path("apiserver.key"),
		"--client-ca-file=" + s.path("ca.crt"),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + s.path("sa.pub"),
		"--service-account-signing-key-file=" + s.path("sa.key"),
		"--service-cluster-ip-range=10.0.0.0/24",
		"--authorization-mode=RBAC",
		"--enable-admission-plugins=MutatingAdmissionWebhook,ValidatingAdmissionWebhook,ValidatingAdmissionPolicy",
		// No controller-manager creates `default` ServiceAccounts, so this plugin would reject every Pod.
		"--disable-admission-plugins=ServiceAccount",
		"--allow-privileged=true",
		// Image volumes (KEP-4639) are beta and on by default from 1.35; 1.34 keeps them behind
		// this gate, and without it the API server drops `volumes[].image` from every Pod.
		"--feature-gates=ImageVolume=true",
		"--profiling=false",
		"--v=1",
	}
	args = append(args, s.extraArgs...)

	go announceReady(s)
	cmd := app.NewAPIServerCommand() // once per process: it installs the SIGTERM/SIGINT handler
	cmd.SetArgs(args)
	code := cli.Run(cmd)
	fmt.Fprintf(os.Stderr, "controlplane: kube-apiserver exited with code %d, stopping etcd\n", code)
	return code
}

func startEtcd(s settings) (*embed.Etcd, error) {
	client := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", s.etcdPort)}
	peer := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", s.etcdPeerPort)}
	cfg := embed.NewConfig()
	cfg.Name = "controlplane"
	cfg.Dir = s.path("etcd")
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.UnsafeNoFsync = true // test data only: speed over durability
	cfg.LogLevel = "warn"
	// NewConfig leaves these at 0 (only etcd's flag parser sets defaults), which logs every request.
	cfg.WarningApplyDuration = embed.DefaultWarningApplyDuration
	cfg.WarningUnaryRequestDuration = embed.DefaultWarningUnaryRequestDuration
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("start etcd on %s (data %s): %w", client.Host, cfg.Dir, err)
	}
	select {
	case <-e.Server.ReadyNotify():
		return e, nil
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("etcd failed: %w", err)
	case <-time.After(60 * time.Second):
		e.Close()
		return nil, errors.New("etcd not ready after 60s")
	}
}

// announceReady logs once when /readyz first succeeds, so the log shows the start-up time.
func announceReady(s settings) {
	start := time.Now()
	for time.Since(start) < 10*time.Minute {
		if probeReady(s, time.Second) == nil {
			fmt.Fprintf(os.Stderr, "controlplane: ready at %s after %s (kubeconfig %s)\n",
				s.apiURL(), time.Since(start).Round(time.Millisecond), s.path("kubeconfig"))
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func probeReady(s settings, timeout time.Duration) error {
	caPEM, err := os.ReadFile(s.path("ca.crt"))
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return fmt.Errorf("%s holds no PEM certificate", s.path("ca.crt"))
	}
	client := &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			Proxy:           nil, // loopback, never through a proxy
			TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.apiURL()+"/readyz", nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != "ok" {
		return fmt.Errorf("/readyz: %s %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

// hostAddress returns a non-loopback IPv4 address of this host, or a TEST-NET-1 address when
// there is none (the value is only advertised, never dialled).
func hostAddress() string {
	addrs, err := net.InterfaceAddrs()
	if err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil && n.IP.IsGlobalUnicast() {
				return n.IP.String()
			}
		}
	}
	return "192.0.2.1"
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "controlplane:", err)
	os.Exit(1)
}
