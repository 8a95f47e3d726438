package mtlsauth

import (
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mtlsauth/caddy-mtls-auth/internal/testpki"
	"github.com/mtlsauth/caddy-mtls-auth/store"
)

// adminDo serves one admin request against app and returns the status and
// the body (the error message for an error, as Caddy's admin server would
// send it).
func adminDo(t *testing.T, app *App, method, path, body string) (int, string) {
	t.Helper()
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	w := httptest.NewRecorder()
	if err := (adminAPI{}).route(w, r, app); err != nil {
		var ae caddy.APIError
		require.ErrorAs(t, err, &ae)
		return ae.HTTPStatus, ae.Err.Error()
	}
	return w.Code, w.Body.String()
}

// adminApp is a test app with tier gold and a route serving API payments.
func adminApp(t *testing.T) *App {
	t.Helper()
	app := newTestApp(t, Tier{Name: "gold", Requests: 10, Window: caddy.Duration(time.Minute)})
	app.registerAPI("payments")
	return app
}

func recJSON(alias string, c *testpki.Cert, extra string) string {
	pemJSON, _ := json.Marshal(string(c.PEM()))
	return fmt.Sprintf(`{"alias":%q,"pem":%s%s}`, alias, pemJSON, extra)
}

func TestAdminBulkAdd(t *testing.T) {
	app := adminApp(t)
	root := testpki.NewRoot("root")
	var elems []string
	for i := 0; i < 5; i++ {
		extra := ""
		if i == 2 {
			extra = `,"tier":"gold","meta":{"team":"a"}`
		}
		elems = append(elems, recJSON(fmt.Sprint("c", i), root.NewLeaf(fmt.Sprint("c", i)), extra))
	}
	status, body := adminDo(t, app, "POST", "/mtls_auth/apis/payments/certs", " \n["+strings.Join(elems, ",")+"]")
	require.Equal(t, 201, status, body)
	var out []certJSON
	require.NoError(t, json.Unmarshal([]byte(body), &out))
	require.Len(t, out, 5)
	assert.Equal(t, "c2", out[2].Alias)
	assert.Equal(t, "gold", out[2].Tier)
	assert.Empty(t, out[2].Warning, "a route names payments")
	list := app.runtime.Snapshot().APIs["payments"]
	assert.Equal(t, 5, list.Len())
	assert.Equal(t, "a", list.Alias("c2").Meta["team"])
}

// TestAdminBulkRejects: one bad element refuses the whole array with the
// element's index, and nothing changes.
func TestAdminBulkRejects(t *testing.T) {
	app := adminApp(t)
	root := testpki.NewRoot("root")
	taken := root.NewLeaf("taken")
	status, body := adminDo(t, app, "POST", "/mtls_auth/apis/payments/certs", recJSON("taken", taken, ""))
	require.Equal(t, 201, status, body)
	before := app.runtime.Snapshot()
	good := func(alias string) string { return recJSON(alias, root.NewLeaf(alias), "") }
	arr := func(elems ...string) string { return "[" + strings.Join(elems, ",") + "]" }

	tests := []struct {
		name   string
		body   string
		status int
		msg    string
	}{
		{"bad pem", arr(good("a"), good("b"), `{"alias":"c","pem":"nope"}`), 400, "element 2: invalid: pem must be a PEM-encoded certificate"},
		{"unknown tier", arr(good("a"), recJSON("b", root.NewLeaf("b"), `,"tier":"platinum"`)), 400, "element 1: invalid: unknown tier 'platinum'"},
		{"expired", arr(recJSON("old", root.NewLeaf("old", testpki.Expired()), "")), 400, "element 0: invalid: the certificate expired on"},
		{"alias taken", arr(good("a"), good("taken")), 409, "element 1: conflict: alias 'taken' already exists"},
		{"certificate taken", arr(good("a"), recJSON("again", taken, "")), 409, "element 1: conflict: this certificate is already in API 'payments' as 'taken'"},
		{"alias twice", arr(good("a"), good("a")), 400, "element 1: invalid: alias 'a' is also given by element 0"},
		{"unknown field", arr(good("a"), `{"alias":"b","pem":"x","colour":"red"}`), 400, "unknown field"},
		{"not an array of objects", `[1,2]`, 400, "invalid JSON body"},
		{"empty", `[]`, 400, "no certificates given"},
		{"trailing data", arr(good("a")) + ` []`, 400, "trailing data"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := adminDo(t, app, "POST", "/mtls_auth/apis/payments/certs", tt.body)
			assert.Equal(t, tt.status, status, body)
			assert.Contains(t, body, tt.msg)
		})
	}
	assert.Same(t, before, app.runtime.Snapshot(), "no rejected array changed anything")
}

