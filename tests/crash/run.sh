#!/usr/bin/env bash
# tests/crash/run.sh - kill -9 crash trials: exactly-once under SIGKILL.
#
#   bash tests/crash/run.sh [--trials N] [--seed S] [--trial I] [--bin PATH] [--work DIR]
#                  [--scenario NAME] [--guarantee G] [--keep] [--self-test]
#   bash tests/crash/run.sh SLUICE_BIN SOURCE_DIR BUILD_DIR [options]     (ctest's form)
#
# Defaults: 20 trials, seed 1, build/sluice of this tree, a temporary work directory
# (BUILD_DIR/crash-work in ctest's form), removed when all went well (--keep keeps it).
# --guarantee at-least-once runs the same trials without exactly-once: the file and
# topic scenarios then show duplicates (the SQLite sink's upserts stay exact).
#
# Five scenarios, all with --guarantee exactly-once --checkpoint-interval 100ms:
#   window-agg-file   window-agg, CSV file in -> --out FILE (the transactional file sink)
#   window-agg-topic  window-agg, broker topic in -> --out-topic (one broker transaction
#                     per checkpoint), read back with consume --isolation read_committed
#   window-agg-kafka  window-agg through Kafka: `sluice broker serve` (started once, on
#                     port 0) holds the topics, the job reads and writes them with
#                     --kafka (librdkafka; one Kafka transaction per checkpoint, with the
#                     consumed offsets in it), read back with `consume -b` (read_committed)
#   ysb-topic-sqlite  ysb, JSON events of the original benchmark in a topic -> --sqlite DB
#                     --table T (upserts, one SQLite transaction per checkpoint; read with
#                     the sqlite3 shell, else python3's sqlite3 module)
#   saga              the saga job: orchestrator and participants, two pipelines talking
#                     through topics of the built-in broker (in the checkpoint directory),
#                     each checkpointing on its own; --out FILE (the transactional file
#                     sink) holds the outcome lines; besides the lines, the last run's
#                     check line (which reads the participants' committed ledger back:
#                     no step applied twice, none held or kept for an unshipped order)
#                     must be the reference's, "failed: 0, stuck: 0, ledger: consistent"
# Sizes (each run ~1-2 s here): 3M CSV events, 1,000 keys; the file gets 2 s tumbling
# windows, the topic 20 s ones, so that many checkpoints have no output (a sink's empty
# transaction is a case of its own: it found a roll-forward that committed a later
# transaction); ysb 400,000 JSON events into 2 partitions. A sanitizer build gets a
# fifth of the events over the same event time. The saga job runs 3,000 orders at
# fail rate 0.1 and timeout rate 0.05 (~5 s: each round trip waits for two commits).
# Trial i runs scenario i mod 5 (of those this build has; one missing is named on
# stderr and skipped). Per scenario, once per run of this script: the input, and an
# uninterrupted reference run of the same command (timed: T). Per trial, with the
# generator seeded from (S, i): K = 0..3 kills; the job starts in the background with
# a fresh --checkpoint-dir and output, and each of the first K runs gets a SIGKILL
# after a random delay (a quarter very early, 0-30 ms; a quarter in the last fifth of
# the estimated remaining run, where the final checkpoint is taken; the rest anywhere
# in it); after each kill the output committed so far is checked; the job is started
# again with the same --checkpoint-dir until a run exits 0; then once more, which must
# exit 0 and add nothing. The committed output is compared with the reference as
# sorted multisets of lines:
#   duplicates  lines with more copies than in the reference, counting lines that are
#               not in the reference at all ("foreign": torn or invented lines) too;
#               the failure line of the trial names foreign lines separately
#   missing     lines with fewer copies than in the reference
# After a kill the committed output must already be a sub-multiset of the reference
# (its excess counts as duplicates; the trial's figure is the larger of that and the
# final one). A run that exits neither 0 nor by our SIGKILL, or runs longer than
# max(60 s, 20 T), fails the trial with its stderr shown. Last line, exactly:
#   crash trials: N, exact: E, duplicates: D, missing: M
# (D and M summed over the trials); exit 1 unless E = N.
#
# Reproducing: a failed trial's line gives --seed S --trial I; that replays its kill
# schedule (the delays are the same, where the process stands at each is not).
#
# --self-test proves the comparison can fail: window-agg-file with plain runs (no
# checkpoint options; the output to standard output appended to the file, as any
# non-transactional sink), 3 trials with one kill each in the middle of the run; it
# passes (exit 0) only if the harness counts duplicates or missing lines.
# Run by ctest on a build that has no checkpoint options yet, the script runs the
# self-test and exits 77 (ctest: skipped), so the skip is visible.
#
# Invariants of the killer: the job is started directly by this shell (`"$bin" ... &`),
# so $! is the sluice process itself, not a subshell; it is reaped with `wait` on that
# pid, so the pid cannot be reused while we may still signal it; an EXIT/INT/TERM trap
# SIGKILLs and reaps whatever we started that is still running. Nothing is timed by
# polling: `wait -n` returns at the first of the job's end and the delay's sleep.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=$(cd "$here/../.." && pwd)
bin=""
work=""
trials=20
seed=1
only_trial=""
only_scen=""
guarantee=exactly-once
keep=0
selftest=0
ctest_mode=0

