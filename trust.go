package mtlsauth

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddytls"
	"go.uber.org/zap"

	"github.com/mtlsauth/caddy-mtls-auth/pathverify"
	"github.com/mtlsauth/caddy-mtls-auth/store"
)

// filePool is the shape of a `tls.ca_pool.source.file` trust pool, whose
// files we re-read ourselves when they change.
type filePool struct {
	Provider string   `json:"provider"`
	PEMFiles []string `json:"pem_files"`
}

// fileWatch remembers the state of the watched files at the last load.
type fileWatch struct {
	mu     sync.Mutex
	stamps map[string]string
	// failed is the state of the files at the last reload that failed:
	// the same files are not read (nor the failure logged) again until one
	// of them changes.
	failed map[string]string
}

// provisionTrust loads the trust pool module and builds the first trust
// set from the configuration's files.
func (h *Handler) provisionTrust(ctx caddy.Context) error {
	if h.TrustPoolRaw != nil {
		var fp filePool
		if json.Unmarshal(h.TrustPoolRaw, &fp) == nil && fp.Provider == "file" {
			for _, f := range fp.PEMFiles {
				h.poolFiles = append(h.poolFiles, h.path(f))
			}
		}
		val, err := ctx.LoadModule(h, "TrustPoolRaw")
		if err != nil {
			return fmt.Errorf("loading trust pool: %v", err)
		}
		ca, ok := val.(caddytls.CA)
		if !ok {
			return fmt.Errorf("trust_pool module %T is not a CA pool", val)
		}
		h.poolModule = ca
	}
	ts, err := h.buildTrust()
	if err != nil {
		return err
	}
	h.verifier.static.Store(ts)
	h.files.stamps = h.stampFiles()
	h.stats.trustLoaded(time.Now())
	return nil
}

// buildTrust reads the trust pool's files (for the file provider) and the
// allow lists into a new trust set.
func (h *Handler) buildTrust() (*trustSet, error) {
	ts := &trustSet{}
	var pool *x509.CertPool
	switch {
	case len(h.poolFiles) > 0:
		pool = x509.NewCertPool()
		for _, f := range h.poolFiles {
			certs, err := store.ReadCertificates(f)
			if err != nil {
				return nil, fmt.Errorf("trust_pool: %v", err)
			}
			for _, c := range certs {
				pool.AddCert(c)
			}
			ts.poolCAs = append(ts.poolCAs, poolCAsOf(f, certs)...)
		}
	case h.poolModule != nil:
		pool = h.poolModule.CertPool()
		ts.poolCAs = moduleCAs(h.poolModule)
	}
	if pool != nil {
		ts.pool = pathverify.NewAnchors(pool, true)
	}
	entries, err := h.loadAllowEntries()
	if err != nil {
		return nil, err
	}
	if len(entries) > 0 {
		list, err := store.NewAllowList(entries)
		if err != nil {
			return nil, fmt.Errorf("allow: %v", err)
		}
		ts.allow = list
	}
	return ts, nil
}

// loadAllowEntries reads the certificates named by allow, allow_ca and
// allow_dir, and warns about each one that can never authenticate.
func (h *Handler) loadAllowEntries() ([]*store.Entry, error) {
	var entries []*store.Entry
	for _, list := range []struct {
		entries []AllowEntry
		ca      bool
	}{{h.Allow, false}, {h.AllowCA, true}} {
		for _, a := range list.entries {
			e, err := h.loadAllowEntry(a, list.ca)
			if err != nil {
				return nil, err
			}
			entries = append(entries, e)
		}
	}
	for _, d := range h.AllowDir {
		dirEntries, err := store.ReadDir(h.path(d.Dir))
		if err != nil {
			return nil, fmt.Errorf("allow_dir: %v", err)
		}
		for _, e := range dirEntries {
			e.Tier = d.Tier
		}
		if len(dirEntries) == 0 {
			h.logger.Warn("allow_dir holds no certificate files", zap.String("dir", d.Dir))
		}
		entries = append(entries, dirEntries...)
	}
	h.warnUnusable(entries)
	return entries, nil
}