func TestAdminBodyLimits(t *testing.T) {
	app := adminApp(t)
	pad := strings.Repeat(" ", maxAdminBody)
	status, body := adminDo(t, app, "POST", "/mtls_auth/apis/payments/certs", `{"alias":"a"}`+pad)
	assert.Equal(t, 413, status, body)
	assert.Contains(t, body, "as an array")
	status, body = adminDo(t, app, "POST", "/mtls_auth/apis/payments/certs", "["+strings.Repeat(" ", maxBulkBody)+"]")
	assert.Equal(t, 413, status, body)
	status, _ = adminDo(t, app, "POST", "/mtls_auth/deny", `{"fingerprint":"x"}`+pad)
	assert.Equal(t, 413, status)
}

func TestAdminGetOne(t *testing.T) {
	app := adminApp(t)
	leaf := testpki.NewRoot("root").NewLeaf("svc")
	status, body := adminDo(t, app, "POST", "/mtls_auth/apis/payments/certs", recJSON("svc", leaf, `,"tier":"gold"`))
	require.Equal(t, 201, status, body)

	status, body = adminDo(t, app, "GET", "/mtls_auth/apis/payments/certs/svc", "")
	require.Equal(t, 200, status, body)
	var got certJSON
	require.NoError(t, json.Unmarshal([]byte(body), &got))
	assert.Equal(t, "svc", got.Alias)
	assert.Equal(t, leaf.Fingerprint(), got.Fingerprint)
	assert.Equal(t, "gold", got.Tier)
	assert.Equal(t, string(leaf.PEM()), got.PEM)
	assert.Equal(t, leaf.Cert.NotBefore.UTC(), got.NotBefore)

	status, body = adminDo(t, app, "GET", "/mtls_auth/apis/payments/certs/nobody", "")
	assert.Equal(t, 404, status)
	assert.Contains(t, body, "no alias 'nobody' in API 'payments'")
	status, _ = adminDo(t, app, "GET", "/mtls_auth/apis/other/certs/svc", "")
	assert.Equal(t, 404, status)
	status, _ = adminDo(t, app, "GET", "/mtls_auth/apis/payments/certs/..x", "")
	assert.Equal(t, 400, status)
	status, _ = adminDo(t, app, "POST", "/mtls_auth/apis/payments/certs/svc", "{}")
	assert.Equal(t, 405, status)
}

