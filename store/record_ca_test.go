package store

import (
	"context"
	"crypto/x509"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mtlsauth/caddy-mtls-auth/internal/testpki"
)

// TestRuntimeRecordCA: a runtime record pins exactly its certificate, even
// a CA:TRUE one, unless it says "ca": true; then the certificate must be a
// CA and admits what it issued.
func TestRuntimeRecordCA(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r, _ := newRuntime(t)
	partner := testpki.NewRoot("partner") // CA:TRUE, keyCertSign
	minted := partner.NewLeaf("minted")
	corp := testpki.NewRoot("corp")
	employee := corp.NewLeaf("employee")
	now := time.Now()

	e, err := r.AddCert(ctx, "payments", Record{Alias: "partner", PEM: string(partner.PEM())})
	require.NoError(t, err)
	assert.False(t, e.IsCA(), "without \"ca\" a record pins")
	e, err = r.AddCert(ctx, "payments", Record{Alias: "corp", PEM: string(corp.PEM()), CA: true})
	require.NoError(t, err)
	assert.True(t, e.IsCA())

	list := r.Snapshot().APIs["payments"]
	require.NotNil(t, list)
	got, _ := matchOf(t, list, partner.Cert, nil, now)
	require.NotNil(t, got)
	assert.Equal(t, "partner", got.Alias)
	got, _ = matchOf(t, list, minted.Cert, []*x509.Certificate{partner.Cert}, now)
	assert.Nil(t, got, "a leaf signed by a pinned record is not admitted")
	got, _ = matchOf(t, list, employee.Cert, nil, now)
	require.NotNil(t, got, "a leaf issued by a \"ca\" record is admitted")
	assert.Equal(t, "corp", got.Alias)

	// An update (PATCH) changes tier and meta only: it cannot turn a pin
	// into a CA.
	e, err = r.UpdateCert(ctx, "payments", "partner", func(rec *Record) error {
		rec.CA, rec.Tier = true, "gold"
		return nil
	})
	require.NoError(t, err)
	assert.False(t, e.IsCA())
	assert.Equal(t, "gold", e.Tier)
	got, _ = matchOf(t, r.Snapshot().APIs["payments"], minted.Cert, nil, now)
	assert.Nil(t, got, "still pinned after the update")

	before := r.Snapshot()
	_, err = r.AddCert(ctx, "payments", Record{Alias: "leaf-as-ca", PEM: string(corp.NewLeaf("x").PEM()), CA: true})
	require.ErrorIs(t, err, ErrInvalid)
	assert.ErrorContains(t, err, "CA:TRUE")
	assert.Same(t, before, r.Snapshot(), "nothing changes on a refused record")
}
