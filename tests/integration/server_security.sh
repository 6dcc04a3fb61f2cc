#!/usr/bin/env bash
# sluice broker serve's security (connectors/broker/ktls.c, kapi_sasl.c,
# scram.c): a self-signed certificate made here with openssl req, a users
# file written by `sluice broker user add` (mode 0600, no password in it).
#   - refusals, one line each: a non-loopback --listen without --sasl-users,
#     --tls-cert without --tls-key, a missing certificate, a malformed users
#     file; a world-readable users file is served with a warning;
#   - TLS + SASL on 0.0.0.0:0 (accepted with SASL; clients connect to
#     127.0.0.1): kcat SASL_SSL SCRAM-SHA-256 produces and consumes; a wrong
#     password is refused (kcat fails, nothing appended); PLAIN over TLS
#     works; kafka-python (SaslHandshake v0 and raw tokens) SASL_SSL
#     SCRAM-SHA-256 produces and consumes; a plaintext client against the
#     TLS port is disconnected without an answer;
#   - SASL without TLS: SCRAM-SHA-256 works, PLAIN is refused (kcat fails,
#     one log line says why), a request before authentication closes the
#     connection without an answer, SaslHandshake v1 + SaslAuthenticate v1
#     by hand (right and wrong password), a frame above 512 KiB before
#     authentication closes the connection, an idle client is disconnected
#     after --idle-timeout-ms, --log-level debug logs one line per request.
# kcat, openssl and kafka-python (/usr/bin/python3) must be installed
# (scripts/deps.sh): without them this test fails, it never skips.
set -euo pipefail
bin=$1
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2> /dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
  echo "server_security: $*" >&2
  exit 1
}
command -v kcat > /dev/null || fail "kcat is not installed (scripts/deps.sh installs it)"
command -v openssl > /dev/null || fail "openssl is not installed"
/usr/bin/python3 -c 'import kafka' || fail "kafka-python is not installed (python3-kafka)"
export SLUICE_DIR="$tmp/broker"
"$bin" topic create t
"$bin" topic create plain
"$bin" topic create big

openssl req -x509 -newkey rsa:2048 -nodes -keyout "$tmp/key.pem" -out "$tmp/cert.pem" -days 2 \
  -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" 2> "$tmp/openssl.err" ||
  fail "openssl req failed: $(cat "$tmp/openssl.err")"

users=$tmp/users
echo 'alice-secret' | "$bin" broker user add "$users" alice
echo 'first' | "$bin" broker user add "$users" bob
echo 'bob-secret' | "$bin" broker user add "$users" bob # replaces bob's
[ "$(stat -c %a "$users")" = 600 ] || fail "users file mode $(stat -c %a "$users"), not 600"
grep -q secret "$users" && fail "a password is in the users file"
[ "$(grep -c '^[a-z]* SCRAM-SHA-256 4096 ' "$users")" -eq 2 ] || fail "users file: $(cat "$users")"
if echo x | "$bin" broker user add "$users" 'bad user' 2> "$tmp/ua.err"; then fail "bad user name accepted"; fi
[ "$(wc -l < "$tmp/ua.err")" -eq 1 ] || fail "user add error not one line: $(cat "$tmp/ua.err")"

# Refusals, one line each.
refuse() { # expected-text args...
  local want=$1
  shift
  if "$bin" broker serve "$@" 2> "$tmp/refuse"; then fail "accepted: $*"; fi
  [ "$(wc -l < "$tmp/refuse")" -eq 1 ] || fail "$*: not one line: $(cat "$tmp/refuse")"
  grep -q -- "$want" "$tmp/refuse" || fail "$*: wrong message: $(cat "$tmp/refuse")"
}
refuse "not a loopback address" --listen 0.0.0.0:0
refuse "not a loopback address" --listen 0.0.0.0:0 --tls-cert "$tmp/cert.pem" --tls-key "$tmp/key.pem"
refuse "go together" --listen 127.0.0.1:0 --tls-cert "$tmp/cert.pem"
refuse "nope.pem" --listen 127.0.0.1:0 --tls-cert "$tmp/nope.pem" --tls-key "$tmp/key.pem"
refuse "nokey.pem" --listen 127.0.0.1:0 --tls-cert "$tmp/cert.pem" --tls-key "$tmp/nokey.pem"
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$tmp/key2.pem" -out "$tmp/cert2.pem" -days 2 \
  -subj /CN=other 2> /dev/null
refuse "mismatch" --listen 127.0.0.1:0 --tls-cert "$tmp/cert.pem" --tls-key "$tmp/key2.pem"
echo "alice SCRAM-SHA-256 4096 !!! x y" > "$tmp/badusers"
refuse "line 1" --listen 127.0.0.1:0 --sasl-users "$tmp/badusers"
refuse "not error, warn, info or debug" --log-level loud
refuse "not a number" --max-connections 0

