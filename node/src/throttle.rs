//! Warnings that a flood would repeat (a checker down under load, garbage handshakes):
//! at most one per interval, the next one saying how many were held back.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One kind of warning's budget.
#[derive(Debug)]
pub struct Throttle {
    every: Duration,
    /// When one was last let through, and how many were held back since.
    state: Mutex<(Option<Instant>, u64)>,
}

impl Throttle {
    pub const fn new(every: Duration) -> Self {
        Self { every, state: Mutex::new((None, 0)) }
    }

    /// `Some(held back since the last one)` when a warning may be written now.
    pub fn allow(&self) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        match state.0 {
            Some(last) if now.duration_since(last) < self.every => {
                state.1 += 1;
                None
            }
            _ => {
                let held_back = std::mem::take(&mut state.1);
                state.0 = Some(now);
                Some(held_back)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_warning_per_interval_and_the_next_counts_those_held_back() {
        let throttle = Throttle::new(Duration::from_millis(200));
        assert_eq!(throttle.allow(), Some(0));
        assert_eq!((0..1_000).filter_map(|_| throttle.allow()).count(), 0);
        std::thread::sleep(Duration::from_millis(210));
        assert_eq!(throttle.allow(), Some(1_000));
    }
}
