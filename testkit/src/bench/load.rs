//! The load generator: closed loop (each client one transaction in flight) and open
//! loop (transactions sent at a fixed offered rate, whatever the cluster does), both
//! through the client API. Latency runs from when a transaction was due to be sent (open
//! loop) or was sent (closed loop) to its outcome; only what falls in the measured
//! window, after a warm-up, counts.

use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::workload::Stream;

/// The API to load.
#[derive(Clone, Debug)]
pub struct Target {
    pub http: reqwest::Client,
    /// `…/v1/transactions`.
    pub url: String,
}

/// One transaction's fate.
#[derive(Clone, Copy, Debug)]
struct Sample {
    due: Instant,
    done: Instant,
    /// Some(true) committed, Some(false) aborted, None no outcome (an error).
    committed: Option<bool>,
}

/// The figures of one run.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct RunStats {
    pub window_s: f64,
    pub committed: usize,
    /// Committed over the whole run (warm-up and drain included), for CPU per transaction.
    pub committed_all: usize,
    pub aborted: usize,
    pub errors: usize,
    /// Open loop: transactions due when every stream was busy, so never sent.
    pub shed: usize,
    pub tps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Target {
    pub fn new(api: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).pool_max_idle_per_host(4096).build()?;
        Ok(Self { http, url: format!("{}/v1/transactions", api.trim_end_matches('/')) })
    }

    /// Posts one envelope and waits for its outcome: commit, abort, or None on any error.
    pub async fn submit(&self, body: &Value) -> Option<bool> {
        let response = self.http.post(&self.url).json(body).send().await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        let answer: Value = response.json().await.ok()?;
        match answer["outcome"].as_str() {
            Some("commit") => Some(true),
            Some("abort") => Some(false),
            _ => None,
        }
    }
}

async fn submit_next(target: &Target, stream: &mut Stream, due: Instant) -> Sample {
    let committed = match stream.next_body() {
        Ok(body) => target.submit(&body).await,
        Err(error) => {
            tracing::warn!("cannot build a transaction: {error:#}");
            None
        }
    };
    stream.settled(committed);
    Sample { due, done: Instant::now(), committed }
}

/// Each stream is a client with one transaction in flight, for `warmup` then `window`.
pub async fn closed(
    target: &Target,
    streams: Vec<Stream>,
    warmup: Duration,
    window: Duration,
) -> (RunStats, Vec<Stream>) {
    let started = Instant::now();
    let end = started + warmup + window;
    let (samples, streams) = closed_until(target, streams, end).await;
    (samples.stats(started + warmup, end), streams)
}

/// What a closed-loop run sent, each transaction with its times: for the figures of parts
/// of a run (`Samples::stats`).
#[derive(Debug, Default)]
pub struct Samples(Vec<Sample>);

impl Samples {
    /// The figures of the transactions sent from `from` to `to`.
    pub fn stats(&self, from: Instant, to: Instant) -> RunStats {
        stats(&self.0, from, to, 0)
    }
}

/// Each stream is a client with one transaction in flight, until `end` (those in flight
/// then are waited for).
pub async fn closed_until(target: &Target, streams: Vec<Stream>, end: Instant) -> (Samples, Vec<Stream>) {
    let clients = streams.into_iter().map(|mut stream| {
        let target = target.clone();
        tokio::spawn(async move {
            let mut samples = Vec::new();
            while Instant::now() < end {
                samples.push(submit_next(&target, &mut stream, Instant::now()).await);
            }
            (samples, stream)
        })
    });
    let mut samples = Vec::new();
    let mut streams = Vec::new();
    for client in futures::future::join_all(clients).await.into_iter().flatten() {
        samples.extend(client.0);
        streams.push(client.1);
    }
    (Samples(samples), streams)
}

/// Sends transactions at `rate` per second for `warmup` then `window`, each on an idle
/// stream (none idle: it is shed), then waits up to `drain` for those in flight.
pub async fn open(
    target: &Target,
    streams: Vec<Stream>,
    rate: f64,
    warmup: Duration,
    window: Duration,
    drain: Duration,
) -> (RunStats, Vec<Stream>) {
    let count = streams.len();
    let (idle_sender, mut idle) = mpsc::channel(count.max(1));
    for stream in streams {
        let _ = idle_sender.try_send(stream);
    }
    let (sample_sender, mut samples_received) = mpsc::unbounded_channel();
    let started = Instant::now();
    let end = started + warmup + window;
    let mut shed_in_window = 0;
    for n in 0u64.. {
        let due = started + Duration::from_secs_f64(n as f64 / rate);
        if due >= end {
            break;
        }
        tokio::time::sleep_until(due).await;
        let Ok(mut stream) = idle.try_recv() else {
            if due >= started + warmup {
                shed_in_window += 1;
            }
            continue;
        };
        let (target, idle_sender, sample_sender) = (target.clone(), idle_sender.clone(), sample_sender.clone());
        tokio::spawn(async move {
            let sample = submit_next(&target, &mut stream, due).await;
            let _ = sample_sender.send(sample);
            let _ = idle_sender.send(stream).await;
        });
    }
    drop(sample_sender);
    // Every stream back idle means nothing is in flight.
    let mut streams = Vec::with_capacity(count);
    let drained = tokio::time::timeout(drain, async {
        while streams.len() < count {
            match idle.recv().await {
                Some(stream) => streams.push(stream),
                None => break,
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!("{} transactions still in flight after {drain:?}: left behind", count - streams.len());
    }
    let mut samples = Vec::new();
    while let Ok(sample) = samples_received.try_recv() {
        samples.push(sample);
    }
    (stats(&samples, started + warmup, end, shed_in_window), streams)
}

/// Throughput counts outcomes reached inside the window; latency, the transactions due
/// inside it (however late they ended).
fn stats(samples: &[Sample], from: Instant, to: Instant, shed: usize) -> RunStats {
    let window_s = (to - from).as_secs_f64();
    let in_window: Vec<&Sample> = samples.iter().filter(|sample| sample.due >= from && sample.due < to).collect();
    let committed_inside = samples
        .iter()
        .filter(|sample| sample.committed == Some(true) && sample.done >= from && sample.done < to)
        .count();
    let mut latencies: Vec<f64> = in_window
        .iter()
        .filter(|sample| sample.committed == Some(true))
        .map(|sample| (sample.done - sample.due).as_secs_f64() * 1000.0)
        .collect();
    latencies.sort_by(f64::total_cmp);
    RunStats {
        window_s,
        committed: committed_inside,
        committed_all: samples.iter().filter(|sample| sample.committed == Some(true)).count(),
        aborted: in_window.iter().filter(|sample| sample.committed == Some(false)).count(),
        errors: in_window.iter().filter(|sample| sample.committed.is_none()).count(),
        shed,
        tps: committed_inside as f64 / window_s,
        p50_ms: percentile(&latencies, 0.50),
        p99_ms: percentile(&latencies, 0.99),
        max_ms: latencies.last().copied().unwrap_or(f64::NAN),
    }
}

/// The `p` quantile of sorted values (nearest rank); NaN when there are none.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// The median of some values (NaN when there are none).
pub fn median(values: impl IntoIterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.into_iter().filter(|value| !value.is_nan()).collect();
    values.sort_by(f64::total_cmp);
    percentile(&values, 0.5)
}
