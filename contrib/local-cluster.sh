#!/usr/bin/env bash
# The local cluster of `make start-all` / `make stop-all` / `make status`.
# Everything lives under $SHARDSPACE_VAR (default var/): the cluster file and keys in
# cluster/, each replica's SQLite in cluster/data/, logs in log/, pid files in run/.
#
# What runs: the contracts' checkers (Python on :7101, Rust on :7102), two shards of four
# replicas (ports 7300-7315), the client API on :5000, and the checker of each contract
# added with `shardspace contract add DIR` (listed in var/contracts.list: its port and
# folder, one a line; `shardspace contract serve` builds and serves it).
#
# Contracts are found, not named: the Python checker serves every contracts/python/NAME/
# holding NAME.py; the Rust one (`shardspace checker`) serves the contracts built into it
# (`--list`). A contract in both goes to Rust unless PYTHON_CHECKED lists it ("bank petition"
# by default, so that both checkers serve). Any other folder (a crate of its own under contracts/rust/,
# or the folders listed in $SHARDSPACE_CONTRACTS, colon-separated, or in contracts.local at
# the checkout's root, one a line) is added with `shardspace contract add` once the cluster
# is up.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
var=${SHARDSPACE_VAR:-$root/var}
python=${SHARDSPACE_PYTHON:-$root/.venv/bin/python}
bin=${SHARDSPACE_BIN:-$root/target/release}
host=127.0.0.1
python_port=${CHECKER_PYTHON_PORT:-7101}
rust_port=${CHECKER_RUST_PORT:-7102}
api_port=${API_PORT:-5000}
base_port=${BASE_PORT:-7300}
shards=${SHARDS:-2}
replicas=${REPLICAS:-4}
wait_seconds=${START_WAIT_SECONDS:-90}
cluster_file=$var/cluster/cluster.toml
python_checked=" ${PYTHON_CHECKED:-bank petition} "

replica_services=()
for ((s = 0; s < shards; s++)); do
  for ((r = 0; r < replicas; r++)); do replica_services+=("shard-$s-replica-$r"); done
done
# Contracts added to this cluster: service name -> "port<TAB>folder".
declare -A added=()
added_services=()
if [ -f "$var/contracts.list" ]; then
  while IFS=$'\t' read -r port folder; do
    [ -n "$port" ] && [ -n "$folder" ] || continue
    name="checker-$(basename "$folder")"
    added[$name]="$port"$'\t'"$folder"
    added_services+=("$name")
  done <"$var/contracts.list"
fi
services=(checker-python checker-rust ${added_services[@]+"${added_services[@]}"} "${replica_services[@]}" api)

say() { printf '%s\n' "$*"; }

pid_of() { cat "$var/run/$1.pid" 2>/dev/null || true; }

# Alive, and ours: a pid file left by a reboot may name someone else's process now. An
# added contract's checker is known by its folder's name (a Python one serves the folder, a
# Rust one runs the crate's binary, named as the folder by `contract new`).
running() {
  local pid mark=shardspace
  pid=$(pid_of "$1")
  [ -n "${added[$1]:-}" ] && mark=$(basename "${added[$1]#*$'\t'}")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$mark"
}

url_of() {
  if [ -n "${added[$1]:-}" ]; then echo "http://$host:${added[$1]%%$'\t'*}"; return; fi
  case $1 in
    checker-python) echo "http://$host:$python_port" ;;
    checker-rust) echo "http://$host:$rust_port" ;;
    api) echo "http://$host:$api_port" ;;
    shard-*)
      local shard=${1#shard-}
      shard=${shard%%-*}
      echo "tcp://$host:$((base_port + 2 * (shard * replicas + ${1##*-}) + 1))" ;;
  esac
}

launch() {
  local name=$1
  shift
  nohup "$@" >"$var/log/$name.out" 2>"$var/log/$name.log" </dev/null &
  echo $! >"$var/run/$name.pid"
}

