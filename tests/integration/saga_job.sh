#!/usr/bin/env bash
# tests/integration/saga_job.sh - the bundled job saga (examples/job_saga.c, its file-top
# comment and `sluice run saga --help`):
#   - the example `--orders 10000 --fail-rate 0.1 --timeout-rate 0.05 --seed 7`: exit 0, the
#     last stdout line is the check line (failed: 0, stuck: 0, ledger: consistent,
#     completed + compensated = sagas), one outcome line per order id 1..N, the ledger lines
#     agree with the counts, and stderr is the one summary line;
#   - the same sorted outcomes whatever --threads / --parallelism, for two seeds, at those
#     rates and at high ones;
#   - no faults: every order `ID,completed,3`; with faults every outcome the job can produce
#     (completed,3 and compensated with 0, 1 and 2 steps) and never failed-to-compensate;
#   - --out FILE: the outcome lines in FILE, only the ledger and check lines on stdout;
#   - --checkpoint-dir: the same outcomes as the plain run; a rerun resumes from the final
#     checkpoint, prints the same report and leaves FILE as it was; a run killed (-9) midway
#     and rerun ends with the same outcomes; a resume with other options (or of a
#     directory without the job's saga.job, or whose topics are gone) is refused;
#   - usage errors: exit 2 and one stderr line naming the problem; --help exits 0.
#
# Run by ctest as: bash saga_job.sh SLUICE_BIN [SOURCE_DIR BUILD_DIR]
set -euo pipefail
bin=$(realpath "$1")
tmp=$(mktemp -d)
bg=
cleanup() {
  if [ -n "$bg" ]; then kill -9 "$bg" 2> /dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
  echo "saga_job: $*" >&2
  exit 1
}
unset SLUICE_DIR
cd "$tmp"

check_re='^sagas: [0-9]+, completed: [0-9]+, compensated: [0-9]+, failed: 0, stuck: 0, ledger: consistent$'
outcome_re='^[0-9]+,(completed|compensated|failed-to-compensate|failed-forward),[0-9]+$'

# outcomes FILE: the outcome lines of a run's stdout (or of an --out file), sorted.
outcomes() { grep -E "$outcome_re" "$1" | LC_ALL=C sort || true; }

# report FILE: the ledger and check lines of a run's stdout.
report() { grep -E '^(ledger |sagas: )' "$1" || true; }

# field FILE NAME: the number after "NAME " in FILE's line matching it (ledger and check lines).
field() { sed -n "s/^\(.*[ ]\)\{0,1\}$2:\{0,1\} \([0-9][0-9]*\).*/\2/p" "$1" | head -n 1; }

# check_run NAME N STDOUT [OUTCOMES]: the report in STDOUT is consistent for N orders, with
# one outcome line per id 1..N in OUTCOMES (default STDOUT), counted as the check line says
# and the ledger lines agree.
check_run() {
  local name=$1 n=$2 so=$3 oc=${4:-$3}
  local last c k comp0 comp1 comp2 completed
  last=$(tail -n 1 "$so")
  grep -qE "$check_re" <<< "$last" || fail "$name: last stdout line is '$last'"
  [ "$(field "$so" sagas)" = "$n" ] || fail "$name: check line '$last', want sagas: $n"
  c=$(field "$so" completed)
  k=$(field "$so" compensated)
  [ $((c + k)) -eq "$n" ] || fail "$name: completed $c + compensated $k != $n"
  outcomes "$oc" > "$name.sorted"
  [ "$(wc -l < "$name.sorted")" -eq "$n" ] || fail "$name: $(wc -l < "$name.sorted") outcome lines, want $n"
  cut -d, -f1 "$name.sorted" | sort -n > "$name.ids"
  seq 1 "$n" | cmp -s - "$name.ids" || fail "$name: the outcome ids are not 1..$n, each once"
  completed=$(grep -c ',completed,3$' "$name.sorted" || true)
  comp0=$(grep -c ',compensated,0$' "$name.sorted" || true)
  comp1=$(grep -c ',compensated,1$' "$name.sorted" || true)
  comp2=$(grep -c ',compensated,2$' "$name.sorted" || true)
  [ "$completed" -eq "$c" ] || fail "$name: $completed lines ID,completed,3, the check line says $c"
  [ $((comp0 + comp1 + comp2)) -eq "$k" ] ||
    fail "$name: compensated lines with 0..2 steps: $((comp0 + comp1 + comp2)), the check line says $k"
  ! grep -qvE ',(completed,3|compensated,[012])$' "$name.sorted" ||
    fail "$name: unexpected outcome: $(grep -vE ',(completed,3|compensated,[012])$' "$name.sorted" | head -n 3)"
  # The ledger: every completed order holds its item, paid once and shipped; every compensated
  # one holds nothing and kept nothing. An action that timed out although it was applied (its
  # reply lost on the last attempt) is compensated without being counted in steps, so
  # released and refunded may exceed the compensated orders that had those steps succeed.
  local inv pay shp
  inv=$(grep '^ledger inventory: ' "$so") || fail "$name: no ledger inventory line"
  pay=$(grep '^ledger payments: ' "$so") || fail "$name: no ledger payments line"
  shp=$(grep '^ledger shipping: ' "$so") || fail "$name: no ledger shipping line"
  ! grep -q '^ledger problems' "$so" || fail "$name: $(grep '^ledger problems' "$so")"
  [ "$(field "$so" shipped)" = "$c" ] || fail "$name: '$shp', completed: $c"
  [ "$(field "$so" held)" = "$c" ] || fail "$name: '$inv', completed: $c"
  [ "$(field "$so" kept)" = "$c" ] || fail "$name: '$pay', completed: $c"
  local reserved released charged refunded
  reserved=$(field "$so" reserved)
  released=$(field "$so" released)
  charged=$(field "$so" charged)
  refunded=$(field "$so" refunded)
  [ $((reserved - released)) -eq "$c" ] && [ $((charged - refunded)) -eq "$c" ] ||
    fail "$name: '$inv' / '$pay' against completed: $c"
  [ "$released" -ge $((comp1 + comp2)) ] && [ "$released" -le "$k" ] ||
    fail "$name: '$inv': released out of [compensated with steps >= 1 ($((comp1 + comp2))), compensated ($k)]"
  [ "$refunded" -ge "$comp2" ] && [ "$refunded" -le "$k" ] ||
    fail "$name: '$pay': refunded out of [compensated with 2 steps ($comp2), compensated ($k)]"
}

