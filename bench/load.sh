#!/usr/bin/env bash
# Load benchmark against plain Caddy, measured in the same run, with wrk on
# loopback. Cases (they alternate within each round; the median of ROUNDS
# rounds is reported):
#
#   plain          Caddy `respond`, no plugin, the same request (certificate
#                  header included): the baseline
#   cached         the plugin, the same certificate every request (ECDSA P-256
#                  chain: leaf + intermediate; the verification cache answers)
#   new_ecdsa      a different leaf on every request, ECDSA P-256 chain
#   new_rsa        a different leaf on every request, RSA-2048 chain
#                  (new_* rotate through 4000 certificates with cache_size 400:
#                  every request decodes, verifies and inserts)
#   forged         the worst chain a client holding no key can send within the
#                  limits (max_chain 8): a forged leaf naming the ECDSA
#                  intermediate, the intermediate, forged "intermediates" under
#                  the root (as many as a request may fail checks on) and
#                  certificates no path reaches, made-up keys of 8192 bits;
#                  2100 of them rotating, so that no check is remembered. All
#                  refused (non-2xx); its cost is compared with new_ecdsa's.
#                  FORGED_PAD=5300 pads every made-up certificate so that the
#                  two headers near max_header_bytes (64 KiB).
#   nginx_plain    wrk -> nginx -> plain Caddy
#   nginx_cached   wrk -> nginx (sets the certificate header) -> the plugin
#
# Then a junk flood: JUNK_DURATION of unique random certificate-shaped
# headers against the plugin, with Caddy's RSS before and after.
#
#   bash bench/load.sh     # ROUNDS=3 DURATION=5s CONNS=32 JUNK_DURATION=60s
#   PROFILE=new_ecdsa bash bench/load.sh   # also saves a CPU profile of Caddy
#                                          # during that case (first round) to
#                                          # bench/profile-<case>.pb.gz
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
cd "$REPO_ROOT"
ROUNDS="${ROUNDS:-3}" DURATION="${DURATION:-5s}" CONNS="${CONNS:-32}" THREADS="${THREADS:-1}"
JUNK_DURATION="${JUNK_DURATION:-60s}"
for tool in wrk nginx; do
	command -v "$tool" >/dev/null || [[ -x /usr/sbin/$tool ]] || die "$tool not found: run scripts/deps.sh"
