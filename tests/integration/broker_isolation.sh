#!/usr/bin/env bash
# sluice consume --isolation: a transactional produce that is killed leaves
# its transaction open: read_committed (the default) shows nothing of it and
# stops there (-e exits at the last stable offset, holding back a later
# non-transactional line), read_uncommitted shows everything; the next
# produce with the same --transactional-id aborts it, after which the
# committed lines, and only those, are visible. A bad --isolation value is
# a one-line usage error.
set -euo pipefail
bin=$1
tmp=$(mktemp -d)
pp=
cleanup() {
  if [ -n "$pp" ]; then kill -9 "$pp" 2> /dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
export SLUICE_DIR="$tmp/broker"
fail() {
  echo "broker_isolation: $*" >&2
  exit 1
}
"$bin" topic create t --partitions 1
printf 'c1\nc2\n' | "$bin" produce t --transactional-id job
printf 'plain1\n' | "$bin" produce t

# A transactional producer killed with its transaction open.
mkfifo "$tmp/in"
"$bin" produce t --transactional-id job --transaction-timeout 3600000 < "$tmp/in" &
pp=$!
exec 7> "$tmp/in"
printf 'open1\nopen2\n' >&7
seen=
for _ in $(seq 400); do
  out=$("$bin" consume t -e --isolation read_uncommitted)
  case "$out" in *open2*) seen=1; break ;; esac
  sleep 0.05
done
[ -n "$seen" ] || fail "the open transaction's lines never became visible to read_uncommitted"
kill -9 "$pp"
wait "$pp" 2> /dev/null || true
pp=
exec 7>&-
printf 'plain2\n' | "$bin" produce t

out=$("$bin" consume t -e)
[ "$out" = "$(printf 'c1\nc2\nplain1')" ] || fail "read_committed (default) saw: $out"
out=$("$bin" consume t -e --isolation read_committed)
[ "$out" = "$(printf 'c1\nc2\nplain1')" ] || fail "read_committed saw: $out"
out=$("$bin" consume t -e --isolation read_uncommitted)
[ "$out" = "$(printf 'c1\nc2\nplain1\nopen1\nopen2\nplain2')" ] || fail "read_uncommitted saw: $out"
"$bin" topic describe t > "$tmp/desc"
# partition 0: last_stable is the first offset of the open transaction (4:
# c1 c2 marker plain1 open1...), next_offset past plain2.
awk '$1 == "0" { if ($6 != 4 || $3 != 7) exit 1; found = 1 } END { exit !found }' "$tmp/desc" ||
  fail "describe: $(cat "$tmp/desc")"

# The same transactional id again: the old transaction is aborted.
printf 'c3\n' | "$bin" produce t --transactional-id job
out=$("$bin" consume t -e)
[ "$out" = "$(printf 'c1\nc2\nplain1\nplain2\nc3')" ] || fail "after re-open, read_committed saw: $out"
out=$("$bin" consume t -e -o 4 -f '%o %s\n')
[ "$out" = "$(printf '6 plain2\n8 c3')" ] || fail "from offset 4 saw: $out"

if "$bin" consume t -e --isolation serializable 2> "$tmp/err"; then fail "bad --isolation accepted"; fi
grep -q "isolation" "$tmp/err" && [ "$(wc -l < "$tmp/err")" -eq 1 ] || fail "error: $(cat "$tmp/err")"
echo "broker isolation test passed"