# one_summary NAME STDERR: exactly one stderr line, the summary.
one_summary() {
  [ "$(wc -l < "$2")" -eq 1 ] && grep -q '^sluice run saga: ' "$2" ||
    fail "$1: stderr is not one summary line: $(cat "$2")"
}

# --- the example -------------------------------------------------------------------------
ex=(run saga --orders 10000 --fail-rate 0.1 --timeout-rate 0.05 --seed 7)
"$bin" "${ex[@]}" > ex.out 2> ex.err || fail "${ex[*]}: status $?: $(cat ex.err)"
one_summary example ex.err
grep -q '^sluice run saga: 10000 sagas, ' ex.err || fail "example: summary '$(cat ex.err)'"
check_run example 10000 ex.out
# the outcome lines first, then three ledger lines, then the check line
[ "$(head -n 10000 ex.out | grep -cE "$outcome_re")" -eq 10000 ] || fail "example: outcome lines not first"
[ "$(sed -n '10001,10003p' ex.out | cut -c1-7 | sort -u)" = "ledger " ] ||
  fail "example: no three ledger lines between the outcomes and the check line"
[ "$(wc -l < ex.out)" -eq 10004 ] || fail "example: $(wc -l < ex.out) stdout lines, want 10004"
# with faults, every outcome the job can produce
for o in completed,3 compensated,0 compensated,1 compensated,2; do
  grep -q ",$o\$" example.sorted || fail "example: no order ends $o"
done
! grep -q 'failed' example.sorted || fail "example: an order failed: $(grep failed example.sorted | head -n 3)"

# --- the same outcomes whatever the threads --------------------------------------------------
variants=("--threads 1" "--threads 2" "--threads 2 --parallelism 3" "--parallelism 2")
for run in "7 0.1 0.05 10000" "12345 0.3 0.2 5000"; do
  read -r seed fr tr n <<< "$run"
  ref=
  for v in "${variants[@]}"; do
    name="s${seed}_${v// /}"
    # shellcheck disable=SC2086 # $v is several words
    "$bin" run saga --orders "$n" --fail-rate "$fr" --timeout-rate "$tr" --seed "$seed" $v \
      > "$name.out" 2> "$name.err" || fail "seed $seed, rates $fr/$tr, $v: status $?: $(cat "$name.err")"
    one_summary "seed $seed $v" "$name.err"
    check_run "$name" "$n" "$name.out"
    for o in completed,3 compensated,0 compensated,1 compensated,2; do
      grep -q ",$o\$" "$name.sorted" || fail "seed $seed, rates $fr/$tr, $v: no order ends $o"
    done
    if [ -z "$ref" ]; then
      ref=$name
    else
      cmp -s "$ref.sorted" "$name.sorted" ||
        fail "seed $seed, rates $fr/$tr: $v gives other outcomes than ${variants[0]}: $(diff "$ref.sorted" "$name.sorted" | head -n 5)"
      cmp -s <(report "$ref.out") <(report "$name.out") ||
        fail "seed $seed, rates $fr/$tr: $v gives another report than ${variants[0]}"
    fi
  done
