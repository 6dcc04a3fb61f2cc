#!/usr/bin/env bash
# tests/integration/crdt_replicas.sh - the bundled job crdt-replicas (README, "CRDT
# replicas"):
#   - on the built-in broker in process: converged: yes, exit 0, a line per page;
#   - the same command again on the same topic: the same lines (the rerun only re-merges
#     equal deltas: merge is idempotent), and another seed on that topic is not disturbed
#     by the first run's records (another exchange id: skipped);
#   - with --kafka on `sluice broker serve`: converged: yes and the same merged values as
#     in process;
#   - bad flags (--region out of range or without --kafka, checkpointing without --region):
#     one stderr line, exit 2.
set -euo pipefail
bin=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib/serve.sh"
serve_init crdt_replicas
unset SLUICE_DIR
cd "$tmp"

job=(run crdt-replicas --replicas 3 --events 30000 --seed 11 --pages 12)

# --- built-in broker ----------------------------------------------------------------------
"$bin" "${job[@]}" --dir emb > emb.txt 2> emb.err || fail "in process: $(cat emb.err)"
tail -n 1 emb.txt | grep -qx "replicas: 3, keys: 12, converged: yes" ||
  fail "in process: last line is '$(tail -n 1 emb.txt)'"
[ "$(grep -c '^page-' emb.txt)" -eq 12 ] || fail "in process: not one line per page"
grep -q "^page-000 views=[0-9]* editor=u[0-9]* tags=" emb.txt || fail "page line: $(head -n 1 emb.txt)"
tail -n 2 emb.txt | head -n 1 | grep -qx "state: [0-9a-f]\{16\}" || fail "in process: no state line before the last"
"$bin" "${job[@]}" --dir emb > emb2.txt 2> emb2.err || fail "rerun: $(cat emb2.err)"
cmp -s emb.txt emb2.txt || fail "a rerun on the same topic changed the merged values"
"$bin" run crdt-replicas --replicas 4 --events 5000 --seed 12 --pages 12 --dir emb > other.txt 2> other.err ||
  fail "another seed on the same topic: $(cat other.err)"
"$bin" run crdt-replicas --replicas 4 --events 5000 --seed 12 --pages 12 --dir fresh > fresh.txt 2> /dev/null ||
  fail "another seed on a fresh topic failed"
cmp -s other.txt fresh.txt || fail "records of an earlier run on the topic changed another run's values"

# --- Kafka (the built-in broker served) -----------------------------------------------------
export SLUICE_DIR="$tmp/served"
mkdir -p "$SLUICE_DIR"
serve_start
B=127.0.0.1:$port
"$bin" topic create crdt-replicas --partitions 3 -b "$B" > /dev/null
"$bin" "${job[@]}" --kafka "$B" > kafka.txt 2> kafka.err || fail "--kafka: $(cat kafka.err)"
tail -n 1 kafka.txt | grep -qx "replicas: 3, keys: 12, converged: yes" ||
  fail "--kafka: last line is '$(tail -n 1 kafka.txt)'"
cmp -s emb.txt kafka.txt || fail "--kafka gives other merged values than the built-in broker"
unset SLUICE_DIR

# --- bad flags: one line, exit 2 ------------------------------------------------------------
expect() {
  local needle=$1 st=0
  shift
  "$bin" run crdt-replicas "$@" < /dev/null > out 2> err || st=$?
  [ "$st" -eq 2 ] || fail "crdt-replicas $*: status $st, want 2; stderr: $(cat err)"
  [ "$(wc -l < err)" -eq 1 ] || fail "crdt-replicas $*: want one stderr line, got: $(cat err)"
  grep -qF -- "$needle" err || fail "crdt-replicas $*: stderr lacks '$needle': $(cat err)"
}
expect "--replicas needs a whole number from 1 to 64" --replicas 0 --dir x
expect "--replicas needs a whole number" --replicas many --dir x
expect "--events needs a whole number" --events -5 --dir x
expect "--seed needs a whole number" --seed 1.5 --dir x
expect "--kafka needs HOST:PORT" --kafka nowhere
expect "not both" --kafka 127.0.0.1:1 --dir x
expect "unexpected argument" extra --dir x
expect "--parallelism" --parallelism 2 --dir x
expect "--follow" --follow --dir x
expect "--topic needs a topic name" --topic "" --dir x
expect "unknown" --bogus --dir x
expect "--region needs a region from 0 to 2 (--replicas 3), not 3" --replicas 3 --region 3 --kafka 127.0.0.1:1
expect "--region needs a whole number from 0 to 63" --region -1 --kafka 127.0.0.1:1
expect "--region needs --kafka" --region 0 --dir x
expect "--region needs --kafka" --region 1
expect "--checkpoint-dir is for --region" --checkpoint-dir x --dir x
expect "--checkpoint-interval is for --region" --checkpoint-interval 1s --dir x
expect "--region needs --events >= --replicas" --replicas 4 --events 3 --region 0 --kafka 127.0.0.1:1
[ ! -e x ] || fail "a usage error made the broker directory"
echo "crdt_replicas: ok"
