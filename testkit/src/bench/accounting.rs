//! Process accounting from `/proc` (Linux): CPU time used by a set of processes, their
//! peak resident memory, and a fixed piece of work timed to show how fast the machine
//! is right now (it is shared and noisy).

use std::time::Instant;

/// Clock ticks per second of `/proc/<pid>/stat` (USER_HZ): 100 on every Linux we know of.
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU seconds (user + system, every thread) that process `pid` has used; 0 when it is gone.
pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
    // The command name, in parentheses, may hold spaces: count fields after its end.
    let Some(after_name) = stat.rfind(')').map(|end| &stat[end + 1..]) else { return 0.0 };
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 of stat(5) (utime, stime) are the 12th and 13th after the name.
    let ticks = |index: usize| fields.get(index).and_then(|field| field.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / TICKS_PER_SECOND
}

/// The CPU seconds that `pids` have used, together.
pub fn total_cpu_seconds(pids: &[u32]) -> f64 {
    pids.iter().map(|&pid| cpu_seconds(pid)).sum()
}

/// Peak resident memory of process `pid` in MiB (`VmHWM`); 0 when it is gone.
pub fn peak_rss_mib(pid: u32) -> f64 {
    status_kib(pid, "VmHWM:") / 1024.0
}

/// Resident memory of process `pid` now, in MiB (`VmRSS`).
pub fn rss_mib(pid: u32) -> f64 {
    status_kib(pid, "VmRSS:") / 1024.0
}

fn status_kib(pid: u32, field: &str) -> f64 {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { return 0.0 };
    let line = status.lines().find(|line| line.starts_with(field));
    line.and_then(|line| line.split_whitespace().nth(1)).and_then(|kib| kib.parse().ok()).unwrap_or(0.0)
}

/// Milliseconds this thread takes to hash 32 MiB with SHA-256: the same work every time,
/// so a slower figure means a busier or slower machine at that moment.
pub fn calibration_ms() -> f64 {
    use sha2::{Digest, Sha256};
    let started = Instant::now();
    let block = [7u8; 64 * 1024];
    let mut hasher = Sha256::new();
    for _ in 0..512 {
        hasher.update(block);
    }
    std::hint::black_box(hasher.finalize());
    started.elapsed().as_secs_f64() * 1000.0
}

/// What describes this machine in a result file.
pub fn machine() -> serde_json::Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo.lines().find(|line| line.starts_with("model name")).and_then(|line| line.split(':').nth(1));
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_kib: f64 = meminfo
        .lines()
        .find(|line| line.starts_with("MemTotal:"))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0.0);
    serde_json::json!({
        "cores": std::thread::available_parallelism().map(usize::from).unwrap_or(0),
        "cpu": model.map(str::trim).unwrap_or("unknown"),
        "memory_gib": (memory_kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
    })
}
