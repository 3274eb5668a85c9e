//! `shardspace bench`: starts local clusters of real processes, drives each through the
//! client API (closed loop to find the peak, open loop at fractions of it), and writes
//! `bench/results/<UTC time>.json` and `.md` (then the plots, by `bench/plot.py`). Each
//! figure is the median of several runs; each run also times a fixed piece of work
//! (`calibration_ms`), and every result is given as a ratio to a baseline measured in the
//! same invocation: the 2-shard single-shard `dump` peak with Rust checkers.

mod accounting;
mod faults;
mod load;
mod queries;
mod report;
mod soak;
mod workload;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use shardspace_core::ShardMap;
use shardspace_core::sbac::replica::Status;
use shardspace_node::client::Doors;
use shardspace_node::config::Durability;

pub use accounting::{calibration_ms, cpu_seconds, peak_rss_mib, rss_mib, total_cpu_seconds};
pub use load::{RunStats, Target, median, percentile};
pub use workload::{BankPair, Stream, Workload, open_account};

use crate::cluster::{Checkers, LocalCluster, Options};
use crate::processes::try_wait_until;
use load::{closed, open};

#[derive(Clone, Debug, clap::Args)]
pub struct BenchFlags {
    /// The short plan (under 3 minutes): 2 shards, fewer loads, shorter runs.
    #[arg(long)]
    pub quick: bool,
    /// Runs per figure (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Seconds measured per run (after a warm-up of a quarter of it); default 3 quick, 20
    /// full (long enough that checkpoints, every 1,000 heights, land inside the window).
    #[arg(long)]
    pub seconds: Option<f64>,
    /// Where the results go.
    #[arg(long, default_value = "bench/results")]
    pub out: PathBuf,
    /// Durability of the replicas' stores: `full` (fsync at each commit) or `normal`.
    #[arg(long, default_value = "full")]
    pub durability: String,
    /// `bft.propose_after_ms` of the clusters (the node's default when absent).
    #[arg(long)]
    pub propose_after_ms: Option<u64>,
    /// Instead of the plan: a long run of this many seconds at a fixed offered rate
    /// (`--rate`, else half of the peak measured first) on 2 shards, sampling each
    /// replica's memory every 10 s (`make bench-soak`: 600 s).
    #[arg(long)]
    pub soak: Option<u64>,
    /// Instead of the plan: each workload on 2 shards through five phases of `--seconds`
    /// (default 8): healthy, a replica of every shard killed, restarted, another paused,
    /// resumed (`make bench-faults`).
    #[arg(long, conflicts_with = "soak")]
    pub faults: bool,
    /// The offered rate of `--soak`, in transactions per second.
    #[arg(long)]
    pub rate: Option<f64>,
    /// `--soak` with `dump-cross` (outputs on both shards) instead of `dump-single`.
    #[arg(long, requires = "soak")]
    pub cross: bool,
    /// Only the figures whose `workload/checkers/shards` (as `dump-single/rust/2`) contains this.
    #[arg(long)]
    pub only: Option<String>,
    /// Skip the plots (they need Python with matplotlib: `make bench` installs it).
    #[arg(long)]
    pub no_plots: bool,
}

/// Runs `work` until it ends or the bench is interrupted (Ctrl-C or SIGTERM). Interrupted,
/// `work` is dropped, and with it the cluster it started: its processes are killed, not
/// left running as when the signal ended the bench at once.
async fn interruptible<T>(work: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    tokio::select! {
        result = work => result,
        _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted (Ctrl-C): the cluster was stopped, nothing was written"),
        _ = terminate.recv() => anyhow::bail!("terminated (SIGTERM): the cluster was stopped, nothing was written"),
    }
}

/// What one cluster is loaded with.
#[derive(Clone, Debug)]
struct Group {
    shards: u32,
    checkers: Checkers,
    items: Vec<Item>,
}

#[derive(Clone, Debug)]
struct Item {
    workload: Workload,
    /// Closed-loop client counts tried in the peak search.
    clients: Vec<usize>,
    /// Offered rates measured in open loop, as fractions of the peak.
    fractions: Vec<f64>,
}

impl Item {
    fn new(workload: Workload, clients: &[usize], fractions: &[f64]) -> Self {
        Self { workload, clients: clients.to_vec(), fractions: fractions.to_vec() }
    }
}