start() { # name args...: starts a server, sets port
  local name=$1
  shift
  : > "$tmp/$name.err" # before the child's redirection: the first sed may run first (lib/serve.sh)
  "$bin" broker serve "$@" 2> "$tmp/$name.err" &
  pids+=($!)
  port=
  for _ in $(seq 1 600); do # readiness: the start line names the port
    port=$(sed -n 's/.* on port \([0-9][0-9]*\)$/\1/p' "$tmp/$name.err")
    [ -n "$port" ] && break
    kill -0 "${pids[-1]}" 2> /dev/null || fail "server $name exited: $(cat "$tmp/$name.err")"
    sleep 0.05
  done
  [ -n "$port" ] || fail "no start line: $(cat "$tmp/$name.err")"
}

count() { # records in topic $1, read over the directory
  "$bin" consume "$1" -e -f '%s\n' | wc -l
}

# ---- TLS + SASL, listening on every address -----------------------------------------
start tls --listen 0.0.0.0:0 --tls-cert "$tmp/cert.pem" --tls-key "$tmp/key.pem" \
  --sasl-users "$users" --log-level info
tport=$port
grep -q "over TLS with SASL on port" "$tmp/tls.err" || fail "start line: $(cat "$tmp/tls.err")"
K=(kcat -b "127.0.0.1:$tport" -X security.protocol=SASL_SSL -X "ssl.ca.location=$tmp/cert.pem")
SCRAM=(-X sasl.mechanisms=SCRAM-SHA-256 -X sasl.username=alice -X sasl.password=alice-secret)

seq 1 5 | sed 's/^/scram-/' > "$tmp/lines"
"${K[@]}" "${SCRAM[@]}" -P -t t < "$tmp/lines" 2> "$tmp/k.err" ||
  fail "kcat SASL_SSL SCRAM produce failed: $(cat "$tmp/k.err")"
"${K[@]}" "${SCRAM[@]}" -C -t t -e -q -f '%s\n' > "$tmp/got" 2> "$tmp/k.err" ||
  fail "kcat SASL_SSL SCRAM consume failed: $(cat "$tmp/k.err")"
cmp -s "$tmp/lines" "$tmp/got" || fail "consumed: $(cat "$tmp/got")"

# Batches above 16 KiB leave a plain connection by sendfile; over TLS the
# same file ranges are read and encrypted (server.c conn_send_range).
python3 -c 'import random
random.seed(7)
for i in range(50000): print("%06d-" % i + "".join(random.choice("abcdefghij") for _ in range(90)))' > "$tmp/biglines"
"${K[@]}" "${SCRAM[@]}" -P -t big -X linger.ms=50 < "$tmp/biglines" 2> "$tmp/k.err" ||
  fail "kcat SASL_SSL produce of 50,000 lines failed: $(cat "$tmp/k.err")"
"${K[@]}" "${SCRAM[@]}" -X check.crcs=true -C -t big -e -q -f '%s\n' > "$tmp/bigot" 2> "$tmp/k.err" ||
  fail "kcat SASL_SSL consume of 50,000 lines failed: $(cat "$tmp/k.err")"
cmp -s "$tmp/biglines" "$tmp/bigot" || fail "50,000 lines over TLS: $(wc -l < "$tmp/bigot") came back, or bytes differ"

before=$(count t)
if echo wrong | "${K[@]}" -X sasl.mechanisms=SCRAM-SHA-256 -X sasl.username=alice \
  -X sasl.password=alice-secreT -P -t t 2> "$tmp/k.err"; then
  fail "a wrong password was accepted"
fi
grep -q "Authentication failed" "$tmp/k.err" || fail "kcat's error: $(cat "$tmp/k.err")"
if echo wrong | "${K[@]}" -X sasl.mechanisms=PLAIN -X sasl.username=bob \
  -X sasl.password=first -P -t t 2> "$tmp/k.err"; then
  fail "bob's replaced password was accepted"
fi
[ "$(count t)" -eq "$before" ] || fail "a refused client appended records"
grep -q "authentication failed (SCRAM-SHA-256, user 'alice'): wrong password" "$tmp/tls.err" ||
  fail "no log line for the wrong password: $(cat "$tmp/tls.err")"

echo plain-tls | "${K[@]}" -X sasl.mechanisms=PLAIN -X sasl.username=bob -X sasl.password=bob-secret \
  -P -t t 2> "$tmp/k.err" || fail "PLAIN over TLS failed: $(cat "$tmp/k.err")"
