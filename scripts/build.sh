#!/usr/bin/env bash
# Builds bin/caddy: Caddy v2.11.9 with this checkout's plugin, via xcaddy.
# Skips the build when bin/caddy is newer than every non-test Go file and
# go.mod/go.sum, so repeated runs are fast. FORCE=1 rebuilds anyway.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

CADDY_VERSION="${CADDY_VERSION:-v2.11.9}"
MODULE="github.com/mtlsauth/caddy-mtls-auth"
OUT="$REPO_ROOT/bin/caddy"

stale_sources() {
	# Every input of the binary: non-test Go files outside the test-only
	# trees, plus the module files. Prints the ones newer than bin/caddy.
	find . \( -path ./.git -o -path ./bin -o -path ./integration -o -path ./internal/testpki/cmd \) -prune -o \
		\( -name '*.go' ! -name '*_test.go' -o -name go.mod -o -name go.sum \) \
		-type f -newer "$OUT" -print
}

if [[ -x "$OUT" && "${FORCE:-0}" != 1 ]] && [[ -z "$(stale_sources | head -1)" ]]; then
	log "bin/caddy is up to date (FORCE=1 to rebuild)"
else
	command -v xcaddy >/dev/null || die "xcaddy not found: run scripts/deps.sh (go install github.com/caddyserver/xcaddy/cmd/xcaddy@latest)"
	proxy="$(goproxy_for_local_module)"
	log "building bin/caddy: caddy $CADDY_VERSION + $MODULE=. (GOPROXY=$proxy)"
	mkdir -p bin
	start=$SECONDS
	# Build to a temporary name so a failed build never leaves a stale
	# binary that looks fresh.
	# xcaddy's default flags add -trimpath and -tags nobadger,nomysql,nopgx.
	# Both change the build cache key of nearly every Caddy package (the tags
	# change smallstep/nosql's files, and almost everything depends on it),
	# so the build would compile all of Caddy once more instead of sharing
	# the compiled packages with `go test` (minutes on a cold machine). The
	# binary only serves the tests, so plain stripped flags are enough.
	# Likewise xcaddy sets CGO_ENABLED=0 unless the environment says 1,
	# while `go test` uses `go env CGO_ENABLED` (1 where gcc exists); cgo
	# on or off changes the net package and so every package above it.
	CGO_ENABLED="${CGO_ENABLED:-$(go env CGO_ENABLED)}" \
		XCADDY_GO_BUILD_FLAGS="${XCADDY_GO_BUILD_FLAGS:--ldflags='-w -s'}" \
		GOPROXY="$proxy" xcaddy build "$CADDY_VERSION" \
		--output "$OUT.tmp" \
		--with "$MODULE=$REPO_ROOT"
	mv -f "$OUT.tmp" "$OUT"
	log "built bin/caddy in $((SECONDS - start))s"
fi

"$OUT" version
echo "modules: $("$OUT" list-modules | grep mtls | tr '\n' ' ' || true)"
