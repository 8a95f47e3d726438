package mtlsauth

import "time"

// crlRefreshInterval is how often the configured CRLs are checked for a
// replacement: the app's sync_interval, the period of every other watched
// file, so that a replaced CRL takes effect as soon as a replaced allow
// file does. The revocation checker runs its own loop, so that a slow CRL
// server never delays the app's sync of storage and certificate files.
func (h *Handler) crlRefreshInterval() time.Duration {
	if h.app == nil || h.app.SyncInterval <= 0 {
		return defaultSyncInterval
	}
	return time.Duration(h.app.SyncInterval)
}

// crlReloaded is called when a configured CRL was replaced. Results the
// verification cache holds may rest on the old CRL: swapping in a copy of
// the trust set (same pool, allow list and remembered intermediates) makes
// every one of them stale at once, as a reload of the trust files does.
// The copy is stored under the file lock, so it can never undo a trust
// set that reloadFiles stores at the same time.
func (h *Handler) crlReloaded() {
	h.files.mu.Lock()
	defer h.files.mu.Unlock()
	if ts := h.verifier.static.Load(); ts != nil {
		renewed := *ts
		h.verifier.static.Store(&renewed)
	}
}
