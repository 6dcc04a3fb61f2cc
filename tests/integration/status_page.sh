#!/usr/bin/env bash
# tests/integration/status_page.sh - the status page (GET /, ops/status.html)
# in headless Chromium and `sluice status URL`, against a running job.
#
# A real window-agg job reads slow CSV lines from a fifo (until the test ends)
# with --http 127.0.0.1:0; its stderr names the URL it serves. Then:
#   - Chromium loads the page twice (--dump-dom after 3 s of virtual time):
#     each DOM shows the "live" state and every node name of /api/job, and the
#     records-in total differs between the two loads;
#   - a screenshot is a PNG of non-trivial size;
#   - `sluice status URL` prints the job and its nodes, --json is one JSON
#     object with a rate per node; a path that is not an endpoint is "not a
#     sluice endpoint (HTTP 404)", a closed port "cannot reach ...: Connection
#     refused", a missing URL is a usage error (2).
# A stand-in server (status_fixture.py: a made-up /api/job with a token and a
# broker section) covers what a plain job does not show: ?token= passed on by
# the page, --token and the 401 hint of `sluice status`, the broker tables.
# STATUS_PAGE_FIXTURE=1 runs the job part against the stand-in as well (to
# work on the page without a job).
#
# Run by ctest as: bash status_page.sh SLUICE_BIN SOURCE_DIR BUILD_DIR
# Exit 77 (skipped) only when there is no chromium (scripts/deps.sh installs it).
set -u
BIN=$1
SRC=$2
TMP=$(mktemp -d "${3:-/tmp}/status_page.XXXXXX")
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT
fail=0
say() { printf '%s\n' "$*" >&2; }
bad() { say "FAIL: $*"; fail=1; }

CHROMIUM=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$CHROMIUM" ]; then
    say "SKIP: no chromium (scripts/deps.sh installs Debian's chromium)"
    exit 77
fi
export HOME=$TMP/home
mkdir -p "$HOME"
# One headless Chromium run, bounded in time; its noise (dbus...) goes to a log.
chrome() {
    timeout 90 "$CHROMIUM" --headless --no-sandbox --disable-gpu --no-first-run \
        --disable-dev-shm-usage --user-data-dir="$TMP/profile" --hide-scrollbars "$@" \
        2>>"$TMP/chromium.log"
}
dom() { chrome --virtual-time-budget=3000 --dump-dom "$1"; }
# The data-value of the element with id $1 in DOM file $2.
value_of() { grep -o "id=\"$1\" data-value=\"[^\"]*\"" "$2" | head -1 | sed 's/.*data-value="//; s/"$//'; }

start_fixture() { # $1: port file, rest: fixture options
    local pf=$1
    shift
    python3 "$SRC/tests/integration/status_fixture.py" "$SRC/ops/status.html" "$pf" "$@" &
    pids+=($!)
    for _ in $(seq 1 100); do
        [ -s "$pf" ] && return 0
        sleep 0.1
    done
    return 1
}

# --- the job -----------------------------------------------------------------
if [ "${STATUS_PAGE_FIXTURE:-0}" = 1 ]; then
    start_fixture "$TMP/port0" --no-broker || { say "FAIL: the fixture did not start"; exit 1; }
    URL=http://127.0.0.1:$(cat "$TMP/port0")/
else
    mkfifo "$TMP/in"
    # Lines until the cleanup kills the writer: the checks below need a running job,
    # and three Chromium runs (90 s allowed each) on a loaded machine can outlast 600 lines (~30 s).
    (i=0; while :; do
        i=$((i + 1))
        printf '%d,k%d,1\n' $((i * 100)) $((i % 7))
        sleep 0.05
    done) >"$TMP/in" &
    pids+=($!)
    "$BIN" run window-agg --http 127.0.0.1:0 --out "$TMP/out" <"$TMP/in" 2>"$TMP/job.err" &
    pids+=($!)
    URL=
    for _ in $(seq 1 200); do
        URL=$(grep -o 'http://127\.0\.0\.1:[0-9]*/' "$TMP/job.err" | head -1)
        [ -n "$URL" ] && break
        sleep 0.1
    done
    if [ -z "$URL" ]; then
        say "FAIL: window-agg --http 127.0.0.1:0 printed no http://127.0.0.1:PORT/ on stderr:"
        cat "$TMP/job.err" >&2
        exit 1
    fi
fi
say "endpoint: $URL"