[ "$(count t)" -eq $((before + 1)) ] || fail "PLAIN over TLS: not appended"

cat > "$tmp/kp.py" << 'PY'
import ssl, sys
from kafka import KafkaConsumer, KafkaProducer
port, ca = sys.argv[1], sys.argv[2]
common = dict(bootstrap_servers='127.0.0.1:' + port, security_protocol='SASL_SSL',
              ssl_context=ssl.create_default_context(cafile=ca), sasl_mechanism='SCRAM-SHA-256',
              sasl_plain_username='alice', sasl_plain_password='alice-secret')
p = KafkaProducer(acks='all', **common)
for i in range(10):
    p.send('t', value=b'py-%d' % i).get(timeout=30)
p.close()
c = KafkaConsumer('t', auto_offset_reset='earliest', **common)
got = []
for _ in range(120):  # until all ten are back; a safety net against a hang, not a time limit
    for recs in c.poll(timeout_ms=500).values():
        got += [r.value for r in recs]
    if sum(1 for v in got if v.startswith(b'py-')) >= 10:
        break
c.close()
want = [b'py-%d' % i for i in range(10)]
assert [v for v in got if v.startswith(b'py-')] == want, got
PY
/usr/bin/python3 "$tmp/kp.py" "$tport" "$tmp/cert.pem" 2> "$tmp/py.err" ||
  fail "kafka-python SASL_SSL SCRAM failed: $(tail -5 "$tmp/py.err")"

cat > "$tmp/raw.py" << 'PY'
# A Kafka request sent in plaintext (port, api key): the server must close
# the connection without a Kafka answer. Exit 0 if so.
import socket, struct, sys
port, key = int(sys.argv[1]), int(sys.argv[2])
s = socket.create_connection(('127.0.0.1', port))
s.settimeout(60)  # a safety net against a hang, not a time assertion
cid = b'raw'
body = struct.pack('>hhih', key, 0, 7, len(cid)) + cid + (b'\0\0\0\0' if key == 3 else b'')
s.sendall(struct.pack('>i', len(body)) + body)
data = b''
while True:
    try:
        k = s.recv(4096)
    except ConnectionResetError:
        break
    if not k:
        break
    data += k
    if len(data) >= 4 and len(data) >= 4 + struct.unpack('>i', data[:4])[0]:
        break  # one whole frame back
# a TLS alert may come back, never a Kafka response (int32 length, correlation id 7)
if len(data) >= 8 and struct.unpack('>i', data[4:8])[0] == 7:
    sys.exit('answered: %r' % data)
PY
/usr/bin/python3 "$tmp/raw.py" "$tport" 18 || fail "a plaintext client got a Kafka answer from the TLS port"
grep -q "TLS handshake failed" "$tmp/tls.err" || fail "no log line for the plaintext client: $(cat "$tmp/tls.err")"

# ---- SASL without TLS ------------------------------------------------------------------
cp "$users" "$tmp/users-world"
chmod 644 "$tmp/users-world"
start sasl --listen 127.0.0.1:0 --sasl-users "$tmp/users-world" --log-level debug --idle-timeout-ms 300
sport=$port
grep -q "readable by every user" "$tmp/sasl.err" || fail "no warning for a world-readable users file"
P=(kcat -b "127.0.0.1:$sport" -X security.protocol=SASL_PLAINTEXT)
echo scram-plaintext | "${P[@]}" "${SCRAM[@]}" -P -t plain 2> "$tmp/k.err" ||
  fail "SCRAM without TLS failed: $(cat "$tmp/k.err")"
if echo plain | "${P[@]}" -X sasl.mechanisms=PLAIN -X sasl.username=alice \
  -X sasl.password=alice-secret -P -t plain 2> "$tmp/k.err"; then
  fail "PLAIN without TLS was accepted"
fi
grep -q "PLAIN only over TLS" "$tmp/sasl.err" || fail "no log line for PLAIN: $(cat "$tmp/sasl.err")"
[ "$(count plain)" -eq 1 ] || fail "topic plain holds $(count plain) records, not 1"
/usr/bin/python3 "$tmp/raw.py" "$sport" 3 || fail "Metadata before authentication was answered"
grep -q "api 3 before authentication; disconnected" "$tmp/sasl.err" ||
  fail "no log line for the unauthenticated request: $(cat "$tmp/sasl.err")"
/usr/bin/python3 "$tmp/raw.py" "$sport" 18 2> /dev/null && fail "ApiVersions before authentication was not answered"