fn plan(quick: bool) -> Vec<Group> {
    use Workload::{BankCross, BankSingle, DumpCross, DumpSingle};
    let group = |shards, checkers, items| Group { shards, checkers, items };
    if quick {
        return vec![
            group(
                2,
                Checkers::Rust,
                vec![
                    Item::new(DumpSingle, &[64], &[0.5]),
                    Item::new(DumpCross, &[64], &[0.5]),
                    Item::new(BankCross, &[64], &[]),
                ],
            ),
            group(2, Checkers::Python, vec![Item::new(DumpSingle, &[64], &[])]),
            group(1, Checkers::Rust, vec![Item::new(DumpSingle, &[64], &[])]),
        ];
    }
    let curve = [0.25, 0.5, 0.75, 1.0];
    let search = [16, 32, 64, 128, 256];
    vec![
        group(
            2,
            Checkers::Rust,
            vec![
                Item::new(DumpSingle, &search, &curve),
                Item::new(DumpCross, &search, &curve),
                Item::new(BankSingle, &[64], &[0.5]),
                Item::new(BankCross, &[64], &[0.5]),
            ],
        ),
        group(
            2,
            Checkers::Python,
            vec![
                Item::new(DumpSingle, &search, &[0.5]),
                Item::new(DumpCross, &search, &[0.5]),
                Item::new(BankCross, &[64], &[]),
            ],
        ),
        group(1, Checkers::Rust, vec![Item::new(DumpSingle, &[64], &[])]),
        group(4, Checkers::Rust, vec![Item::new(DumpSingle, &[128], &[]), Item::new(DumpCross, &[128], &[])]),
        group(8, Checkers::Rust, vec![Item::new(DumpSingle, &[256], &[]), Item::new(DumpCross, &[256], &[])]),
    ]
}

/// One measured run.
#[derive(Clone, Debug, Serialize)]
pub struct Run {
    pub workload: &'static str,
    pub checkers: &'static str,
    pub shards: u32,
    /// `search` (finding the peak), `peak` (closed loop at the best client count) or `open`.
    pub mode: &'static str,
    pub clients: Option<usize>,
    pub offered_tps: Option<f64>,
    pub calibration_ms: f64,
    /// CPU seconds of every cluster process (checkers, replicas, API) over the whole run.
    pub cluster_cpu_s: f64,
    /// CPU seconds of the load generator (this process) over the whole run.
    pub loadgen_cpu_s: f64,
    pub cpu_s_per_tx: f64,
    /// From the start of the warm-up to the end of the drain: what the CPU seconds cover.
    pub elapsed_s: f64,
    /// BFT rounds and decided blocks per second, per shard (each the median of its replicas).
    pub rounds_per_s: Vec<f64>,
    pub blocks_per_s: Vec<f64>,
    #[serde(flatten)]
    pub stats: RunStats,
}

/// What a run is measured from: taken before it starts.
struct Mark {
    calibration_ms: f64,
    cpu: (f64, f64),
    progress: Vec<Vec<Option<(u64, u64)>>>,
    at: std::time::Instant,
}

/// A least-squares fit of the cluster's CPU over one workload's open-loop runs:
/// cores = `fixed_cores` + `per_tx_ms` / 1000 × committed tx/s. The fixed part is what
/// rounds, timers and polling cost whatever the load; the other, each transaction's own.
#[derive(Clone, Debug, Serialize)]
pub struct CpuFit {
    pub workload: &'static str,
    pub checkers: &'static str,
    pub shards: u32,
    pub runs: usize,
    pub fixed_cores: f64,
    pub per_tx_ms: f64,
    /// How much of the spread of the cores the line explains (1 is all of it).
    pub r_squared: f64,
}

/// One figure: the medians of the runs of one workload at one load.
#[derive(Clone, Debug, Serialize)]
pub struct Figure {
    pub workload: &'static str,
    pub checkers: &'static str,
    pub shards: u32,
    pub mode: &'static str,
    pub clients: Option<usize>,
    pub offered_tps: Option<f64>,
    pub runs: usize,
    pub tps_median: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub aborted: usize,
    pub errors: usize,
    pub shed: usize,
    pub cpu_s_per_tx: f64,
    /// The load generator's CPU per committed transaction (not in `cpu_s_per_tx`: it shares
    /// the machine, so a change that costs the cluster less may still cost it more).
    pub loadgen_cpu_s_per_tx: f64,
    /// The largest peak RSS of any replica of this cluster so far, in MiB.
    pub replica_peak_rss_mib: f64,
    /// `tps_median` over the baseline's.
    pub vs_baseline: f64,
    /// BFT rounds and decided blocks per second per shard, medians of the runs (each run's
    /// mean over its shards).
    pub rounds_per_s: f64,
    pub blocks_per_s: f64,
}

