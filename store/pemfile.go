package store

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// CertExtensions are the file name endings allow_dir reads.
var CertExtensions = []string{".pem", ".crt", ".cer"}

// ParseCertificates reads certificates from PEM (any number of CERTIFICATE
// blocks) or from a single DER certificate. It refuses input holding a
// private key, so that a key file named by mistake is never loaded, and
// input holding no certificate. name is used in messages only.
func ParseCertificates(data []byte, name string) ([]*x509.Certificate, error) {
	if !bytes.Contains(data, []byte("-----BEGIN")) {
		cert, err := x509.ParseCertificate(data)
		if err != nil {
			return nil, fmt.Errorf("%s: neither PEM nor a DER certificate: %v", name, err)
		}
		return []*x509.Certificate{cert}, nil
	}
	var certs []*x509.Certificate
	rest := data
	for n := 1; ; n++ {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		switch {
		case strings.Contains(block.Type, "PRIVATE KEY"):
			return nil, fmt.Errorf("%s holds a private key (PEM block %d, %s): give the certificate only, and keep the key out of the web server's reach", name, n, block.Type)
		case block.Type != "CERTIFICATE":
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: PEM block %d: %v", name, n, err)
		}
		certs = append(certs, cert)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%s holds no certificate", name)
	}
	return certs, nil
}

// ReadCertificates reads a certificate file.
func ReadCertificates(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseCertificates(data, path)
}

// ReadEntry reads a file that must hold exactly one certificate and makes
// it an entry under alias: pinned exactly, or with ca a CA entry (see
// NewEntry). A file that cannot be read is reported as the *fs.PathError
// os.ReadFile gives.
func ReadEntry(alias, path string, ca bool) (*Entry, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseEntry(alias, data, path, ca)
}

// ParseEntry makes an entry under alias of data (PEM or DER), which must
// hold exactly one certificate: pinned exactly, or with ca a CA entry (see
// NewEntry). name says where data came from, in messages and as the
// entry's Source. One certificate per alias keeps a bundle from silently
// allowing every CA inside it. A certificate that cannot be a CA entry
// wraps ErrNotCA.
func ParseEntry(alias string, data []byte, name string, ca bool) (*Entry, error) {
	certs, err := ParseCertificates(data, name)
	if err != nil {
		return nil, err
	}
	if len(certs) != 1 {
		return nil, fmt.Errorf("%s holds %d certificates; give one certificate per alias (use trust_pool for CA bundles)", name, len(certs))
	}
	e, err := NewEntry(alias, certs[0], ca, name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return e, nil
}

// ReadDir makes a pinned entry of every certificate file in dir, named by
// the file name without its extension. Files with other extensions are ignored;
// a certificate file that fails to load fails the whole directory.
func ReadDir(dir string) ([]*Entry, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var entries []*Entry
	for _, de := range des {
		ext := strings.ToLower(filepath.Ext(de.Name()))
		if de.IsDir() || !hasCertExtension(ext) {
			continue
		}
		alias := strings.TrimSuffix(de.Name(), filepath.Ext(de.Name()))
		e, err := ReadEntry(alias, filepath.Join(dir, de.Name()), false)
		if err != nil {
			return nil, err
		}
		entries = append(entries, e)
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Alias < entries[j].Alias })
	return entries, nil
}

func hasCertExtension(ext string) bool {
	for _, e := range CertExtensions {
		if ext == e {
			return true
		}
	}
	return false
}
