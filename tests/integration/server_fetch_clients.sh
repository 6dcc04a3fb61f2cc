#!/usr/bin/env bash
# sluice broker serve's data path through real clients: kcat reads a topic
# with a committed, an aborted and a committed transaction (written by
# sluice produce --transactional-id) with read_committed (the aborted one
# is not shown: librdkafka drops it by the Fetch's aborted-transactions
# list) and read_uncommitted (it is); kafka-python's
# KafkaAdminClient creates topic "data" (2 partitions, 1 MiB segments, so a
# read crosses many segments) and gets Kafka's errors for an existing topic,
# a replication factor of 3 and an unknown config, and nothing created by
# validate_only; kcat -P writes 100,000 keyed records of random printable
# values (0..2000 bytes) to partition 0, and kcat -C -X check.crcs=true reads
# them back byte for byte (the served batches are the stored ones with a
# converted header and a derived CRC: a wrong CRC fails here); kafka-python
# (check_crcs on) reads them again with a 1000-byte partition limit (whole
# batches larger than it still come, one at a time), writes 20,000 records
# with headers, null values and explicit timestamps to partition 1 with
# acks=all and reads them back, and finds offsets by timestamp
# (offsets_for_times: ListOffsets through the time index, across sealed and
# active segments). DeleteTopics removes the topic (its directory goes), and
# deleting it again is UNKNOWN_TOPIC_OR_PARTITION. kcat and python3-kafka
# must be installed (scripts/deps.sh): without them this test fails.
set -euo pipefail
bin=$1
. "$(dirname "$0")/lib/serve.sh"
serve_init server_fetch_clients
py=/usr/bin/python3
command -v kcat > /dev/null || fail "kcat is not installed (scripts/deps.sh installs it)"
"$py" -c 'import kafka' 2> /dev/null || fail "python3-kafka is not installed (scripts/deps.sh)"
export SLUICE_DIR="$tmp/broker"
mkdir -p "$SLUICE_DIR"

# Transactions, written before the server runs (the directory is then its):
# T1 commits a1 a2, T2's x1 x2 are aborted (a line over the topic's record
# limit aborts the run's transaction), T1 commits b1 b2.
"$bin" topic create tx --partitions 1
printf 'a1\na2\n' | "$bin" produce tx --transactional-id T1
if (printf 'x1\nx2\n' && head -c 2000000 /dev/zero | tr '\0' z && echo) |
  "$bin" produce tx --transactional-id T2 2> "$tmp/abort.err"; then
  fail "a too large record did not fail the transactional produce"
fi
printf 'b1\nb2\n' | "$bin" produce tx --transactional-id T1

serve_start
broker=127.0.0.1:$port

# librdkafka with read_committed drops the aborted transaction by the
# aborted list the Fetch sends (and the control batches itself);
# read_uncommitted shows it.
kcat -C -b "$broker" -t tx -e -q -o beginning -X isolation.level=read_committed \
  -X check.crcs=true -f '%o %s\n' > "$tmp/rc" 2>&1 || fail "kcat read_committed: $(cat "$tmp/rc")"
printf '0 a1\n1 a2\n6 b1\n7 b2\n' | cmp - "$tmp/rc" || fail "read_committed read: $(cat "$tmp/rc")"
kcat -C -b "$broker" -t tx -e -q -o beginning -X isolation.level=read_uncommitted \
  -X check.crcs=true -f '%o %s\n' > "$tmp/ru" 2>&1 || fail "kcat read_uncommitted: $(cat "$tmp/ru")"
printf '0 a1\n1 a2\n3 x1\n4 x2\n6 b1\n7 b2\n' | cmp - "$tmp/ru" ||
  fail "read_uncommitted read: $(cat "$tmp/ru")"

cat > "$tmp/admin.py" << 'PY'
import sys
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import (TopicAlreadyExistsError, InvalidReplicationFactorError,
                          InvalidConfigurationError, UnknownTopicOrPartitionError)
a = KafkaAdminClient(bootstrap_servers=sys.argv[1], request_timeout_ms=10000)
if sys.argv[2] == "create":
    r = a.create_topics([NewTopic("data", 2, 1, topic_configs={"segment.bytes": "1048576"})])
    assert r.topic_errors[0][1] == 0, r
    for nt, exc in [(NewTopic("data", 1, 1), TopicAlreadyExistsError),
                    (NewTopic("x", 1, 3), InvalidReplicationFactorError),
                    (NewTopic("y", 1, 1, topic_configs={"bogus.config": "1"}),
                     InvalidConfigurationError)]:
        try:
            a.create_topics([nt])
            raise SystemExit("no error creating %s" % nt.name)
        except exc:
            pass
    a.create_topics([NewTopic("z", 1, 1)], validate_only=True)
    assert sorted(a.list_topics()) == ["data", "tx"], a.list_topics()