// loadAllowEntry makes the entry of one allow (ca false) or allow_ca (ca
// true) item, from its file or its inline PEM. It is the one place an
// AllowEntry becomes a certificate: the Caddyfile parser calls it too, to
// report a bad file at its line. Errors name the subdirective and alias,
// and wrap the *fs.PathError of a file that cannot be read.
func (h *Handler) loadAllowEntry(a AllowEntry, ca bool) (*store.Entry, error) {
	what := "allow"
	if ca {
		what = "allow_ca"
	}
	var e *store.Entry
	var err error
	switch {
	case a.File != "" && a.PEM != "":
		return nil, fmt.Errorf("%s %s: give file or pem, not both", what, a.Alias)
	case a.PEM != "":
		e, err = store.ParseEntry(a.Alias, []byte(a.PEM), "inline pem", ca)
	case a.File != "":
		e, err = store.ReadEntry(a.Alias, h.path(a.File), ca)
	default:
		return nil, fmt.Errorf("%s %s: no certificate: give file or pem", what, a.Alias)
	}
	if errors.Is(err, store.ErrNotCA) {
		return nil, fmt.Errorf("%s %s: %w: allow_ca takes the CA that issues the clients' certificates; pin one certificate with allow", what, a.Alias, err)
	}
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, a.Alias, err)
	}
	e.Meta, e.Tier = a.Meta, a.Tier
	return e, nil
}

// warnUnusable logs, at warn, every allowed certificate that cannot
// authenticate anything now: outside its validity window, or with an
// extended key usage that excludes clientAuth. Such an entry is usually a
// mistake (the wrong file, a renewal not deployed) that would otherwise
// show only as rejected clients.
func (h *Handler) warnUnusable(entries []*store.Entry) {
	now := time.Now()
	for _, e := range entries {
		var problem string
		switch {
		case now.After(e.Cert.NotAfter):
			problem = "expired at " + e.Cert.NotAfter.UTC().Format(time.RFC3339)
		case now.Before(e.Cert.NotBefore):
			problem = "not valid before " + e.Cert.NotBefore.UTC().Format(time.RFC3339)
		case !clientAuthAllowed(e.Cert):
			problem = "its extended key usage does not include clientAuth"
		default:
			continue
		}
		h.logger.Warn("allowed certificate can never authenticate",
			zap.String("alias", e.Alias),
			zap.Bool("ca", e.IsCA()),
			zap.String("problem", problem),
			zap.String("file", e.Source),
			zap.String("fingerprint", e.Fingerprint.String()))
	}
}

// path resolves {env.*} and other global placeholders in a configured path.
func (h *Handler) path(p string) string { return caddy.NewReplacer().ReplaceKnown(p, "") }

// stampFiles records the modification time and size of every watched file
// (and the listing of every allow_dir), to tell when to reload.
func (h *Handler) stampFiles() map[string]string {
	stamps := map[string]string{}
	stamp := func(p string) {
		if fi, err := os.Stat(p); err == nil {
			stamps[p] = fi.ModTime().String() + "/" + strconv.FormatInt(fi.Size(), 10)
		} else {
			stamps[p] = "missing"
		}
	}
	for _, f := range h.poolFiles {
		stamp(f)
	}
	for _, a := range append(h.Allow[:len(h.Allow):len(h.Allow)], h.AllowCA...) {
		if a.File != "" {
			stamp(h.path(a.File))
		}
	}
	for _, d := range h.AllowDir {
		dir := h.path(d.Dir)
		stamp(dir)
		des, _ := os.ReadDir(dir)
		for _, de := range des {
			stamp(filepath.Join(dir, de.Name()))
		}
	}
	return stamps
}

// watchesFiles reports whether the handler has certificate files to re-read.
func (h *Handler) watchesFiles() bool {
	return len(h.poolFiles) > 0 || len(h.Allow) > 0 || len(h.AllowCA) > 0 || len(h.AllowDir) > 0
}

// reloadFiles is called by the app's sync loop: when a watched file changed,
// it rebuilds the trust set and swaps it in. A file that no longer loads
// keeps the last good set and logs an error naming the file, once: the
// reload is tried again when a file changes again.
func (h *Handler) reloadFiles() {
	h.files.mu.Lock()
	defer h.files.mu.Unlock()
	stamps := h.stampFiles()
	if maps.Equal(stamps, h.files.stamps) || maps.Equal(stamps, h.files.failed) {
		return
	}
	ts, err := h.buildTrust()
	if err != nil {
		h.files.failed = stamps
		h.stats.trustFailed(time.Now(), err)
		h.logger.Error("certificate files changed but do not load; keeping the last good set", zap.Error(err))
		return
	}
	h.verifier.static.Store(ts)
	h.files.stamps, h.files.failed = stamps, nil
	h.stats.trustLoaded(time.Now())
	h.logger.Info("reloaded certificate files", zap.Int("allowed", allowLen(ts)))
}

func allowLen(ts *trustSet) int {
	if ts.allow == nil {
		return 0
	}
	return ts.allow.Len()
}
