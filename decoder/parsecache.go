package decoder

import (
	"crypto/x509"
	"sync"
)

// maxParsedChain bounds the parsed-chain-certificate cache of a Decoder.
const maxParsedChain = 256

// parsedCache remembers parsed chain certificates (not leaves) by their
// exact DER. Every client under one intermediate sends the same
// intermediate, so parsing it once saves most of a chain's decoding cost.
// A parsed certificate is immutable, so sharing it is safe.
type parsedCache struct {
	mu sync.RWMutex
	m  map[string]*x509.Certificate
}

func newParsedCache() *parsedCache {
	return &parsedCache{m: make(map[string]*x509.Certificate)}
}

// parse returns the certificate for der, parsing it on a miss.
func (p *parsedCache) parse(der []byte) (*x509.Certificate, error) {
	p.mu.RLock()
	c := p.m[string(der)] // no allocation: the conversion is only a lookup key
	p.mu.RUnlock()
	if c != nil {
		return c, nil
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	if len(p.m) >= maxParsedChain {
		for k := range p.m { // arbitrary: map order is random
			delete(p.m, k)
			break
		}
	}
	p.m[string(der)] = c
	p.mu.Unlock()
	return c, nil
}
