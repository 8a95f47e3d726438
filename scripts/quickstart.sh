#!/usr/bin/env bash
# Quickstart: see caddy-mtls-auth work behind a real nginx in one command.
#
#   bash scripts/quickstart.sh        (or: make quickstart)
#
# It installs what is missing, builds bin/caddy with the plugin, writes a
# demo PKI into a temp dir, starts Caddy and nginx on free 127.0.0.1 ports,
# sends real curl requests with different client certificates, prints each
# request with its answer, stops everything, and exits non-zero if any
# answer differs from the expected one. KEEP_RUNNING=1 leaves the servers up
# until Ctrl-C so you can try your own requests.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/mtls-quickstart.XXXXXX")"
bash scripts/deps.sh
log "building bin/caddy if the sources changed (the first build takes a few minutes)"
if ! bash scripts/build.sh >"$WORK/build.log" 2>&1; then
	cat "$WORK/build.log" >&2
	rm -rf "$WORK"
	die "bin/caddy could not be built"
fi
CADDY="$REPO_ROOT/bin/caddy"
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
PIDS=()
cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# free_port prints a 127.0.0.1 port nothing listens on and not yet handed out.
USED_PORTS=" "
free_port() {
	local p
	while :; do
		p=$((20000 + RANDOM % 40000))
		[[ "$USED_PORTS" == *" $p "* ]] && continue
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			USED_PORTS+="$p "
			echo "$p"
			return
		fi
	done
}

wait_port() { # port name logfile
	local i
	for i in $(seq 1 200); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	echo "$2 did not start on port $1; its log:" >&2
	cat "$3" >&2
	exit 1
}

# ------------------------------------------------------------------ PKI
PKI="$WORK/pki"
go run ./internal/testpki/cmd/demopki -out "$PKI" -q

ADMIN=$(free_port)
APP=$(free_port)    # Caddy, the API behind nginx
DIRECT=$(free_port) # Caddy, the same API reached without nginx
NGX=$(free_port)    # nginx, terminating mTLS

# ------------------------------------------------------------------ Caddy
cat >"$WORK/Caddyfile" <<EOF
{
	admin 127.0.0.1:$ADMIN
	default_bind 127.0.0.1
	auto_https off
	skip_install_trust
	persist_config off
	storage file_system $WORK/storage
}

# The API. nginx terminates TLS and forwards the client certificate in the
# Ssl-Client-Cert header; only nginx (on this machine) may send that header.
:$APP {
	mtls_auth {
		profile nginx
		trust_pool file ca.pem
		allow alice alice.pem meta team payments
		trusted_sources 127.0.0.1/32
	}
	respond "hello {http.mtls.alias}: cn={http.mtls.subject.cn} team={http.mtls.meta.team} fingerprint={http.mtls.fingerprint}"
	handle_errors {
		respond "{err.status_code} {http.mtls.error}" {err.status_code}
	}
}

# The same API on a port clients can reach directly. Its load balancers
# would live in 10.0.0.0/8, so here every certificate header comes from an
# untrusted source (on one loopback address this is how to show it).
:$DIRECT {
	mtls_auth {
		profile nginx
		trust_pool file ca.pem
		allow alice alice.pem meta team payments
		trusted_sources 10.0.0.0/8
	}
	respond "hello {http.mtls.alias}"
	handle_errors {
		respond "{err.status_code} {http.mtls.error}" {err.status_code}
	}
}
EOF
(cd "$PKI" && exec env HOME="$WORK" XDG_DATA_HOME="$WORK/data" XDG_CONFIG_HOME="$WORK/config" \
	"$CADDY" run --config "$WORK/Caddyfile" --adapter caddyfile) >"$WORK/caddy.log" 2>&1 &
PIDS+=($!)
wait_port "$ADMIN" caddy "$WORK/caddy.log"
wait_port "$APP" caddy "$WORK/caddy.log"

# ------------------------------------------------------------------ nginx
mkdir -p "$WORK/nginx/logs" "$WORK/nginx/tmp"
USER_LINE=""
[[ "$(id -u)" == 0 ]] && USER_LINE="user root;"
cat >"$WORK/nginx/nginx.conf" <<EOF
$USER_LINE
worker_processes 1;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/logs/error.log info;
events { worker_connections 64; }
http {
	access_log off;
	client_body_temp_path $WORK/nginx/tmp/body;
	proxy_temp_path $WORK/nginx/tmp/proxy;
	fastcgi_temp_path $WORK/nginx/tmp/fastcgi;
	uwsgi_temp_path $WORK/nginx/tmp/uwsgi;
	scgi_temp_path $WORK/nginx/tmp/scgi;
	server {
		listen 127.0.0.1:$NGX ssl;
		ssl_certificate $PKI/server.pem;
		ssl_certificate_key $PKI/server-key.pem;
		# Ask for a client certificate; Caddy decides whether it is good.
		ssl_verify_client optional_no_ca;
		# Always set (an empty value drops the header): a client cannot forge it.
		proxy_set_header Ssl-Client-Cert \$ssl_client_escaped_cert;
		location / {
			proxy_pass http://127.0.0.1:$APP;
		}
		# nginx rejects a certificate it can tell is bad (expired...) with
		# its own bare 400; hand those to Caddy too, for a reasoned answer.
		error_page 495 = @caddy;
		location @caddy {
			proxy_pass http://127.0.0.1:$APP;
		}
	}
}
EOF
"$NGINX" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/logs/error.log" -g 'daemon off;' \
	>"$WORK/nginx/logs/stdout.log" 2>&1 &
