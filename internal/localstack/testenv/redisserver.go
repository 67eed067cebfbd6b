package testenv

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kortix-ai/thread-delete/internal/localstack"
)

// startRedisServer runs a throwaway redis-server with args on loopback,
// stopped when the test ends. It waits until addr accepts connections.
func startRedisServer(tb testing.TB, addr string, args ...string) {
	tb.Helper()
	dir := tb.TempDir()
	cmd := exec.Command("redis-server", append([]string{"--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir}, args...)...)
	out := &localstack.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	proc, err := localstack.StartProcess(cmd)
	if err != nil {
		tb.Fatalf("testenv: redis-server: %v", err)
	}
	tb.Cleanup(proc.Kill)
	if err := localstack.WaitTCP(context.Background(), addr, 10*time.Second, proc.Exited()); err != nil {
		tb.Fatalf("testenv: redis-server: %v\n%s", err, out.String())
	}
}

// RedisTLS starts a redis-server that speaks only TLS, with a self-signed
// certificate for 127.0.0.1, and returns its rediss:// URL and the path of
// the CA certificate a client must trust.
func RedisTLS(tb testing.TB) (url, caFile string) {
	tb.Helper()
	certFile, keyFile := selfSigned(tb)
	port := FreePort(tb)
	startRedisServer(tb, fmt.Sprintf("127.0.0.1:%d", port),
		"--port", "0", "--tls-port", fmt.Sprint(port),
		"--tls-cert-file", certFile, "--tls-key-file", keyFile, "--tls-ca-cert-file", certFile,
		"--tls-auth-clients", "no")
	return fmt.Sprintf("rediss://127.0.0.1:%d/0", port), certFile
}

// RedisCluster starts a three-node Redis cluster (no replicas) and returns
// the address of one node, which serves as the configuration endpoint.
func RedisCluster(tb testing.TB) string {
	tb.Helper()
	var nodes []string
	for i := 0; i < 3; i++ {
		port := FreePort(tb)
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		startRedisServer(tb, addr, "--port", fmt.Sprint(port), "--cluster-enabled", "yes",
			"--cluster-config-file", fmt.Sprintf("nodes-%d.conf", port), "--cluster-node-timeout", "2000")
		nodes = append(nodes, addr)
	}
	create := exec.Command("redis-cli", append(append([]string{"--cluster", "create"}, nodes...), "--cluster-replicas", "0", "--cluster-yes")...)
	if out, err := create.CombinedOutput(); err != nil {
		tb.Fatalf("testenv: redis cluster create: %v\n%s", err, out)
	}
	// Wait until every node agrees the cluster is up.
	deadline := time.Now().Add(15 * time.Second)
	for _, n := range nodes {
		host, port, _ := net.SplitHostPort(n)
		for {
			out, _ := exec.Command("redis-cli", "-h", host, "-p", port, "cluster", "info").Output()
			if strings.Contains(string(out), "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				tb.Fatalf("testenv: redis cluster not ready: %s", out)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return nodes[0]
}

// tlsFiles is the one certificate of every RedisTLS server in the test
// binary. Go reads the system roots, which a test points at the certificate
// with SSL_CERT_FILE, once per process: a test run again in the same binary
// (go test -count=N) must meet the certificate the process already trusts.
var tlsFiles struct {
	once              sync.Once
	certFile, keyFile string
	err               error
}

func selfSigned(tb testing.TB) (certFile, keyFile string) {
	tb.Helper()
	tlsFiles.once.Do(func() {
		// Not tb.TempDir: the files outlive the first test that asks for them.
		dir, err := os.MkdirTemp("", "td-tls-")
		if err != nil {
			tlsFiles.err = err
			return
		}
		tlsFiles.certFile, tlsFiles.keyFile = filepath.Join(dir, "redis.crt"), filepath.Join(dir, "redis.key")
		tlsFiles.err = writeSelfSigned(tlsFiles.certFile, tlsFiles.keyFile)
	})
	if tlsFiles.err != nil {
		tb.Fatalf("testenv: TLS certificate: %v", tlsFiles.err)
	}
	return tlsFiles.certFile, tlsFiles.keyFile
}

func writeSelfSigned(certFile, keyFile string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
}
