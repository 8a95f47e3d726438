#!/usr/bin/env bash
# Runtime store at scale, against a real Caddy with a file-system storage
# and `sync_interval 500ms`:
#
#   1. N certificates (default 10,000) POSTed one per request to one API's
#      runtime store by CLIENTS (default 4) parallel clients: the time;
#   2. then, idle: the file-status system calls (stat, lstat, fstat,
#      newfstatat, statx) Caddy makes in 5 s, counted with strace -c; the
#      sync loop ticks 10 times in that window;
#   3. with BULK=B, the same N again into a second API as arrays of B.
#
#   bash bench/runtime_load.sh           # N=10000 CLIENTS=4 BULK=500 IDLE=5
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
cd "$REPO_ROOT"
N="${N:-10000}" CLIENTS="${CLIENTS:-4}" BULK="${BULK:-500}" IDLE="${IDLE:-5}"
command -v strace >/dev/null || die "strace not found: run scripts/deps.sh"
bash scripts/build.sh >/dev/null
go build -o "$REPO_ROOT/bin/runtimeload" ./bench/runtimeload
work="$(mktemp -d)"
cleanup() { kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
admin_port=$(free_port)
site() { # api: one route per API, so neither upload is to an API no route names
	printf ':%s {\n\tmtls_auth {\n\t\tapi %s\n\t\theader X-Client-Cert\n\t\ttrusted_sources 127.0.0.1/32\n\t}\n\trespond "ok"\n}\n' "$(free_port)" "$1"
}
{
	printf '{\n\tadmin 127.0.0.1:%s\n\tdefault_bind 127.0.0.1\n\tauto_https off\n\tpersist_config off\n' "$admin_port"
	printf '\tstorage file_system %s\n\tmtls_auth {\n\t\tsync_interval 500ms\n\t}\n}\n' "$work/storage"
	site load
	site bulk
} >"$work/Caddyfile"
"$REPO_ROOT/bin/caddy" run --config "$work/Caddyfile" --adapter caddyfile >"$work/caddy.log" 2>&1 &
caddy_pid=$!
for _ in $(seq 100); do curl -fs -o /dev/null "http://127.0.0.1:$admin_port/mtls_auth/apis" && break; sleep 0.1; done
curl -fs -o /dev/null "http://127.0.0.1:$admin_port/mtls_auth/apis" || { cat "$work/caddy.log" >&2; die "caddy did not start"; }

log "POST $N certificates, $CLIENTS clients, one per request"
"$REPO_ROOT/bin/runtimeload" -admin "http://127.0.0.1:$admin_port" -api load -n "$N" -clients "$CLIENTS"
count=$(curl -fs "http://127.0.0.1:$admin_port/mtls_auth/apis" | python3 -c 'import json,sys; print({a["api"]: a["certs"] for a in json.load(sys.stdin)}.get("load", 0))')
echo "the API lists $count certificates"
[[ "$count" == "$N" ]] || die "expected $N certificates, the API lists $count"

# Let the sync loop reload once after the last change (the writer reloads
# on its next tick), then count file-status calls while nothing changes.
sleep 2
log "idle for ${IDLE}s with $N records: counting file-status system calls"
timeout -s INT "$IDLE" strace -f -c -e trace=stat,lstat,fstat,newfstatat,statx,openat,read -p "$caddy_pid" -o "$work/strace.txt" 2>/dev/null || true
# strace -c columns: % time, seconds, usecs/call, calls, [errors,] syscall.
stats=$(awk '$NF ~ /^(stat|lstat|fstat|newfstatat|statx)$/ {n += $4} END {print n+0}' "$work/strace.txt")
opens=$(awk '$NF == "openat" {print $4}' "$work/strace.txt")
echo "idle ${IDLE}s, sync_interval 500ms, $N records: $stats file-status calls, ${opens:-0} file opens"
cat "$work/strace.txt"

if ((BULK > 0)); then
	log "POST $N certificates, $CLIENTS clients, $BULK per request"
	"$REPO_ROOT/bin/runtimeload" -admin "http://127.0.0.1:$admin_port" -api bulk -n "$N" -clients "$CLIENTS" -bulk "$BULK" -prefix bulk
fi