grep -q "client 127.0.0.1:[0-9]* (rdkafka): api 18 v[0-9] corr [0-9]*: answered, [0-9]* us" \
  "$tmp/sasl.err" || fail "no debug line per request: $(head -5 "$tmp/sasl.err")"

# SaslHandshake v1 + SaslAuthenticate v1 by hand (kafka-python's SCRAM client
# class computes the proof and checks the server's signature), then a
# Metadata request is served; the same with a wrong password is refused.
cat > "$tmp/v1.py" << 'PY'
import socket, struct, sys
from kafka.scram import ScramClient
port, pw = int(sys.argv[1]), sys.argv[2]
s = socket.create_connection(('127.0.0.1', port))
s.settimeout(60)  # a safety net against a hang, not a time assertion
def recv_all(n):
    b = b''
    while len(b) < n:
        k = s.recv(n - len(b))
        if not k:
            raise EOFError('closed by the server')
        b += k
    return b
def call(key, ver, corr, body):
    hdr = struct.pack('>hhih', key, ver, corr, 2) + b'v1'
    s.sendall(struct.pack('>i', len(hdr) + len(body)) + hdr + body)
    n, = struct.unpack('>i', recv_all(4))
    r = recv_all(n)
    assert struct.unpack('>i', r[:4])[0] == corr
    return r[4:]
def auth(corr, tok):
    r = call(36, 1, corr, struct.pack('>i', len(tok)) + tok)
    err, ml = struct.unpack('>hh', r[:4])
    msg = r[4:4 + ml] if ml >= 0 else b''
    r = r[4 + max(ml, 0):]
    bl, = struct.unpack('>i', r[:4])
    assert len(r) == 4 + bl + 8, 'SaslAuthenticate v1 has session_lifetime_ms'
    return err, msg, r[4:4 + bl]
mech = b'SCRAM-SHA-256'
r = call(17, 1, 1, struct.pack('>h', len(mech)) + mech)
assert struct.unpack('>h', r[:2])[0] == 0, r
c = ScramClient('alice', pw, 'SCRAM-SHA-256')
err, msg, sf = auth(2, c.first_message().encode())
assert err == 0, (err, msg)
c.process_server_first_message(sf.decode())
err, msg, fin = auth(3, c.final_message().encode())
if err:
    print('refused: %d %s' % (err, msg.decode()))
    sys.exit(3)
c.process_server_final_message(fin.decode())  # raises if the server's signature is wrong
r = call(3, 0, 4, struct.pack('>i', 0))
print('served')
PY
/usr/bin/python3 "$tmp/v1.py" "$sport" alice-secret > "$tmp/v1.out" 2>&1 ||
  fail "SaslAuthenticate v1: $(cat "$tmp/v1.out")"
grep -q '^served$' "$tmp/v1.out" || fail "SaslAuthenticate v1: $(cat "$tmp/v1.out")"
st=0
/usr/bin/python3 "$tmp/v1.py" "$sport" wrong > "$tmp/v1.out" 2>&1 || st=$?
[ "$st" -eq 3 ] || fail "SaslAuthenticate v1, wrong password: $(cat "$tmp/v1.out")"
grep -q "refused: 58 Authentication failed" "$tmp/v1.out" || fail "v1 refusal: $(cat "$tmp/v1.out")"

# Before authentication a frame may be 512 KiB at most (Kafka's limit too).
/usr/bin/python3 - "$sport" << 'PY' || fail "a 600 KB frame before authentication was not refused"
import socket, struct, sys
s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))
s.settimeout(60)  # a safety net against a hang, not a time assertion
s.sendall(struct.pack('>i', 600000) + struct.pack('>hhih', 18, 0, 1, 0))
assert s.recv(1) == b''
PY
grep -q "frame length 600000 out of range 0..524288 (before authentication); disconnected" \
  "$tmp/sasl.err" || fail "no log line for the large frame: $(cat "$tmp/sasl.err")"

# A client that connects and says nothing is disconnected after the idle
# timeout (one line at info level and above).
/usr/bin/python3 - "$sport" << 'PY' || fail "an idle unauthenticated client was not disconnected"
import socket, sys
s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))
s.settimeout(60)  # a safety net against a hang, not a time assertion
assert s.recv(1) == b''
PY
grep -q "before authenticating; disconnected" "$tmp/sasl.err" ||
  fail "no log line for the idle client: $(cat "$tmp/sasl.err")"

for p in "${pids[@]}"; do kill -TERM "$p"; done
for p in "${pids[@]}"; do wait "$p" || fail "server exit status $? after SIGTERM"; done
pids=()
grep -q '^sluice broker serve: stopped$' "$tmp/tls.err" || fail "no stop line: $(cat "$tmp/tls.err")"
echo "server_security: ok"