/// CPU seconds per committed transaction; NaN when none committed.
fn per_committed(cpu_s: f64, committed: usize) -> f64 {
    if committed == 0 { f64::NAN } else { cpu_s / committed as f64 }
}

fn checkers_name(checkers: Checkers) -> &'static str {
    match checkers {
        Checkers::Rust => "rust",
        Checkers::Python => "python",
        Checkers::Mixed => "mixed",
    }
}

/// Runs the plan and writes the results.
pub fn run(bin: &std::path::Path, flags: &BenchFlags) -> anyhow::Result<()> {
    let durability = match flags.durability.as_str() {
        "full" => Durability::Full,
        "normal" => Durability::Normal,
        other => anyhow::bail!("--durability is `full` or `normal`, not {other:?}"),
    };
    anyhow::ensure!(flags.runs >= 1, "--runs is at least 1");
    let seconds = flags.seconds.unwrap_or(if flags.quick { 3.0 } else { 20.0 });
    anyhow::ensure!(seconds >= 0.5, "--seconds is at least 0.5");
    std::fs::create_dir_all(&flags.out).with_context(|| format!("cannot create {}", flags.out.display()))?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let started = std::time::SystemTime::now();
    if let Some(soak_seconds) = flags.soak {
        let options = cluster_options(2, Checkers::Rust, durability, flags.propose_after_ms);
        let soak = runtime.block_on(interruptible(soak::run(
            bin,
            &options,
            soak_seconds,
            flags.rate,
            flags.cross,
            seconds,
        )))?;
        let paths = soak.write(&flags.out, started)?;
        eprintln!("wrote {}", paths.iter().map(|path| path.display().to_string()).collect::<Vec<_>>().join(", "));
        if !flags.no_plots {
            report::plot(&paths[0]);
        }
        return Ok(());
    }
    if flags.faults {
        let options = cluster_options(2, Checkers::Rust, durability, flags.propose_after_ms);
        let phase_seconds = flags.seconds.unwrap_or(faults::PHASE_SECONDS);
        let faults = runtime.block_on(interruptible(faults::run(bin, &options, phase_seconds)))?;
        let paths = faults.write(&flags.out, started)?;
        eprintln!("wrote {}", paths.iter().map(|path| path.display().to_string()).collect::<Vec<_>>().join(", "));
        if !flags.no_plots {
            report::plot(&paths[0]);
        }
        return Ok(());
    }
    let mut bench = Bench {
        bin: bin.to_path_buf(),
        runs: flags.runs,
        warmup: Duration::from_secs_f64(seconds / 4.0),
        window: Duration::from_secs_f64(seconds),
        durability,
        propose_after_ms: flags.propose_after_ms,
        all_runs: Vec::new(),
        figures: Vec::new(),
        fits: Vec::new(),
        queries: Vec::new(),
    };
    let mut plan = plan(flags.quick);
    if let Some(only) = &flags.only {
        for group in &mut plan {
            let checkers = checkers_name(group.checkers);
            let shards = group.shards;
            group.items.retain(|item| format!("{}/{checkers}/{shards}", item.workload.name()).contains(only.as_str()));
        }
        plan.retain(|group| !group.items.is_empty());
        anyhow::ensure!(!plan.is_empty(), "--only {only:?} leaves nothing to measure");
    }
    for group in &plan {
        runtime.block_on(interruptible(bench.group(group)))?;
    }
    // The full plan measures faults too: throughput with a replica down is a figure like any other.
    let faults = if flags.quick || flags.only.is_some() {
        None
    } else {
        let options = cluster_options(2, Checkers::Rust, durability, flags.propose_after_ms);
        Some(runtime.block_on(interruptible(faults::run(bin, &options, faults::PHASE_SECONDS)))?)
    };
    let report = report::Report::new(&bench, flags, started, seconds, faults.as_ref());
    let paths = report.write(&flags.out)?;
    eprintln!("wrote {}", paths.iter().map(|path| path.display().to_string()).collect::<Vec<_>>().join(", "));
    if !flags.no_plots {
        report::plot(&paths[0]);
    }
    Ok(())
}

