//! `shardspace bench --faults`: a shard must keep nearly full speed with f replicas down,
//! measured like throughput. On 2 shards × 4 replicas (Rust checkers), each workload runs
//! in closed loop through five phases of `--seconds` each: healthy; one replica of every
//! shard killed (`kill -9`); those replicas started again; another replica of every shard
//! paused (SIGSTOP); resumed (SIGCONT). Each phase reports throughput, p50 and p99 against
//! the healthy phase and how long the shard took to get 90 % of its healthy throughput
//! back; the phases after a return report when the returning replicas caught up with
//! their peers' height. Per-second throughput goes to the plot, with the faults marked.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use serde::Serialize;
use shardspace_core::ShardMap;
use shardspace_node::client::Doors;
use tokio::time::Instant;

use super::load::{RunStats, Samples, Target, closed_until};
use super::workload::Stream;
use super::{accounting, next_prefix, statuses, wait_ready};
use crate::cluster::{LocalCluster, Options};

/// Clients in closed loop: enough to fill a healthy cluster's pipeline on this machine.
const CLIENTS: usize = 32;
/// Seconds a phase lasts unless `--seconds` says otherwise.
pub const PHASE_SECONDS: f64 = 8.0;
/// A phase has recovered from its fault once a second commits this share of the healthy rate.
const RECOVERED_SHARE: f64 = 0.9;
/// How often the returning replicas' heights are read.
const HEIGHT_POLL: Duration = Duration::from_millis(250);
/// The replica killed in every shard, and the one paused.
const KILLED: u32 = 1;
const PAUSED: u32 = 2;

/// What happens at the start of a phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Fault {
    None,
    Kill,
    Restart,
    Pause,
    Resume,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Self::None => "healthy",
            Self::Kill => "killed",
            Self::Restart => "restarted",
            Self::Pause => "paused",
            Self::Resume => "resumed",
        }
    }

    /// The replica (in every shard) that this fault acts on.
    fn replica(self) -> Option<u32> {
        match self {
            Self::None => None,
            Self::Kill | Self::Restart => Some(KILLED),
            Self::Pause | Self::Resume => Some(PAUSED),
        }
    }

    /// The replica (in every shard) that comes back with this fault and must catch up.
    fn returning(self) -> Option<u32> {
        self.replica().filter(|_| matches!(self, Self::Restart | Self::Resume))
    }
}

const PHASES: [Fault; 5] = [Fault::None, Fault::Kill, Fault::Restart, Fault::Pause, Fault::Resume];

#[derive(Debug, Serialize)]
pub struct Phase {
    pub name: &'static str,
    pub from_s: f64,
    pub to_s: f64,
    #[serde(flatten)]
    pub stats: RunStats,
    /// Throughput over the healthy phase's.
    pub tps_vs_healthy: f64,
    /// p50 over the healthy phase's.
    pub p50_vs_healthy: f64,
    /// Seconds from the phase's start to the end of the first second committing at least
    /// 90 % of the healthy rate; `None` if none did.
    pub recovered_after_s: Option<f64>,
    /// After a return: seconds until each returning replica's height reached the lowest of
    /// its peers' (`None`: not within the phase), and its height at the end of the phase
    /// against the highest of its shard, by shard.
    pub caught_up_after_s: Vec<Option<f64>>,
    pub heights_at_end: Vec<(u64, u64)>,
}

#[derive(Debug, Serialize)]
pub struct FaultRun {
    pub workload: &'static str,
    pub clients: usize,
    pub phase_seconds: f64,
    pub phases: Vec<Phase>,
    /// Committed transactions in each second of the run, and their p50 (ms).
    pub per_second: Vec<(f64, f64, f64)>,
}

#[derive(Debug, Serialize)]
pub struct Faults {
    pub runs: Vec<FaultRun>,
}

pub async fn run(bin: &Path, options: &Options, phase_seconds: f64) -> anyhow::Result<Faults> {
    let mut runs = Vec::new();
    for cross in [false, true] {
        let workload = if cross { "dump-cross" } else { "dump-single" };
        eprintln!("==> faults, {workload}: 2 shards × 4 replicas, rust checkers, {CLIENTS} clients");
        let mut cluster = tokio::task::block_in_place(|| LocalCluster::with(bin, options))?;
        let target = Target::new(&cluster.api_url())?;
        let map = ShardMap::new(options.shards)?;
        wait_ready(&target, map).await?;
        let run = run_phases(&mut cluster, &target, map, cross, phase_seconds).await?;
        run.print();
        runs.push(run);
    }
    Ok(Faults { runs })
}