usage() {
    sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}
die() {
    echo "crash trials: $*" >&2
    exit 2
}
# The ctest convention: bash run.sh SLUICE_BIN SOURCE_DIR BUILD_DIR [options].
if [ $# -ge 3 ] && [ "${1#-}" = "$1" ]; then
    bin=$1
    work=$3/crash-work
    ctest_mode=1
    shift 3
fi
while [ $# -gt 0 ]; do
    case $1 in
    --trials) trials=${2:-}; shift 2 || die "--trials needs a number" ;;
    --seed) seed=${2:-}; shift 2 || die "--seed needs a number" ;;
    --trial) only_trial=${2:-}; shift 2 || die "--trial needs a number" ;;
    --bin) bin=${2:-}; shift 2 || die "--bin needs a path" ;;
    --work) work=${2:-}; shift 2 || die "--work needs a directory" ;;
    --scenario) only_scen=${2:-}; shift 2 || die "--scenario needs a name" ;;
    --guarantee) guarantee=${2:-}; shift 2 || die "--guarantee needs a value" ;;
    --keep) keep=1; shift ;;
    --self-test) selftest=1; shift ;;
    --ctest) ctest_mode=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown option '$1' (bash tests/crash/run.sh --help)" ;;
    esac
done
[[ $trials =~ ^[0-9]+$ ]] && [ "$trials" -ge 1 ] || die "--trials needs a number >= 1, not '$trials'"
[[ $seed =~ ^[0-9]+$ ]] || die "--seed needs a number, not '$seed'"
[ -z "$only_trial" ] || [[ $only_trial =~ ^[0-9]+$ ]] || die "--trial needs a number, not '$only_trial'"
[ -n "$bin" ] || bin=$src/build/sluice
[ -x "$bin" ] || die "no sluice binary at '$bin' (build first, or give --bin PATH)"
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
((BASH_VERSINFO[0] > 5 || (BASH_VERSINFO[0] == 5 && BASH_VERSINFO[1] >= 1))) ||
    die "needs bash >= 5.1 (wait -n -p), this is $BASH_VERSION"

# The work directory: made here, marked, and only a marked (or empty) one is emptied.
if [ -z "$work" ]; then
    work=$(mktemp -d "${TMPDIR:-/tmp}/sluice-crash.XXXXXX") || die "cannot make a work directory"
else
    # (BUILD_DIR/crash-work of the ctest form is ours whatever is in it)
    if [ "$ctest_mode" = 0 ] && [ -e "$work" ] && [ ! -e "$work/.sluice-crash-work" ] &&
        [ -n "$(ls -A "$work" 2>/dev/null)" ]; then
        die "--work '$work' exists and is not a crash work directory (not emptied)"
    fi
    rm -rf "$work"
    mkdir -p "$work" || die "cannot make the work directory '$work'"
fi
: >"$work/.sluice-crash-work"
export SLUICE_DIR=$work/broker

# --- the processes we started ------------------------------------------------------------
# The traps run in this shell only: a child forked for `cmd &` holds them until it
# execs, and must neither signal nor remove anything if it is signalled in between.
main_pid=$BASHPID
job_pid=""
sleep_pid=""
server_pid=""
cleanup() {
    [ "$BASHPID" = "$main_pid" ] || return 0
    local p
    for p in $job_pid $sleep_pid $server_pid; do
        kill -9 "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    job_pid=""
    sleep_pid=""
    server_pid=""
}
on_exit() {
    local rc=$?
    [ "$BASHPID" = "$main_pid" ] || return 0
    cleanup
    if [ "$keep" = 0 ] && { [ "$rc" = 0 ] || [ "$rc" = 77 ]; }; then rm -rf "$work"; fi
    if [ "$rc" != 0 ] && [ "$rc" != 77 ]; then echo "crash trials: work directory kept: $work" >&2; fi
}
trap on_exit EXIT
trap '[ "$BASHPID" = "$main_pid" ] || exit 1; cleanup; exit 130' INT
trap '[ "$BASHPID" = "$main_pid" ] || exit 1; cleanup; exit 143' TERM

