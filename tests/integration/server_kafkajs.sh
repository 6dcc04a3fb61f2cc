#!/usr/bin/env bash
# kafkajs (npm, version pinned in tests/integration/kafkajs/package-lock.json,
# installed with `npm ci` into BUILD_DIR/npm when missing) against `sluice
# broker serve`: server_kafkajs.js commits one transaction, aborts another,
# and is fenced by a second producer with the same transactional id, which
# then commits; a kafkajs read_committed group consumer then gets exactly
# the committed records (both producers'). kcat (librdkafka) reads them back
# too: with isolation.level=read_committed exactly the committed records,
# with read_uncommitted the aborted and fenced ones too (so the filter is
# seen to matter); sluice consume over the directory (read_committed, to the
# end) finds exactly the committed ones. node,
# npm and kcat must be installed (README, scripts/deps.sh); without them, or
# if npm ci fails, this test fails: it never skips.
set -euo pipefail
bin=$(realpath "$1")
src=$(cd "$2" && pwd)
build=$(cd "$3" && pwd)
. "$(dirname "$0")/lib/serve.sh"
serve_init server_kafkajs
command -v node > /dev/null || fail "node is not installed"
command -v npm > /dev/null || fail "npm is not installed"
command -v kcat > /dev/null || fail "kcat is not installed (scripts/deps.sh installs it)"

# kafkajs, exactly as locked, in the build tree.
npmdir=$build/npm
lock=$src/tests/integration/kafkajs/package-lock.json
if [ ! -f "$npmdir/node_modules/kafkajs/package.json" ] || ! cmp -s "$lock" "$npmdir/package-lock.json"; then
  mkdir -p "$npmdir"
  cp "$src/tests/integration/kafkajs/package.json" "$lock" "$npmdir/"
  (cd "$npmdir" && npm ci --no-audit --no-fund) > "$tmp/npm.log" 2>&1 ||
    fail "npm ci of kafkajs failed: $(tail -5 "$tmp/npm.log")"
fi
want=$(sed -n 's/.*"kafkajs": "\([0-9.]*\)".*/\1/p' "$src/tests/integration/kafkajs/package.json")
have=$(node -e "console.log(require('$npmdir/node_modules/kafkajs/package.json').version)")
[ "$have" = "$want" ] || fail "kafkajs $have installed, $want pinned"

export SLUICE_DIR="$tmp/broker"
"$bin" topic create js --partitions 3
serve_start
broker=127.0.0.1:$port

node "$src/tests/integration/server_kafkajs.js" "$npmdir/node_modules" "$broker" js > "$tmp/js.out" 2>&1 ||
  fail "kafkajs run failed: $(cat "$tmp/js.out")"
grep -q '^first producer fenced: ' "$tmp/js.out" || fail "no fencing: $(cat "$tmp/js.out")"

expect_committed=$(
  for i in 0 1 2 3 4 5; do echo "committed-$i"; done
  for i in 0 1 2; do echo "second-$i"; done
)
echo "$expect_committed" | sort > "$tmp/want.committed"
sed -n 's/^read_committed: //p' "$tmp/js.out" | sort > "$tmp/js.sorted"
diff "$tmp/want.committed" "$tmp/js.sorted" > "$tmp/diff" ||
  fail "the kafkajs read_committed consumer saw other records than the committed ones: $(cat "$tmp/diff")"

# kcat reads with -c (a message count), not -e: this server's Fetch sends
# records only, never the control batches, so a consumer's position does not
# pass the marker that ends each partition and it never reaches the end
# (the directory read below checks that nothing more is there). timeout is
# a guard against a hang, not a time assertion.
kcat -b "$broker" -C -t js -o beginning -c 9 -q -X isolation.level=read_committed -f '%s\n' \
  > "$tmp/rc" 2> "$tmp/rc.err" < /dev/null &
kpid=$!
timeout 120 tail --pid="$kpid" -f /dev/null || { kill "$kpid"; fail "kcat read_committed hung: $(cat "$tmp/rc")"; }
wait "$kpid" || fail "kcat read_committed failed: $(cat "$tmp/rc.err")"
sort "$tmp/rc" > "$tmp/rc.sorted"
diff "$tmp/want.committed" "$tmp/rc.sorted" > "$tmp/diff" ||
  fail "read_committed saw other records than the committed ones: $(cat "$tmp/diff")"

kcat -b "$broker" -C -t js -o beginning -c 21 -q -X isolation.level=read_uncommitted -f '%s\n' \
  > "$tmp/ru" 2> "$tmp/ru.err" < /dev/null &
kpid=$!
timeout 120 tail --pid="$kpid" -f /dev/null || { kill "$kpid"; fail "kcat read_uncommitted hung: $(cat "$tmp/ru")"; }
wait "$kpid" || fail "kcat read_uncommitted failed: $(cat "$tmp/ru.err")"
n_aborted=$(grep -c '^aborted-' "$tmp/ru" || true)
n_fenced=$(grep -c '^fenced-[0-9]' "$tmp/ru" || true)
[ "$n_aborted" -eq 6 ] || fail "read_uncommitted: $n_aborted aborted records, want 6"
[ "$n_fenced" -eq 6 ] || fail "read_uncommitted: $n_fenced records of the fenced transaction, want 6"
if grep -q '^fenced-late-' "$tmp/ru"; then fail "a fenced producer's late send was written"; fi

# The directory agrees (sluice consume reads read_committed).
"$bin" consume js -e -f '%s\n' > "$tmp/dir" 2> "$tmp/dir.err" || fail "sluice consume: $(cat "$tmp/dir.err")"
sort "$tmp/dir" > "$tmp/dir.sorted"
diff "$tmp/want.committed" "$tmp/dir.sorted" > "$tmp/diff" ||
  fail "sluice consume saw other records: $(cat "$tmp/diff")"

kill -TERM "$pid"
wait "$pid" || fail "server exited with $? after SIGTERM: $(cat "$tmp/serve.err")"
pid=
echo "server_kafkajs: ok ($(tr '\n' ';' < "$tmp/js.out"))"
