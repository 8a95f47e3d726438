// Package integration runs the real Caddy binary built from this checkout
// (scripts/build.sh -> bin/caddy) behind real TLS-terminating proxies
// (nginx, HAProxy), talks to it with the real curl, and has a real
// Prometheus scrape its metrics.
//
// The tests carry the build tag "integration", so that a plain
// `go test ./...` on a fresh clone (no bin/caddy, no nginx) runs the unit
// tests only. scripts/test.sh sets the tag for go vet, staticcheck and the
// integration step, and fails that step when the tests did not run.
//
// Nothing here skips: a missing binary or tool is a test failure, because
// CI must not pass without having run these tests. Tests never call
// t.Parallel; every server listens on 127.0.0.1 on a port chosen at run
// time and is stopped by t.Cleanup.
//
// Run: go test -tags integration -count=1 -p 1 -v ./integration/... with
// MTLS_CADDY_BIN set to the binary (default ../bin/caddy), or simply
// scripts/test.sh.
package integration
