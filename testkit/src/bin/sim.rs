//! `sim`: runs the simulators over many seeds (`make sim SEEDS=2000`) or replays
//! one (`SEED=42 make sim`). Each seed runs the one-shard BFT simulator and the
//! S-BAC simulator (two or three shards, Byzantine replicas); `--bft` or
//! `--sbac` runs one of them. Prints `SEED=... make sim` for every failing seed.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use clap::Parser;
use shardspace_testkit::sim::DecisionCost;
use shardspace_testkit::sim::plan::{Report, run_seed};
use shardspace_testkit::sim::sbac::{PATHS, run_sbac_seed};

/// Runs the deterministic simulator of a shard over many seeds.
#[derive(Debug, Parser)]
struct Flags {
    /// How many seeds to run, from --start.
    #[arg(long, default_value_t = 100)]
    seeds: u64,
    /// The first seed.
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// Replay this one seed, verbosely (also read from $SEED).
    #[arg(long, env = "SEED")]
    seed: Option<u64>,
    /// Threads to run seeds on.
    #[arg(long, default_value_t = 2)]
    threads: u64,
    /// Run only the S-BAC simulator (shards of replicas, cross-shard transactions).
    #[arg(long, conflicts_with = "bft")]
    sbac: bool,
    /// Run only the BFT simulator (one shard).
    #[arg(long)]
    bft: bool,
}

/// Runs one seed of the chosen simulators, as one report.
fn run(seed: u64, flags: &Flags) -> Report {
    match (flags.bft, flags.sbac) {
        (true, _) => run_seed(seed),
        (_, true) => run_sbac(seed),
        _ => {
            let (bft, sbac) = (run_seed(seed), run_sbac(seed));
            let summary = format!("BFT: {}\nS-BAC: {}", bft.summary, sbac.summary);
            let violations = bft.violations.into_iter().chain(sbac.violations).collect();
            Report {
                seed,
                summary,
                violations,
                simulated_ms: bft.simulated_ms,
                degraded: bft.degraded,
                coverage: sbac.coverage,
            }
        }
    }
}

fn run_sbac(seed: u64) -> Report {
    let report = run_sbac_seed(seed);
    let summary = format!(
        "{} shards: {} attempts committed, {} aborted; {} with a dependency on a shard of its own, {} reading a reference",
        report.shards, report.committed, report.aborted, report.third_shard_dependencies, report.with_references
    );
    Report { seed, summary, violations: report.violations, simulated_ms: 0, degraded: None, coverage: report.coverage }
}

fn main() -> ExitCode {
    let flags = Flags::parse();
    if let Some(seed) = flags.seed {
        let report = run(seed, &flags);
        println!("seed {seed}: {}", report.summary);
        return print_violations(&report);
    }
    let started = Instant::now();
    let next = AtomicU64::new(flags.start);
    let end = flags.start.saturating_add(flags.seeds);
    let coverage = std::sync::Mutex::new(std::collections::BTreeMap::<String, u64>::new());
    let degraded = std::sync::Mutex::new(Vec::<DecisionCost>::new());
    let failures: Vec<Report> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..flags.threads.max(1))
            .map(|_| {
                scope.spawn(|| {
                    let mut failures = Vec::new();
                    loop {
                        let seed = next.fetch_add(1, Ordering::Relaxed);
                        if seed >= end {
                            return failures;
                        }
                        let report = run(seed, &flags);
                        if let Ok(mut coverage) = coverage.lock() {
                            for (path, count) in &report.coverage {
                                *coverage.entry(path.clone()).or_default() += count;
                            }
                        }
                        if let (Some(cost), Ok(mut costs)) = (report.degraded, degraded.lock()) {
                            costs.push(cost);
                        }
                        if !report.violations.is_empty() {
                            eprintln!("seed {seed} FAILED: {}", report.violations[0]);
                            failures.push(report);
                        }
                        let done = seed + 1 - flags.start;
                        if done.is_multiple_of(100) {
                            eprintln!("{done} seeds, {:.0} s", started.elapsed().as_secs_f64());
                        }
                    }
                })
            })
            .collect();
        workers.into_iter().flat_map(|worker| worker.join().unwrap_or_default()).collect()
    });
    let coverage = coverage.into_inner().unwrap_or_default();
    if !flags.bft {
        print_coverage(&coverage);
    }
    if !flags.sbac {
        print_degraded(degraded.into_inner().unwrap_or_default());
    }
    println!("{} seeds in {:.1} s: {} with violations", flags.seeds, started.elapsed().as_secs_f64(), failures.len());
    for report in &failures {
        println!("SEED={} make sim    # {}", report.seed, report.violations[0]);
    }
    if failures.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// How often each S-BAC path was taken over the run; a path of `PATHS` never taken is marked.
fn print_coverage(coverage: &std::collections::BTreeMap<String, u64>) {
    println!("S-BAC coverage over the run (a path never taken is never proven):");
    let width = coverage
        .keys()
        .chain(PATHS.iter().map(|p| p.to_string()).collect::<Vec<_>>().iter())
        .map(String::len)
        .max()
        .unwrap_or(0);
    for path in PATHS {
        let count = coverage.get(*path).copied().unwrap_or(0);
        let mark = if count == 0 { "   <- NEVER TAKEN" } else { "" };
        println!("  {path:<width$} {count:>9}{mark}");
    }
    for (path, count) in coverage.iter().filter(|(path, _)| !PATHS.contains(&path.as_str())) {
        println!("  {path:<width$} {count:>9}");
    }
}

/// What a decision cost with f replicas down, over the seeds (`plan::DEGRADED_DECISIONS`
/// one by one in each; a seed past the bounds fails).
fn print_degraded(mut costs: Vec<DecisionCost>) {
    if costs.is_empty() {
        return;
    }
    let quantile = |values: &mut Vec<f64>, q: f64| {
        values.sort_by(f64::total_cmp);
        values[((values.len() - 1) as f64 * q).round() as usize]
    };
    let mut ms: Vec<f64> = costs.iter().map(DecisionCost::ms_per_decision).collect();
    let mut rounds: Vec<f64> = costs.drain(..).map(|cost| cost.rounds_per_decision()).collect();
    println!(
        "with f replicas down, per decision over {} seeds: simulated ms median {:.0}, p99 {:.0}, max {:.0}; \
         rounds median {:.1}, p99 {:.1}, max {:.1} (bounds: testkit/src/sim/plan.rs)",
        ms.len(),
        quantile(&mut ms, 0.5),
        quantile(&mut ms, 0.99),
        quantile(&mut ms, 1.0),
        quantile(&mut rounds, 0.5),
        quantile(&mut rounds, 0.99),
        quantile(&mut rounds, 1.0),
    );
}

fn print_violations(report: &Report) -> ExitCode {
    if report.violations.is_empty() {
        println!("no violations");
        return ExitCode::SUCCESS;
    }
    for violation in &report.violations {
        println!("VIOLATION {violation}");
    }
    println!("replay: SEED={} make sim", report.seed);
    ExitCode::FAILURE
}
