package store

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mtlsauth/caddy-mtls-auth/internal/testpki"
)

func newRuntime(t *testing.T) (*Runtime, *certmagic.FileStorage) {
	t.Helper()
	fs := &certmagic.FileStorage{Path: t.TempDir()}
	r := NewRuntime(fs, "mtls_auth")
	require.NoError(t, r.Sync(context.Background()))
	return r, fs
}

func TestRuntimeAddRemove(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r, _ := newRuntime(t)
	root := testpki.NewRoot("root")
	alice := root.NewLeaf("alice")

	gen0 := r.Snapshot().Generation
	e, err := r.AddCert(ctx, "payments", Record{Alias: "alice", PEM: string(alice.PEM()), Tier: "gold", Meta: map[string]string{"team": "a"}})
	require.NoError(t, err)
	assert.Equal(t, alice.Fingerprint(), e.Fingerprint.String())
	assert.False(t, e.AddedAt.IsZero())

	snap := r.Snapshot()
	assert.Greater(t, snap.Generation, gen0, "a change makes a new generation")
	require.NotNil(t, snap.APIs["payments"])
	got := snap.APIs["payments"].Lookup(FingerprintOf(alice.Cert))
	require.NotNil(t, got, "visible at once on the instance that took it")
	assert.Equal(t, "gold", got.Tier)
	assert.Equal(t, "a", got.Meta["team"])
	assert.Nil(t, snap.APIs["other"], "APIs are separate")

	require.NoError(t, r.RemoveCert(ctx, "payments", "alice"))
	assert.Nil(t, r.Snapshot().APIs["payments"])
	assert.ErrorIs(t, r.RemoveCert(ctx, "payments", "alice"), ErrNotFound)
}

func TestRuntimeAddErrorsChangeNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r, fs := newRuntime(t)
	root := testpki.NewRoot("root")
	alice := root.NewLeaf("alice")
	_, err := r.AddCert(ctx, "payments", Record{Alias: "alice", PEM: string(alice.PEM())})
	require.NoError(t, err)
	before := r.Snapshot()

	tests := []struct {
		name string
		api  string
		rec  Record
		want error
		msg  string
	}{
		{name: "no alias", api: "payments", rec: Record{PEM: string(root.NewLeaf("x").PEM())}, want: ErrInvalid, msg: "alias is required"},
		{name: "alias with a slash", api: "payments", rec: Record{Alias: "../etc", PEM: string(root.NewLeaf("x").PEM())}, want: ErrInvalid, msg: "alias"},
		{name: "bad api name", api: "pay/ments", rec: Record{Alias: "x", PEM: string(root.NewLeaf("x").PEM())}, want: ErrInvalid, msg: "api"},
		{name: "no pem", api: "payments", rec: Record{Alias: "x"}, want: ErrInvalid, msg: "pem is required"},
		{name: "not pem", api: "payments", rec: Record{Alias: "x", PEM: "hello"}, want: ErrInvalid, msg: "PEM-encoded"},
		{name: "broken pem", api: "payments", rec: Record{Alias: "x", PEM: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}, want: ErrInvalid},
		{name: "private key", api: "payments", rec: Record{Alias: "x", PEM: string(alice.KeyPEM())}, want: ErrInvalid, msg: "private key"},
		{name: "two certificates", api: "payments", rec: Record{Alias: "x", PEM: string(alice.PEM()) + string(root.PEM())}, want: ErrInvalid, msg: "2 certificates"},
		{name: "duplicate alias", api: "payments", rec: Record{Alias: "alice", PEM: string(root.NewLeaf("y").PEM())}, want: ErrConflict, msg: "already exists"},
		{name: "same certificate under another alias", api: "payments", rec: Record{Alias: "alice2", PEM: string(alice.PEM())}, want: ErrConflict, msg: "already in API"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := r.AddCert(ctx, tt.api, tt.rec)
			require.ErrorIs(t, err, tt.want)
			assert.Contains(t, err.Error(), tt.msg)
		})
	}
	assert.Same(t, before, r.Snapshot(), "no failed add changed the snapshot")
	keys, err := fs.List(ctx, "mtls_auth", true)
	require.NoError(t, err)
	var files []string
	for _, k := range keys {
		if filepath.Ext(k) == ".json" {
			files = append(files, k)
		}
	}
	assert.Equal(t, []string{"mtls_auth/apis/payments/certs/alice.json"}, files, "no failed add wrote anything")
}

