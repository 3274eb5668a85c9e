//! `bench-bft` (`make bench-bft`): four replica processes of one shard on
//! loopback with the key-value application, driven by open-loop clients.
//! First the peak: offered load far above what the shard decides; then the
//! latency at half the peak. Each figure is the median of `--runs` runs.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use shardspace_core::bft::{Digest, Request};
use shardspace_node::client::{ClientReply, ClientRequest, Doors, ReplicaClient};
use shardspace_node::config::{API_CLIENT, ClusterFile, Durability, Layout, generate};

/// Benchmarks the BFT ordering of one shard of four replica processes.
#[derive(Debug, Parser)]
struct Flags {
    /// The `shardspace` binary to run replicas with.
    #[arg(long, default_value = "target/release/shardspace")]
    binary: PathBuf,
    /// Runs per figure (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Seconds measured per run (after one second of warm-up).
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// The offered load used to find the peak, requests per second.
    #[arg(long, default_value_t = 120_000)]
    overload: u64,
    /// Only measure this offered load (requests per second), no peak search.
    #[arg(long)]
    rate: Option<u64>,
    /// fsync every write (full) or not (normal).
    #[arg(long, default_value = "normal")]
    durability: String,
}

struct Replica(Child);

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn cluster(dir: &Path, durability: Durability) -> Result<(PathBuf, Doors), Box<dyn std::error::Error>> {
    let layout = Layout::one_host("bench", 1, 4, "127.0.0.1", 1);
    let path = generate(&layout, dir)?;
    let mut file = ClusterFile::load(&path)?;
    for replica in &mut file.shards[0].replicas {
        replica.peer_address = format!("127.0.0.1:{}", free_port()?);
        replica.client_address = format!("127.0.0.1:{}", free_port()?);
    }
    file.bft.durability = durability;
    std::fs::write(&path, toml::to_string(&file)?)?;
    let doors = Doors::new(&file, file.client_credentials(dir, API_CLIENT)?);
    Ok((path, doors))
}

fn start(binary: &Path, config: &Path, replica: usize) -> Result<Replica, Box<dyn std::error::Error>> {
    let mut child = Command::new(binary)
        .args(["node", "--config", &config.to_string_lossy(), "--shard", "0", "--replica", &replica.to_string()])
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|error| format!("cannot run {}: {error} (build it with `make release`)", binary.display()))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    if !line.starts_with("listening") {
        return Err(format!("replica {replica} did not start: {line:?}").into());
    }
    Ok(Replica(child))
}

