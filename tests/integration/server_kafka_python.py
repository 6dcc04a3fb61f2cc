"""A group of kafka-python consumers against sluice broker serve (run by
server_kafka_python.sh with the server's address and topic).

Three consumers of group "g" share the 6-partition topic: each gets 2
partitions; 600 keyed records produced through kafka-python's producer are
read. One consumer leaves (close()): the other two take over its partitions
(3 each) and read 600 more. Then, while they read a third batch slowly, both
stop (each commits synchronously after processing every poll, so what they
processed is committed); a fourth batch is produced; a new consumer of the
group resumes at the committed offsets (its first offset in each partition is
one past the last the group processed there) and reads the rest. Across the
run every produced record is read exactly once by the group.

Every wait has a generous cap that only guards against a hang (a failure
names what did not happen); nothing here asserts on elapsed time.
"""
import sys
import threading
import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

broker, topic = sys.argv[1], sys.argv[2]
GROUP = "g"
CAP = 120.0  # seconds: a hang guard, not a time assertion

lock = threading.Lock()
reads = []  # (consumer, partition, offset, key, value)
assign = {}  # consumer -> sorted partitions after its last poll
slow = threading.Event()
errors = []


def fail(msg):
    print("server_kafka_python: " + msg, file=sys.stderr)
    sys.exit(1)


def wait_for(what, cond):
    end = time.monotonic() + CAP
    while not cond():
        if errors:
            fail("consumer error: " + "; ".join(errors))
        if time.monotonic() > end:
            with lock:
                fail("gave up waiting for %s (assignments %s, %d records read)" % (what, assign, len(reads)))
        time.sleep(0.05)


class Member(threading.Thread):
    def __init__(self, name):
        super().__init__(daemon=True)
        self.name_ = name
        self.stop = threading.Event()
        self.closed = threading.Event()

    def run(self):
        try:
            c = KafkaConsumer(topic, bootstrap_servers=broker, group_id=GROUP, client_id=self.name_,
                              enable_auto_commit=False, auto_offset_reset="earliest",
                              max_poll_records=5, heartbeat_interval_ms=300,
                              session_timeout_ms=10000, request_timeout_ms=30000)
            while not self.stop.is_set():
                batch = c.poll(timeout_ms=100)
                got = [(self.name_, r.partition, r.offset, r.key.decode(), r.value.decode())
                       for rs in batch.values() for r in rs]
                with lock:
                    reads.extend(got)
                if got:
                    c.commit()  # synchronous: what was processed is committed before the next poll
                with lock:
                    assign[self.name_] = sorted(tp.partition for tp in c.assignment())
                if slow.is_set():
                    time.sleep(0.05)
            c.close()  # LeaveGroup (auto-commit is off: nothing more to commit)
            with lock:
                assign.pop(self.name_, None)
        except Exception as e:  # reported by the main thread
            errors.append("%s: %r" % (self.name_, e))
        finally:
            self.closed.set()


def produce(batch, n=600):
    p = KafkaProducer(bootstrap_servers=broker, acks="all")
    for i in range(n):
        p.send(topic, key=("k%d-%d" % (batch, i)).encode(), value=("v%d-%d" % (batch, i)).encode())
    p.flush()
    p.close()
    return {("k%d-%d" % (batch, i), "v%d-%d" % (batch, i)) for i in range(n)}


def read_count():
    with lock:
        return len(reads)


def stable(names, each):
    with lock:
        parts = [assign.get(n) for n in names]
    if any(p is None or len(p) != each for p in parts):
        return False
    return sorted(sum(parts, [])) == list(range(6))


sent = set()
m = {n: Member(n) for n in ("c1", "c2", "c3")}
for t in m.values():
    t.start()
wait_for("3 members with 2 partitions each", lambda: stable(["c1", "c2", "c3"], 2))
phase1 = {n: list(assign[n]) for n in m}
sent |= produce(1)
wait_for("the group to read batch 1", lambda: read_count() >= 600)

m["c3"].stop.set()
m["c3"].closed.wait(CAP)
wait_for("c1 and c2 to take over c3's partitions", lambda: stable(["c1", "c2"], 3))
sent |= produce(2)
wait_for("the group to read batch 2", lambda: read_count() >= 1200)
with lock:
    by2 = {(r[1]) for r in reads[600:] if r[0] in ("c1", "c2")}
if not set(phase1["c3"]) <= by2:
    fail("c3's partitions %s were not read by c1/c2 after it left (read: %s)" % (phase1["c3"], sorted(by2)))

slow.set()
sent |= produce(3)
wait_for("the group to start batch 3", lambda: read_count() >= 1300)
for n in ("c1", "c2"):
    m[n].stop.set()
for n in ("c1", "c2"):
    m[n].closed.wait(CAP)
if errors:
    fail("consumer error: " + "; ".join(errors))
with lock:
    before = list(reads)
last = {}
for _, p, o, _, _ in before:
    last[p] = max(last.get(p, -1), o)

sent |= produce(4)
slow.clear()
c4 = Member("c4")
c4.start()
wait_for("c4 to read the rest", lambda: read_count() >= len(sent))
c4.stop.set()
c4.closed.wait(CAP)
if errors:
    fail("consumer error: " + "; ".join(errors))

with lock:
    allr = list(reads)
pos = [(p, o) for _, p, o, _, _ in allr]
if len(pos) != len(set(pos)):
    dup = sorted(x for x in set(pos) if pos.count(x) > 1)[:5]
    fail("records read twice by the group: %s" % dup)
got = {(k, v) for _, _, _, k, v in allr}
if got != sent:
    fail("lost %d records, e.g. %s" % (len(sent - got), sorted(sent - got)[:5]))
first4 = {}
for n, p, o, _, _ in allr:
    if n == "c4":
        first4[p] = min(first4.get(p, o), o)
for p, o in first4.items():
    if o != last.get(p, -1) + 1:
        fail("c4 resumed partition %d at offset %d, not at the committed %d" % (p, o, last.get(p, -1) + 1))
if not first4:
    fail("c4 read nothing")
print("server_kafka_python: ok: %d records read once; phase 1 assignment %s; c4 resumed at %s"
      % (len(allr), phase1, dict(sorted(first4.items()))))