func TestRuntimeSharedStorage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	fs := &certmagic.FileStorage{Path: t.TempDir()}
	a, b := NewRuntime(fs, "mtls_auth"), NewRuntime(fs, "mtls_auth")
	require.NoError(t, a.Sync(ctx))
	require.NoError(t, b.Sync(ctx))
	leaf := testpki.NewRoot("root").NewLeaf("svc")
	fp := FingerprintOf(leaf.Cert)

	_, err := a.AddCert(ctx, "api1", Record{Alias: "svc", PEM: string(leaf.PEM())})
	require.NoError(t, err)
	assert.Nil(t, b.Snapshot().APIs["api1"], "the other instance sees it only after its sync")
	require.NoError(t, b.Sync(ctx))
	require.NotNil(t, b.Snapshot().APIs["api1"].Lookup(fp))

	_, err = b.Deny(ctx, DenyRecord{Fingerprint: fp.String(), Reason: "key leaked"})
	require.NoError(t, err)
	require.NoError(t, a.Sync(ctx))
	assert.Equal(t, "key leaked", a.Snapshot().Deny[fp].Reason)

	// A restart is a new runtime over the same storage.
	c := NewRuntime(fs, "mtls_auth")
	require.NoError(t, c.Sync(ctx))
	assert.NotNil(t, c.Snapshot().APIs["api1"].Lookup(fp))
	assert.Contains(t, c.Snapshot().Deny, fp)

	require.NoError(t, a.RemoveCert(ctx, "api1", "svc"))
	require.NoError(t, a.Undeny(ctx, fp.String()))
	require.NoError(t, b.Sync(ctx))
	assert.Nil(t, b.Snapshot().APIs["api1"])
	assert.NotContains(t, b.Snapshot().Deny, fp)
}

func TestRuntimeSyncUnchangedKeepsSnapshot(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r, _ := newRuntime(t)
	_, err := r.AddCert(ctx, "api", Record{Alias: "a", PEM: string(testpki.NewRoot("r").NewLeaf("a").PEM())})
	require.NoError(t, err)
	snap := r.Snapshot()
	require.NoError(t, r.Sync(ctx))
	assert.Same(t, snap, r.Snapshot(), "nothing changed: same snapshot, same generation")
}

func TestRuntimeCorruptRecordSkipped(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r, fs := newRuntime(t)
	good := testpki.NewRoot("r").NewLeaf("good")
	_, err := r.AddCert(ctx, "api", Record{Alias: "good", PEM: string(good.PEM())})
	require.NoError(t, err)
	// A half-written or hand-edited record must not break loading the rest.
	require.NoError(t, os.WriteFile(filepath.Join(fs.Path, "mtls_auth", "apis", "api", "certs", "broken.json"), []byte(`{"alias":"broken","pem":"-----BEGIN CERT`), 0o600))
	require.NoError(t, os.MkdirAll(filepath.Join(fs.Path, "mtls_auth", "deny"), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(fs.Path, "mtls_auth", "deny", "zz.json"), []byte(`not json`), 0o600))

	fresh := NewRuntime(fs, "mtls_auth")
	err = fresh.Sync(ctx)
	require.Error(t, err)
	assert.False(t, IsStorageError(err), "a bad record is not a storage failure")
	assert.Contains(t, err.Error(), "broken.json")
	assert.Contains(t, err.Error(), "zz.json")
	assert.NotNil(t, fresh.Snapshot().APIs["api"].Lookup(FingerprintOf(good.Cert)), "the good record still loads")
}

func TestDenyValidation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r, _ := newRuntime(t)
	fp := testpki.NewRoot("r").NewLeaf("x").Fingerprint()
	tests := []struct {
		name string
		rec  DenyRecord
		ok   bool
	}{
		{name: "lowercase hex", rec: DenyRecord{Fingerprint: fp}, ok: true},
		{name: "uppercase with colons", rec: DenyRecord{Fingerprint: colonUpper(fp)}, ok: true},
		{name: "too short", rec: DenyRecord{Fingerprint: fp[:62]}},
		{name: "not hex", rec: DenyRecord{Fingerprint: "zz" + fp[2:]}},
		{name: "empty", rec: DenyRecord{}},
		{name: "reason too long", rec: DenyRecord{Fingerprint: fp, Reason: string(make([]byte, 2000))}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, err := r.Deny(ctx, tt.rec)
			if tt.ok {
				require.NoError(t, err)
				assert.Equal(t, fp, rec.Fingerprint, "stored in canonical form")
				assert.WithinDuration(t, time.Now(), rec.When, time.Minute)
				return
			}
			require.ErrorIs(t, err, ErrInvalid)
		})
	}
	assert.Len(t, r.Snapshot().Deny, 1)
	assert.ErrorIs(t, r.Undeny(ctx, testpki.NewRoot("r").NewLeaf("y").Fingerprint()), ErrNotFound)
}

func colonUpper(hexfp string) string {
	var out []byte
	for i := 0; i < len(hexfp); i += 2 {
		if i > 0 {
			out = append(out, ':')
		}
		out = append(out, hexfp[i]-32*b2i(hexfp[i] >= 'a'), hexfp[i+1]-32*b2i(hexfp[i+1] >= 'a'))
	}
	return string(out)
}

func b2i(b bool) byte {
	if b {
		return 1
	}
	return 0
}