# Writes the cluster file and keys once; later starts keep them, and the data.
configure() {
  [ -f "$cluster_file" ] && return 0
  if [ -e "$var/cluster" ]; then
    say "FAILED: ${var#$root/}/cluster exists without cluster.toml: move it away (it may hold data) and start again"
    exit 1
  fi
  say "  writing a $shards-shard x $replicas-replica cluster file: ${cluster_file#$root/}"
  # Written aside and moved into place whole: a half-written cluster is never kept.
  local draft="$var/cluster.draft"
  rm -rf "$draft"
  local checkers=() contract python_found=" "
  for contract in $(python_contracts); do python_found+="$contract "; done
  for contract in $(rust_contracts); do
    if [[ "$python_found" == *" $contract "* && "$python_checked" == *" $contract "* ]]; then continue; fi
    checkers+=(--checker "$contract=http://$host:$rust_port")
    python_found=${python_found/ $contract / }
  done
  for contract in $python_found; do checkers+=(--checker "$contract=http://$host:$python_port"); done
  "$bin/shardspace" config gen --dir "$draft" --shards "$shards" --replicas "$replicas" \
    --base-port "$base_port" --hosts "$host" "${checkers[@]}" >/dev/null
  mv "$draft" "$var/cluster"
}

start_one() {
  local name=$1
  if [ -n "${added[$name]:-}" ]; then
    launch "$name" "$bin/shardspace" contract serve --host "$host" --port "${added[$name]%%$'\t'*}" "${added[$name]#*$'\t'}"
    return
  fi
  case $name in
    checker-python)
      local folders=()
      for contract in $(python_contracts); do folders+=("$root/contracts/python/$contract"); done
      launch "$name" "$python" -m shardspace.checker --host "$host" --port "$python_port" "${folders[@]}" ;;
    checker-rust)
      launch "$name" "$bin/shardspace" checker --host "$host" --port "$rust_port" ;;
    shard-*)
      local shard=${name#shard-}
      shard=${shard%%-*}
      launch "$name" "$bin/shardspace" node --config "$cluster_file" --shard "$shard" --replica "${name##*-}" ;;
    api)
      launch "$name" "$bin/shardspace" api --config "$cluster_file" --listen "$host:$api_port" ;;
  esac
}

# The contract folders under contracts/python (NAME/NAME.py), by name.
python_contracts() {
  local folder
  for folder in "$root"/contracts/python/*/; do
    folder=${folder%/}
    [ -f "$folder/$(basename "$folder").py" ] && basename "$folder"
  done
}

# The contracts built into `shardspace checker`.
rust_contracts() { "$bin/shardspace" checker --list; }

# Folders to add once the cluster is up: crates of their own under contracts/rust/ (with a
# [workspace] of their own, as `contract new` writes them; the examples are the checkout's
# and built into `shardspace checker`), Python contracts put under contracts/python/ after
# the cluster file was written, and the folders the user lists.
to_add() {
  local folder contract
  for contract in $(python_contracts); do
    grep -q "^$contract = " "$cluster_file" || echo "$root/contracts/python/$contract"
  done
  for folder in "$root"/contracts/rust/*/; do
    folder=${folder%/}
    [ -f "$folder/src/main.rs" ] && grep -q '^\[workspace\]' "$folder/Cargo.toml" 2>/dev/null && echo "$folder"
  done
  if [ -n "${SHARDSPACE_CONTRACTS:-}" ]; then tr ':' '\n' <<<"$SHARDSPACE_CONTRACTS"; fi
  if [ -f "$root/contracts.local" ]; then grep -v '^[[:space:]]*\(#\|$\)' "$root/contracts.local" || true; fi
}

# Adds each folder of `to_add` that is not added yet.
add_listed() {
  local given folder
  while read -r given; do
    [ -n "$given" ] || continue
    folder=$(cd "$given" 2>/dev/null && pwd) || { say "FAILED: no contract folder at $given"; continue; }
    if grep -qF "$(printf '\t')$folder" "$var/contracts.list" 2>/dev/null; then continue; fi
    say "  adding the contract at $folder"
    "$bin/shardspace" contract add "$folder" --var "$var" --api "$(url_of api)" | sed 's/^/    /' ||
      say "FAILED: the contract at $folder was not added (see above)"
  done < <(to_add)
}

