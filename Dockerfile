# Shardspace in one image: `shardspace` runs a replica, the client API or the example
# contracts' Rust checkers; Python 3 with the SDK runs the Python checkers.
#
#   docker build -t shardspace .
#   docker run -v $PWD/var/cluster:/cluster shardspace node --config /cluster/cluster.toml --shard 0 --replica 0
#   docker run -v $PWD/var/cluster:/cluster -p 5000:5000 shardspace api --config /cluster/cluster.toml --listen 0.0.0.0:5000
#   docker run -p 7102:7102 shardspace checker --host 0.0.0.0 --port 7102
#   docker run -p 7101:7101 --entrypoint python3 shardspace -m shardspace.checker --host 0.0.0.0 --port 7101 \
#       /opt/shardspace/contracts/python/bank/bank.py
#
# contrib/compose/compose.yaml runs a cluster over four hosts with it (docs/operating.md).
# The cluster file's addresses must be reachable between containers (not 127.0.0.1), and
# each replica's key file and data folder sit beside the mounted cluster file. Key files
# are readable by their owner only: run as that owner (`--user $(id -u):$(id -g)`), which
# must also be able to write the data folders.

FROM rust:1-slim-bookworm AS build
# jemalloc (the binary's allocator) is built with its configure script and make.
RUN apt-get update && apt-get install -y --no-install-recommends make && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p shardspace-cli

FROM python:3.12-slim-bookworm
COPY --from=build /src/target/release/shardspace /usr/local/bin/shardspace
COPY checker-sdk/python /opt/shardspace/checker-sdk/python
COPY contracts/python /opt/shardspace/contracts/python
RUN pip install --no-cache-dir /opt/shardspace/checker-sdk/python -r /opt/shardspace/contracts/python/requirements.txt \
    && useradd --create-home --uid 10001 shardspace
USER shardspace
WORKDIR /home/shardspace
ENTRYPOINT ["shardspace"]
CMD ["--help"]
