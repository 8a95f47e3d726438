package decoder

import (
	"encoding/base64"
	"net/url"
	"strings"
	"testing"

	"github.com/mtlsauth/caddy-mtls-auth/internal/testpki"
)

func TestSmoke(t *testing.T) {
	root := testpki.NewRoot("root")
	inter := root.NewIntermediate("inter")
	leaf := inter.NewLeaf("leaf", testpki.Key(testpki.RSA2048))
	p := string(leaf.PEM())
	b64 := base64.StdEncoding.EncodeToString(leaf.DER())
	u1 := strings.NewReplacer("\n", "%0A", " ", "%20", "+", "%2B", "/", "%2F", "=", "%3D").Replace(p)
	u2 := strings.NewReplacer("\n", "%0A", " ", "%20").Replace(p)
	_ = url.PathEscape
	cases := map[string]string{
		"u1": u1, "u2": u2, "b64": b64, "quoted": `"` + b64 + `"`, "rfc": ":" + b64 + ":",
		"apache": strings.ReplaceAll(p, "\n", " "), "nginxtab": strings.ReplaceAll(strings.TrimSuffix(p, "\n"), "\n", "\n\t"),
		"xfcc": `By=spiffe://a;Hash=` + leaf.Fingerprint() + `;Cert="` + u1 + `";Subject="";URI=`,
		"wso2": "-----BEGIN CERTIFICATE-----" + base64.StdEncoding.EncodeToString(leaf.PEM()) + "-----END CERTIFICATE-----",
	}
	d, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range cases {
		res, err := d.Decode([]string{v}, nil)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !res.Certs[0].Equal(leaf.Cert) {
			t.Errorf("%s: wrong cert", name)
		}
		t.Logf("%s -> %s", name, res.Profile)
	}
}