now_ms() { echo $(($(date +%s%N) / 1000000)); }
secs() { printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)); }

# run_job LOG DELAY_MS|"" ARGS...: start `sluice ARGS` in the background, its stdout
# appended to LOG.out (the self-test's plain sink) and stderr to LOG.err. With a delay,
# SIGKILL it after DELAY_MS unless it ended first; without, wait for it at most
# $limit_ms (then SIGKILL it and report a hang). Sets run_status (its exit status,
# 137 for our SIGKILL), run_killed (1 if our SIGKILL ended it), run_ms.
run_job() {
    local log=$1 delay=$2 t0 first
    shift 2
    t0=$(now_ms)
    "$bin" "$@" >>"$log.out" 2>>"$log.err" &
    job_pid=$!
    if [ -n "$delay" ]; then sleep "$(secs "$delay")" & else sleep "$(secs "$limit_ms")" & fi
    sleep_pid=$!
    first=""
    wait -n -p first "$job_pid" "$sleep_pid" 2>/dev/null
    local st=$?
    run_killed=0
    if [ "$first" = "$job_pid" ]; then
        run_status=$st
        kill -9 "$sleep_pid" 2>/dev/null
        wait "$sleep_pid" 2>/dev/null
    else
        wait "$sleep_pid" 2>/dev/null
        kill -9 "$job_pid" 2>/dev/null
        wait "$job_pid" 2>/dev/null # (no "Killed" notice)
        run_status=$?
        # 137 only if the signal ended it; it may have exited on its own just before.
        if [ "$run_status" = 137 ]; then
            if [ -n "$delay" ]; then run_killed=1; else run_status=hang; fi
        fi
    fi
    job_pid=""
    sleep_pid=""
    run_ms=$(($(now_ms) - t0))
}

# compare REF GOT: prints "DUP MISSING FOREIGN" for two files of lines (multisets).
compare() {
    awk 'NR == FNR { ref[$0]++; next }
         { got[$0]++ }
         END {
             d = 0; m = 0; f = 0
             for (k in got) {
                 r = (k in ref) ? ref[k] : 0
                 if (got[k] > r) d += got[k] - r
                 if (r == 0) f += got[k]
             }
             for (k in ref) { g = (k in got) ? got[k] : 0; if (g < ref[k]) m += ref[k] - g }
             print d, m, f
         }' "$1" "$2"
}

has() { # has TEXT WORD: WORD occurs in TEXT (no pipes: pipefail and grep -q do not mix)
    [[ $1 == *"$2"* ]]
}

# --- scenarios ---------------------------------------------------------------------------
# Each scenario NAME has: avail_NAME (prints why not, returns 1), prep_NAME (input, once),
# fresh_NAME DIR (a new empty output for a run), args_NAME DIR CKDIR (the command line,
# into the array cmd), read_NAME DIR (the committed output's lines on stdout); optional:
# plain_NAME DIR (the same job without checkpoints, its lines into DIR/plain) and
# check_NAME DIR (a check of the finished trial: prints why not and fails).

# accepts ARGS...: this build takes these options (each before --help, which ends the
# parse with status 0; an unknown option is a usage error first).
accepts() { "$bin" "$@" --help >/dev/null 2>&1; }
ck_opts=(--guarantee "$guarantee" --checkpoint-interval 100ms)

# window-agg: 1,000 keys, sum; out of order by up to 50 ms, and a delay of 50 ms, so
# no record is late and the output is fully determined. 3M events (150 s of event
# time, whatever the count): ~1-2 s uninterrupted. Into the file 2 s tumbling windows (75,000 lines,
# output between most barriers); into the topic 20 s ones (8,000 lines; a window
# fires about every 400,000 events, so many checkpoints have no output: a sink's
# empty transaction is a case of its own, which found a bug).
# A sanitizer build (`sluice --version` says so) is ~5x slower: a fifth of the input.
# CRASH_WA_EVENTS and CRASH_YSB_EVENTS override the sizes.
shrink=1
version=$("$bin" --version 2>&1)
if has "$version" sanitizer; then shrink=5; fi
WA_EVENTS=${CRASH_WA_EVENTS:-$((3000000 / shrink))}
wa_job=(--window tumbling:2s --agg sum --delay 50)
wa_job_topic=(--window tumbling:20s --agg sum --delay 50)
wa_gen=(run generate --events "$WA_EVENTS" --keys 1000 --rate $((20000 * WA_EVENTS / 3000000 + 1)) --disorder 50)

