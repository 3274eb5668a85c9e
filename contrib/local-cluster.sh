#!/usr/bin/env bash
# The local cluster of `make start-all` / `make stop-all` / `make status`.
# Everything lives under $SHARDSPACE_VAR (default var/): logs in log/, pid files in run/.
#
# What runs today: the example contracts' checkers, in Python and in Rust.
# The replicas and the client API on :5000 join here as they are built.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
var=${SHARDSPACE_VAR:-$root/var}
python=${SHARDSPACE_PYTHON:-$root/.venv/bin/python}
bin=${SHARDSPACE_BIN:-$root/target/release}
host=127.0.0.1
python_port=${CHECKER_PYTHON_PORT:-7101}
rust_port=${CHECKER_RUST_PORT:-7102}
wait_seconds=${START_WAIT_SECONDS:-60}

services=(checker-python checker-rust)

say() { printf '%s\n' "$*"; }

pid_of() { cat "$var/run/$1.pid" 2>/dev/null || true; }

running() {
  local pid
  pid=$(pid_of "$1")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

url_of() {
  case $1 in
    checker-python) echo "http://$host:$python_port" ;;
    checker-rust) echo "http://$host:$rust_port" ;;
  esac
}

launch() {
  local name=$1
  shift
  nohup "$@" >"$var/log/$name.out" 2>"$var/log/$name.log" </dev/null &
  echo $! >"$var/run/$name.pid"
}

start_one() {
  local name=$1
  case $name in
    checker-python)
      local contracts=()
      for contract in hello addition bank petition dump; do
        contracts+=("$root/contracts/python/$contract/$contract.py")
      done
      launch "$name" "$python" -m shardspace.checker --host "$host" --port "$python_port" "${contracts[@]}" ;;
    checker-rust)
      launch "$name" "$bin/shardspace-example-checkers" --host "$host" --port "$rust_port" ;;
  esac
}

healthy() {
  python3 - "$1" <<'PY' 2>/dev/null
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1] + "/", timeout=2) as answer:
    sys.exit(0 if answer.status == 200 else 1)
PY
}

start() {
  mkdir -p "$var/log" "$var/run"
  local already=()
  for name in "${services[@]}"; do running "$name" && already+=("$name"); done
  if [ ${#already[@]} -eq ${#services[@]} ]; then
    say "Shardspace is already running (${already[*]}): 'make status' shows it, 'make stop-all' stops it."
    exit 0
  fi
  for name in "${services[@]}"; do
    if running "$name"; then say "  $name already running (pid $(pid_of "$name"))"; continue; fi
    start_one "$name"
    say "  started $name (pid $(pid_of "$name")), log: var/log/$name.log"
  done
  local deadline=$((SECONDS + wait_seconds))
  for name in "${services[@]}"; do
    printf '  waiting for %s at %s ' "$name" "$(url_of "$name")"
    until healthy "$(url_of "$name")"; do
      if ! running "$name"; then
        say "FAILED: $name exited. Last lines of var/log/$name.log:"
        tail -n 20 "$var/log/$name.log" | sed 's/^/    /'
        stop >/dev/null
        exit 1
      fi
      if [ $SECONDS -ge $deadline ]; then
        say "FAILED: $name did not answer within ${wait_seconds}s (see var/log/$name.log)"
        stop >/dev/null
        exit 1
      fi
      printf '.'
      sleep 0.2
    done
    say " up"
  done
  status
  cat <<TRY

Try it (the Python checker; the Rust one at $(url_of checker-rust) answers the same):
  curl -s -X POST $(url_of checker-python)/hello/greet -d '{"contractID":"hello","methodID":"greet","inputs":[],"referenceInputs":[],"parameters":["world"],"returns":[],"outputs":["hello, world"],"dependencies":[]}'

Not yet here: the BFT replicas and the client API on :5000 (issues 3 to 5).
Stop with 'make stop-all'.
TRY
}

stop() {
  for name in "${services[@]}"; do
    local pid
    pid=$(pid_of "$name")
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid"
      local deadline=$((SECONDS + 10))
      while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
      kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
      say "stopped $name (pid $pid)"
    fi
    rm -f "$var/run/$name.pid"
  done
}

status() {
  say "service          pid      address                  state"
  for name in "${services[@]}"; do
    local state=stopped pid=-
    if running "$name"; then
      pid=$(pid_of "$name")
      if healthy "$(url_of "$name")"; then state=healthy; else state="running, not answering"; fi
    fi
    printf '%-16s %-8s %-24s %s\n' "$name" "$pid" "$(url_of "$name")" "$state"
  done
}

case ${1:-} in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) say "usage: $0 start|stop|status"; exit 2 ;;
esac
