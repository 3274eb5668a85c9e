//! The result files: `<UTC time>.json` (configuration, machine, every run, the figures)
//! and `<UTC time>.md` (the figures as a table, and the targets of issue 6 checked).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::Context;
use serde::Serialize;
use serde_json::json;

use super::faults::Faults;
use super::queries::{ASKED, QueryCost};
use super::{Bench, BenchFlags, CpuFit, Figure, Run, accounting};

#[derive(Debug, Serialize)]
pub struct Report<'a> {
    started_utc: String,
    finished_utc: String,
    commit: String,
    machine: serde_json::Value,
    config: serde_json::Value,
    baseline: Option<&'a Figure>,
    results: &'a [Figure],
    /// CPU = fixed + per transaction × rate, fitted over each workload's open-loop runs.
    cpu_fits: &'a [CpuFit],
    /// The API's queries, timed on the ledger each bank workload left.
    queries: &'a [QueryCost],
    runs: &'a [Run],
    /// The fault runs of the full plan (`--faults` alone writes them apart).
    #[serde(skip_serializing_if = "Option::is_none")]
    faults: Option<&'a Faults>,
}

impl<'a> Report<'a> {
    pub(super) fn new(
        bench: &'a Bench,
        flags: &BenchFlags,
        started: SystemTime,
        seconds: f64,
        faults: Option<&'a Faults>,
    ) -> Self {
        Self {
            started_utc: utc(started),
            finished_utc: utc(SystemTime::now()),
            commit: commit(),
            machine: accounting::machine(),
            config: json!({
                "profile": if flags.quick { "quick" } else { "full" },
                "runs_per_figure": bench.runs,
                "window_s": seconds,
                "warmup_s": bench.warmup.as_secs_f64(),
                "replicas_per_shard": 4,
                "durability": flags.durability,
                "load_generator": "closed loop (peak) and open loop (offered rates) through the client API, on this machine",
            }),
            baseline: bench.figures.first(),
            results: &bench.figures,
            cpu_fits: &bench.fits,
            queries: &bench.queries,
            runs: &bench.all_runs,
            faults,
        }
    }

    /// Writes `<started>.json` and `<started>.md` into `dir`; returns their paths.
    pub fn write(&self, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
        let stem = self.started_utc.replace(':', "-");
        let json_path = dir.join(format!("{stem}.json"));
        let markdown_path = dir.join(format!("{stem}.md"));
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(&json_path, text + "\n").with_context(|| format!("cannot write {}", json_path.display()))?;
        std::fs::write(&markdown_path, self.markdown(&stem))
            .with_context(|| format!("cannot write {}", markdown_path.display()))?;
        Ok(vec![json_path, markdown_path])
    }