avail_window_agg_file() {
    accepts run window-agg --checkpoint-dir x "${ck_opts[@]}" ||
        { echo "sluice run window-agg takes no --checkpoint-dir / --guarantee"; return 1; }
}
prep_window_agg_file() {
    "$bin" "${wa_gen[@]}" >"$work/events.csv" 2>"$work/gen.err" ||
        { cat "$work/gen.err" >&2; return 1; }
}
fresh_window_agg_file() { :; }
plain_window_agg_file() { "$bin" run window-agg --input "$work/events.csv" "${wa_job[@]}" >"$1/plain"; }
# The file scenario captures state in a forked child (--checkpoint-capture fork, as
# Redis's BGSAVE), so that path is killed at random moments too; the others capture
# on the task's thread.
fork_opt=()
if accepts run window-agg --checkpoint-dir x --checkpoint-capture fork; then
    fork_opt=(--checkpoint-capture fork)
fi
args_window_agg_file() {
    cmd=(run window-agg --input "$work/events.csv" "${wa_job[@]}" --out "$1/out.txt"
        --checkpoint-dir "$2" "${ck_opts[@]}" "${fork_opt[@]}")
}
read_window_agg_file() { [ ! -e "$1/out.txt" ] || cat "$1/out.txt"; }

avail_window_agg_topic() {
    avail_window_agg_file || return 1
    accepts run window-agg --out-topic x || { echo "sluice run window-agg has no --out-topic"; return 1; }
    accepts consume --isolation read_committed || { echo "sluice consume has no --isolation"; return 1; }
}
prep_window_agg_topic() {
    "$bin" topic create crash-in --partitions 4 >/dev/null 2>"$work/topic.err" &&
        "$bin" "${wa_gen[@]}" --topic crash-in 2>"$work/gen.err" ||
        { cat "$work/topic.err" "$work/gen.err" >&2; return 1; }
}
fresh_window_agg_topic() {
    local t
    t=out-$(basename "$1")
    echo "$t" >"$1/topic"
    "$bin" topic create "$t" --partitions 2 >/dev/null
}
args_window_agg_topic() {
    cmd=(run window-agg --topic crash-in "${wa_job_topic[@]}" --out-topic "$(cat "$1/topic")"
        --checkpoint-dir "$2" "${ck_opts[@]}")
}
read_window_agg_topic() {
    "$bin" consume "$(cat "$1/topic")" --isolation read_committed -e -f '%s\n'
}

# window-agg through Kafka: the same input and job as window-agg-topic, on sluice's own
# Kafka server (one for the whole script, over its own directory).
kafka=""
start_server() {
    [ -z "$kafka" ] || return 0
    mkdir -p "$work/kbroker"
    "$bin" broker serve --dir "$work/kbroker" --listen 127.0.0.1:0 2>"$work/serve.err" &
    server_pid=$!
    local port="" k
    for k in $(seq 1 600); do
        port=$(sed -n 's/.* on port \([0-9][0-9]*\)$/\1/p' "$work/serve.err")
        [ -n "$port" ] && break
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.05
    done
    [ -n "$port" ] || { echo "crash trials: sluice broker serve did not start: $(cat "$work/serve.err")" >&2; return 1; }
    kafka=127.0.0.1:$port
}
avail_window_agg_kafka() {
    avail_window_agg_topic || return 1
    accepts run window-agg --kafka 127.0.0.1:1 --topic x --out-topic y || { echo "sluice run window-agg has no --kafka"; return 1; }
}
prep_window_agg_kafka() {
    start_server || return 1
    "$bin" topic create crash-kin --partitions 4 -b "$kafka" >/dev/null 2>"$work/topic.err" &&
        "$bin" "${wa_gen[@]}" --topic crash-kin --kafka "$kafka" 2>"$work/gen.err" ||
        { cat "$work/topic.err" "$work/gen.err" >&2; return 1; }
}
fresh_window_agg_kafka() {
    local t
    t=kout-$(basename "$1")
    echo "$t" >"$1/topic"
    "$bin" topic create "$t" --partitions 2 -b "$kafka" >/dev/null
}
args_window_agg_kafka() {
    cmd=(run window-agg --kafka "$kafka" --topic crash-kin "${wa_job_topic[@]}"
        --out-topic "$(cat "$1/topic")" --checkpoint-dir "$2" "${ck_opts[@]}")
}
read_window_agg_kafka() {
    "$bin" consume "$(cat "$1/topic")" -b "$kafka" -e -f '%s\n'
}

