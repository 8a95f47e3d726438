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
#   plain_100k     plain Caddy, the requests of cached_100k: the baseline
#   cached_100k    ROTATE (100,000) distinct ECDSA client certificates, each
#                  seen before, rotating (`cache_size` twice ROTATE), served by
#                  a Caddy of its own whose RSS growth is reported: from
#                  started, to warmed (every certificate sent once, the
#                  first-sight rate is reported too), to after the rounds
#
# Then a junk flood: JUNK_DURATION of unique random certificate-shaped
# headers against the plugin, with Caddy's RSS before and after.
#
#   bash bench/load.sh     # ROUNDS=3 DURATION=5s CONNS=32 JUNK_DURATION=60s ROTATE=100000
#   ROTATE=0 bash bench/load.sh            # without the rotation cases
#   CASES="plain_100k cached_100k" bash bench/load.sh   # only these cases
#   CADDY_BIN=/path/to/caddy bash bench/load.sh   # another build (e.g. a
#                                          # baseline), instead of building bin/caddy
#   PROFILE=new_ecdsa bash bench/load.sh   # also saves a CPU profile of Caddy
#                                          # during that case (first round) to
#                                          # bench/profile-<case>.pb.gz
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
cd "$REPO_ROOT"
ROUNDS="${ROUNDS:-3}" DURATION="${DURATION:-5s}" CONNS="${CONNS:-32}" THREADS="${THREADS:-1}"
JUNK_DURATION="${JUNK_DURATION:-60s}" ROTATE="${ROTATE:-100000}"
for tool in wrk nginx; do
	command -v "$tool" >/dev/null || [[ -x /usr/sbin/$tool ]] || die "$tool not found: run scripts/deps.sh"
done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
if [[ -z "${CADDY_BIN:-}" ]]; then
	bash scripts/build.sh >/dev/null
	CADDY_BIN="$REPO_ROOT/bin/caddy"
fi
work="$(mktemp -d)"
cleanup() { kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
log "generating certificates (4000 per CA, $ROTATE to rotate)"
go run ./bench/gencerts -out "$work" -n 4000 -rotate "$ROTATE" -forged-pad "${FORGED_PAD:-0}"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
declare -A port
for c in plain cached new_ecdsa new_rsa forged junk nginx_plain nginx_cached admin cached_100k admin_100k; do port[$c]=$(free_port); done
port[plain_100k]=${port[plain]}
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
"$CADDY_BIN" run --config "$work/Caddyfile" --adapter caddyfile >"$work/caddy.log" 2>&1 &
caddy_pid=$!
declare -A admin=([plain]=${port[admin]} [cached]=${port[admin]} [new_ecdsa]=${port[admin]} [new_rsa]=${port[admin]} [forged]=${port[admin]}
	[nginx_plain]=${port[admin]} [nginx_cached]=${port[admin]} [plain_100k]=${port[admin]} [cached_100k]=${port[admin_100k]})
if ((ROTATE > 0)); then
	# The rotation case has a Caddy of its own, so that its RSS is the
	# cache's and nothing else's.
	{
		printf '{\n\tadmin 127.0.0.1:%s\n\tdefault_bind 127.0.0.1\n\tauto_https off\n\tpersist_config off\n\tstorage file_system %s\n}\n' "${port[admin_100k]}" "$work/storage-100k"
		site "${port[cached_100k]}" "$work/ca-ecdsa.pem" $((2 * ROTATE))
	} >"$work/Caddyfile-100k"
	"$CADDY_BIN" run --config "$work/Caddyfile-100k" --adapter caddyfile >"$work/caddy-100k.log" 2>&1 &
	caddy100k_pid=$!
fi
rss() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; } # pid -> kB

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

ready=(plain cached nginx_plain nginx_cached)
((ROTATE > 0)) && ready+=(cached_100k)
for c in "${ready[@]}"; do
	for _ in $(seq 100); do curl -fs -o /dev/null -H "X-Client-Cert: $one_cert" -H "X-Client-Chain: $one_chain" "http://127.0.0.1:${port[$c]}/" && break; sleep 0.1; done
done
for c in cached nginx_cached; do
	status=$(curl -s -o /dev/null -w '%{http_code}' -H "X-Client-Cert: $one_cert" -H "X-Client-Chain: $one_chain" "http://127.0.0.1:${port[$c]}/")
	[[ "$status" == 200 ]] || die "$c refused the benchmark certificate ($status); log: $work/caddy.log"
done