/// What one run measured.
#[derive(Clone, Copy, Debug)]
struct Run {
    decided_per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// Starts a fresh cluster, measures one run on it, and stops it: runs do not inherit backlogs.
async fn fresh_run(flags: &Flags, rate: u64, tag: &str) -> Result<Run, Box<dyn std::error::Error>> {
    let durability = if flags.durability == "full" { Durability::Full } else { Durability::Normal };
    let dir = tempfile::tempdir()?;
    let (config, doors) = cluster(dir.path(), durability)?;
    let _replicas: Vec<Replica> = (0..4).map(|i| start(&flags.binary, &config, i)).collect::<Result<_, _>>()?;
    let result = run(&doors, rate, flags.seconds, tag).await?;
    let status = doors.connect(0, 0).await?.status().await?;
    let elapsed = (flags.seconds + 3) as f64;
    println!(
        "    ({} rounds, {} heights: {:.0} rounds/s, {:.0} requests per block)",
        status.round.0,
        status.height.0,
        status.round.0 as f64 / elapsed,
        status.executed as f64 / status.height.0.max(1) as f64
    );
    Ok(result)
}

/// Offers `rate` requests per second for one warm-up second plus `seconds`, spread over the replicas.
async fn run(doors: &Doors, rate: u64, seconds: u64, tag: &str) -> Result<Run, Box<dyn std::error::Error>> {
    let sent: Arc<Mutex<HashMap<Digest, Instant>>> = Arc::new(Mutex::new(HashMap::new()));
    let latencies: Arc<Mutex<Vec<(Instant, Duration)>>> = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let warm_up = start + Duration::from_secs(1);
    let end = warm_up + Duration::from_secs(seconds);
    let replicas = doors.replicas()[0].len();
    let per_client = rate / replicas as u64;
    let mut tasks = Vec::new();
    for index in 0..replicas {
        let client = doors.connect(0, index).await?;
        let (sent, latencies, tag) = (Arc::clone(&sent), Arc::clone(&latencies), format!("{tag}-{index}"));
        tasks.push(tokio::spawn(drive(client, per_client, end, tag, sent, latencies)));
    }
    for task in tasks {
        task.await??;
    }
    let mut measured: Vec<Duration> = latencies
        .lock()
        .map_err(|_| "poisoned")?
        .iter()
        .filter(|(at, _)| *at >= warm_up && *at < end)
        .map(|(_, latency)| *latency)
        .collect();
    measured.sort();
    let percentile = |p: f64| {
        measured
            .get(((measured.len() as f64 * p) as usize).min(measured.len().saturating_sub(1)))
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
    };
    Ok(Run {
        decided_per_second: measured.len() as f64 / seconds as f64,
        p50_ms: percentile(0.5),
        p99_ms: percentile(0.99),
    })
}

/// One client connection: sends a batch every millisecond, reads decisions as they come.
async fn drive(
    mut client: ReplicaClient,
    rate: u64,
    end: Instant,
    tag: String,
    sent: Arc<Mutex<HashMap<Digest, Instant>>>,
    latencies: Arc<Mutex<Vec<(Instant, Duration)>>>,
) -> Result<(), String> {
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    let started = Instant::now();
    let mut count: u64 = 0;
    let drain_until = end + Duration::from_secs(2);
    loop {
        tokio::select! {
            _ = tick.tick(), if Instant::now() < end => {
                let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
                // Keys repeat (the state stays bounded); values make every request unique.
                let batch: Vec<Request> = (count..due).map(|i| Request::new(format!("k{}={tag}-{i}", i % 10_000))).collect();
                count = due;
                if batch.is_empty() { continue; }
                let now = Instant::now();
                {
                    let mut sent = sent.lock().map_err(|_| "poisoned")?;
                    for request in &batch { sent.insert(request.digest(), now); }
                }
                client.send(&ClientRequest::Submit(batch)).await.map_err(|e| e.to_string())?;
            }
            reply = client.receive() => {
                match reply.map_err(|e| e.to_string())? {
                    Some(ClientReply::Decided(batch)) => {
                        let now = Instant::now();
                        let sent = sent.lock().map_err(|_| "poisoned")?;
                        let mut latencies = latencies.lock().map_err(|_| "poisoned")?;
                        for (digest, _) in batch {
                            if let Some(at) = sent.get(&digest) { latencies.push((now, now - *at)); }
                        }
                    }
                    Some(_) => {}
                    None => return Err("a replica closed the connection".into()),
                }
            }
            _ = tokio::time::sleep_until(drain_until.into()) => return Ok(()),
        }
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let flags = Flags::parse();
    println!(
        "4 replica processes on loopback, durability {}, {} s per run after 1 s of warm-up, median of {} runs, a fresh cluster per run",
        flags.durability, flags.seconds, flags.runs
    );
    if let Some(rate) = flags.rate {
        let result = fresh_run(&flags, rate, "fixed").await?;
        println!(
            "offered {rate} /s: decided {:.0} /s, p50 {:.1} ms, p99 {:.1} ms",
            result.decided_per_second, result.p50_ms, result.p99_ms
        );
        return Ok(());
    }
    let mut peaks = Vec::new();
    for index in 0..flags.runs {
        let result = fresh_run(&flags, flags.overload, &format!("peak{index}")).await?;
        println!("  peak run {index}: offered {} /s, decided {:.0} /s", flags.overload, result.decided_per_second);
        peaks.push(result.decided_per_second);
    }
    let peak = median(&mut peaks);
    let half = (peak / 2.0) as u64;
    let mut halves = Vec::new();
    for index in 0..flags.runs {
        let result = fresh_run(&flags, half, &format!("half{index}")).await?;
        println!(
            "  half-load run {index}: offered {half} /s, decided {:.0} /s, p50 {:.1} ms, p99 {:.1} ms",
            result.decided_per_second, result.p50_ms, result.p99_ms
        );
        halves.push(result);
    }
    let p50 = median(&mut halves.iter().map(|r| r.p50_ms).collect::<Vec<_>>());
    let p99 = median(&mut halves.iter().map(|r| r.p99_ms).collect::<Vec<_>>());
    println!("peak: {peak:.0} decided requests/s (median); at half load ({half} /s): p50 {p50:.1} ms, p99 {p99:.1} ms");
    Ok(())
}
