//! Noticing that this process did not run for a while (SIGSTOP, a paused VM, a host
//! that hung), and dropping what its connections buffered meanwhile.
//!
//! While a replica does not run, its peers and clients go on writing to it, and the
//! buffers of its sockets and of theirs fill with frames of rounds long past (1–2 MB
//! after 8 s, measured). Read after the freeze, each was verified and handled in turn:
//! the replica spent 3–4 s on that backlog before it heard anything current, and only
//! then fetched what it missed, where a restarted replica, with no backlog, caught up
//! in 2 s (`docs/benchmarks.md`, Faults). So a connection that reads a frame across a
//! freeze is reset: a reset (not a FIN) makes both kernels drop what they buffered;
//! the peer reconnects at once, its own queue drops what went stale meanwhile
//! (`PEER_STALE_AFTER`), and what still matters is asked for again.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

/// How often the watcher looks at the clock.
pub const FREEZE_TICK: Duration = Duration::from_millis(100);
/// A gap between two ticks longer than this is a freeze. Far above what a busy runtime
/// delays a timer by; a false alarm costs reconnections, never safety.
pub const FROZEN_AFTER: Duration = Duration::from_secs(1);

/// The freezes this process noticed, for its connections to ask about.
#[derive(Debug)]
pub struct Freezes {
    started: Instant,
    /// When the watcher last ticked, in milliseconds since `started`.
    heartbeat: AtomicU64,
    /// Freezes noticed so far.
    noticed: AtomicU64,
    /// Connections reset for reading across a freeze.
    resets: AtomicU64,
}

impl Freezes {
    /// Starts the watcher, which runs until `shutdown`.
    pub fn watch(mut shutdown: watch::Receiver<bool>) -> Arc<Self> {
        let freezes = Arc::new(Self {
            started: Instant::now(),
            heartbeat: AtomicU64::new(0),
            noticed: AtomicU64::new(0),
            resets: AtomicU64::new(0),
        });
        let watcher = Arc::clone(&freezes);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(FREEZE_TICK);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last = Instant::now();
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    _ = shutdown.changed() => return,
                }
                let now = Instant::now();
                let gap = now.duration_since(last);
                last = now;
                watcher.heartbeat.store(watcher.millis(now), Ordering::Release);
                if gap > FROZEN_AFTER {
                    tracing::warn!(
                        ?gap,
                        "this replica did not run for a while (paused?): connections that buffered frames meanwhile are reset"
                    );
                    watcher.note_freeze();
                }
            }
        });
        freezes
    }

    fn millis(&self, at: Instant) -> u64 {
        u64::try_from(at.duration_since(self.started).as_millis()).unwrap_or(u64::MAX)
    }

    /// Counts a freeze: every connection started before it is reset at its next frame.
    /// The watcher calls it; tests do, to freeze without stopping the process.
    pub fn note_freeze(&self) {
        self.noticed.fetch_add(1, Ordering::AcqRel);
    }

    /// Taken when a connection starts, for `frozen_since`.
    pub fn mark(&self) -> u64 {
        self.noticed.load(Ordering::Acquire)
    }

    /// Whether the process froze since `mark` was taken, or is waking up from a freeze
    /// the watcher has not run since to notice (the heartbeat is old).
    pub fn frozen_since(&self, mark: u64) -> bool {
        let heartbeat = self.heartbeat.load(Ordering::Acquire);
        let silent = self.millis(Instant::now()).saturating_sub(heartbeat);
        self.mark() != mark || silent > u64::try_from(FROZEN_AFTER.as_millis()).unwrap_or(u64::MAX)
    }

    /// Resets a connection that read across a freeze, and counts it.
    pub fn reset(&self, stream: &TcpStream) {
        self.resets.fetch_add(1, Ordering::Relaxed);
        if let Err(error) = stream.set_zero_linger() {
            tracing::debug!(%error, "SO_LINGER could not be set: the connection closes with a FIN");
        }
    }

    pub fn noticed(&self) -> u64 {
        self.mark()
    }

    pub fn resets(&self) -> u64 {
        self.resets.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_gap_past_frozen_after_is_a_freeze_and_ticks_in_time_are_not() {
        let (_stop, shutdown) = watch::channel(false);
        let freezes = Freezes::watch(shutdown);
        let mark = freezes.mark();
        for _ in 0..30 {
            tokio::time::sleep(FREEZE_TICK).await;
        }
        assert!(!freezes.frozen_since(mark), "3 s of ticks in time were taken for a freeze");
        // The paused clock jumps as the process's clock does across SIGSTOP and SIGCONT.
        tokio::time::advance(FROZEN_AFTER * 5).await;
        assert!(freezes.frozen_since(mark), "a connection reading right after the freeze is not told");
        tokio::time::sleep(FREEZE_TICK * 2).await;
        assert_eq!(freezes.noticed(), 1);
        assert!(freezes.frozen_since(mark), "a connection started before the freeze must still be reset");
        assert!(!freezes.frozen_since(freezes.mark()), "a connection started after the freeze is not");
    }
}
