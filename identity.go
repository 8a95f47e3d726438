package mtlsauth

import (
	"crypto/x509"
	"sync"
	"time"

	"github.com/mtlsauth/caddy-mtls-auth/decoder"
	"github.com/mtlsauth/caddy-mtls-auth/store"
)

// identity is an authenticated client certificate as the rest of Caddy
// sees it. It is immutable once built and shared by every request that
// presents the same certificate (through the verification cache); the
// string forms of its names are made on first use, since most requests
// read few placeholders or none.
type identity struct {
	leaf        *x509.Certificate
	fingerprint string
	alias       string
	tier        string
	meta        map[string]string
	// poolChain is the chain verified to the trust pool, leaf to root; nil
	// without a pool.
	poolChain []*x509.Certificate

	once     sync.Once
	subject  string
	issuer   string
	serial   string
	notAfter string
	uris     []string
	ips      []string

	// The forms handed to upstreams (upstream.go), made on first use.
	upOnce sync.Once
	up     upstreamForms
}

func newIdentity(leaf *x509.Certificate, fp store.Fingerprint, e *store.Entry, poolChain []*x509.Certificate) *identity {
	id := &identity{leaf: leaf, fingerprint: fp.String(), poolChain: poolChain}
	if e != nil {
		id.alias, id.tier, id.meta = e.Alias, e.Tier, e.Meta
	}
	return id
}

// strings makes the string forms of the certificate's names, once.
func (id *identity) strings() *identity {
	id.once.Do(func() {
		leaf := id.leaf
		// As OpenSSL prints names (emailAddress=, not the OID in hex).
		id.subject = decoder.SubjectName(leaf)
		id.issuer = decoder.IssuerName(leaf)
		id.serial = leaf.SerialNumber.String()
		id.notAfter = leaf.NotAfter.UTC().Format(time.RFC3339)
		for _, u := range leaf.URIs {
			id.uris = append(id.uris, u.String())
		}
		for _, ip := range leaf.IPAddresses {
			id.ips = append(id.ips, ip.String())
		}
	})
	return id
}

// userID is {http.auth.user.id} without a user_id template: the alias,
// else the subject CN.
func (id *identity) userID() string {
	if id.alias != "" {
		return id.alias
	}
	return id.leaf.Subject.CommonName
}