done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
bash scripts/build.sh >/dev/null
work="$(mktemp -d)"
cleanup() { kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
log "generating certificates"
go run ./bench/gencerts -out "$work" -n 4000 -forged-pad "${FORGED_PAD:-0}"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
declare -A port
for c in plain cached new_ecdsa new_rsa forged junk nginx_plain nginx_cached admin; do port[$c]=$(free_port); done
site() { # port ca cache_size
	printf ':%s {\n\tmtls_auth {\n\t\ttrust_pool file %s\n\t\tprofile der_base64\n\t\theader X-Client-Cert\n\t\tchain_header X-Client-Chain\n\t\ttrusted_sources 127.0.0.1/32\n\t\tcache_size %s\n\t}\n\trespond "ok"\n}\n' "$1" "$2" "$3"
}
{
	printf '{\n\tadmin 127.0.0.1:%s\n\tdefault_bind 127.0.0.1\n\tauto_https off\n\tpersist_config off\n\tstorage file_system %s\n}\n' "${port[admin]}" "$work/storage"
	printf ':%s {\n\trespond "ok"\n}\n' "${port[plain]}"
	site "${port[cached]}" "$work/ca-ecdsa.pem" 10000
	site "${port[new_ecdsa]}" "$work/ca-ecdsa.pem" 400
	site "${port[new_rsa]}" "$work/ca-rsa.pem" 400
	site "${port[forged]}" "$work/ca-ecdsa.pem" 400
	site "${port[junk]}" "$work/ca-ecdsa.pem" 10000
} >"$work/Caddyfile"
"$REPO_ROOT/bin/caddy" run --config "$work/Caddyfile" --adapter caddyfile >"$work/caddy.log" 2>&1 &
caddy_pid=$!

one_cert=$(cat "$work/one-ecdsa.b64")
one_chain=$(cat "$work/chain-ecdsa.b64")
mkdir -p "$work/nginx/logs"
cat >"$work/nginx/nginx.conf" <<NGINX
worker_processes 1;
pid $work/nginx/nginx.pid;
error_log $work/nginx/logs/error.log warn;
events { worker_connections 1024; }
http {
	access_log off;
	client_body_temp_path $work/nginx/body;
	proxy_temp_path $work/nginx/proxy;
	fastcgi_temp_path $work/nginx/fastcgi;
	uwsgi_temp_path $work/nginx/uwsgi;
	scgi_temp_path $work/nginx/scgi;
	upstream plain { server 127.0.0.1:${port[plain]}; keepalive 64; }
	upstream mtls { server 127.0.0.1:${port[cached]}; keepalive 64; }
	server {
		listen 127.0.0.1:${port[nginx_plain]};
		location / { proxy_pass http://plain; proxy_http_version 1.1; proxy_set_header Connection ""; }
	}
	server {
		listen 127.0.0.1:${port[nginx_cached]};
		location / {
			proxy_pass http://mtls; proxy_http_version 1.1; proxy_set_header Connection "";
			proxy_set_header X-Client-Cert "$one_cert";
			proxy_set_header X-Client-Chain "$one_chain";
		}
	}
}
NGINX
"$NGINX" -p "$work/nginx" -c "$work/nginx/nginx.conf" -g 'daemon off;' >"$work/nginx/out.log" 2>&1 &

for c in plain cached nginx_plain nginx_cached; do
	for _ in $(seq 100); do curl -fs -o /dev/null -H "X-Client-Cert: $one_cert" -H "X-Client-Chain: $one_chain" "http://127.0.0.1:${port[$c]}/" && break; sleep 0.1; done
done
for c in cached nginx_cached; do
	status=$(curl -s -o /dev/null -w '%{http_code}' -H "X-Client-Cert: $one_cert" -H "X-Client-Chain: $one_chain" "http://127.0.0.1:${port[$c]}/")
	[[ "$status" == 200 ]] || die "$c refused the benchmark certificate ($status); log: $work/caddy.log"
done

declare -A script=([plain]="$work/one-ecdsa.lua" [cached]="$work/one-ecdsa.lua" [new_ecdsa]="$work/many-ecdsa.lua" [new_rsa]="$work/many-rsa.lua" [forged]="$work/forged-ecdsa.lua" [nginx_plain]="" [nginx_cached]="")
cases=(plain cached new_ecdsa new_rsa forged nginx_plain nginx_cached)
run() { # case -> "rps p50_ms p99_ms non2xx"
	local out
	out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency ${script[$1]:+-s "${script[$1]}"} "http://127.0.0.1:${port[$1]}/")
	awk '/Requests\/sec/ {rps=$2} /^ +50%/ {p50=$2} /^ +99%/ {p99=$2} /Non-2xx/ {bad=$NF}
		function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
		END { printf "%s %.3f %.3f %d\n", rps, ms(p50), ms(p99), bad }' <<<"$out"
}
declare -A res
secs=${DURATION%s}
for r in $(seq "$ROUNDS"); do
	log "round $r of $ROUNDS"
	for c in "${cases[@]}"; do
		if [[ $r == 1 && "${PROFILE:-}" == "$c" ]]; then
			curl -s -o "$REPO_ROOT/bench/profile-$c.pb.gz" \
				"http://127.0.0.1:${port[admin]}/debug/pprof/profile?seconds=$((secs > 2 ? secs - 1 : 1))" &
		fi
		res[$c]+="$(run "$c")"$'\n'
	done
done
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
col() { printf '%s' "${res[$1]}" | awk -v c="$2" 'NF {print $c}' | median; }
maxcol() { printf '%s' "${res[$1]}" | awk -v c="$2" 'NF && $c > m {m=$c} END {print m+0}'; }
plain_rps=$(col plain 1)
echo
printf '%-14s %10s %9s %9s %8s %8s\n' case "req/s" "p50 ms" "p99 ms" "ratio" "non-2xx"
for c in "${cases[@]}"; do
	rps=$(col "$c" 1)
	printf '%-14s %10.0f %9.3f %9.3f %7.2fx %8d\n' "$c" "$rps" "$(col "$c" 2)" "$(col "$c" 3)" \
		"$(awk -v a="$rps" -v b="$plain_rps" 'BEGIN {print a/b}')" "$(maxcol "$c" 4)"
done
echo "(median of $ROUNDS rounds of $DURATION, $CONNS connections, wrk -t$THREADS; ratio = req/s over plain Caddy's in the same run)"
printf 'forged chain: %.2fx the cost of a new certificate (new_ecdsa req/s over forged req/s)\n' \
	"$(awk -v a="$(col new_ecdsa 1)" -v b="$(col forged 1)" 'BEGIN {print a/b}')"

# ---------------------------------------------------------------- junk flood
rss() { awk '/^VmRSS/ {print $2}' "/proc/$caddy_pid/status"; }
echo
log "junk flood: $JUNK_DURATION of unique random headers"
before=$(rss)
out=$(wrk -t"$THREADS" -c"$CONNS" -d"$JUNK_DURATION" -s "$work/junk.lua" "http://127.0.0.1:${port[junk]}/")
after=$(rss)
requests=$(awk '/requests in/ {print $1}' <<<"$out")
rejected=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
printf 'junk flood: %s requests (%s rejected), Caddy RSS %d MB -> %d MB (growth %d MB)\n' \
	"$requests" "${rejected:-0}" $((before / 1024)) $((after / 1024)) $(((after - before) / 1024))