# Whether a service answers: a checker or the API over HTTP; a replica through the API,
# which asks every replica for its status.
healthy() {
  case $1 in
    shard-*) replica_up "$1" ;;
    api) http_ok "$(url_of api)/api/1.0/" ;;
    *) http_ok "$(url_of "$1")/" ;;
  esac
}

http_ok() {
  python3 - "$1" <<'PY' 2>/dev/null
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=2) as answer:
    sys.exit(0 if answer.status == 200 else 1)
PY
}

replica_up() {
  local shard=${1#shard-}
  shard=${shard%%-*}
  python3 - "$(url_of api)/v1/cluster" "$shard" "${1##*-}" <<'PY' 2>/dev/null
import json, sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=5) as answer:
    cluster = json.load(answer)
replica = cluster["shards"][int(sys.argv[2])]["replicas"][int(sys.argv[3])]
sys.exit(0 if replica["up"] else 1)
PY
}

start() {
  mkdir -p "$var/log" "$var/run"
  local already=()
  for name in "${services[@]}"; do running "$name" && already+=("$name"); done
  if [ ${#already[@]} -eq ${#services[@]} ]; then
    say "Shardspace is already running (${#already[@]} processes): 'make status' shows them, 'make stop-all' stops them."
    exit 0
  fi
  configure
  for name in "${services[@]}"; do
    if running "$name"; then say "  $name already running (pid $(pid_of "$name"))"; continue; fi
    start_one "$name"
    say "  started $name (pid $(pid_of "$name")), log: ${var#$root/}/log/$name.log"
  done
  local deadline=$((SECONDS + wait_seconds))
  for name in "${services[@]}"; do
    printf '  waiting for %s at %s ' "$name" "$(url_of "$name")"
    until running "$name" && healthy "$name"; do
      if ! running "$name"; then
        say "FAILED: $name exited. Last lines of ${var#$root/}/log/$name.log:"
        tail -n 20 "$var/log/$name.log" | sed 's/^/    /'
        stop >/dev/null
        exit 1
      fi
      if [ $SECONDS -ge $deadline ]; then
        say "FAILED: $name did not answer within ${wait_seconds}s (see ${var#$root/}/log/$name.log)"
        stop >/dev/null
        exit 1
      fi
      printf '.'
      sleep 0.2
    done
    say " up"
  done
  add_listed
  status
  cat <<TRY

The cluster is up: the client API at $(url_of api), data under ${var#$root/}/ (kept across restarts).
Try it (a dump transaction creating one object; see README.md for a bank transfer):
  curl -s -X POST $(url_of api)/v1/transactions -d '{"transaction":{"contractID":"dump","methodID":"put","inputIDs":[],"referenceInputIDs":[],"parameters":[],"returns":[],"outputs":["\\"hello\\""],"dependencies":[]},"store":{}}'

Also: target/release/shardspace status | submit FILE | object ID | tx ID. Stop with 'make stop-all'.
TRY
}

stop() {
  # The API first, the checkers last: nothing is left calling what has stopped.
  local order=(api "${replica_services[@]}" ${added_services[@]+"${added_services[@]}"} checker-rust checker-python)
  for name in "${order[@]}"; do
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
  say "service            pid      address                  state"
  for name in "${services[@]}"; do
    local state=stopped pid=-
    if running "$name"; then
      pid=$(pid_of "$name")
      if healthy "$name"; then state=healthy; else state="running, not answering"; fi
    fi
    printf '%-18s %-8s %-24s %s\n' "$name" "$pid" "$(url_of "$name")" "$state"
  done
}

case ${1:-} in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) say "usage: $0 start|stop|status"; exit 2 ;;
esac