else:
    r = a.delete_topics(["data"])
    assert r.topic_error_codes[0][1] == 0, r
    try:
        a.delete_topics(["data"])
        raise SystemExit("deleting it twice: no error")
    except UnknownTopicOrPartitionError:
        pass
a.close()
PY
"$py" "$tmp/admin.py" "$broker" create || fail "CreateTopics through KafkaAdminClient"
[ -d "$SLUICE_DIR/data" ] || fail "topic data was not created"
[ ! -e "$SLUICE_DIR/z" ] || fail "validate_only created topic z"

cat > "$tmp/gen.py" << 'PY'
import random, sys
r = random.Random(7)
alpha = ("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
         " !#$%&()*+,-./:;<=>?@[]^_{|}~'\"\\")
with open(sys.argv[1], "w") as f:
    for i in range(int(sys.argv[2])):
        n = r.choice([0, 1, 5, 40, 100, 300, r.randint(0, 2000)])
        f.write("k%d\t%s\n" % (i, "".join(r.choice(alpha) for _ in range(n))))
PY
"$py" "$tmp/gen.py" "$tmp/lines" 100000
kcat -P -b "$broker" -t data -p 0 -K '\t' -X linger.ms=5 -l "$tmp/lines" 2> "$tmp/kcat.err" ||
  fail "kcat -P: $(cat "$tmp/kcat.err")"
kcat -C -b "$broker" -t data -p 0 -o beginning -e -q -X check.crcs=true -f '%k\t%s\n' \
  > "$tmp/got" 2> "$tmp/kcat.err" || fail "kcat -C: $(cat "$tmp/kcat.err")"
if [ -s "$tmp/kcat.err" ]; then fail "kcat -C complained: $(head -5 "$tmp/kcat.err")"; fi
cmp "$tmp/got" "$tmp/lines" || fail "kcat -C read back other bytes than were produced"
nseg=$(find "$SLUICE_DIR/data/0" -name '*.log' | wc -l)
[ "$nseg" -ge 10 ] || fail "expected the records to span many segments, found $nseg"

cat > "$tmp/cons.py" << 'PY'
import sys, time
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
bs, lines = sys.argv[1], sys.argv[2]
want0 = []
with open(lines, "rb") as f:
    for ln in f:
        k, v = ln.rstrip(b"\n").split(b"\t", 1)
        want0.append((k, v))
p = KafkaProducer(bootstrap_servers=bs, acks="all", linger_ms=2)
T0 = 1700000000000
want1 = []
for i in range(20000):
    v = None if i % 97 == 0 else (b"v%d-" % i) * (i % 13)
    h = [("h", b"%d" % i)] if i % 5 == 0 else []
    p.send("data", key=b"k%d" % i, value=v, partition=1, timestamp_ms=T0 + 10 * i, headers=h)
    want1.append((b"k%d" % i, v, T0 + 10 * i, h))
p.flush()
p.close()
def read(tp, n, **kw):
    c = KafkaConsumer(bootstrap_servers=bs, check_crcs=True, enable_auto_commit=False, **kw)
    c.assign([tp])
    c.seek_to_beginning(tp)
    got = []
    deadline = time.time() + 120
    while len(got) < n and time.time() < deadline:
        for recs in c.poll(timeout_ms=1000).values():
            got.extend(recs)
    return c, got
c, got = read(TopicPartition("data", 0), len(want0), max_partition_fetch_bytes=1000)
assert len(got) == len(want0), ("partition 0", len(got), len(want0))
for i, (m, (k, v)) in enumerate(zip(got, want0)):
    assert m.offset == i and m.key == k and m.value == v, (i, m)
c.close()
c, got = read(TopicPartition("data", 1), len(want1))
assert len(got) == len(want1), ("partition 1", len(got), len(want1))
for i, (m, (k, v, ts, h)) in enumerate(zip(got, want1)):
    assert m.offset == i and m.key == k and m.value == v and m.timestamp == ts, (i, m)
    assert [(a, b) for a, b in m.headers] == h, (i, m.headers, h)
tp = TopicPartition("data", 1)
for q, exp in [(0, 0), (T0, 0), (T0 + 1, 1), (T0 + 10 * 12345 - 3, 12345),
               (T0 + 10 * 12345, 12345), (T0 + 10 * 19999, 19999), (T0 + 10 * 20000, None)]:
    r = c.offsets_for_times({tp: q})[tp]
    if exp is None:
        assert r is None, (q, r)
    else:
        assert r is not None and r.offset == exp and r.timestamp == T0 + 10 * exp, (q, r, exp)
c.close()
PY
"$py" "$tmp/cons.py" "$broker" "$tmp/lines" || fail "kafka-python read back other records"

"$py" "$tmp/admin.py" "$broker" delete || fail "DeleteTopics through KafkaAdminClient"
[ ! -e "$SLUICE_DIR/data" ] || fail "topic data is still on disk after DeleteTopics"

kill -TERM "$pid"
wait "$pid" || fail "server exit status $?: $(cat "$tmp/serve.err")"
pid=
echo "server_fetch_clients: ok"