    fn markdown(&self, stem: &str) -> String {
        let mut text = String::new();
        let machine = &self.machine;
        let _ = writeln!(text, "# Benchmark {}\n", self.started_utc);
        let _ = writeln!(
            text,
            "Commit `{}`, profile `{}`, {} runs per figure of {} s each (after {} s of warm-up), durability `{}`. \
             Machine: {} cores ({}), {} GiB. Every process (replicas, checkers, API, load generator) runs on it.\n",
            self.commit,
            self.config["profile"].as_str().unwrap_or_default(),
            self.config["runs_per_figure"],
            self.config["window_s"],
            self.config["warmup_s"],
            self.config["durability"].as_str().unwrap_or_default(),
            machine["cores"],
            machine["cpu"].as_str().unwrap_or_default(),
            machine["memory_gib"],
        );
        let _ = writeln!(
            text,
            "| workload | checkers | shards | load | committed tx/s | p50 ms | p99 ms | max ms | aborted | errors | shed | CPU ms/tx | load generator CPU ms/tx | rounds/s a shard | replica peak RSS MiB | × baseline |"
        );
        let _ = writeln!(text, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        for figure in self.results {
            let load = match (figure.clients, figure.offered_tps) {
                (Some(clients), _) => format!("peak ({clients} clients)"),
                (_, Some(rate)) => format!("{rate:.0} tx/s offered"),
                _ => String::new(),
            };
            let _ = writeln!(
                text,
                "| {} | {} | {} | {load} | {:.0} | {:.1} | {:.1} | {:.0} | {} | {} | {} | {:.2} | {:.2} | {:.0} | {:.0} | {:.2} |",
                figure.workload,
                figure.checkers,
                figure.shards,
                figure.tps_median,
                figure.p50_ms,
                figure.p99_ms,
                figure.max_ms,
                figure.aborted,
                figure.errors,
                figure.shed,
                figure.cpu_s_per_tx * 1000.0,
                figure.loadgen_cpu_s_per_tx * 1000.0,
                figure.rounds_per_s,
                figure.replica_peak_rss_mib,
                figure.vs_baseline,
            );
        }
        if !self.cpu_fits.is_empty() {
            let _ = writeln!(
                text,
                "\nCPU of the cluster (load generator apart) fitted over each workload's open-loop runs, \
                 cores = fixed + per transaction × committed tx/s:\n\n\
                 | workload | checkers | shards | runs | fixed cores | per tx ms | r² |\n|---|---|---|---|---|---|---|"
            );
            for fit in self.cpu_fits {
                let _ = writeln!(
                    text,
                    "| {} | {} | {} | {} | {:.2} | {:.2} | {:.2} |",
                    fit.workload, fit.checkers, fit.shards, fit.runs, fit.fixed_cores, fit.per_tx_ms, fit.r_squared
                );
            }
        }
        if !self.queries.is_empty() {
            let _ = writeln!(
                text,
                "\nThe API's queries on the ledger each bank workload left (each asked {ASKED} times in turn; \
                 an owner's accounts follow `next` to the last page):\n\n\
                 | workload | shards | query | pages | listed | p50 ms | p90 ms |\n|---|---|---|---|---|---|---|"
            );
            for cost in self.queries {
                let _ = writeln!(
                    text,
                    "| {} | {} | {} | {} | {} | {:.1} | {:.1} |",
                    cost.workload, cost.shards, cost.query, cost.pages, cost.listed, cost.p50_ms, cost.p90_ms
                );
            }
        }
        let calibrations: Vec<f64> = self.runs.iter().map(|run| run.calibration_ms).collect();
        let (low, high) = calibrations.iter().fold((f64::MAX, 0.0f64), |(low, high), &ms| (low.min(ms), high.max(ms)));
        let _ = writeln!(
            text,
            "\nThe baseline is the first row. Calibration (SHA-256 of 32 MiB, timed before each run): {low:.0}–{high:.0} ms \
             (median {:.0} ms); a wide spread means a busy machine.\n",
            super::median(calibrations.iter().copied())
        );
        let _ = writeln!(text, "## Targets (issue 16)\n");
        for line in self.targets() {
            let _ = writeln!(text, "- {line}");
        }
        if let Some(faults) = self.faults {
            let _ = writeln!(
                text,
                "\n## Faults\n\nReplica 1 of every shard killed then restarted, replica 2 paused then resumed, \
                 under load; plot `{stem}-faults.png`."
            );
            text.push_str(&faults.sections("###"));
        }
        let _ = writeln!(text, "\nPlots: `{stem}-throughput.png`, `{stem}-latency.png`, `{stem}-shards.png`.");
        text
    }

    fn find(&self, workload: &str, checkers: &str, shards: u32, mode: &str) -> impl Iterator<Item = &Figure> {
        let (workload, checkers, mode) = (workload.to_string(), checkers.to_string(), mode.to_string());
        self.results.iter().filter(move |figure| {
            figure.workload == workload && figure.checkers == checkers && figure.shards == shards && figure.mode == mode
        })
    }

    fn peak(&self, workload: &str, checkers: &str, shards: u32) -> Option<&Figure> {
        self.find(workload, checkers, shards, "peak").next()
    }

    /// The targets, each with what was measured and whether it was met.
    fn targets(&self) -> Vec<String> {
        let mut lines = Vec::new();
        let met = |ok: bool| if ok { "met" } else { "missed" };
        for (workload, goal) in [("dump-single", 2000.0), ("dump-cross", 1000.0)] {
            if let Some(peak) = self.peak(workload, "rust", 2) {
                let tps = peak.tps_median;
                lines.push(format!(
                    "2 shards, Rust `{workload}`: {tps:.0} tx/s against ≥ {goal:.0}: {} ({:.2}× the target)",
                    met(tps >= goal),
                    tps / goal
                ));
            }
        }
        for workload in ["dump-single", "dump-cross"] {
            if let (Some(rust), Some(python)) = (self.peak(workload, "rust", 2), self.peak(workload, "python", 2)) {
                let ratio = rust.tps_median / python.tps_median;
                lines.push(format!(
                    "Python `{workload}`: {:.0} tx/s, Rust {:.0}: Rust is {ratio:.2}× Python, against ≤ 1.5×: {}",
                    python.tps_median,
                    rust.tps_median,
                    met(ratio <= 1.5)
                ));
            }
        }
        for figure in self.results.iter().filter(|figure| figure.mode == "open" && figure.checkers == "rust") {
            let Some(peak) = self.peak(figure.workload, "rust", figure.shards) else { continue };
            let Some(offered) = figure.offered_tps else { continue };
            if (offered / peak.tps_median - 0.5).abs() < 0.01 {
                lines.push(format!(
                    "Half of peak, {} shards `{}` ({offered:.0} tx/s offered): p50 {:.1} ms (≤ 25: {}), p99 {:.1} ms (≤ 100: {})",
                    figure.shards,
                    figure.workload,
                    figure.p50_ms,
                    met(figure.p50_ms <= 25.0),
                    figure.p99_ms,
                    met(figure.p99_ms <= 100.0)
                ));
            }
        }
        for (workload, goal_ms) in [("dump-single", 0.9), ("dump-cross", 1.8)] {
            let fit =
                self.cpu_fits.iter().find(|fit| fit.workload == workload && fit.checkers == "rust" && fit.shards == 2);
            if let Some(fit) = fit {
                lines.push(format!(
                    "2 shards, Rust `{workload}`: {:.2} ms of CPU per transaction (marginal, fitted) against ≤ {goal_ms}: {}; \
                     fixed {:.2} cores against ≤ 0.3: {}",
                    fit.per_tx_ms,
                    met(fit.per_tx_ms <= goal_ms),
                    fit.fixed_cores,
                    met(fit.fixed_cores <= 0.3)
                ));
            }
        }
        let one = self.peak("dump-single", "rust", 1);
        let most = self.results.iter().filter(|figure| figure.workload == "dump-single" && figure.checkers == "rust");
        let most = most.filter(|figure| figure.mode == "peak").max_by_key(|figure| figure.shards);
        if let (Some(one), Some(most)) = (one, most)
            && most.shards > 1
        {
            let ratio = most.cpu_s_per_tx / one.cpu_s_per_tx;
            lines.push(format!(
                "CPU per committed tx, 1 → {} shards (`dump-single`): {:.2} → {:.2} ms, {ratio:.2}× against ≤ 1.2×: {}",
                most.shards,
                one.cpu_s_per_tx * 1000.0,
                most.cpu_s_per_tx * 1000.0,
                met(ratio <= 1.2)
            ));
        }
        for figure in self.results.iter().filter(|figure| figure.workload.starts_with("bank") && figure.mode == "peak")
        {
            lines.push(format!(
                "`{}` ({} checkers, {} shards, signature checked by the checker): {:.0} tx/s, p50 {:.1} ms, {:.2} ms CPU/tx",
                figure.workload,
                figure.checkers,
                figure.shards,
                figure.tps_median,
                figure.p50_ms,
                figure.cpu_s_per_tx * 1000.0
            ));
        }
        lines
    }
}

/// Draws the plots with `bench/plot.py` (Python with matplotlib); says so if it cannot.
pub fn plot(json_path: &Path) {
    let script = crate::cluster::repo_root().join("bench/plot.py");
    let python = crate::cluster::python().unwrap_or_else(|_| "python3".into());
    match std::process::Command::new(&python).arg(&script).arg(json_path).status() {
        Ok(status) if status.success() => {}
        outcome => eprintln!(
            "no plots ({outcome:?}): they need matplotlib (`make bench` installs it); draw them later with \
             `{python} {} {}`",
            script.display(),
            json_path.display()
        ),
    }
}

/// `git rev-parse --short HEAD`, or `unknown` outside a checkout.
fn commit() -> String {
    let output = std::process::Command::new("git").args(["rev-parse", "--short", "HEAD"]).output();
    match output {
        Ok(output) if output.status.success() => String::from_utf8_lossy(&output.stdout).trim().to_string(),
        _ => "unknown".into(),
    }
}

/// `2026-11-22T05:40:00Z`.
pub(super) fn utc(time: SystemTime) -> String {
    let seconds = time.duration_since(SystemTime::UNIX_EPOCH).map(|elapsed| elapsed.as_secs()).unwrap_or(0);
    let (days, rest) = ((seconds / 86_400) as i64, seconds % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rest / 3600, rest / 60 % 60, rest % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_names_the_civil_date_and_time() {
        let at = |seconds| utc(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(seconds));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_795_325_400), "2026-11-22T05:30:00Z");
    }
}
