//go:build integration

package integration

import (
	"fmt"
	"strings"
	"testing"
)

// TestHarness checks the harness itself without the plugin: Caddy starts
// and echoes what nginx and HAProxy forward, and the forms nginxEscaped and
// derBase64 compute are byte for byte what the real proxies send. When this
// fails, the plugin tests that follow cannot be trusted either.
func TestHarness(t *testing.T) {
	p := newPKI(t)
	port := freePort(t)
	c := startCaddy(t, fmt.Sprintf(`:%d {
	respond "nginx=[{http.request.header.Ssl-Client-Cert}] haproxy=[{http.request.header.X-Ssl-Client-Cert}]"
}
`, port), nil)

	ngx := freePort(t)
	startNginx(t, nginxMTLSServer(p, ngx, port, "Ssl-Client-Cert"))
	hap := freePort(t)
	startHAProxy(t, haproxyMTLSFrontend(p, hap, port))

	alice := p.Clients["alice"]
	status, body, _ := curl(t, append(p.clientArgs("alice"), fmt.Sprintf("https://127.0.0.1:%d/", ngx))...)
	if want := "nginx=[" + nginxEscaped(alice) + "] haproxy=[]"; status != 200 || body != want {
		t.Errorf("through nginx: got %d %q\nwant 200 %q", status, body, want)
	}
	// nginx answers 495 for a certificate it cannot verify and, with the
	// error_page of nginxMTLSServer, still forwards it (the backend decides).
	status, body, _ = curl(t, append(p.clientArgs("expired"), fmt.Sprintf("https://127.0.0.1:%d/", ngx))...)
	if want := "nginx=[" + nginxEscaped(p.Clients["expired"]) + "] haproxy=[]"; status != 200 || body != want {
		t.Errorf("expired through nginx: got %d %q\nwant 200 %q", status, body, want)
	}
	status, body, _ = curl(t, append(p.clientArgs(""), fmt.Sprintf("https://127.0.0.1:%d/", ngx))...)
	if want := "nginx=[] haproxy=[]"; status != 200 || body != want {
		t.Errorf("no certificate through nginx: got %d %q\nwant 200 %q", status, body, want)
	}
	status, body, _ = curl(t, append(p.clientArgs("alice"), fmt.Sprintf("https://127.0.0.1:%d/", hap))...)
	if want := "nginx=[] haproxy=[" + derBase64(alice) + "]"; status != 200 || body != want {
		t.Errorf("through haproxy: got %d %q\nwant 200 %q", status, body, want)
	}
	status, body, _ = curl(t, append(p.clientArgs("wrongca"), fmt.Sprintf("https://127.0.0.1:%d/", hap))...)
	if want := "nginx=[] haproxy=[" + derBase64(p.Clients["wrongca"]) + "]"; status != 200 || body != want {
		t.Errorf("wrong CA through haproxy: got %d %q\nwant 200 %q", status, body, want)
	}

	// Reload swaps the config through the admin API.
	port2 := freePort(t)
	c.Reload(fmt.Sprintf(":%d {\n\trespond \"reloaded\"\n}\n", port2))
	if status, body, _ := curl(t, fmt.Sprintf("http://127.0.0.1:%d/", port2)); status != 200 || body != "reloaded" {
		t.Errorf("after reload: got %d %q", status, body)
	}
	if !strings.Contains(c.Log(), "admin") {
		t.Errorf("the Caddy log was not captured: %q", c.Log())
	}
}

// nginxMTLSServer is an nginx server block that terminates TLS on
// 127.0.0.1:listen, asks for a client certificate without verifying it
// (optional_no_ca: the backend verifies), and proxies to Caddy on
// 127.0.0.1:upstream with the leaf in header. nginx itself answers 400 (its
// internal 495) for a certificate that fails verification for a reason
// other than an unknown issuer (expired, wrong usage...); the error_page
// forwards those too, like a load balancer in passthrough mode, so that
// the plugin's verdict is what the client sees.
func nginxMTLSServer(p *pki, listen, upstream int, header string) string {
	return fmt.Sprintf(`
	server {
		listen 127.0.0.1:%d ssl;
		ssl_certificate %s;
		ssl_certificate_key %s;
		ssl_verify_client optional_no_ca;
		ssl_verify_depth 3;
		proxy_set_header %s $ssl_client_escaped_cert;
		proxy_http_version 1.1;
		error_page 495 = @forward;
		location / {
			proxy_pass http://127.0.0.1:%d;
		}
		location @forward {
			proxy_pass http://127.0.0.1:%d;
		}
	}
`, listen, p.path("server.pem"), p.path("server-key.pem"), header, upstream, upstream)
}

// haproxyMTLSFrontend is a HAProxy frontend that terminates TLS on
// 127.0.0.1:listen, asks for a client certificate, ignores verification
// errors (the backend verifies), and forwards the leaf as base64 DER in
// X-Ssl-Client-Cert to Caddy on 127.0.0.1:upstream.
func haproxyMTLSFrontend(p *pki, listen, upstream int) string {
	return fmt.Sprintf(`frontend fe
	bind 127.0.0.1:%d ssl crt %s verify optional ca-file %s ca-ignore-err all crt-ignore-err all
	http-request del-header X-Ssl-Client-Cert
	http-request set-header X-Ssl-Client-Cert %%[ssl_c_der,base64] if { ssl_c_used }
	default_backend caddy

backend caddy
	server caddy 127.0.0.1:%d
`, listen, p.path("server-bundle.pem"), p.path("ca.pem"), upstream)
}