# ysb: JSON events as the original benchmark writes them, in order (event time 1 ms
# apart, more when there are fewer: 400 s in all), a third of them views; 100
# campaigns x 10 s windows: 4,000 rows.
YSB_EVENTS=${CRASH_YSB_EVENTS:-$((400000 / shrink))}
sqlite_read=""
if command -v sqlite3 >/dev/null 2>&1; then
    sqlite_read=sqlite3
elif command -v python3 >/dev/null 2>&1 && python3 -c 'import sqlite3' 2>/dev/null; then
    sqlite_read=python3
fi
avail_ysb_topic_sqlite() {
    accepts run ysb --checkpoint-dir x "${ck_opts[@]}" ||
        { echo "sluice run ysb takes no --checkpoint-dir / --guarantee"; return 1; }
    accepts run ysb --topic x || { echo "sluice run ysb has no --topic"; return 1; }
    accepts run ysb --sqlite x --table t || { echo "sluice run ysb has no --sqlite / --table"; return 1; }
    [ -n "$sqlite_read" ] || { echo "neither sqlite3 nor python3's sqlite3 to read the table"; return 1; }
}
prep_ysb_topic_sqlite() {
    "$bin" topic create crash-ysb --partitions 2 >/dev/null 2>"$work/topic.err" ||
        { cat "$work/topic.err" >&2; return 1; }
    awk -v n="$YSB_EVENTS" -v step=$((400000 / YSB_EVENTS + (400000 % YSB_EVENTS > 0))) 'BEGIN {
        split("view click purchase", type, " ")
        for (i = 0; i < n; i++)
            printf "{\"user_id\": \"u%d\", \"page_id\": \"p%d\", \"ad_id\": \"%d\", " \
                   "\"ad_type\": \"banner\", \"event_type\": \"%s\", \"event_time\": \"%.0f\", " \
                   "\"ip_address\": \"1.2.3.4\"}\n", i % 5003, i % 7001, (i * 7919 + 13) % 1000,
                   type[(i * 31 + int(i / 7)) % 3 + 1], 1600000000000 + i * step
    }' | "$bin" produce crash-ysb 2>"$work/produce.err" || { cat "$work/produce.err" >&2; return 1; }
}
fresh_ysb_topic_sqlite() { :; }
args_ysb_topic_sqlite() {
    cmd=(run ysb --topic crash-ysb --sqlite "$1/out.db" --table results
        --checkpoint-dir "$2" "${ck_opts[@]}")
}
# Every column but those that name a checkpoint (the id a transaction records may
# differ between runs), in column order, comma-separated, one row a line.
read_ysb_topic_sqlite() {
    [ -e "$1/out.db" ] || return 0
    if [ "$sqlite_read" = sqlite3 ]; then
        local cols
        cols=$(sqlite3 "$1/out.db" "SELECT group_concat(quote(name), ',') FROM pragma_table_info('results') WHERE name NOT LIKE '%checkpoint%';") ||
            return 1
        [ -n "$cols" ] || return 0
        sqlite3 -separator , "$1/out.db" "SELECT ${cols//\'/\"} FROM results;"
    else
        python3 - "$1/out.db" <<'EOF'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
cols = [r[1] for r in c.execute("PRAGMA table_info('results')") if "checkpoint" not in r[1].lower()]
if cols:
    for row in c.execute("SELECT %s FROM results" % ",".join('"%s"' % x for x in cols)):
        print(",".join("" if v is None else str(v) for v in row))
EOF
    fi
}

