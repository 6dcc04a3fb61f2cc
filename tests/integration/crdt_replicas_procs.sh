#!/usr/bin/env bash
# tests/integration/crdt_replicas_procs.sh - crdt-replicas with one process per region
# (`--region R`, README "CRDT replicas") on `sluice broker serve`:
#   - three region processes started at once: each prints converged: yes, and all print the
#     very lines (pages, `state:` digest, last line) of the single-process run of the same
#     options;
#   - a region process with --checkpoint-dir killed with kill -9 after its first checkpoint
#     and before the end of its events (it is started alone, so it cannot finish before the
#     others have published; the test checks the checkpoint's generator position is short
#     of the region's share), then rerun with the same command: it says it resumed from a
#     checkpoint, and all three regions converge to one digest with the true counts.
# Nothing here depends on timing: the kill waits for a checkpoint on disk.
set -euo pipefail
bin=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib/serve.sh"
serve_init crdt_replicas_procs
unset SLUICE_DIR
cd "$tmp"

opts=(--replicas 3 --events 30000 --seed 11 --pages 12)
"$bin" run crdt-replicas "${opts[@]}" --dir emb > single.txt 2> single.err ||
  fail "single process: $(cat single.err)"
grep -qx 'state: [0-9a-f]\{16\}' single.txt || fail "single process: no state line: $(tail -n 2 single.txt)"

export SLUICE_DIR="$tmp/served"
mkdir -p "$SLUICE_DIR"
serve_start
B=127.0.0.1:$port

# --- three region processes at once -----------------------------------------------------------
"$bin" topic create ex1 --partitions 3 -b "$B" > /dev/null
pids=()
for r in 0 1 2; do
  timeout 300 "$bin" run crdt-replicas "${opts[@]}" --topic ex1 --kafka "$B" --region "$r" \
    > "r$r.txt" 2> "r$r.err" &
  pids+=($!)
  serve_track $!
done
for r in 0 1 2; do
  st=0
  wait "${pids[$r]}" || st=$?
  [ "$st" -eq 0 ] || fail "region $r: status $st: $(cat "r$r.err")"
done
for r in 0 1 2; do
  tail -n 1 "r$r.txt" | grep -qx "replicas: 3, keys: 12, converged: yes" ||
    fail "region $r: last line is '$(tail -n 1 "r$r.txt")'"
  cmp -s single.txt "r$r.txt" ||
    fail "region $r's lines differ from the single-process run: $(diff single.txt "r$r.txt" | head -n 6)"
done

# --- kill -9 mid-run, rerun from the checkpoint --------------------------------------------------
events=3000000
share=$((events / 3))
big=(--replicas 3 --events "$events" --seed 7 --pages 12 --topic ex2 --kafka "$B")
"$bin" topic create ex2 --partitions 3 -b "$B" > /dev/null
run1=("$bin" run crdt-replicas "${big[@]}" --region 1 --checkpoint-dir chk1 --checkpoint-interval 100ms)
"${run1[@]}" > k1.txt 2> k1.err &
k=$!
serve_track $k
pos=
for _ in $(seq 1 1200); do
  pos=$("$bin" checkpoints chk1 2> /dev/null | sed -n 's/.* complete .*events\[0\]=\([0-9][0-9]*\).*/\1/p' | head -n 1 || true)
  [ -n "$pos" ] && break
  kill -0 "$k" 2> /dev/null || fail "region 1 exited before its first checkpoint: $(cat k1.err)"
  sleep 0.05
done
[ -n "$pos" ] || fail "region 1 made no checkpoint: $(cat k1.err)"
kill -9 "$k"
st=0
wait "$k" || st=$?
[ "$st" -eq 137 ] || fail "the killed region 1: status $st, want 137 (kill -9)"
[ "$pos" -lt "$share" ] || fail "the first checkpoint is at the end of region 1's events ($pos): the kill did not land mid-run"
[ ! -s k1.txt ] || fail "the killed region 1 printed: $(cat k1.txt)"

pids=()
for r in 0 2; do
  timeout 300 "$bin" run crdt-replicas "${big[@]}" --region "$r" > "k$r.txt" 2> "k$r.err" &
  pids+=($!)
  serve_track $!
done
st=0
timeout 300 "${run1[@]}" > k1.txt 2> k1.err || st=$?
[ "$st" -eq 0 ] || fail "region 1 rerun: status $st: $(cat k1.err)"
grep -q "region 1 resumed from checkpoint [1-9]" k1.err || fail "region 1 rerun did not resume: $(cat k1.err)"
for i in 0 1; do
  st=0
  wait "${pids[$i]}" || st=$?
  [ "$st" -eq 0 ] || fail "region $((i * 2)) beside the kill: status $st: $(cat "k$((i * 2)).err")"
done
for r in 0 1 2; do
  tail -n 1 "k$r.txt" | grep -qx "replicas: 3, keys: 12, converged: yes" ||
    fail "after the kill, region $r: last line is '$(tail -n 1 "k$r.txt")'"
done
d0=$(grep '^state:' k0.txt)
for r in 1 2; do
  [ "$(grep '^state:' "k$r.txt")" = "$d0" ] ||
    fail "after the kill, region $r's state differs: $(grep '^state:' "k$r.txt") vs $d0"
  cmp -s k0.txt "k$r.txt" || fail "after the kill, region $r's pages differ from region 0's"
done
echo "crdt_replicas_procs: ok"
