#!/usr/bin/env bash
# Load benchmark: plain Caddy (respond) against the plugin in the same run,
# with wrk on loopback. Prints requests/s, p50 and p99 per case and the ratio
# to plain Caddy, median of ROUNDS rounds (cases alternate within a round).
#
#   bash bench/load.sh            # ROUNDS=3 DURATION=5s CONNS=32 THREADS=1
#
# Cases: plain respond; mtls_auth with a trust pool (ECDSA P-256 leaf, header
# from a trusted source); the same with a local throttle tier large enough
# never to refuse. Each request sends the same certificate (there is no
# verification cache yet, so every request decodes and verifies).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
cd "$REPO_ROOT"
ROUNDS="${ROUNDS:-3}" DURATION="${DURATION:-5s}" CONNS="${CONNS:-32}" THREADS="${THREADS:-1}"
command -v wrk >/dev/null || die "wrk not found: apt-get install -y wrk (or scripts/deps.sh)"
bash scripts/build.sh >/dev/null
work="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
go run ./internal/testpki/cmd/demopki -out "$work" >/dev/null
cert_b64=$(sed '1d;$d' "$work/alice.pem" | tr -d '\n')

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
P_PLAIN=$(free_port) P_MTLS=$(free_port) P_TIER=$(free_port) ADMIN=$(free_port)
cat >"$work/Caddyfile" <<CADDY
{
	admin 127.0.0.1:$ADMIN
	default_bind 127.0.0.1
	auto_https off
	persist_config off
	storage file_system $work/storage
	mtls_auth {
		tier big 100000000 1m
	}
}
:$P_PLAIN {
	respond "ok"
}
:$P_MTLS {
	mtls_auth {
		trust_pool file $work/ca.pem
		profile der_base64
		header X-Client-Cert
		trusted_sources 127.0.0.1/32
	}
	respond "ok"
}
:$P_TIER {
	mtls_auth {
		trust_pool file $work/ca.pem
		profile der_base64
		header X-Client-Cert
		trusted_sources 127.0.0.1/32
		default_tier big
	}
	respond "ok"
}
CADDY
"$REPO_ROOT/bin/caddy" run --config "$work/Caddyfile" --adapter caddyfile >"$work/caddy.log" 2>&1 &
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$P_PLAIN/" >/dev/null && break; sleep 0.1; done
status=$(curl -s -o /dev/null -w '%{http_code}' -H "X-Client-Cert: $cert_b64" "http://127.0.0.1:$P_MTLS/")
[[ "$status" == 200 ]] || die "the plugin refused the benchmark certificate ($status); log: $work/caddy.log"

cat >"$work/header.lua" <<LUA
wrk.headers["X-Client-Cert"] = "$cert_b64"
LUA
run() { # port lua -> "rps p50_ms p99_ms"
	local out
	out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency ${2:+-s "$2"} "http://127.0.0.1:$1/")
	awk '/Requests\/sec/ {rps=$2} /^ +50%/ {p50=$2} /^ +99%/ {p99=$2}
		function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
		END { printf "%s %.3f %.3f\n", rps, ms(p50), ms(p99) }' <<<"$out"
}
declare -A res
for r in $(seq "$ROUNDS"); do
	res[plain]+="$(run "$P_PLAIN" "")"$'\n'
	res[mtls]+="$(run "$P_MTLS" "$work/header.lua")"$'\n'
	res[tier]+="$(run "$P_TIER" "$work/header.lua")"$'\n'
done
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
col() { printf '%s' "${res[$1]}" | awk -v c="$2" 'NF {print $c}' | median; }
plain_rps=$(col plain 1)
printf '%-28s %12s %9s %9s %8s\n' case "req/s" "p50 ms" "p99 ms" "ratio"
for c in plain mtls tier; do
	rps=$(col "$c" 1)
	printf '%-28s %12.0f %9.3f %9.3f %8.2f\n' "$c" "$rps" "$(col "$c" 2)" "$(col "$c" 3)" "$(awk -v a="$rps" -v b="$plain_rps" 'BEGIN {print a/b}')"
done
echo "(median of $ROUNDS rounds, $DURATION each, $CONNS connections, wrk -t$THREADS, ECDSA P-256 leaf, no verification cache)"