# saga: --fail-rate 0.1 --timeout-rate 0.05, so that retries, timeouts and
# compensations are all crossed by kills. Scenario hook check_saga: the last check line.
SAGA_ORDERS=${CRASH_SAGA_ORDERS:-3000}
saga_job=(run saga --orders "$SAGA_ORDERS" --fail-rate 0.1 --timeout-rate 0.05 --seed 7)
avail_saga() {
    accepts run saga --orders 1 --checkpoint-dir x "${ck_opts[@]}" ||
        { echo "sluice run saga is missing, or takes no --checkpoint-dir / --guarantee"; return 1; }
}
prep_saga() { :; }
fresh_saga() { :; }
args_saga() { cmd=("${saga_job[@]}" --out "$1/out.txt" --checkpoint-dir "$2" "${ck_opts[@]}"); }
read_saga() { [ ! -e "$1/out.txt" ] || cat "$1/out.txt"; }
plain_saga() { "$bin" "${saga_job[@]}" --out "$1/plain" >"$1/plain.check"; }
check_saga() { # DIR: prints why not and fails unless its last check line is the reference's
    local want got
    want=$(tail -n 1 "$work/ref-saga/run.out")
    got=$(tail -n 1 "$1/run.out")
    [ "$got" = "$want" ] || { echo "the last check line is '$got', not the reference's '$want'"; return 1; }
}

all_scens=(window_agg_file window_agg_topic window_agg_kafka ysb_topic_sqlite saga)

# ref_NAME: the reference output (sorted) and its time, made once.
declare -A ref_ms=()
make_reference() { # NAME
    local s=$1 d=$work/ref-$1
    mkdir -p "$d"
    "fresh_$s" "$d" || return 1
    "args_$s" "$d" "$d/ck"
    limit_ms=600000
    : >"$d/run.out"
    : >"$d/run.err"
    run_job "$d/run" "" "${cmd[@]}"
    if [ "$run_status" != 0 ]; then
        echo "crash trials: $s: the reference run failed (status $run_status): sluice ${cmd[*]}" >&2
        tail -n 20 "$d/run.err" >&2
        return 1
    fi
    ref_ms[$s]=$run_ms
    "read_$s" "$d" >"$d/lines" || { echo "crash trials: $s: cannot read the reference output" >&2; return 1; }
    if [ ! -s "$d/lines" ]; then
        echo "crash trials: $s: the reference run wrote nothing" >&2
        return 1
    fi
    # The exactly-once sink must not change the result: the same lines as a plain run
    # (scenarios with a plain_NAME DIR hook, which writes DIR/plain).
    if declare -F "plain_$s" >/dev/null; then
        "plain_$s" "$d" 2>"$d/plain.err" || { cat "$d/plain.err" >&2; return 1; }
        local c
        c=$(compare "$d/plain" "$d/lines")
        if [ "$c" != "0 0 0" ]; then
            echo "crash trials: $s: the uninterrupted exactly-once run differs from a plain run (duplicates missing foreign: $c)" >&2
            return 1
        fi
    fi
    # The saga job: and a clean check line, the plain run's.
    if [ "$s" = saga ]; then
        local line
        line=$(tail -n 1 "$d/run.out")
        if [[ $line != *", failed: 0, stuck: 0, ledger: consistent" ]] || [ "$line" != "$(tail -n 1 "$d/plain.check")" ]; then
            echo "crash trials: $s: the reference's check line is '$line', the plain run's '$(tail -n 1 "$d/plain.check")'" >&2
            return 1
        fi
    fi
    echo "crash trials: $s: reference $(wc -l <"$d/lines") lines in $(secs "$run_ms") s" >&2
}

# pick_delay REMAINING_MS: a kill delay (ms) from $RANDOM.
pick_delay() {
    local rem=$1
    pick_kind=$((RANDOM % 4))
    case $pick_kind in
    0) pick_ms=$((RANDOM % 31)) ;;                                          # very early
    1) pick_ms=$((rem * 80 / 100 + RANDOM * (rem * 25 / 100 + 1) / 32768)) ;; # the end: final checkpoint
    *) pick_ms=$((RANDOM * (rem + 1) / 32768)) ;;                           # anywhere
    esac
}
kills_early=0 kills_end=0 kills_mid=0 kills_missed=0