/// One workload through the phases, the load running throughout.
async fn run_phases(
    cluster: &mut LocalCluster,
    target: &Target,
    map: ShardMap,
    cross: bool,
    phase_seconds: f64,
) -> anyhow::Result<FaultRun> {
    let phase = Duration::from_secs_f64(phase_seconds);
    let streams: Vec<Stream> = (0..CLIENTS).map(|_| Stream::dump(next_prefix(), map, cross)).collect();
    let started = Instant::now();
    let end = started + phase * PHASES.len() as u32;
    let load = tokio::spawn({
        let target = target.clone();
        async move { closed_until(&target, streams, end).await.0 }
    });
    let doors = cluster.doors.clone();
    let mut caught_up = Vec::new();
    let mut heights_at_end = Vec::new();
    for (index, fault) in PHASES.iter().enumerate() {
        let from = started + phase * index as u32;
        tokio::time::sleep_until(from).await;
        act(cluster, *fault, u32::try_from(doors.replicas().len())?)?;
        let to = from + phase;
        let (caught, heights) = match fault.returning() {
            Some(replica) => watch_catch_up(&doors, replica, from, to).await,
            None => {
                tokio::time::sleep_until(to).await;
                (Vec::new(), Vec::new())
            }
        };
        caught_up.push(caught);
        heights_at_end.push(heights);
    }
    let samples = load.await.context("the load generator failed")?;
    Ok(summarise(&samples, started, phase, cross, caught_up, heights_at_end))
}

/// Carries out `fault` on every shard.
fn act(cluster: &mut LocalCluster, fault: Fault, shards: u32) -> anyhow::Result<()> {
    for shard in 0..shards {
        match fault {
            Fault::None => {}
            Fault::Kill => cluster.kill_replica(shard, KILLED),
            Fault::Restart => tokio::task::block_in_place(|| cluster.start_replica(shard, KILLED)),
            Fault::Pause => cluster.pause_replica(shard, PAUSED)?,
            Fault::Resume => cluster.resume_replica(shard, PAUSED)?,
        }
    }
    if let Some(replica) = fault.replica() {
        eprintln!("    {}: replica {replica} of every shard", fault.name());
    }
    Ok(())
}

/// Until `to`: when did `replica` of each shard reach the lowest height of its peers
/// (seconds after `from`), and its height and the shard's highest at the end.
async fn watch_catch_up(
    doors: &Doors,
    replica: u32,
    from: Instant,
    to: Instant,
) -> (Vec<Option<f64>>, Vec<(u64, u64)>) {
    let shards = doors.replicas().len();
    let mut caught = vec![None; shards];
    let mut last = vec![(0, 0); shards];
    while Instant::now() < to {
        for shard in 0..shards {
            let heights = heights(doors, shard).await;
            let own = heights.get(replica as usize).copied().flatten();
            let peers = heights.iter().enumerate().filter(|(index, _)| *index != replica as usize);
            let peers: Vec<u64> = peers.filter_map(|(_, height)| *height).collect();
            let (lowest, highest) = (peers.iter().min().copied(), peers.iter().max().copied().unwrap_or(0));
            last[shard] = (own.unwrap_or(0), highest);
            if caught[shard].is_none() && own.is_some_and(|own| lowest.is_some_and(|lowest| own >= lowest)) {
                caught[shard] = Some(from.elapsed().as_secs_f64());
            }
        }
        tokio::time::sleep(HEIGHT_POLL.min(to.saturating_duration_since(Instant::now()))).await;
    }
    (caught, last)
}

/// Each replica's decided height, `None` where it does not answer within a poll.
async fn heights(doors: &Doors, shard: usize) -> Vec<Option<u64>> {
    let statuses = statuses(doors, shard, HEIGHT_POLL).await;
    statuses.into_iter().map(|status| status.map(|status| status.height.0)).collect()
}