declare -A script=([plain]="$work/one-ecdsa.lua" [cached]="$work/one-ecdsa.lua" [new_ecdsa]="$work/many-ecdsa.lua" [new_rsa]="$work/many-rsa.lua" [forged]="$work/forged-ecdsa.lua" [nginx_plain]="" [nginx_cached]=""
	[plain_100k]="$work/rotate.lua" [cached_100k]="$work/rotate.lua")
cases=(plain cached new_ecdsa new_rsa forged nginx_plain nginx_cached)
((ROTATE > 0)) && cases+=(plain_100k cached_100k)
[[ -n "${CASES:-}" ]] && read -ra cases <<<"$CASES"
if ((ROTATE > 0)); then
	rss_started=$(rss "$caddy100k_pid")
	log "warming cached_100k: each of $ROTATE certificates once"
	wrk -t1 -c"$CONNS" -d600s -s "$work/warm.lua" "http://127.0.0.1:${port[cached_100k]}/" >/dev/null &
	wrk_pid=$!
	wait_for() { # marker file; wrk must still be running
		until [[ -e "$work/warm-$1" ]]; do
			kill -0 "$wrk_pid" 2>/dev/null || die "warming cached_100k: wrk ended before warm-$1"
			sleep 0.02
		done
		date +%s.%N
	}
	t_started=$(wait_for started)
	t_done=$(wait_for done)
	kill "$wrk_pid"
	wait "$wrk_pid" 2>/dev/null || true
	warm_bad=$(cat "$work/warm-done")
	((warm_bad == 0)) || die "warming cached_100k: $warm_bad of $ROTATE certificates refused"
	warm_rps=$(awk -v n="$ROTATE" -v a="$t_started" -v b="$t_done" 'BEGIN {print n / (b - a)}')
	rss_warmed=$(rss "$caddy100k_pid")
fi
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
				"http://127.0.0.1:${admin[$c]}/debug/pprof/profile?seconds=$((secs > 2 ? secs - 1 : 1))" &
		fi
		res[$c]+="$(run "$c")"$'\n'
	done
done
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
col() { printf '%s' "${res[$1]}" | awk -v c="$2" 'NF {print $c}' | median; }
maxcol() { printf '%s' "${res[$1]}" | awk -v c="$2" 'NF && $c > m {m=$c} END {print m+0}'; }
base() { [[ $1 == *_100k ]] && echo plain_100k || echo plain; } # the case a ratio is over
echo
printf '%-14s %10s %9s %9s %8s %8s\n' case "req/s" "p50 ms" "p99 ms" "ratio" "non-2xx"
for c in "${cases[@]}"; do
	rps=$(col "$c" 1)
	printf '%-14s %10.0f %9.3f %9.3f %7.2fx %8d\n' "$c" "$rps" "$(col "$c" 2)" "$(col "$c" 3)" \
		"$(awk -v a="$rps" -v b="$(col "$(base "$c")" 1)" 'BEGIN {print a/b}')" "$(maxcol "$c" 4)"
done
echo "(median of $ROUNDS rounds of $DURATION, $CONNS connections, wrk -t$THREADS; ratio = req/s over plain Caddy's"
echo " in the same run, receiving the same requests: plain for the one-certificate cases, plain_100k for cached_100k)"
if [[ " ${cases[*]} " == *" forged "* && " ${cases[*]} " == *" new_ecdsa "* ]]; then
	printf 'forged chain: %.2fx the cost of a new certificate (new_ecdsa req/s over forged req/s)\n' \
		"$(awk -v a="$(col new_ecdsa 1)" -v b="$(col forged 1)" 'BEGIN {print a/b}')"
fi
if ((ROTATE > 0)); then
	rss_after=$(rss "$caddy100k_pid")
	printf '\ncached_100k: %d certificates, first sight %.0f req/s; Caddy RSS %d MB started -> %d MB warmed -> %d MB after the rounds (growth %d MB)\n' \
		"$ROTATE" "$warm_rps" $((rss_started / 1024)) $((rss_warmed / 1024)) $((rss_after / 1024)) $(((rss_after - rss_started) / 1024))
fi

# ---------------------------------------------------------------- junk flood
echo
log "junk flood: $JUNK_DURATION of unique random headers"
before=$(rss "$caddy_pid")
out=$(wrk -t"$THREADS" -c"$CONNS" -d"$JUNK_DURATION" -s "$work/junk.lua" "http://127.0.0.1:${port[junk]}/")
after=$(rss "$caddy_pid")
requests=$(awk '/requests in/ {print $1}' <<<"$out")
rejected=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
printf 'junk flood: %s requests (%s rejected), Caddy RSS %d MB -> %d MB (growth %d MB)\n' \
	"$requests" "${rejected:-0}" $((before / 1024)) $((after / 1024)) $(((after - before) / 1024))
