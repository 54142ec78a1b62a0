package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// pkiFiles are reused across restarts so that clients holding an old kubeconfig keep working.
var pkiFiles = []string{"ca.crt", "ca.key", "apiserver.crt", "apiserver.key", "admin.crt", "admin.key", "sa.key", "sa.pub"}

type pki struct {
	caPEM, adminCertPEM, adminKeyPEM []byte
}

// ensurePKI reuses the certificates in the state dir when all exist and stay valid for another
// week, and otherwise writes a fresh set: CA, serving cert (IP:127.0.0.1, DNS:localhost), admin
// client cert (O=system:masters) and the service-account signing key.
func ensurePKI(s settings) (pki, error) {
	if p, err := loadPKI(s); err == nil {
		return p, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(os.Stderr, "controlplane: regenerating certificates: %v\n", err)
	}

	caKey, caCert, err := newCert(nil, nil, pkix.Name{CommonName: "binauthz-test-ca"}, func(t *x509.Certificate) {
		t.IsCA = true
		t.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
	})
	if err != nil {
		return pki{}, err
	}
	srvKey, srvCert, err := newCert(caCert, caKey, pkix.Name{CommonName: "kube-apiserver"}, func(t *x509.Certificate) {
		t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		t.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
		t.DNSNames = []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"}
	})
	if err != nil {
		return pki{}, err
	}
	admKey, admCert, err := newCert(caCert, caKey, pkix.Name{CommonName: "admin", Organization: []string{"system:masters"}}, func(t *x509.Certificate) {
		t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	})
	if err != nil {
		return pki{}, err
	}
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return pki{}, err
	}
	saPub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return pki{}, err
	}

	p := pki{caPEM: certPEM(caCert), adminCertPEM: certPEM(admCert)}
	if p.adminKeyPEM, err = keyPEM(admKey); err != nil {
		return pki{}, err
	}
	files := map[string][]byte{
		"ca.crt":        p.caPEM,
		"apiserver.crt": certPEM(srvCert),
		"admin.crt":     p.adminCertPEM,
		"admin.key":     p.adminKeyPEM,
		"sa.pub":        pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: saPub}),
	}
	for name, key := range map[string]crypto.Signer{"ca.key": caKey, "apiserver.key": srvKey, "sa.key": saKey} {
		if files[name], err = keyPEM(key); err != nil {
			return pki{}, err
		}
	}
	// Keys last-but-one, ca.crt last: a crash mid-way leaves an incomplete set that loadPKI rejects.
	for _, name := range pkiFiles {
		if name == "ca.crt" {
			continue
		}
		if err := os.WriteFile(s.path(name), files[name], 0o600); err != nil {
			return pki{}, fmt.Errorf("write %s: %w", s.path(name), err)
		}
	}
	if err := os.WriteFile(s.path("ca.crt"), files["ca.crt"], 0o644); err != nil {
		return pki{}, fmt.Errorf("write %s: %w", s.path("ca.crt"), err)
	}
	return p, nil
}

func loadPKI(s settings) (pki, error) {
	data := map[string][]byte{}
	for _, name := range pkiFiles {
		b, err := os.ReadFile(s.path(name))
		if err != nil {
			return pki{}, err
		}
		data[name] = b
	}
	roots := x509.NewCertPool()
	ca, err := parseCert(data["ca.crt"])
	if err != nil {
		return pki{}, fmt.Errorf("ca.crt: %w", err)
	}
	roots.AddCert(ca)
	soon := time.Now().Add(7 * 24 * time.Hour)
	for name, usage := range map[string]x509.ExtKeyUsage{"apiserver.crt": x509.ExtKeyUsageServerAuth, "admin.crt": x509.ExtKeyUsageClientAuth} {
		c, err := parseCert(data[name])
		if err != nil {
			return pki{}, fmt.Errorf("%s: %w", name, err)
		}
		if _, err := c.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: soon, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
			return pki{}, fmt.Errorf("%s does not verify against ca.crt a week from now: %w", name, err)
		}
	}
	return pki{caPEM: data["ca.crt"], adminCertPEM: data["admin.crt"], adminKeyPEM: data["admin.key"]}, nil
}

func newCert(parent *x509.Certificate, parentKey crypto.Signer, subject pkix.Name, mutate func(*x509.Certificate)) (*ecdsa.PrivateKey, *x509.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               subject,
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	mutate(tmpl)
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		return nil, nil, fmt.Errorf("create certificate %q: %w", subject.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	return key, cert, err
}

func parseCert(b []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM CERTIFICATE block")
	}
	return x509.ParseCertificate(block.Bytes)
}

func certPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func keyPEM(k crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// writeKubeconfig writes an admin kubeconfig with embedded credentials, atomically (a parallel
// reader never sees half a file).
func writeKubeconfig(s settings, p pki) error {
	const name = "binauthz-test"
	kc := clientcmdapi.NewConfig()
	kc.Clusters[name] = &clientcmdapi.Cluster{Server: s.apiURL(), CertificateAuthorityData: p.caPEM}
	kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: p.adminCertPEM, ClientKeyData: p.adminKeyPEM}
	kc.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: "admin", Namespace: "default"}
	kc.CurrentContext = name
	tmp := s.path("kubeconfig.tmp")
	if err := clientcmd.WriteToFile(*kc, tmp); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	return os.Rename(tmp, s.path("kubeconfig"))
}