fn summarise(
    samples: &Samples,
    started: Instant,
    phase: Duration,
    cross: bool,
    caught_up: Vec<Vec<Option<f64>>>,
    heights_at_end: Vec<Vec<(u64, u64)>>,
) -> FaultRun {
    let second = Duration::from_secs(1);
    let seconds = (phase.as_secs_f64() * PHASES.len() as f64).floor() as u32;
    let per_second: Vec<(f64, f64, f64)> = (0..seconds)
        .map(|n| {
            let stats = samples.stats(started + second * n, started + second * (n + 1));
            (f64::from(n + 1), stats.tps, stats.p50_ms)
        })
        .collect();
    let healthy = samples.stats(started, started + phase);
    let phases = PHASES
        .iter()
        .zip(caught_up.into_iter().zip(heights_at_end))
        .enumerate()
        .map(|(index, (fault, (caught_up_after_s, heights_at_end)))| {
            let (from, to) = (phase * index as u32, phase * (index as u32 + 1));
            let stats = samples.stats(started + from, started + to);
            let recovered_after_s = per_second
                .iter()
                .filter(|(at, _, _)| *at > from.as_secs_f64() && *at <= to.as_secs_f64())
                .find(|(_, tps, _)| *tps >= RECOVERED_SHARE * healthy.tps)
                .map(|(at, _, _)| at - from.as_secs_f64());
            Phase {
                name: fault.name(),
                from_s: from.as_secs_f64(),
                to_s: to.as_secs_f64(),
                tps_vs_healthy: stats.tps / healthy.tps,
                p50_vs_healthy: stats.p50_ms / healthy.p50_ms,
                stats,
                recovered_after_s,
                caught_up_after_s,
                heights_at_end,
            }
        })
        .collect();
    let workload = if cross { "dump-cross" } else { "dump-single" };
    FaultRun { workload, clients: CLIENTS, phase_seconds: phase.as_secs_f64(), phases, per_second }
}

impl FaultRun {
    fn print(&self) {
        for phase in &self.phases {
            eprintln!("    {}", phase.line());
        }
    }
}

impl Phase {
    fn line(&self) -> String {
        let recovered = self.recovered_after_s.map_or("never".into(), |s| format!("{s:.0} s"));
        let caught = self.caught_up_after_s.iter().map(|s| s.map_or("no".into(), |s| format!("{s:.1} s")));
        let caught: Vec<String> = caught.collect();
        let heights = self.heights_at_end.iter().map(|(own, highest)| format!("{own} of {highest}"));
        let heights: Vec<String> = heights.collect();
        let returned = if caught.is_empty() {
            String::new()
        } else {
            format!(", caught up after {} (height at the end {})", caught.join(" / "), heights.join(" / "))
        };
        format!(
            "{:<9} {:>6.0} tx/s ({:>4.0} %), p50 {:>7.1} ms ({:.1}×), p99 {:>7.1} ms, 90 % after {recovered}{returned}",
            self.name,
            self.stats.tps,
            self.tps_vs_healthy * 100.0,
            self.stats.p50_ms,
            self.p50_vs_healthy,
            self.stats.p99_ms,
        )
    }
}

impl Faults {
    /// A section per workload, under headings of `level`, each phase a line.
    pub fn sections(&self, level: &str) -> String {
        let mut markdown = String::new();
        for run in &self.runs {
            markdown.push_str(&format!("\n{level} {} ({} s a phase)\n\n```\n", run.workload, run.phase_seconds));
            for phase in &run.phases {
                markdown.push_str(&phase.line());
                markdown.push('\n');
            }
            markdown.push_str("```\n");
        }
        markdown
    }

    /// Writes `<started>-faults.json` and `<started>-faults.md` into `dir`.
    pub fn write(&self, dir: &Path, started: SystemTime) -> anyhow::Result<Vec<PathBuf>> {
        let stem = format!("{}-faults", super::report::utc(started).replace(':', "-"));
        let json_path = dir.join(format!("{stem}.json"));
        let markdown_path = dir.join(format!("{stem}.md"));
        let text =
            serde_json::to_string_pretty(&serde_json::json!({"faults": self, "machine": accounting::machine()}))?;
        std::fs::write(&json_path, text + "\n").with_context(|| format!("cannot write {}", json_path.display()))?;
        let mut markdown = format!(
            "# Faults {stem}\n\n2 shards × 4 replicas, Rust checkers, {CLIENTS} clients in closed loop; replica \
             {KILLED} of every shard killed then restarted, replica {PAUSED} paused then resumed. Plot: \
             `{stem}-throughput.png`.\n"
        );
        markdown.push_str(&self.sections("##"));
        std::fs::write(&markdown_path, markdown)
            .with_context(|| format!("cannot write {}", markdown_path.display()))?;
        Ok(vec![json_path, markdown_path])
    }
}
