#!/usr/bin/env bash
# Starts the quickstart: two wsecho backends and l4edge in front of them.
# Ctrl-C stops all three (only the processes started here, by PID).
set -euo pipefail
bin=${1:-bin}
cd "$(dirname "$0")/.."
pids=()
# The children run in sessions of their own, so a Ctrl-C (which make also
# handles and passes on) never reaches them twice: this script sends each
# one SIGINT exactly once, lets l4edge drain, and only then insists.
stop() {
  trap - INT TERM EXIT
  for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
  for _ in $(seq 70); do
    alive=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop INT TERM EXIT

setsid "$bin/wsecho" -listen 127.0.0.1:9001 -name backend-1 & pids+=($!)
setsid "$bin/wsecho" -listen 127.0.0.1:9002 -name backend-2 & pids+=($!)
setsid "$bin/l4edge" run -config examples/quickstart.yaml & pids+=($!)
sleep 1

cat <<'MSG'

l4edge is serving wss://localhost:8443 (self-signed certificate for localhost)
in front of two WebSocket echo backends (127.0.0.1:9001 and :9002).

Try it (each run may land on the other backend; type lines, "whoami" names it):

  bin/wsecho -dial wss://localhost:8443/ -insecure

Or from any WebSocket client that can skip verification of the self-signed
certificate. Ctrl-C stops everything.

MSG
wait -n "${pids[@]}" || true
