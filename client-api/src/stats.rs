//! `GET /v1/stats`, for the explorer: decided attempts a second over the last minutes,
//! cluster-wide (counted by the feed's pollers, once they run: from the first stream
//! opened), and the latency of this API's own submissions.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// How far back the figures go.
pub const WINDOW: Duration = Duration::from_secs(300);
/// Latencies kept at most (the oldest go first).
const LATENCIES_MAX: usize = 20_000;

#[derive(Debug)]
pub struct Stats {
    started: Instant,
    /// Decided attempts counted in each second since `started`: (second, count).
    decided: Mutex<VecDeque<(u64, u64)>>,
    latencies: Mutex<VecDeque<(Instant, f64)>>,
}

impl Default for Stats {
    fn default() -> Self {
        Self { started: Instant::now(), decided: Mutex::default(), latencies: Mutex::default() }
    }
}

impl Stats {
    fn second(&self, at: Instant) -> u64 {
        at.duration_since(self.started).as_secs()
    }

    /// `count` attempts decided (seen by a poller) now.
    pub fn decided(&self, count: u64) {
        let now = self.second(Instant::now());
        let mut decided = self.decided.lock().unwrap_or_else(PoisonError::into_inner);
        match decided.back_mut() {
            Some((second, total)) if *second == now => *total += count,
            _ => decided.push_back((now, count)),
        }
        while decided.front().is_some_and(|(second, _)| now.saturating_sub(*second) > WINDOW.as_secs()) {
            decided.pop_front();
        }
    }

    /// A submission through this API took `latency`.
    pub fn latency(&self, latency: Duration) {
        let mut latencies = self.latencies.lock().unwrap_or_else(PoisonError::into_inner);
        latencies.push_back((Instant::now(), latency.as_secs_f64() * 1000.0));
        if latencies.len() > LATENCIES_MAX {
            latencies.pop_front();
        }
    }

    pub fn json(&self) -> Value {
        let now = Instant::now();
        let second = self.second(now);
        let window = WINDOW.as_secs();
        let mut per_second = vec![0u64; window as usize];
        for (at, count) in self.decided.lock().unwrap_or_else(PoisonError::into_inner).iter() {
            let age = second.saturating_sub(*at);
            if age < window {
                per_second[(window - 1 - age) as usize] += count;
            }
        }
        let mut recent: Vec<f64> = {
            let latencies = self.latencies.lock().unwrap_or_else(PoisonError::into_inner);
            latencies.iter().filter(|(at, _)| now.duration_since(*at) <= WINDOW).map(|(_, ms)| *ms).collect()
        };
        recent.sort_by(f64::total_cmp);
        let quantile = |q: f64| -> Option<f64> {
            let index = ((recent.len() as f64 - 1.0) * q).round() as usize;
            recent.get(index).map(|ms| (ms * 10.0).round() / 10.0)
        };
        json!({
            "window_seconds": window,
            "decided_per_second": per_second,
            "latency_ms": {"samples": recent.len(), "p50": quantile(0.5), "p99": quantile(0.99)},
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_land_in_the_last_second_and_latencies_give_quantiles() {
        let stats = Stats::default();
        stats.decided(3);
        stats.decided(2);
        for ms in 1..=100 {
            stats.latency(Duration::from_millis(ms));
        }
        let json = stats.json();
        let per_second = json["decided_per_second"].as_array().unwrap();
        assert_eq!(per_second.len(), WINDOW.as_secs() as usize);
        assert_eq!(per_second.iter().map(|n| n.as_u64().unwrap()).sum::<u64>(), 5);
        assert_eq!(json["latency_ms"]["samples"], 100);
        assert_eq!(json["latency_ms"]["p50"].as_f64(), Some(51.0));
        assert_eq!(json["latency_ms"]["p99"].as_f64(), Some(99.0));
    }
}
