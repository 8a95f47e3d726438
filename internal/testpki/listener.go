package testpki

import (
	"maps"
	"net/http"
	"net/http/httptest"
	"sync"
)

// Listener is an HTTP server on loopback standing in for a CRL
// distribution point or an OCSP responder: it serves the bodies it is
// given by path (404 for any other path) and counts every request by path,
// so a test can tell what was fetched and what was never asked for.
type Listener struct {
	// URL is the server's base URL, e.g. http://127.0.0.1:41234.
	URL string

	srv    *httptest.Server
	mu     sync.Mutex
	bodies map[string][]byte
	hits   map[string]int
}

// NewListener starts a Listener; Close stops it.
func NewListener() *Listener {
	l := &Listener{bodies: map[string][]byte{}, hits: map[string]int{}}
	l.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.mu.Lock()
		l.hits[r.URL.Path]++
		body, ok := l.bodies[r.URL.Path]
		l.mu.Unlock()
		if !ok {
			http.Error(w, "nothing here", http.StatusNotFound)
			return
		}
		_, _ = w.Write(body)
	}))
	l.URL = l.srv.URL
	return l
}

// Serve makes path answer body.
func (l *Listener) Serve(path string, body []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.bodies[path] = body
}

// Hits is how many requests each path has had so far.
func (l *Listener) Hits() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.hits)
}

// Close stops the server.
func (l *Listener) Close() { l.srv.Close() }
