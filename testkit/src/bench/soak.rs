//! `shardspace bench --soak N`: a long open-loop run at a fixed rate on 2 shards of Rust
//! checkers, in slices of 10 s, with each replica's resident memory sampled after every
//! slice. Memory must level off once warmed up: a replica's state and logs are bounded
//! (decided blocks are dropped at each checkpoint), or the figure shows what is not.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use serde::Serialize;
use shardspace_core::ShardMap;

use super::load::{RunStats, Target, closed, open};
use super::workload::Stream;
use super::{accounting, median, next_prefix as stream_prefix, wait_ready};
use crate::cluster::{LocalCluster, Options};

const SLICE: Duration = Duration::from_secs(10);
/// Memory before this share of the run is warm-up, not judged.
const WARMUP_SHARE: f64 = 0.2;
/// How far above its first warmed-up sample a replica's memory may go and still be flat.
const FLAT_WITHIN: f64 = 0.10;

#[derive(Debug, Serialize)]
pub struct Slice {
    pub at_s: f64,
    #[serde(flatten)]
    pub stats: RunStats,
    /// Each replica's resident memory at the end of the slice, MiB (by shard, then replica).
    pub replica_rss_mib: Vec<f64>,
    /// CPU of the cluster's processes (replicas, checkers, API) over the slice, in cores.
    pub cluster_cores: f64,
    /// CPU of the load generator over the slice, in cores.
    pub loadgen_cores: f64,
    /// Every replica's data directory together (SQLite and its WAL), at the end of the slice.
    pub disk_mib: f64,
}

#[derive(Debug, Serialize)]
pub struct Soak {
    pub seconds: u64,
    pub workload: &'static str,
    pub offered_tps: f64,
    /// The closed-loop peak measured first (when no rate was given).
    pub peak_tps: Option<f64>,
    pub slices: Vec<Slice>,
    /// Per replica: (max after warm-up − first after warm-up) / first after warm-up.
    pub rss_growth_after_warmup: Vec<f64>,
    pub flat: bool,
    pub tps_median: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Medians over the slices.
    pub cluster_cores: f64,
    pub loadgen_cores: f64,
    /// Every replica's data at the end, per transaction committed over the soak (bytes;
    /// a cross-shard transaction is stored by both shards).
    pub disk_bytes_per_tx: f64,
    /// The slices whose p99 went over `P99_BOUND_MS`.
    pub slices_over_p99_bound: usize,
}

/// The bound on each slice's p99 that issue 16 sets.
const P99_BOUND_MS: f64 = 100.0;

/// Bytes of the files under `dir`, recursively (0 where it cannot be read).
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .filter_map(Result::ok)
        .map(|entry| match entry.metadata() {
            Ok(metadata) if metadata.is_dir() => dir_bytes(&entry.path()),
            Ok(metadata) => metadata.len(),
            Err(_) => 0,
        })
        .sum()
}

pub async fn run(
    bin: &Path,
    options: &Options,
    seconds: u64,
    rate: Option<f64>,
    cross: bool,
    peak_seconds: f64,
) -> anyhow::Result<Soak> {
    let workload = if cross { "dump-cross" } else { "dump-single" };
    eprintln!("==> soak: {workload}, 2 shards × 4 replicas, rust checkers, {seconds} s");
    let cluster = tokio::task::block_in_place(|| LocalCluster::with(bin, options))?;
    let target = Target::new(&cluster.api_url())?;
    let map = ShardMap::new(options.shards)?;
    wait_ready(&target, map).await?;
    let (offered_tps, peak_tps) = match rate {
        Some(rate) => (rate, None),
        None => {
            let streams = (0..64).map(|_| Stream::dump(stream_prefix(), map, cross)).collect();
            let window = Duration::from_secs_f64(peak_seconds);
            let (peak, _) = closed(&target, streams, window / 4, window).await;
            eprintln!("    peak {:.0} tx/s: the soak offers half", peak.tps);
            (peak.tps / 2.0, Some(peak.tps))
        }
    };
    anyhow::ensure!(offered_tps >= 1.0, "a soak needs a rate of at least 1 tx/s (measured or --rate)");
    let started = tokio::time::Instant::now();
    let mut streams: Vec<Stream> = (0..2048).map(|_| Stream::dump(stream_prefix(), map, cross)).collect();
    let mut slices = Vec::new();
    while started.elapsed() < Duration::from_secs(seconds) {
        let cpu_before = (accounting::total_cpu_seconds(&cluster.pids()), accounting::cpu_seconds(std::process::id()));
        let slice_started = tokio::time::Instant::now();
        let (stats, back) = open(&target, streams, offered_tps, Duration::ZERO, SLICE, Duration::from_secs(30)).await;
        streams = back;
        let elapsed = slice_started.elapsed().as_secs_f64();
        let cluster_cores = (accounting::total_cpu_seconds(&cluster.pids()) - cpu_before.0) / elapsed;
        let loadgen_cores = (accounting::cpu_seconds(std::process::id()) - cpu_before.1) / elapsed;
        let replica_rss_mib: Vec<f64> = cluster.replica_pids().into_iter().map(accounting::rss_mib).collect();
        let disk_mib = dir_bytes(&cluster.dir.path().join("data")) as f64 / (1024.0 * 1024.0);
        let at_s = started.elapsed().as_secs_f64();
        let largest = replica_rss_mib.iter().copied().fold(0.0, f64::max);
        eprintln!(
            "    {at_s:>5.0} s: {:.0} tx/s, p50 {:.1} ms, p99 {:.1} ms, {} errors, largest replica RSS {largest:.1} MiB, \
             cluster {cluster_cores:.2} cores, load generator {loadgen_cores:.2}, data {disk_mib:.0} MiB",
            stats.tps, stats.p50_ms, stats.p99_ms, stats.errors
        );
        slices.push(Slice { at_s, stats, replica_rss_mib, cluster_cores, loadgen_cores, disk_mib });
    }
    let warm: Vec<&Slice> = slices.iter().filter(|slice| slice.at_s >= seconds as f64 * WARMUP_SHARE).collect();
    let replicas = slices.first().map_or(0, |slice| slice.replica_rss_mib.len());
    let rss_growth_after_warmup: Vec<f64> = (0..replicas)
        .map(|replica| {
            let first = warm.first().map_or(f64::NAN, |slice| slice.replica_rss_mib[replica]);
            let most = warm.iter().map(|slice| slice.replica_rss_mib[replica]).fold(0.0, f64::max);
            (most - first) / first
        })
        .collect();
    let flat =
        !rss_growth_after_warmup.is_empty() && rss_growth_after_warmup.iter().all(|growth| *growth <= FLAT_WITHIN);
    let committed: usize = slices.iter().map(|slice| slice.stats.committed_all).sum();
    let disk_bytes = slices.last().map_or(0.0, |slice| slice.disk_mib * 1024.0 * 1024.0);
    Ok(Soak {
        disk_bytes_per_tx: if committed == 0 { f64::NAN } else { disk_bytes / committed as f64 },
        slices_over_p99_bound: slices.iter().filter(|slice| slice.stats.p99_ms > P99_BOUND_MS).count(),
        seconds,
        workload,
        cluster_cores: median(slices.iter().map(|slice| slice.cluster_cores)),
        loadgen_cores: median(slices.iter().map(|slice| slice.loadgen_cores)),
        offered_tps,
        peak_tps,
        tps_median: median(slices.iter().map(|slice| slice.stats.tps)),
        p50_ms: median(slices.iter().map(|slice| slice.stats.p50_ms)),
        p99_ms: median(slices.iter().map(|slice| slice.stats.p99_ms)),
        rss_growth_after_warmup,
        flat,
        slices,
    })
}