# trial I SCEN: sets t_dup t_miss t_foreign t_ok, prints a line on failure.
trial() {
    local i=$1 s=$2 d=$work/trial-$1 T=${ref_ms[$2]}
    RANDOM=$((seed * 100003 + i))
    local nk=$((RANDOM % 4)) kills=0 runs=0 done_ms=0 why="" sched="" c
    mkdir -p "$d"
    : >"$d/run.out"
    : >"$d/run.err"
    "fresh_$s" "$d" || { why="cannot make the output"; }
    "args_$s" "$d" "$d/ck"
    limit_ms=$((T * 20 > 60000 ? T * 20 : 60000))
    local idup=0 ifor=0
    while [ -z "$why" ]; do
        runs=$((runs + 1))
        if [ $runs -gt $((nk + 1)) ]; then
            # every kill is spent: this run is plain; more runs mean a run exited 137 on its own
            why="run $runs: more runs than kills + 1"
            break
        fi
        local delay=""
        if [ $kills -lt "$nk" ]; then
            local rem=$((T - done_ms))
            [ $rem -gt $((T / 10)) ] || rem=$((T / 10))
            pick_delay "$rem"
            delay=$pick_ms
        fi
        echo "--- run $runs${delay:+, kill after $delay ms}" >>"$d/run.err"
        run_job "$d/run" "$delay" "${cmd[@]}"
        if [ -n "$delay" ] && [ "$run_killed" = 0 ]; then kills_missed=$((kills_missed + 1)); fi
        if [ -z "$delay" ] && [ $runs = 1 ] && [ "$run_status" = 0 ]; then
            ref_ms[$s]=$(((ref_ms[$s] + run_ms) / 2)) # an uninterrupted run: better estimate of T
        fi
        if [ "$run_killed" = 1 ]; then
            kills=$((kills + 1))
            case $pick_kind in 0) kills_early=$((kills_early + 1)) ;; 1) kills_end=$((kills_end + 1)) ;; *) kills_mid=$((kills_mid + 1)) ;; esac
            sched+="${sched:+ }${delay}ms"
            done_ms=$((done_ms + run_ms))
            "read_$s" "$d" >"$d/partial" 2>>"$d/run.err" || { why="cannot read the output after kill $kills"; break; }
            read -r pd _ pf <<<"$(compare "$work/ref-$s/lines" "$d/partial")"
            if [ "$pd" -gt "$idup" ]; then idup=$pd; ifor=$pf; fi
            continue
        fi
        if [ "$run_status" = hang ]; then
            why="run $runs did not end within $(secs "$limit_ms") s (killed)"
        elif [ "$run_status" != 0 ]; then
            why="run $runs exited $run_status"
        fi
        break
    done
    if [ -z "$why" ]; then
        # A finished job took and committed a final checkpoint: again, it does nothing.
        "read_$s" "$d" >"$d/lines" 2>>"$d/run.err" || why="cannot read the output"
        echo "--- run again after it finished" >>"$d/run.err"
        run_job "$d/run" "" "${cmd[@]}"
        if [ "$run_status" != 0 ]; then
            why="the run after the finished one exited $run_status"
        else
            "read_$s" "$d" >"$d/again" 2>>"$d/run.err" || why="cannot read the output"
            if [ -z "$why" ] && ! cmp -s <(sort "$d/lines") <(sort "$d/again"); then
                why="the run after the finished one changed the output"
                cp "$d/again" "$d/lines"
            fi
            if [ -z "$why" ] && declare -F "check_$s" >/dev/null; then
                why=$("check_$s" "$d") && why=""
            fi
        fi
    fi
    t_dup=0 t_miss=0 t_foreign=0
    if [ -s "$d/lines" ] || [ -z "$why" ]; then
        read -r t_dup t_miss t_foreign <<<"$(compare "$work/ref-$s/lines" "$d/lines")"
    fi
    if [ "$idup" -gt "$t_dup" ]; then t_dup=$idup; t_foreign=$ifor; fi
    t_ok=0
    if [ -z "$why" ] && [ "$t_dup" = 0 ] && [ "$t_miss" = 0 ]; then t_ok=1; fi
    if [ $t_ok = 0 ]; then
        printf 'crash trial %d FAILED: %s, %d kill(s)%s, %d runs: %s%d duplicates (%d foreign), %d missing%s; reproduce: bash tests/crash/run.sh --seed %d --trial %s\n' \
            "$i" "${s//_/-}" "$kills" "${sched:+ at $sched}" "$runs" "${why:+$why; }" \
            "$t_dup" "$t_foreign" "$t_miss" "$([ "$idup" -gt 0 ] && echo ", committed output had $idup excess lines after a kill")" "$seed" "$i$repro"
        if [ -n "$why" ]; then
            echo "  stderr of its runs ($d/run.err), last 20 lines:"
            tail -n 20 "$d/run.err" | sed 's/^/  /'
        fi
    fi
}