struct Bench {
    bin: PathBuf,
    runs: usize,
    warmup: Duration,
    window: Duration,
    durability: Durability,
    propose_after_ms: Option<u64>,
    all_runs: Vec<Run>,
    figures: Vec<Figure>,
    fits: Vec<CpuFit>,
    queries: Vec<queries::QueryCost>,
}

/// The highest p99 a run may have to count as the peak.
const PEAK_P99_MS_MAX: f64 = 1000.0;

/// Transactions in flight at most in open loop (dump): more are shed, not queued.
const OPEN_STREAMS: usize = 2048;
/// How long an open-loop run waits for the transactions still in flight.
const DRAIN: Duration = Duration::from_secs(30);

impl Bench {
    /// Each workload of the group on a fresh cluster: a replica's state grows with every
    /// transaction, and a workload measured on the state another left would pay for it.
    async fn group(&mut self, group: &Group) -> anyhow::Result<()> {
        let options = cluster_options(group.shards, group.checkers, self.durability, self.propose_after_ms);
        let checkers = checkers_name(group.checkers);
        for item in &group.items {
            if item.workload.cross() && group.shards < 2 {
                continue;
            }
            let name = item.workload.name();
            eprintln!("==> {name}: {} shards × 4 replicas, {checkers} checkers: starting", group.shards);
            let bin = self.bin.clone();
            let cluster = tokio::task::block_in_place(|| LocalCluster::with(&bin, &options))?;
            let target = Target::new(&cluster.api_url())?;
            wait_ready(&target, ShardMap::new(group.shards)?).await?;
            self.item(&cluster, &target, group, item).await?;
        }
        Ok(())
    }

