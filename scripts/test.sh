#!/usr/bin/env bash
# The project's test command (also `make test` and what CI runs):
#
#   deps -> gofmt -> go vet -> staticcheck -> unit tests (-race) -> build
#   bin/caddy -> integration tests against the real binary, nginx and HAProxy
#   -> every fuzz target for $FUZZTIME -> benchmarks (brief, no assertions)
#
# Every step runs even when an earlier one failed (except deps), so one run
# shows everything that is wrong. The last line is "N passed, N failed",
# counting top-level tests, fuzz targets and benchmarks; the exit status is
# non-zero when anything failed. A skipped integration test is a failure:
# the integration tests must run wherever this script runs.
#
# Environment: FUZZTIME (default 10s), LOG_DIR (default a temp dir; the full
# output of every step is kept there), FORCE=1 rebuilds bin/caddy.
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

FUZZTIME="${FUZZTIME:-10s}"
# Tests that need redis-server skip without it under a plain `go test`;
# here (and so in CI) a missing one is a failure.
export MTLS_REQUIRE_REDIS=1
LOG_DIR="${LOG_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/mtls-test.XXXXXX")}"
mkdir -p "$LOG_DIR"
START=$SECONDS

passed=0
failed=0
failed_steps=()

step() { printf '\n=== %s (%ds)\n' "$*" "$((SECONDS - START))"; }
# fail_step NAME [counted]: records a failed step. Steps that are not
# tests (gofmt, vet, staticcheck, the build) count as one failure each;
# test steps pass "counted" because their failures are counted from the
# logs (and one is added if the logs show none).
fail_step() {
	failed_steps+=("$1")
	printf -- '--> FAILED: %s\n' "$1"
	[[ "${2:-}" == counted ]] || failed=$((failed + 1))
}

# count_results LOGFILE [skip-is-failure]: adds the top-level results found
# in a `go test -v` log to the totals. Top-level result lines are the
# unindented "--- PASS/FAIL/SKIP: Name"; subtests are indented. A package
# that fails without any failing test (build failure, panic in TestMain,
# timeout) counts as one failure.
count_results() {
	local f="$1" skip_fails="${2:-}" p fl s pkgfail
	p=$(grep -c -E '^--- PASS: ' "$f")
	fl=$(grep -c -E '^--- FAIL: ' "$f")
	s=$(grep -c -E '^--- SKIP: ' "$f")
	# Package-level failures with no test-level failure line of their own.
	pkgfail=$(grep -c -E '^FAIL[[:space:]]+\S+.*\[(build failed|setup failed)\]|^panic: test timed out' "$f")
	# caddytest skips (instead of failing) when its Caddy instance cannot
	# start; that must fail here.
	local caddytest_skips
	caddytest_skips=$(grep -c 'skipping tests as failed integration prerequisites' "$f")
	passed=$((passed + p))
	failed=$((failed + fl + pkgfail + caddytest_skips))
	if [[ -n "$skip_fails" ]]; then
		failed=$((failed + s))
		((s == 0)) || echo "--> $s integration test(s) SKIPPED: counted as failures"
	fi
	printf -- '--> %d passed, %d failed, %d skipped (top-level)\n' "$p" "$((fl + pkgfail + caddytest_skips))" "$s"
}

# Filters `go test -v` output for the terminal: drops the RUN/PAUSE/CONT
# chatter and passing/skipped subtest lines; failures, logs of failing
# tests and package summaries stay. The full output is in $LOG_DIR.
quiet_v() { grep -v -E '^[[:space:]]*(=== (RUN|PAUSE|CONT|NAME)|--- (PASS|SKIP): )' || true; }

# ---------------------------------------------------------------- deps
step "deps"
if ! bash scripts/deps.sh; then
	echo "dependencies could not be installed; stopping"
	echo "0 passed, 1 failed"
	exit 1
fi

# ---------------------------------------------------------------- gofmt
step "gofmt"
unformatted=$(find . \( -path ./.git -o -path ./bin -o -path ./vendor -o -name testdata \) -prune -o -name '*.go' -print0 |
	xargs -0 -r gofmt -l 2>&1)
if [[ -n "$unformatted" ]]; then
	echo "these files need gofmt -w:"
	echo "$unformatted" | sed 's/^/    /'
	fail_step gofmt
else
	echo "ok"
fi

# ---------------------------------------------------------------- vet
# vet and staticcheck load race-instrumented export data (-race): the same
# compiled packages the unit tests need, so a cold machine compiles Caddy's
# dependency tree once for all three instead of twice. Both also get the
# integration build tag, so the integration tests are checked like the rest.
RACE_GOFLAGS="$(go env GOFLAGS) -race"
step "go vet -tags integration ./..."
if go vet -race -tags integration ./... 2>&1 | tee "$LOG_DIR/vet.log"; then echo "ok"; else fail_step "go vet"; fi

# ---------------------------------------------------------------- staticcheck
step "staticcheck -tags integration ./..."
if GOFLAGS="$RACE_GOFLAGS" staticcheck -tags integration ./... 2>&1 | tee "$LOG_DIR/staticcheck.log"; then echo "ok"; else fail_step staticcheck; fi

