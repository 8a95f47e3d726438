# shellcheck shell=bash
# Shared helpers for the scripts in this folder. Source it; do not run it.

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$PATH:/usr/local/go/bin"
export PATH="$PATH:$(go env GOPATH 2>/dev/null || echo "$HOME/go")/bin"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# goproxy_for_local_module prints a GOPROXY value that lets `xcaddy build
# --with <our module>=.` resolve our (unpublished) module through its local
# replacement: the first entry of the configured GOPROXY followed by "|off".
# The proxy answers 403 (not 404) for modules it does not hold, so the usual
# ",direct" fallback never happens and the build fails; with "|off" any proxy
# error falls through to "off", whose "lookup disabled" error counts as "does
# not exist", and the go command then uses the replace directive instead.
goproxy_for_local_module() {
	local gp first
	gp="$(go env GOPROXY)"
	first="${gp%%[,|]*}"
	case "$first" in
	"" | off | direct) echo "$gp" ;;
	*) echo "${first}|off" ;;
	esac
}