# --- self-test -------------------------------------------------------------------------
self_test() {
    echo "crash self-test: window-agg-file, plain runs (no checkpoints), output appended" >&2
    prep_window_agg_file || exit 1
    local d=$work/self-ref
    mkdir -p "$d"
    : >"$d/run.out"
    : >"$d/run.err"
    limit_ms=600000
    local plain=(run window-agg --input "$work/events.csv" "${wa_job[@]}")
    run_job "$d/run" "" "${plain[@]}"
    [ "$run_status" = 0 ] || { echo "crash self-test: the reference run failed" >&2; cat "$d/run.err" >&2; exit 1; }
    local T=$run_ms n=3 e=0 dd=0 mm=0 k
    for k in 1 2 3; do
        local t=$work/self-$k
        mkdir -p "$t"
        : >"$t/run.out"
        : >"$t/run.err"
        RANDOM=$((seed * 100003 + k))
        local delay=$((T * 3 / 10 + RANDOM * (T * 4 / 10) / 32768))
        run_job "$t/run" "$delay" "${plain[@]}"
        local killed=$run_killed
        run_job "$t/run" "" "${plain[@]}"
        [ "$run_status" = 0 ] || { echo "crash self-test: a plain run failed" >&2; cat "$t/run.err" >&2; exit 1; }
        read -r a b f <<<"$(compare "$d/run.out" "$t/run.out")"
        echo "crash self-test $k: kill after $delay ms (killed: $killed): $a duplicates ($f foreign), $b missing" >&2
        dd=$((dd + a))
        mm=$((mm + b))
        if [ "$a" = 0 ] && [ "$b" = 0 ]; then e=$((e + 1)); fi
    done
    echo "crash self-test trials: $n, exact: $e, duplicates: $dd, missing: $mm"
    if [ "$e" -lt "$n" ] && [ $((dd + mm)) -gt 0 ]; then
        echo "crash self-test: passed: without checkpoints the harness sees the damage of a kill"
        return 0
    fi
    echo "crash self-test: FAILED: kills without checkpoints went unnoticed"
    return 1
}

if [ "$selftest" = 1 ]; then
    self_test
    exit $?
fi

# --- the trials ---------------------------------------------------------------------------
repro=""
[ "$guarantee" = exactly-once ] || repro+=" --guarantee $guarantee"
[ -z "$only_scen" ] || repro+=" --scenario $only_scen"
scens=()
for s in "${all_scens[@]}"; do
    if [ -n "$only_scen" ] && [ "$only_scen" != "$s" ] && [ "$only_scen" != "${s//_/-}" ]; then continue; fi
    if why=$("avail_$s"); then
        scens+=("$s")
    else
        echo "crash trials: scenario ${s//_/-} skipped: $why" >&2
    fi
done
if [ ${#scens[@]} = 0 ]; then
    if [ -n "$only_scen" ] && ! has " ${all_scens[*]} ${all_scens[*]//_/-} " " $only_scen "; then
        die "unknown scenario '$only_scen' (window-agg-file, window-agg-topic, window-agg-kafka, ysb-topic-sqlite, saga)"
    fi
    echo "crash trials: no scenario can run on this build" >&2
    if [ "$ctest_mode" = 1 ]; then
        self_test || exit 1
        exit 77
    fi
    exit 1
fi

first=0
last=$((trials - 1))
if [ -n "$only_trial" ]; then first=$only_trial last=$only_trial; fi
declare -A prepared=()
n=0 exact=0 dups=0 miss=0
for ((i = first; i <= last; i++)); do
    s=${scens[$((i % ${#scens[@]}))]}
    if [ -z "${prepared[$s]:-}" ]; then
        "prep_$s" || { echo "crash trials: $s: cannot make the input" >&2; exit 1; }
        make_reference "$s" || exit 1
        prepared[$s]=1
    fi
    trial "$i" "$s"
    n=$((n + 1))
    exact=$((exact + t_ok))
    dups=$((dups + t_dup))
    miss=$((miss + t_miss))
    [ "$keep" = 1 ] || [ "$t_ok" = 0 ] || rm -rf "$work/trial-$i"
done
echo "crash trials: kills: $kills_early very early, $kills_mid mid-run, $kills_end near the end; $kills_missed came after the run had ended" >&2
echo "crash trials: $n, exact: $exact, duplicates: $dups, missing: $miss"
[ "$exact" = "$n" ]
