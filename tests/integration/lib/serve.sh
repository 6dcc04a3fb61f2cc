# tests/integration/lib/serve.sh - sourced by the integration tests that run
# `sluice broker serve` on port 0 (`. "$(dirname "$0")/lib/serve.sh"`); not a
# test itself (CMake registers tests/integration/*.sh, not this directory).
# The sourcing script has set bin (the sluice binary) and then calls:
#
#   serve_init NAME [SIGNAL]  sets tmp (a new temporary directory) and pid
#       (empty), and an EXIT trap that kills a running server (kill SIGNAL,
#       default -9) and removes tmp; defines fail MSG... ("NAME: MSG..." on
#       stderr, exit 1).
#   serve_track PID  a background process of the test (a group member, say)
#       that the EXIT trap kills (-9) too, before the server.
#   serve_start  runs `$bin broker serve --listen 127.0.0.1:0` in the
#       background, its stderr in $tmp/serve.err, and waits for its start
#       line ("... on port N"): sets pid and port; fails when the server
#       exits first or never says its port.

serve_init() {
  serve_name=$1
  serve_signal=${2:--9}
  tmp=$(mktemp -d)
  pid=
  serve_tracked=()
  trap serve_cleanup EXIT
}

serve_track() {
  serve_tracked+=("$1")
}

serve_cleanup() {
  local p
  for p in "${serve_tracked[@]}"; do kill -9 "$p" 2> /dev/null || true; done
  if [ -n "$pid" ]; then kill "$serve_signal" "$pid" 2> /dev/null || true; fi
  rm -rf "$tmp"
}

fail() {
  echo "$serve_name: $*" >&2
  exit 1
}

serve_start() {
  # The file exists before the server starts: the redirection below happens in
  # the background child, which may not have run when the first sed reads it
  # (a missing file made sed fail, and set -e end the test, in 0.03 s).
  : > "$tmp/serve.err"
  "$bin" broker serve --listen 127.0.0.1:0 2> "$tmp/serve.err" &
  pid=$!
  port=
  for _ in $(seq 1 600); do # readiness: the start line names the port
    port=$(sed -n 's/.* on port \([0-9][0-9]*\)$/\1/p' "$tmp/serve.err")
    [ -n "$port" ] && break
    kill -0 "$pid" 2> /dev/null || fail "server exited: $(cat "$tmp/serve.err")"
    sleep 0.05
  done
  [ -n "$port" ] || fail "no start line: $(cat "$tmp/serve.err")"
}