done
cmp -s example.sorted s7_--threads1.sorted || fail "the example's outcomes differ from --threads 1's"

# --- no faults ------------------------------------------------------------------------------
"$bin" run saga --orders 3000 --seed 5 --threads 2 > nf.out 2> nf.err || fail "no faults: status $?: $(cat nf.err)"
one_summary "no faults" nf.err
check_run nofaults 3000 nf.out
seq 1 3000 | sed 's/$/,completed,3/' | LC_ALL=C sort | cmp -s - nofaults.sorted ||
  fail "no faults: not every line is ID,completed,3: $(grep -v ',completed,3$' nofaults.sorted | head -n 3)"
"$bin" run saga --orders 3000 --fail-rate 0 --timeout-rate 0 --seed 6 > nf0.out 2> /dev/null ||
  fail "rates 0: status $?"
cmp -s <(outcomes nf0.out) nofaults.sorted || fail "--fail-rate 0 --timeout-rate 0 is not a run without faults"

# --- --out FILE -----------------------------------------------------------------------------
"$bin" "${ex[@]}" --out ex.lines > exo.out 2> exo.err || fail "--out: status $?: $(cat exo.err)"
one_summary "--out" exo.err
[ "$(wc -l < exo.out)" -eq 4 ] && [ "$(head -n 3 exo.out | cut -c1-7 | sort -u)" = "ledger " ] ||
  fail "--out: stdout is not the three ledger lines and the check line: $(head -n 5 exo.out)"
cmp -s exo.out <(report ex.out) || fail "--out: another report than without --out"
[ "$(wc -l < ex.lines)" -eq 10000 ] && ! grep -qvE "$outcome_re" ex.lines ||
  fail "--out: FILE is not 10000 outcome lines: $(grep -vE "$outcome_re" ex.lines | head -n 3)"
cmp -s <(LC_ALL=C sort ex.lines) example.sorted || fail "--out: FILE holds other outcomes"

# --- checkpoints ----------------------------------------------------------------------------
ck=(run saga --orders 3000 --fail-rate 0.1 --timeout-rate 0.05 --seed 7)
"$bin" "${ck[@]}" > plain.out 2> /dev/null || fail "plain 3000: status $?"
check_run plain 3000 plain.out
"$bin" "${ck[@]}" --checkpoint-dir ck --checkpoint-interval 100ms --out ck.lines > ck1.out 2> ck1.err ||
  fail "--checkpoint-dir: status $?: $(cat ck1.err)"
one_summary "--checkpoint-dir" ck1.err
! grep -q 'resumed' ck1.err || fail "--checkpoint-dir, a fresh run: $(cat ck1.err)"
[ "$(wc -l < ck1.out)" -eq 4 ] || fail "--checkpoint-dir --out: stdout: $(head -n 5 ck1.out)"
check_run ck1 3000 ck1.out ck.lines
cmp -s plain.sorted ck1.sorted || fail "--checkpoint-dir: other outcomes than the plain run"
cmp -s <(report plain.out) ck1.out || fail "--checkpoint-dir: another report than the plain run"
[ -d ck/orchestrator ] && [ -d ck/participants ] && [ -d ck/broker ] ||
  fail "--checkpoint-dir: not DIR/orchestrator, DIR/participants, DIR/broker: $(ls ck)"
"$bin" "${ck[@]}" --checkpoint-dir ck --checkpoint-interval 100ms --out ck.lines > ck2.out 2> ck2.err ||
  fail "--checkpoint-dir, the rerun: status $?: $(cat ck2.err)"
one_summary "--checkpoint-dir, the rerun" ck2.err
grep -q 'resumed from checkpoint' ck2.err || fail "the rerun did not resume: $(cat ck2.err)"
cmp -s ck1.out ck2.out || fail "the rerun's report: $(cat ck2.out)"
cmp -s <(LC_ALL=C sort ck.lines) ck1.sorted || fail "the rerun changed FILE: $(wc -l < ck.lines) lines"

# killed midway (-9), then rerun: the same outcomes. Where the kill lands (before the first
# checkpoint, midway, or after the end) depends on the machine; each must give the same end.
"$bin" "${ck[@]}" --checkpoint-dir kd --checkpoint-interval 100ms --out kd.lines > /dev/null 2>&1 &
bg=$!
sleep 1
kill -9 "$bg" 2> /dev/null || true
{ wait "$bg"; } 2> /dev/null || true # (quiet: no "Killed" notice)
bg=
"$bin" "${ck[@]}" --checkpoint-dir kd --checkpoint-interval 100ms --out kd.lines > kd.out 2> kd.err ||
  fail "rerun after kill -9: status $?: $(cat kd.err)"