PIDS+=($!)
wait_port "$NGX" nginx "$WORK/nginx/logs/error.log"

# ------------------------------------------------------------------ requests
echo
echo "Caddy with mtls_auth on 127.0.0.1:$APP behind nginx (mTLS) on 127.0.0.1:$NGX;"
echo "the same API without nginx on 127.0.0.1:$DIRECT. Certificates in $PKI."
echo "Caddy's mtls_auth block:"
sed -n "/^:$APP {/,/^}/p" "$WORK/Caddyfile" | sed -n '/mtls_auth {/,/^\t}/p' | sed 's/^/    /'

FAILED=0
N=0
# check TITLE EXPECTED_STATUS EXPECTED_BODY_SUBSTRING curl-args...
check() {
	local title="$1" want_status="$2" want_body="$3"
	shift 3
	N=$((N + 1))
	echo
	echo "--- $N. $title"
	local shown=() a
	for a in "$@"; do
		((${#a} > 70)) && a="${a:0:60}...(${#a} bytes)"
		[[ "$a" == *" "* ]] && a="'$a'"
		shown+=("$a")
	done
	echo "\$ curl ${shown[*]}"
	local out status body
	out=$(cd "$PKI" && curl -sS --max-time 10 -w '\n%{http_code}' "$@" 2>&1) || true
	status="${out##*$'\n'}"
	body="${out%$'\n'*}"
	echo "HTTP $status | $body"
	# Errors must match exactly ("401 untrusted" is not "401 untrusted_source");
	# a 200 must contain the expected text.
	if [[ "$status" == "$want_status" ]] &&
		[[ "$body" == "$want_body" || ("$want_status" == 200 && "$body" == *"$want_body"*) ]]; then
		echo "    as expected ($want_status, \"$want_body\")"
	else
		echo "    UNEXPECTED: wanted $want_status with \"$want_body\""
		FAILED=$((FAILED + 1))
	fi
}

# nginx_escape FILE: the file as nginx's $ssl_client_escaped_cert writes a
# PEM: everything but letters, digits and "-._~" as %XX.
nginx_escape() {
	local s out="" c i
	s="$(cat "$1")"$'\n'
	for ((i = 0; i < ${#s}; i++)); do
		c="${s:i:1}"
		case "$c" in
		[A-Za-z0-9._~-]) out+="$c" ;;
		*) printf -v c '%%%02X' "'$c" && out+="$c" ;;
		esac
	done
	printf '%s' "$out"
}

TLS=(--cacert server-ca.pem)
URL="https://127.0.0.1:$NGX/"
check "alice: good certificate, on the allow list -> 200 with her identity" \
	200 "hello alice: cn=alice team=payments fingerprint=" \
	"${TLS[@]}" --cert alice.pem --key alice-key.pem "$URL"
check "bob: good certificate from the same CA, not on the allow list -> 403 not_allowed" \
	403 "403 not_allowed" \
	"${TLS[@]}" --cert bob.pem --key bob-key.pem "$URL"
check "mallory: certificate from another CA -> 401 untrusted" \
	401 "401 untrusted" \
	"${TLS[@]}" --cert mallory.pem --key mallory-key.pem "$URL"
check "expired certificate -> 401 expired" \
	401 "401 expired" \
	"${TLS[@]}" --cert expired.pem --key expired-key.pem "$URL"
check "no certificate -> 401 missing" \
	401 "401 missing" \
	"${TLS[@]}" "$URL"
FORGED="Ssl-Client-Cert: $(nginx_escape "$PKI/alice.pem")"
check "no certificate, but alice's certificate forged into the header, through nginx -> 401 missing (nginx overwrites the header)" \
	401 "401 missing" \
	"${TLS[@]}" -H "$FORGED" "$URL"
check "alice's certificate forged into the header, sent straight to Caddy from an untrusted source -> 401 untrusted_source" \
	401 "401 untrusted_source" \
	-H "$FORGED" "http://127.0.0.1:$DIRECT/"

echo
if ((FAILED)); then
	echo "quickstart: $FAILED of $N requests did not get the expected answer. Caddy's log:"
	tail -n 40 "$WORK/caddy.log"
	exit 1
fi
echo "quickstart: all $N requests got the expected answer."
if [[ "${KEEP_RUNNING:-0}" == 1 ]]; then
	echo "Servers keep running (KEEP_RUNNING=1); files in $PKI. Ctrl-C to stop."
	wait
fi
