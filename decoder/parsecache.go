package decoder

import (
	"crypto/x509"
	"unsafe"

	lru "github.com/hashicorp/golang-lru/v2"
)

// maxParsedChain bounds the parsed-chain-certificate cache of a Decoder.
const maxParsedChain = 256

// parsedCache remembers parsed chain certificates (not leaves) by their
// exact DER, the least recently used going first when full. Every client
// under one intermediate sends the same intermediate, so parsing it once
// saves most of a chain's decoding cost. A parsed certificate is immutable,
// so sharing it is safe. Safe for concurrent use.
type parsedCache struct {
	m *lru.Cache[string, *x509.Certificate]
}

func newParsedCache() *parsedCache {
	m, _ := lru.New[string, *x509.Certificate](maxParsedChain) // errs only for a size < 1
	return &parsedCache{m: m}
}

// parse returns the certificate for der, parsing it on a miss.
func (p *parsedCache) parse(der []byte) (*x509.Certificate, error) {
	if len(der) > 0 {
		// The lookup views der as a string without copying it: Get only
		// compares the key, it never keeps it.
		if c, ok := p.m.Get(unsafe.String(&der[0], len(der))); ok {
			return c, nil
		}
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	p.m.Add(string(der), c)
	return c, nil
}