one_summary "rerun after kill -9" kd.err
check_run kd 3000 kd.out kd.lines
cmp -s plain.sorted kd.sorted || fail "rerun after kill -9: other outcomes than the plain run ($(cat kd.err))"
cmp -s ck1.out kd.out || fail "rerun after kill -9: another report: $(cat kd.out)"

# --- usage errors: exit 2, one stderr line ------------------------------------------------
expect() {
  local needle=$1 st=0
  shift
  "$bin" run saga "$@" < /dev/null > out 2> err || st=$?
  [ "$st" -eq 2 ] || fail "run saga $*: status $st, want 2; stderr: $(cat err)"
  [ "$(wc -l < err)" -eq 1 ] || fail "run saga $*: want one stderr line, got: $(cat err)"
  grep -qF -- "$needle" err || fail "run saga $*: stderr lacks '$needle': $(cat err)"
  [ ! -s out ] || fail "run saga $*: a usage error wrote to stdout: $(head -n 3 out)"
}
expect "--orders N is required" --fail-rate 0.1 --out u.lines --checkpoint-dir u
expect "--orders needs a whole number" --orders 0 --out u.lines --checkpoint-dir u
expect "--orders needs a whole number" --orders -3 --out u.lines
expect "--fail-rate needs a rate from 0 to 1" --orders 10 --fail-rate 1.5 --out u.lines
expect "--fail-rate needs a rate from 0 to 1" --orders 10 --fail-rate abc --out u.lines
expect "--timeout-rate needs a rate from 0 to 1" --orders 10 --timeout-rate -0.1
expect "--fail-rate 0.7 plus --timeout-rate 0.6 is more than 1" --orders 10 --fail-rate 0.7 --timeout-rate 0.6 --out u.lines --checkpoint-dir u
expect "--from-checkpoint" --orders 10 --from-checkpoint X --out u.lines
expect "--checkpoint-interval needs --checkpoint-dir" --orders 10 --checkpoint-interval 1s --out u.lines
expect "unexpected argument 'extra'" --orders 10 extra --out u.lines
expect "unknown option '--bogus'" --orders 10 --bogus --out u.lines
expect "--seed needs a whole number" --orders 10 --seed -1
expect "--out needs a file name" --orders 10 --out ""
[ ! -e u.lines ] && [ ! -e u ] || fail "a usage error made --out FILE or --checkpoint-dir"
# A checkpoint directory holds one run: resuming it with other options would wait for
# orders that are not on its topic (--orders) or report that run's outcomes as another's.
expect "--checkpoint-dir ck holds the run --orders 3000 --fail-rate 0.1 --timeout-rate 0.05 --seed 7: resume it with those options" \
  --orders 4000 --fail-rate 0.1 --timeout-rate 0.05 --seed 7 --checkpoint-dir ck --out ck.lines
expect "--checkpoint-dir ck holds the run" --orders 3000 --fail-rate 0.1 --timeout-rate 0.05 --seed 8 --checkpoint-dir ck --out ck.lines
cmp -s <(LC_ALL=C sort ck.lines) ck1.sorted || fail "a refused resume changed FILE"
mkdir -p other/orchestrator/chk-1
expect "--checkpoint-dir other holds checkpoints but no saga.job" --orders 10 --checkpoint-dir other
# ... and its topics must still be there (made afresh they would hold no orders: the run
# would wait for ever); a refused resume makes none of them.
"$bin" run saga --orders 50 --checkpoint-dir gone --checkpoint-interval 100ms --out gone.lines > /dev/null 2>&1 ||
  fail "a 50-order checkpointed run failed"
rm -rf gone/broker
for k in 1 2; do
  st=0
  "$bin" run saga --orders 50 --checkpoint-dir gone --checkpoint-interval 100ms --out gone.lines > out 2> err || st=$?
  [ "$st" -eq 1 ] && [ "$(wc -l < err)" -eq 1 ] && grep -q "topic saga.orders is not in gone/broker" err ||
    fail "resume without the topics (try $k): status $st: $(cat err)"
done
st=0
"$bin" run saga --help > help.out 2> help.err || st=$?
[ "$st" -eq 0 ] || fail "--help: status $st"
grep -q '^usage: sluice run saga --orders N' help.out || fail "--help: $(head -n 1 help.out)"
[ ! -s help.err ] || fail "--help wrote to stderr: $(cat help.err)"
echo "saga_job: ok"