func TestAdminPatch(t *testing.T) {
	app := adminApp(t)
	leaf := testpki.NewRoot("root").NewLeaf("svc")
	status, body := adminDo(t, app, "POST", "/mtls_auth/apis/payments/certs", recJSON("svc", leaf, `,"meta":{"team":"a"}`))
	require.Equal(t, 201, status, body)
	current := func() *store.Entry { return app.runtime.Snapshot().APIs["payments"].Alias("svc") }

	status, body = adminDo(t, app, "PATCH", "/mtls_auth/apis/payments/certs/svc", `{"tier":"gold"}`)
	require.Equal(t, 200, status, body)
	assert.Contains(t, body, `"tier":"gold"`)
	assert.Equal(t, "gold", current().Tier)
	assert.Equal(t, map[string]string{"team": "a"}, current().Meta, "meta left out stays")

	status, body = adminDo(t, app, "PATCH", "/mtls_auth/apis/payments/certs/svc", `{"meta":{"team":"b","env":"prod"}}`)
	require.Equal(t, 200, status, body)
	assert.Equal(t, map[string]string{"team": "b", "env": "prod"}, current().Meta, "meta is replaced as a whole")
	assert.Equal(t, "gold", current().Tier, "tier left out stays")

	status, body = adminDo(t, app, "PATCH", "/mtls_auth/apis/payments/certs/svc", `{"tier":"","meta":{}}`)
	require.Equal(t, 200, status, body)
	assert.Empty(t, current().Tier)
	assert.Empty(t, current().Meta)
	assert.Equal(t, leaf.Fingerprint(), current().Fingerprint.String())

	before := app.runtime.Snapshot()
	bad := []struct {
		path, body string
		status     int
		msg        string
	}{
		{"/mtls_auth/apis/payments/certs/svc", `{"tier":"platinum"}`, 400, "unknown tier 'platinum'"},
		{"/mtls_auth/apis/payments/certs/svc", `{"pem":"x"}`, 400, "PATCH changes tier and meta only"},
		{"/mtls_auth/apis/payments/certs/svc", `{"alias":"other"}`, 400, "unknown field"},
		{"/mtls_auth/apis/payments/certs/svc", `{}`, 400, "nothing to change"},
		{"/mtls_auth/apis/payments/certs/svc", `{"tier":`, 400, "invalid JSON"},
		{"/mtls_auth/apis/payments/certs/nobody", `{"tier":"gold"}`, 404, "no alias 'nobody'"},
	}
	for _, tt := range bad {
		status, body := adminDo(t, app, "PATCH", tt.path, tt.body)
		assert.Equal(t, tt.status, status, "%s %s: %s", tt.path, tt.body, body)
		assert.Contains(t, body, tt.msg, tt.body)
	}
	assert.Same(t, before, app.runtime.Snapshot(), "no refused PATCH changed anything")
}

func TestAdminUploadValidity(t *testing.T) {
	app := adminApp(t)
	p := newPKI(t)
	status, body := adminDo(t, app, "POST", "/mtls_auth/apis/payments/certs", recJSON("old", p.expired, ""))
	assert.Equal(t, 400, status)
	assert.Contains(t, body, "the certificate expired on "+p.expired.Cert.NotAfter.UTC().Format(time.RFC3339))
	status, body = adminDo(t, app, "POST", "/mtls_auth/apis/payments/certs", recJSON("soon", p.notYet, ""))
	assert.Equal(t, 400, status)
	assert.Contains(t, body, "the certificate is not valid before "+p.notYet.Cert.NotBefore.UTC().Format(time.RFC3339))
	assert.Nil(t, app.runtime.Snapshot().APIs["payments"])
}

func TestAdminUploadWarning(t *testing.T) {
	app := adminApp(t)
	root := testpki.NewRoot("root")
	status, body := adminDo(t, app, "POST", "/mtls_auth/apis/paymnets/certs", recJSON("a", root.NewLeaf("a"), ""))
	require.Equal(t, 201, status, body)
	var one certJSON
	require.NoError(t, json.Unmarshal([]byte(body), &one))
	assert.Contains(t, one.Warning, "no route in the running configuration has `api paymnets`")
	assert.NotNil(t, app.runtime.Snapshot().APIs["paymnets"].Alias("a"), "stored all the same")

	status, body = adminDo(t, app, "POST", "/mtls_auth/apis/paymnets/certs", "["+recJSON("b", root.NewLeaf("b"), "")+"]")
	require.Equal(t, 201, status, body)
	assert.Contains(t, body, `"warning":"no route in the running configuration has`)

	status, body = adminDo(t, app, "POST", "/mtls_auth/apis/payments/certs", recJSON("c", root.NewLeaf("c"), ""))
	require.Equal(t, 201, status, body)
	assert.NotContains(t, body, "warning")
}
