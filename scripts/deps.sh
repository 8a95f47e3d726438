#!/usr/bin/env bash
# Installs what the tests need and is missing: nginx, HAProxy, redis-server,
# redis-cli (a Redis Cluster is created with it), curl, openssl, wrk, strace (for
# bench/runtime_load.sh) and prometheus from Debian packages, xcaddy and staticcheck with
# `go install`. Idempotent: with everything present it only checks, and it
# runs `apt-get update` at most once, and only when a package is missing.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SUDO=""
if [[ "$(id -u)" != 0 ]]; then
	command -v sudo >/dev/null || die "not root and no sudo: install the packages by hand"
	SUDO="sudo"
fi

# command -> Debian package
declare -A PKG=(
	[nginx]=nginx
	[haproxy]=haproxy
	[redis-server]=redis-server
	[redis-cli]=redis-tools
	[curl]=curl
	[openssl]=openssl
	[wrk]=wrk
	[strace]=strace
	[prometheus]=prometheus
)

have() {
	# Debian puts nginx and haproxy in /usr/sbin, which a non-root PATH may lack.
	command -v "$1" >/dev/null 2>&1 || [[ -x "/usr/sbin/$1" || -x "/usr/bin/$1" ]]
}

missing=()
for cmd in nginx haproxy redis-server redis-cli curl openssl wrk strace prometheus; do
	have "$cmd" || missing+=("${PKG[$cmd]}")
done
if ((${#missing[@]})); then
	command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get: install them by hand"
	log "installing ${missing[*]}"
	$SUDO apt-get update -qq
	# The Debian packages start their services on install; the tests start
	# their own instances on free loopback ports, so those services are not
	# needed (and are harmless).
	$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		nginx haproxy redis-server redis-tools curl openssl wrk strace prometheus >/dev/null
fi

command -v go >/dev/null || die "go not found (need Go 1.26 in PATH or /usr/local/go/bin)"
gobin="$(go env GOBIN)"
[[ -n "$gobin" ]] || gobin="$(go env GOPATH)/bin"
export PATH="$gobin:$PATH"

if ! command -v xcaddy >/dev/null; then
	log "installing xcaddy"
	go install github.com/caddyserver/xcaddy/cmd/xcaddy@latest
fi
if ! command -v staticcheck >/dev/null; then
	log "installing staticcheck"
	go install honnef.co/go/tools/cmd/staticcheck@latest
fi
log "dependencies present: nginx haproxy redis-server redis-cli curl openssl wrk strace prometheus xcaddy staticcheck"