# The node names, from /api/job itself (not through the page or the CLI).
names=$(python3 -c '
import json, sys, urllib.request
doc = json.load(urllib.request.urlopen(sys.argv[1] + "api/job", timeout=10))
print(" ".join(n["name"] for n in doc["nodes"]))' "$URL") || bad "GET ${URL}api/job is not JSON"
[ -n "$names" ] || bad "/api/job lists no nodes"
say "nodes: $names"

# --- the page, twice ---------------------------------------------------------
dom "$URL" >"$TMP/dom1.html"
sleep 1
dom "$URL" >"$TMP/dom2.html"
for d in dom1 dom2; do
    grep -q 'id="conn" class="pill ok">live<' "$TMP/$d.html" ||
        bad "$d: the page does not show itself live: $(grep -o 'id="conn"[^<]*' "$TMP/$d.html")"
    for n in $names; do
        grep -q "<g data-node=\"$n\"" "$TMP/$d.html" || bad "$d: no node '$n' in the plan graph"
        grep -q "<tr data-node=\"$n\"><td data-field=\"name\">$n</td>" "$TMP/$d.html" ||
            bad "$d: no row for node '$n' in the node table"
    done
done
in1=$(value_of records-in "$TMP/dom1.html")
in2=$(value_of records-in "$TMP/dom2.html")
say "records in: $in1, then $in2"
[[ $in1 =~ ^[0-9]+$ && $in2 =~ ^[0-9]+$ ]] || bad "records-in is not a number in both loads"
[ "$in1" != "$in2" ] || bad "records-in did not change between two loads ($in1)"
grep -q 'id="throughput" data-value="[0-9]' "$TMP/dom2.html" ||
    bad "no throughput figure (two polls within a load give a rate)"

chrome --virtual-time-budget=3000 --window-size=1280,900 --screenshot="$TMP/shot.png" "$URL" \
    >/dev/null
if [ "$(head -c 8 "$TMP/shot.png" 2>/dev/null | od -An -tx1 | tr -d ' \n')" != 89504e470d0a1a0a ]; then
    bad "the screenshot is not a PNG"
elif [ "$(stat -c %s "$TMP/shot.png")" -lt 20000 ]; then
    bad "the screenshot is only $(stat -c %s "$TMP/shot.png") bytes (a blank page?)"
fi

# --- sluice status -----------------------------------------------------------
if "$BIN" status "$URL" --interval 500 >"$TMP/st.txt" 2>"$TMP/st.err"; then
    grep -q '^job window-agg  running' "$TMP/st.txt" || bad "status: no 'job window-agg  running' line"
    grep -q '^totals: [0-9]* in' "$TMP/st.txt" || bad "status: no totals line"
    for n in $names; do
        grep -q "^$n " "$TMP/st.txt" || bad "status: no line for node '$n'"
    done
else
    bad "sluice status $URL failed: $(cat "$TMP/st.err")"
fi
if "$BIN" status "$URL" --json --interval 300 >"$TMP/st.json" 2>"$TMP/st.err"; then
    python3 - "$TMP/st.json" "$names" <<'EOF' || bad "status --json: $(cat "$TMP/st.json")"
import json, sys
doc = json.load(open(sys.argv[1]))
assert doc["job"] == "window-agg", doc["job"]
assert [n["name"] for n in doc["nodes"]] == sys.argv[2].split(), doc["nodes"]
assert all(isinstance(n["rate"], (int, float)) for n in doc["nodes"]), "a node without a rate"
assert isinstance(doc["totals"]["records_in"], int)
EOF
else
    bad "sluice status --json failed: $(cat "$TMP/st.err")"
fi
expect_err() { # expected-status expected-stderr command...
    local want_rc=$1 want=$2
    shift 2
    "$@" >/dev/null 2>"$TMP/e.err"
    local rc=$?
    [ "$rc" = "$want_rc" ] || bad "$* exited $rc, not $want_rc"
    [ "$(cat "$TMP/e.err")" = "$want" ] || bad "$*: said '$(cat "$TMP/e.err")', not '$want'"
}
expect_err 1 "sluice status: ${URL}nope: not a sluice endpoint (HTTP 404)" "$BIN" status "${URL}nope"
closed=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
expect_err 1 "sluice status: cannot reach http://127.0.0.1:$closed: Connection refused" \
    "$BIN" status "http://127.0.0.1:$closed"
expect_err 2 "sluice status: expected one URL (sluice status http://HOST:PORT)" "$BIN" status

# --- token and broker, on the stand-in ---------------------------------------
start_fixture "$TMP/port1" --token s3cret || { say "FAIL: the fixture did not start"; exit 1; }
FX=http://127.0.0.1:$(cat "$TMP/port1")
dom "$FX/?token=s3cret" >"$TMP/dom3.html"
grep -q 'id="conn" class="pill ok">live<' "$TMP/dom3.html" ||
    bad "the page does not pass ?token= on to /api/job"
grep -q '<tr data-topic="clicks" data-partition="2">' "$TMP/dom3.html" ||
    bad "no broker topic partition rows"
grep -q '<tr data-group="window-agg">' "$TMP/dom3.html" || bad "no consumer group rows"
# Offline, with nothing to poll: the page renders and says so, and keeps trying.
dom "file://$SRC/ops/status.html" >"$TMP/dom4.html"
grep -q 'id="conn" class="pill bad">disconnected' "$TMP/dom4.html" ||
    bad "a page with no endpoint does not say disconnected"
printf 's3cret\n' >"$TMP/token"
printf 'wrong\n' >"$TMP/wrong"
"$BIN" status "$FX" --token "$TMP/token" --interval 0 >"$TMP/st3.txt" 2>&1 ||
    bad "status --token: $(cat "$TMP/st3.txt")"
grep -q '^clicks  *2 ' "$TMP/st3.txt" || bad "status: no broker partition lines"
expect_err 1 "sluice status: $FX: unauthorized (HTTP 401): the endpoint needs --token FILE" \
    "$BIN" status "$FX" --interval 0
expect_err 1 "sluice status: $FX: the token in $TMP/wrong was refused (HTTP 401)" \
    "$BIN" status "$FX" --token "$TMP/wrong" --interval 0

[ "$fail" = 0 ] && say "status page: ok"
exit "$fail"
