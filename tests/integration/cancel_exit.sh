#!/usr/bin/env bash
# A canceled job does not present partial results as complete (issue 8,
# item 6). window-agg reads an endless stream (1000 records per 1 s window);
# once it has printed its first window (read from a pipe: no sleeps), it
# gets SIGINT, resp. SIGTERM. Then:
#   - the exit status is 130, resp. 143 (128 + signal, as shells report);
#   - every window it printed is complete (count 1000): the window that the
#     input did not complete is not fired with a partial count;
#   - stderr says the job was canceled and that incomplete windows were
#     not emitted.
# The same holds when the input is silent: a job waiting on a pipe that
# says nothing ends on SIGTERM (see silent below).
# Run by ctest as: bash cancel_exit.sh SLUICE_BIN SOURCE_DIR BUILD_DIR
set -euo pipefail
S=$1
tmp=$(mktemp -d)
pid=
cleanup() {
    [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
    echo "FAIL: $*" >&2
    exit 1
}

trial() { # SIGNAL EXPECTED_STATUS
    local sig=$1 want=$2
    rm -f "$tmp/out" "$tmp/err"
    mkfifo "$tmp/out"
    # $! of a background pipeline is its last command: sluice itself
    awk 'BEGIN { for (i = 0; ; i++) print i ",k,1" }' |
        "$S" run window-agg --window tumbling:1s >"$tmp/out" 2>"$tmp/err" &
    pid=$!
    exec 4<"$tmp/out"
    local first
    read -r -t 60 first <&4 || fail "$sig: no first window"
    [ "$first" = "0,1000,k,1000" ] || fail "$sig: first window '$first'"
    kill "-$sig" "$pid"
    local rest
    rest=$(cat <&4)
    exec 4<&-
    local rc=0
    wait "$pid" || rc=$?
    pid=
    [ "$rc" = "$want" ] || fail "$sig: exit status $rc, want $want; stderr: $(cat "$tmp/err")"
    # every window printed holds its 1000 records; none is partial
    local bad
    bad=$(printf '%s\n' "$rest" | awk -F, 'NF && $4 != 1000' | head -3)
    [ -z "$bad" ] || fail "$sig: partial window(s) emitted after cancel: $bad"
    grep -q "canceled by SIG$sig" "$tmp/err" || fail "$sig: stderr does not say canceled: $(cat "$tmp/err")"
    grep -q "not emitted" "$tmp/err" || fail "$sig: stderr does not say what was not emitted"
    grep -q " in, .* out, " "$tmp/err" || fail "$sig: no summary line"
    echo "ok: $sig -> $rc, $(printf '%s\n' "$rest" | grep -c . || true) more complete windows"
}

trial INT 130
trial TERM 143

# A silent input: the job has read its lines and waits for more on a pipe
# whose writer (a FIFO held open by this shell) says nothing; SIGTERM still
# ends it at once, before the input does (the lines source polls the pipe
# instead of blocking in read(2)). Exit status 143, the windows the input
# completed printed, the open one not.
silent() {
    rm -f "$tmp/out" "$tmp/err" "$tmp/in"
    mkfifo "$tmp/in"
    "$S" run window-agg --window tumbling:1s --input "$tmp/in" >"$tmp/out" 2>"$tmp/err" &
    pid=$!
    exec 5>"$tmp/in"
    printf '0,k,1\n500,k,1\n1500,k,1\n' >&5
    local i
    for i in $(seq 1 600); do # until the first window is out (no speed asserted)
        [ -s "$tmp/out" ] && break
        sleep 0.05
    done
    [ "$(cat "$tmp/out")" = "0,1000,k,2" ] || fail "silent input: output '$(cat "$tmp/out")'"
    kill -TERM "$pid"
    local rc=0
    for i in $(seq 1 600); do # a hang guard: the input never ends while fd 5 is open
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    kill -0 "$pid" 2>/dev/null && fail "silent input: SIGTERM did not end the job"
    wait "$pid" || rc=$?
    pid=
    exec 5>&-
    [ "$rc" = 143 ] || fail "silent input: exit status $rc; stderr: $(cat "$tmp/err")"
    [ "$(cat "$tmp/out")" = "0,1000,k,2" ] || fail "silent input: a partial window was emitted"
    echo "ok: silent input, SIGTERM -> $rc"
}
silent