# ---------------------------------------------------------------- unit tests
step "unit tests (go test -race)"
mapfile -t unit_pkgs < <(go list ./... 2>/dev/null | grep -v -E '/integration(/|$)')
if ((${#unit_pkgs[@]} == 0)); then
	echo "no packages"
else
	go test -race -count=1 -timeout 10m -v "${unit_pkgs[@]}" >"$LOG_DIR/unit.log" 2>&1
	rc=$?
	quiet_v <"$LOG_DIR/unit.log"
	before=$failed
	count_results "$LOG_DIR/unit.log"
	if ((rc != 0)); then
		((failed > before)) && fail_step "unit tests" counted || fail_step "unit tests"
	fi
fi

# ---------------------------------------------------------------- build
step "build bin/caddy"
built=0
if bash scripts/build.sh 2>&1 | tee "$LOG_DIR/build.log"; then
	built=1
else
	fail_step "build bin/caddy"
fi

# ---------------------------------------------------------------- integration
step "integration tests (real caddy, nginx, haproxy, curl)"
if [[ ! -d integration ]] || ! ls integration/*_test.go >/dev/null 2>&1; then
	echo "no integration tests found"
	fail_step "integration (missing)"
elif ((built == 0)); then
	echo "bin/caddy could not be built: integration tests cannot run"
	fail_step "integration (no binary)"
else
	# The integration tests carry the "integration" build tag; without it
	# they would not be compiled and the step would pass having run nothing.
	MTLS_CADDY_BIN="$REPO_ROOT/bin/caddy" \
		go test -tags integration -count=1 -p 1 -timeout 15m -v ./integration/... >"$LOG_DIR/integration.log" 2>&1
	rc=$?
	cat "$LOG_DIR/integration.log"
	before=$failed
	count_results "$LOG_DIR/integration.log" skip-is-failure
	if ! grep -q -E '^--- PASS: ' "$LOG_DIR/integration.log" ||
		grep -q -E '\[no test files\]|testing: warning: no tests to run' "$LOG_DIR/integration.log"; then
		echo "--> the integration tests did not run: counted as a failure"
		failed=$((failed + 1))
	fi
	if ((rc != 0)) || ((failed > before)); then
		((failed > before)) && fail_step "integration tests" counted || fail_step "integration tests"
	fi
fi

# ---------------------------------------------------------------- fuzz
step "fuzz targets (${FUZZTIME} each)"
fuzz_count=0
# run_fuzz DIR NAME: fuzzes one target for $FUZZTIME. Go's fuzz coordinator
# sometimes ends a run on a loaded machine with "context deadline exceeded"
# when a worker answers late at the deadline; no input failed then, so the
# target is run again (up to three times). A real failure writes its input under
# testdata/fuzz and fails at once.
run_fuzz() {
	local attempt
	for attempt in 1 2 3; do
		if go test -run '^$' -fuzz "^${2}\$" -fuzztime "$FUZZTIME" -fuzzminimizetime 0 \
			-timeout 10m "$1" >"$LOG_DIR/fuzz-$2.log" 2>&1; then
			return 0
		fi
		if grep -q 'Failing input written' "$LOG_DIR/fuzz-$2.log" ||
			! grep -q 'context deadline exceeded' "$LOG_DIR/fuzz-$2.log"; then
			return 1
		fi
		echo "    (fuzz coordinator timed out at the deadline with no failing input; running $2 once more)"
	done
	return 1
}
while IFS= read -r file; do
	dir="./$(dirname "${file#./}")"
	while IFS= read -r name; do
		[[ -n "$name" ]] || continue
		fuzz_count=$((fuzz_count + 1))
		echo "--- fuzz $dir $name"
		if run_fuzz "$dir" "$name"; then
			tail -n 1 "$LOG_DIR/fuzz-$name.log"
			passed=$((passed + 1))
		else
			cat "$LOG_DIR/fuzz-$name.log"
			fail_step "fuzz $name"
		fi
	done < <(grep -h -o -E '^func Fuzz[A-Za-z0-9_]*' "$file" | sed 's/^func //' | sort -u)
done < <(find . \( -path ./.git -o -path ./bin \) -prune -o -name '*_test.go' -print | sort |
	xargs -r grep -l -E '^func Fuzz' 2>/dev/null)
((fuzz_count > 0)) || echo "no fuzz targets found"

# ---------------------------------------------------------------- bench
step "benchmarks (-benchtime 200x, no assertions)"
go test -run '^$' -bench . -benchtime 200x -benchmem -timeout 10m ./... >"$LOG_DIR/bench.log" 2>&1
rc=$?
grep -E '^(Benchmark|ok|FAIL|--- FAIL|panic)' "$LOG_DIR/bench.log" | grep -v 'no test files' || true
bp=$(grep -c -E '^Benchmark\S+\s+[0-9]+\s+[0-9.]+ ns/op' "$LOG_DIR/bench.log")
bf=$(grep -c -E '^--- FAIL: |^FAIL[[:space:]]+\S+.*\[(build|setup) failed\]|^panic: test timed out' "$LOG_DIR/bench.log")
passed=$((passed + bp))
failed=$((failed + bf))
if ((rc != 0)); then
	((bf > 0)) && fail_step benchmarks counted || fail_step benchmarks
fi

# ---------------------------------------------------------------- summary
step "summary"
echo "logs: $LOG_DIR"
echo "time: $((SECONDS - START))s"
if ((${#failed_steps[@]})); then
	printf 'failed steps: %s\n' "$(IFS=,; echo "${failed_steps[*]}")"
fi
echo "$passed passed, $failed failed"
((failed == 0 && ${#failed_steps[@]} == 0))
