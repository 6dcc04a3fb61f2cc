#!/usr/bin/env bash
# Consumer groups over the wire with kafka-python (python3-kafka): sluice
# broker serve over a temporary directory with a 6-partition topic; three
# consumers of one group share it, one leaves and the other two take over its
# partitions, all stop committing, and a new consumer resumes at the committed
# offsets; every record is read exactly once by the group
# (server_kafka_python.py says how). Afterwards `sluice consume -G g` over the
# directory sees the same committed offsets: nothing left to read. kafka-python
# must be installed (scripts/deps.sh): without it this test fails, it never
# skips.
set -euo pipefail
bin=$1
src=$2
. "$(dirname "$0")/lib/serve.sh"
serve_init server_kafka_python
/usr/bin/python3 -c 'import kafka' 2> /dev/null ||
  fail "kafka-python is not installed for /usr/bin/python3 (scripts/deps.sh installs python3-kafka)"
export SLUICE_DIR="$tmp/broker"
"$bin" topic create t --partitions 6

# SLUICE_KGROUP_TRACE=1: the server logs the group's transitions (checked below).
SLUICE_KGROUP_TRACE=1 serve_start

/usr/bin/python3 "$src/tests/integration/server_kafka_python.py" "127.0.0.1:$port" t ||
  fail "the group run failed; server log: $(cat "$tmp/serve.err")"

# c3 left with a LeaveGroup (close()), not by its session running out; the
# others rejoined; c1, c2 and c4 left the same way.
for c in c1 c2 c3 c4; do
  grep -Eq "group g: member $c-[0-9a-f]+-[0-9]+ left the group" "$tmp/serve.err" ||
    fail "no LeaveGroup of $c in the server's log: $(cat "$tmp/serve.err")"
done
if grep -q "session timed out\|did not rejoin" "$tmp/serve.err"; then
  fail "a member was dropped by a timeout: $(cat "$tmp/serve.err")"
fi

# The directory's view of the group's offsets is the server's: all read.
"$bin" consume t -G g -e -f '%p %o\n' > "$tmp/rest" 2> "$tmp/rest.err" ||
  fail "sluice consume -G g failed: $(cat "$tmp/rest.err")"
[ ! -s "$tmp/rest" ] || fail "sluice consume -G g read $(wc -l < "$tmp/rest") records the group committed"

kill -TERM "$pid"
status=0
wait "$pid" || status=$?
pid=
[ "$status" -eq 0 ] || fail "server exit status $status after SIGTERM: $(cat "$tmp/serve.err")"
echo "server_kafka_python: ok (port $port)"