    async fn item(
        &mut self,
        cluster: &LocalCluster,
        target: &Target,
        group: &Group,
        item: &Item,
    ) -> anyhow::Result<()> {
        let map = ShardMap::new(group.shards)?;
        let checkers = checkers_name(group.checkers);
        let name = item.workload.name();
        let largest = item.clients.iter().copied().max().unwrap_or(1);
        let mut streams = if item.workload.is_bank() {
            eprintln!("    {name}: opening {} accounts", largest * 2);
            bank_pairs(target, map, largest, item.workload.cross()).await?
        } else {
            Vec::new()
        };
        // The peak: one run per client count, then the runs at the best one: the highest
        // throughput whose p99 stays under `PEAK_P99_MS_MAX` (the lowest p99 if none does).
        let mut best = (item.clients[0], f64::MIN);
        if item.clients.len() > 1 {
            let mut searched = Vec::new();
            for &clients in &item.clients {
                let run = self.closed_run(cluster, target, group, (item, map), &mut streams, clients, "search").await;
                searched.push((clients, run.stats.tps, run.stats.p99_ms));
                self.all_runs.push(run);
            }
            best = best_load(&searched).unwrap_or(best);
        }
        let mut runs = Vec::new();
        for _ in 0..self.runs {
            runs.push(self.closed_run(cluster, target, group, (item, map), &mut streams, best.0, "peak").await);
        }
        let peak = self.figure(cluster, &runs, name, checkers, group.shards, "peak");
        let peak_tps = peak.tps_median;
        self.figures.push(peak);
        self.all_runs.extend(runs);

        let mut open_runs = Vec::new();
        for &fraction in &item.fractions {
            let rate = (peak_tps * fraction).max(1.0);
            let mut runs = Vec::new();
            if !item.workload.is_bank() {
                streams = (0..OPEN_STREAMS).map(|_| Stream::dump(next_prefix(), map, item.workload.cross())).collect();
            }
            for _ in 0..self.runs {
                let mark = self.mark(cluster).await;
                let (stats, back) =
                    open(target, std::mem::take(&mut streams), rate, self.warmup, self.window, DRAIN).await;
                streams = back;
                let run = self.finish_run(cluster, mark, stats, item, group, "open", None, Some(rate)).await;
                runs.push(run);
            }
            let figure = self.figure(cluster, &runs, name, checkers, group.shards, "open");
            self.figures.push(figure);
            open_runs.extend(runs.iter().cloned());
            self.all_runs.extend(runs);
        }
        if let Some(fit) = cpu_fit(&open_runs) {
            eprintln!(
                "    {name} {checkers} {} shards, CPU fit over {} open-loop runs: {:.2} cores + {:.2} ms per tx (r² {:.2})",
                group.shards, fit.runs, fit.fixed_cores, fit.per_tx_ms, fit.r_squared
            );
            self.fits.push(fit);
        }
        if item.workload.is_bank() {
            self.queries.extend(queries::measure(target, name, group.shards).await);
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn closed_run(
        &self,
        cluster: &LocalCluster,
        target: &Target,
        group: &Group,
        (item, map): (&Item, ShardMap),
        streams: &mut Vec<Stream>,
        clients: usize,
        mode: &'static str,
    ) -> Run {
        let mut taken: Vec<Stream> = if item.workload.is_bank() {
            streams.drain(..clients.min(streams.len())).collect()
        } else {
            (0..clients).map(|_| Stream::dump(next_prefix(), map, item.workload.cross())).collect()
        };
        let mark = self.mark(cluster).await;
        let (stats, back) = closed(target, std::mem::take(&mut taken), self.warmup, self.window).await;
        if item.workload.is_bank() {
            streams.extend(back);
        }
        self.finish_run(cluster, mark, stats, item, group, mode, Some(clients), None).await
    }

    /// CPU seconds so far: the cluster's processes, and this one.
    fn cpu(&self, cluster: &LocalCluster) -> (f64, f64) {
        (total_cpu_seconds(&cluster.pids()), cpu_seconds(std::process::id()))
    }

    /// Where the cluster stands before a run: the calibration is timed first, so that it
    /// is not counted in the run's CPU.
    async fn mark(&self, cluster: &LocalCluster) -> Mark {
        let calibration_ms = calibration_ms();
        let progress = progress(&cluster.doors).await;
        Mark { calibration_ms, cpu: self.cpu(cluster), progress, at: std::time::Instant::now() }
    }

    #[allow(clippy::too_many_arguments)]
    async fn finish_run(
        &self,
        cluster: &LocalCluster,
        mark: Mark,
        stats: RunStats,
        item: &Item,
        group: &Group,
        mode: &'static str,
        clients: Option<usize>,
        offered_tps: Option<f64>,
    ) -> Run {
        let after = self.cpu(cluster);
        let elapsed_s = mark.at.elapsed().as_secs_f64();
        let progress = progress(&cluster.doors).await;
        let per_second = |pick: fn((u64, u64)) -> u64| -> Vec<f64> {
            (mark.progress.iter().zip(&progress))
                .map(|(before, after)| {
                    let gains = before.iter().zip(after).filter_map(|(before, after)| {
                        Some(pick((*after)?).saturating_sub(pick((*before)?)) as f64 / elapsed_s)
                    });
                    median(gains)
                })
                .collect()
        };
        let (rounds_per_s, blocks_per_s) = (per_second(|(round, _)| round), per_second(|(_, height)| height));
        let (before, calibration_ms) = (mark.cpu, mark.calibration_ms);
        let committed_all = stats.committed_all;
        let cluster_cpu_s = after.0 - before.0;
        let run = Run {
            workload: item.workload.name(),
            checkers: checkers_name(group.checkers),
            shards: group.shards,
            mode,
            clients,
            offered_tps,
            calibration_ms,
            cluster_cpu_s,
            loadgen_cpu_s: after.1 - before.1,
            cpu_s_per_tx: per_committed(cluster_cpu_s, committed_all),
            elapsed_s,
            rounds_per_s,
            blocks_per_s,
            stats,
        };
        let load = match (clients, offered_tps) {
            (Some(clients), _) => format!("{clients} clients"),
            (_, Some(rate)) => format!("{rate:.0} tx/s offered"),
            _ => String::new(),
        };
        eprintln!(
            "    {} {} {} shards, {mode} {load}: {:.0} tx/s, p50 {:.1} ms, p99 {:.1} ms, {} aborted, {} errors, {} shed, {:.2} ms CPU/tx \
             (load generator {:.2}), {:.0} rounds/s a shard",
            run.workload,
            run.checkers,
            run.shards,
            run.stats.tps,
            run.stats.p50_ms,
            run.stats.p99_ms,
            run.stats.aborted,
            run.stats.errors,
            run.stats.shed,
            run.cpu_s_per_tx * 1000.0,
            per_committed(run.loadgen_cpu_s, run.stats.committed_all) * 1000.0,
            mean(&run.rounds_per_s),
        );
        run
    }

    fn figure(
        &self,
        cluster: &LocalCluster,
        runs: &[Run],
        workload: &'static str,
        checkers: &'static str,
        shards: u32,
        mode: &'static str,
    ) -> Figure {
        let tps_median = median(runs.iter().map(|run| run.stats.tps));
        let baseline = self.figures.first().map(|figure| figure.tps_median).unwrap_or(tps_median);
        Figure {
            workload,
            checkers,
            shards,
            mode,
            clients: runs.first().and_then(|run| run.clients),
            offered_tps: runs.first().and_then(|run| run.offered_tps),
            runs: runs.len(),
            tps_median,
            p50_ms: median(runs.iter().map(|run| run.stats.p50_ms)),
            p99_ms: median(runs.iter().map(|run| run.stats.p99_ms)),
            max_ms: runs.iter().map(|run| run.stats.max_ms).filter(|max| !max.is_nan()).fold(f64::NAN, f64::max),
            aborted: runs.iter().map(|run| run.stats.aborted).sum(),
            errors: runs.iter().map(|run| run.stats.errors).sum(),
            shed: runs.iter().map(|run| run.stats.shed).sum(),
            cpu_s_per_tx: median(runs.iter().map(|run| run.cpu_s_per_tx)),
            loadgen_cpu_s_per_tx: median(
                runs.iter().map(|run| per_committed(run.loadgen_cpu_s, run.stats.committed_all)),
            ),
            replica_peak_rss_mib: cluster.replica_pids().into_iter().map(peak_rss_mib).fold(0.0, f64::max),
            vs_baseline: tps_median / baseline,
            rounds_per_s: median(runs.iter().map(|run| mean(&run.rounds_per_s))),
            blocks_per_s: median(runs.iter().map(|run| mean(&run.blocks_per_s))),
        }
    }
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// The client count of the peak: the highest throughput among `(clients, tps, p99 ms)`
/// whose p99 stays under `PEAK_P99_MS_MAX`, else the one of the lowest p99.
fn best_load(searched: &[(usize, f64, f64)]) -> Option<(usize, f64)> {
    let within = searched.iter().filter(|(_, _, p99)| *p99 <= PEAK_P99_MS_MAX);
    let best = within.max_by(|a, b| a.1.total_cmp(&b.1));
    let best = best.or_else(|| searched.iter().min_by(|a, b| a.2.total_cmp(&b.2)))?;
    Some((best.0, best.1))
}

/// The CPU fit over open-loop runs of one workload, when they were offered two rates or more.
fn cpu_fit(runs: &[Run]) -> Option<CpuFit> {
    let mut offered: Vec<f64> = runs.iter().filter_map(|run| run.offered_tps).collect();
    offered.dedup();
    if offered.len() < 2 {
        return None;
    }
    let points: Vec<(f64, f64)> = runs
        .iter()
        .filter(|run| run.elapsed_s > 0.0)
        .map(|run| (run.stats.committed_all as f64 / run.elapsed_s, run.cluster_cpu_s / run.elapsed_s))
        .collect();
    let (slope, intercept, r_squared) = least_squares(&points)?;
    let first = runs.first()?;
    Some(CpuFit {
        workload: first.workload,
        checkers: first.checkers,
        shards: first.shards,
        runs: points.len(),
        fixed_cores: intercept,
        per_tx_ms: slope * 1000.0,
        r_squared,
    })
}

/// y = slope × x + intercept over `points`, with r²; `None` without two distinct x.
fn least_squares(points: &[(f64, f64)]) -> Option<(f64, f64, f64)> {
    let n = points.len() as f64;
    let (mean_x, mean_y) = (points.iter().map(|p| p.0).sum::<f64>() / n, points.iter().map(|p| p.1).sum::<f64>() / n);
    let sxx: f64 = points.iter().map(|(x, _)| (x - mean_x).powi(2)).sum();
    let sxy: f64 = points.iter().map(|(x, y)| (x - mean_x) * (y - mean_y)).sum();
    let syy: f64 = points.iter().map(|(_, y)| (y - mean_y).powi(2)).sum();
    if points.len() < 2 || sxx <= f64::EPSILON * n {
        return None;
    }
    let slope = sxy / sxx;
    let r_squared = if syy > 0.0 { sxy * sxy / (sxx * syy) } else { 1.0 };
    Some((slope, mean_y - slope * mean_x, r_squared))
}

/// Each replica's (round, decided height), by shard; `None` where it does not answer in a second.
async fn progress(doors: &Doors) -> Vec<Vec<Option<(u64, u64)>>> {
    let mut shards = Vec::new();
    for shard in 0..doors.replicas().len() {
        let statuses = statuses(doors, shard, Duration::from_secs(1)).await;
        shards.push(statuses.into_iter().map(|status| status.map(|s| (s.round.0, s.height.0))).collect());
    }
    shards
}

/// Each replica's status, asked all at once; `None` where it does not answer within `wait`.
async fn statuses(doors: &Doors, shard: usize, wait: Duration) -> Vec<Option<Status>> {
    let asks = (0..doors.replicas()[shard].len()).map(|replica| async move {
        let asked = async { doors.connect(shard, replica).await?.status().await };
        tokio::time::timeout(wait, asked).await.ok().and_then(Result::ok)
    });
    futures::future::join_all(asks).await
}

/// A benchmarked cluster: 4 replicas a shard, and the API.
fn cluster_options(shards: u32, checkers: Checkers, durability: Durability, propose_after_ms: Option<u64>) -> Options {
    Options {
        shards,
        replicas: 4,
        with_api: true,
        checkers,
        durability,
        round_timeout_ms: 1000,
        propose_after_ms,
        checkpoint_interval: None,
        checker_urls: Default::default(),
    }
}

/// Distinct prefixes for `dump` streams: a random start, then counting.
fn next_prefix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static START: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let start = *START.get_or_init(|| u64::from(rand::random::<u16>()) << 24);
    start | NEXT.fetch_add(1, Ordering::Relaxed) & 0xff_ffff
}

/// Waits until a `dump` transaction on each shard commits (every shard live), up to a minute.
async fn wait_ready(target: &Target, map: ShardMap) -> anyhow::Result<()> {
    for shard in 0..map.shards() {
        let body = workload::dump_on(next_prefix() << 24, map, shard);
        let what = format!("shard {shard} commits a transaction");
        try_wait_until(&what, Duration::from_secs(60), || async { target.submit(&body).await == Some(true) }).await?;
    }
    Ok(())
}

/// Opens `pairs` pairs of bank accounts (on one shard or on two), concurrently.
async fn bank_pairs(target: &Target, map: ShardMap, pairs: usize, cross: bool) -> anyhow::Result<Vec<Stream>> {
    use futures::StreamExt;
    let shards = map.shards();
    let opened = futures::stream::iter(0..pairs)
        .map(|pair| async move {
            let first = pair as u32 % shards;
            let second = if cross { (first + 1) % shards } else { first };
            let accounts = [workload::open_account(map, first)?, workload::open_account(map, second)?];
            for (envelope, _) in &accounts {
                let body = serde_json::to_value(envelope)?;
                let mut committed = None;
                for _ in 0..3 {
                    committed = target.submit(&body).await;
                    if committed.is_some() {
                        break;
                    }
                }
                anyhow::ensure!(committed == Some(true), "opening a bank account did not commit: {committed:?}");
            }
            Ok(Stream::Bank(Box::new(BankPair::new(accounts, map, !cross))))
        })
        .buffer_unordered(64)
        .collect::<Vec<anyhow::Result<Stream>>>()
        .await;
    opened.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peak_is_the_highest_throughput_whose_p99_stays_under_a_second() {
        let searched = [(16, 500.0, 80.0), (64, 900.0, 400.0), (128, 950.0, 1200.0), (256, 700.0, 3000.0)];
        assert_eq!(best_load(&searched), Some((64, 900.0)), "128 clients commit more, but too slowly");
        let all_slow = [(16, 300.0, 1500.0), (64, 400.0, 2500.0)];
        assert_eq!(best_load(&all_slow), Some((16, 300.0)), "none under a second: the lowest p99");
        assert_eq!(best_load(&[]), None);
    }

    #[test]
    fn the_cpu_fit_finds_the_fixed_and_the_per_transaction_cost() {
        // 0.4 cores whatever the load, 2 ms per transaction.
        let points: Vec<(f64, f64)> = [50.0, 100.0, 200.0, 400.0].iter().map(|&tps| (tps, 0.4 + 0.002 * tps)).collect();
        let (slope, intercept, r_squared) = least_squares(&points).unwrap();
        assert!((slope - 0.002).abs() < 1e-9 && (intercept - 0.4).abs() < 1e-9 && (r_squared - 1.0).abs() < 1e-9);
        assert_eq!(least_squares(&[(100.0, 1.0), (100.0, 1.2)]), None, "one rate: no slope");
    }
}
