"""Draws the plots of one `shardspace bench` result file, next to it.

    python bench/plot.py bench/results/<UTC time>.json

writes <UTC time>-throughput.png (committed against offered load), -latency.png (p50
and p99 against offered load) and -shards.png (peak throughput and CPU per committed
transaction against the number of shards); for a soak file (`--soak`), -rss.png (each
replica's memory over time); for a faults file (`--faults`), -throughput.png (committed
tx/s and p50 per second, each phase marked), and for the full plan, which measures faults
too, that same plot as -faults.png. Needs matplotlib (`make bench` installs it).
"""

import json
import sys
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def series(results, mode):
    """Figures of one mode, grouped by (workload, checkers, shards), sorted by load."""
    groups = defaultdict(list)
    for figure in results:
        if figure["mode"] == mode:
            groups[(figure["workload"], figure["checkers"], figure["shards"])].append(figure)
    return {key: sorted(figures, key=lambda f: f["offered_tps"] or 0) for key, figures in sorted(groups.items())}


def label(key):
    workload, checkers, shards = key
    return f"{workload}, {checkers}, {shards} shards"


def throughput(results, path):
    fig, ax = plt.subplots(figsize=(7, 4.5))
    top = 0
    for key, figures in series(results, "open").items():
        offered = [f["offered_tps"] for f in figures]
        committed = [f["tps_median"] for f in figures]
        ax.plot(offered, committed, marker="o", label=label(key))
        top = max(top, *offered, *committed)
    ax.plot([0, top], [0, top], linestyle=":", color="grey", label="committed = offered")
    ax.set_xlabel("offered load (tx/s)")
    ax.set_ylabel("committed (tx/s, median of runs)")
    ax.set_title("Throughput against offered load")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def latency(results, path):
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for key, figures in series(results, "open").items():
        offered = [f["offered_tps"] for f in figures]
        (line,) = ax.plot(offered, [f["p50_ms"] for f in figures], marker="o", label=f"p50 {label(key)}")
        ax.plot(offered, [f["p99_ms"] for f in figures], marker="^", linestyle="--", color=line.get_color(),
                label=f"p99 {label(key)}")
    ax.set_yscale("log")
    ax.set_xlabel("offered load (tx/s)")
    ax.set_ylabel("submit to outcome (ms, median of runs)")
    ax.set_title("Latency against offered load")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def shards(results, path):
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2))
    by_workload = defaultdict(list)
    for figure in results:
        if figure["mode"] == "peak" and figure["checkers"] == "rust" and figure["workload"].startswith("dump"):
            by_workload[figure["workload"]].append(figure)
    for workload, figures in sorted(by_workload.items()):
        figures.sort(key=lambda f: f["shards"])
        counts = [f["shards"] for f in figures]
        left.plot(counts, [f["tps_median"] for f in figures], marker="o", label=workload)
        right.plot(counts, [f["cpu_s_per_tx"] * 1000 for f in figures], marker="o", label=workload)
    if not by_workload:
        for ax in (left, right):
            ax.text(0.5, 0.5, "no peak figures with Rust checkers", ha="center", transform=ax.transAxes)
    for ax, title, unit in ((left, "Peak throughput", "committed tx/s"), (right, "CPU per committed tx", "ms")):
        ax.set_xlabel("shards (4 replicas each, all on this machine)")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.set_xscale("log", base=2)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        if by_workload:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def soak(run, path):
    slices = run["slices"]
    times = [s["at_s"] for s in slices]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    replicas = len(slices[0]["replica_rss_mib"]) if slices else 0
    for replica in range(replicas):
        top.plot(times, [s["replica_rss_mib"][replica] for s in slices], label=f"replica {replica}")
    top.set_ylabel("resident memory (MiB)")
    top.set_title(f"Soak: {run['offered_tps']:.0f} tx/s offered for {run['seconds']} s")
    top.set_ylim(bottom=0)
    top.grid(alpha=0.3)
    top.legend(fontsize=7, ncol=4)
    bottom.plot(times, [s["tps"] for s in slices], label="committed tx/s")
    bottom.plot(times, [s["p99_ms"] for s in slices], label="p99 ms")
    bottom.set_xlabel("seconds")
    bottom.set_ylim(bottom=0)
    bottom.grid(alpha=0.3)
    bottom.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def faults(document, path):
    runs = document["runs"]
    fig, axes = plt.subplots(len(runs), 1, figsize=(9, 3.2 * len(runs)), squeeze=False)
    for ax, run in zip(axes[:, 0], runs):
        times = [second[0] for second in run["per_second"]]
        ax.plot(times, [second[1] for second in run["per_second"]], label="committed tx/s", color="tab:blue")
        ax.set_ylabel("tx/s")
        ax.set_ylim(bottom=0)
        latency = ax.twinx()
        latency.plot(times, [second[2] for second in run["per_second"]], label="p50 ms", color="tab:orange")
        latency.set_ylabel("p50 (ms)")
        latency.set_ylim(bottom=0)
        for index, phase in enumerate(run["phases"]):
            if index % 2:
                ax.axvspan(phase["from_s"], phase["to_s"], color="grey", alpha=0.12)
            ax.text(phase["from_s"] + 0.2, 0.02, phase["name"], transform=ax.get_xaxis_transform(), fontsize=8)
            if index:
                ax.axvline(phase["from_s"], color="red", linewidth=0.8)
        ax.set_title(f"{run['workload']}, {run['clients']} clients: faults at the red lines")
        ax.grid(alpha=0.3)
        lines = ax.get_legend_handles_labels()[0] + latency.get_legend_handles_labels()[0]
        ax.legend(lines, [line.get_label() for line in lines], fontsize=8, loc="upper right")
    axes[-1, 0].set_xlabel("seconds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv):
    if len(argv) != 2:
        sys.exit(__doc__)
    source = Path(argv[1])
    document = json.loads(source.read_text())
    stem = source.with_suffix("")
    if "faults" in document and "results" not in document:
        target = Path(f"{stem}-throughput.png")
        faults(document["faults"], target)
        print(f"wrote {target}", file=sys.stderr)
        return
    if "soak" in document:
        target = Path(f"{stem}-rss.png")
        soak(document["soak"], target)
        print(f"wrote {target}", file=sys.stderr)
        return
    results = document["results"]
    for name, draw in (("throughput", throughput), ("latency", latency), ("shards", shards)):
        target = Path(f"{stem}-{name}.png")
        draw(results, target)
        print(f"wrote {target}", file=sys.stderr)
    if "faults" in document:
        target = Path(f"{stem}-faults.png")
        faults(document["faults"], target)
        print(f"wrote {target}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv)
