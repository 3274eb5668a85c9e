# Shardspace: the two commands a new user runs are `make start-all` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
CARGO ?= cargo

.PHONY: all build release venv bench-venv netns-deps browser-deps hosts test test-rust test-python lint fixtures sim sim-bft sim-sbac bench bench-quick bench-soak bench-faults bench-bft start-all stop-all status clean

all: build

build:
	$(CARGO) build --workspace

release:
	$(CARGO) build --release --workspace

# The Python SDK and the example contracts' dependencies, in a virtual environment of the project's own.
venv: $(VENV)/.installed
$(VENV)/.installed: checker-sdk/python/pyproject.toml contracts/python/requirements.txt
	@echo "==> creating the Python environment in $(VENV)"
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --upgrade pip
	$(VPY) -m pip install --quiet -e 'checker-sdk/python[dev]' -r contracts/python/requirements.txt
	touch $@

test: lint test-rust test-python

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

test-rust: venv netns-deps browser-deps
	SHARDSPACE_PYTHON=$(abspath $(VPY)) $(CARGO) test --workspace --locked

test-python: venv
	$(VPY) checker-sdk/fixtures/generate.py --check
	$(VPY) -m pytest -q

# What the tests over hosts made of network namespaces need (cli/tests/hosts.rs): iproute2
# and nftables from Debian, installed when this is root and they are missing. Not root, or
# not installable: the tests say SKIPPED, and why.
netns-deps:
	@if [ "$$(id -u)" != 0 ]; then echo "==> not root: the tests over network namespaces will say SKIPPED"; \
	elif ! command -v ip >/dev/null || ! command -v nft >/dev/null; then \
	  echo "==> installing iproute2 and nftables for the tests over network namespaces"; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 nftables >/dev/null; } \
	  || echo "==> could not install them: the tests over network namespaces will say SKIPPED"; fi

# What the explorer's test in a real browser needs (cli/tests/explorer.rs): Debian's chromium
# and chromium-driver, installed when this is root and they are missing. Otherwise the test
# says SKIPPED, and why.
browser-deps:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" != 0 ]; then echo "==> not root: the explorer's browser test will say SKIPPED"; \
	else echo "==> installing chromium and chromium-driver for the explorer's browser test"; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } \
	  || echo "==> could not install them: the explorer's browser test will say SKIPPED"; fi

# A cluster over four hosts made of network namespaces, for trying faults by hand (root):
# commands on stdin (cut, partition, block, heal, kill, start); everything is removed at the end.
hosts: venv netns-deps
	$(CARGO) build --release -p shardspace-cli
	$(CARGO) build --release -p shardspace-testkit --bin hosts
	SHARDSPACE_PYTHON=$(abspath $(VPY)) ./target/release/hosts ./target/release/shardspace

# The simulators over many seeds (`make sim SEEDS=2000`), or one seed replayed (`SEED=42 make sim`):
# each seed runs one BFT shard, then S-BAC across two or three shards with Byzantine replicas.
SEEDS ?= 500
sim:
	$(CARGO) build --release -p shardspace-testkit --bin sim
	@if [ -n "$(SEED)" ]; then ./target/release/sim --seed $(SEED); else ./target/release/sim --seeds $(SEEDS); fi

# One of the two: `make sim-bft`, `make sim-sbac` (same SEEDS and SEED).
sim-bft sim-sbac: sim-%:
	$(CARGO) build --release -p shardspace-testkit --bin sim
	@if [ -n "$(SEED)" ]; then ./target/release/sim --$* --seed $(SEED); else ./target/release/sim --$* --seeds $(SEEDS); fi

# matplotlib, for the benchmark's plots only (not needed by `make test`).
bench-venv: $(VENV)/.bench-installed
$(VENV)/.bench-installed: $(VENV)/.installed
	$(VPY) -m pip install --quiet matplotlib
	touch $@

# Local clusters of 1 to 8 shards driven through the API (docs/benchmarks.md): results,
# summary and plots in bench/results/. `make bench-quick` is the under-3-minutes plan.
bench bench-quick: bench%: venv bench-venv
	$(CARGO) build --release -p shardspace-cli
	SHARDSPACE_PYTHON=$(abspath $(VPY)) ./target/release/shardspace bench $(if $(filter -quick,$*),--quick) $(BENCH_FLAGS)

# Ten minutes at half of the peak, each replica's memory sampled every 10 s (docs/benchmarks.md).
bench-soak: venv bench-venv
	$(CARGO) build --release -p shardspace-cli
	SHARDSPACE_PYTHON=$(abspath $(VPY)) ./target/release/shardspace bench --soak 600 $(BENCH_FLAGS)

# A replica of every shard killed, restarted, another paused, resumed, under load (docs/benchmarks.md).
bench-faults: venv bench-venv
	$(CARGO) build --release -p shardspace-cli
	SHARDSPACE_PYTHON=$(abspath $(VPY)) ./target/release/shardspace bench --faults $(BENCH_FLAGS)

# Four replica processes of one shard, open-loop clients: peak decided requests/s and latency at half of it.
bench-bft:
	$(CARGO) build --release -p shardspace-cli
	$(CARGO) build --release -p shardspace-testkit --bin bench_bft
	./target/release/bench_bft $(BENCH_FLAGS)

# Regenerates checker-sdk/fixtures/ from the Python SDK and contracts; commit the result.
fixtures: venv
	$(VPY) checker-sdk/fixtures/generate.py

# The local cluster: see contrib/local-cluster.sh. Data and logs live under var/.
start-all: venv
	@echo "==> building (release): this takes a few minutes the first time"
	$(CARGO) build --release -p shardspace-cli
	@echo "==> starting"
	@contrib/local-cluster.sh start

stop-all:
	@contrib/local-cluster.sh stop

status:
	@contrib/local-cluster.sh status

clean:
	$(CARGO) clean
	rm -rf $(VENV)