impl Soak {
    /// Writes `<started>-soak.json` and `<started>-soak.md` into `dir`.
    pub fn write(&self, dir: &Path, started: SystemTime) -> anyhow::Result<Vec<PathBuf>> {
        let stem = format!("{}-soak", super::report::utc(started).replace(':', "-"));
        let json_path = dir.join(format!("{stem}.json"));
        let markdown_path = dir.join(format!("{stem}.md"));
        let text = serde_json::to_string_pretty(&serde_json::json!({"soak": self, "machine": accounting::machine()}))?;
        std::fs::write(&json_path, text + "\n").with_context(|| format!("cannot write {}", json_path.display()))?;
        let growth = self.rss_growth_after_warmup.iter().map(|growth| format!("{:+.0} %", growth * 100.0));
        let first = self.slices.first().map(|slice| slice.replica_rss_mib.clone()).unwrap_or_default();
        let last = self.slices.last().map(|slice| slice.replica_rss_mib.clone()).unwrap_or_default();
        let mib = |values: &[f64]| values.iter().map(|v| format!("{v:.0}")).collect::<Vec<_>>().join(", ");
        let markdown = format!(
            "# Soak {stem}\n\n{} s of `{}` offered at {:.0} tx/s (2 shards × 4 replicas, Rust checkers): \
             median {:.0} tx/s committed, p50 {:.1} ms, p99 {:.1} ms, cluster {:.2} cores, load generator {:.2} \
             (medians of {} slices of 10 s).\n\n\
             Replica RSS (MiB, by shard then replica), first slice: {}; last slice: {}.\n\n\
             Growth after the first {:.0} % (warm-up), per replica: {}. Flat (each ≤ +{:.0} %): **{}**.\n\n\
             p99 of each slice (ms): {}; over {P99_BOUND_MS:.0} ms: {} of {}.\n\n\
             Data of all replicas at the end: {:.0} MiB, {:.0} bytes per committed transaction.\n\n\
             Plot: `{stem}-rss.png`.\n",
            self.seconds,
            self.workload,
            self.offered_tps,
            self.tps_median,
            self.p50_ms,
            self.p99_ms,
            self.cluster_cores,
            self.loadgen_cores,
            self.slices.len(),
            mib(&first),
            mib(&last),
            WARMUP_SHARE * 100.0,
            growth.collect::<Vec<_>>().join(", "),
            FLAT_WITHIN * 100.0,
            if self.flat { "yes" } else { "no" },
            self.slices.iter().map(|slice| format!("{:.0}", slice.stats.p99_ms)).collect::<Vec<_>>().join(", "),
            self.slices_over_p99_bound,
            self.slices.len(),
            self.slices.last().map_or(0.0, |slice| slice.disk_mib),
            self.disk_bytes_per_tx,
        );
        std::fs::write(&markdown_path, markdown)
            .with_context(|| format!("cannot write {}", markdown_path.display()))?;
        Ok(vec![json_path, markdown_path])
    }
}
