//! S-BAC across two shards on the simulator: each seed creates coins, then
//! spends them with cross-shard transactions, double spends and checker
//! rejections, under its own network faults, crashes and restarts, and, in half
//! the seeds, a replica that signs the opposite of every verdict and vote and
//! orders replayed decisions and prepares with a verdict only it signed. I1–I3 hold at every step
//! and every attempt is decided by every concerned shard.

use shardspace_testkit::sim::sbac::run_sbac_seed;

const SEEDS: std::ops::Range<u64> = 0..40;

#[test]
fn every_sbac_seed_keeps_i1_i2_i3_and_decides_every_attempt() {
    let mut failures = Vec::new();
    let (mut committed, mut aborted, mut forged, mut refused) = (0, 0, 0, 0);
    for seed in SEEDS {
        let report = run_sbac_seed(seed);
        committed += report.committed;
        aborted += report.aborted;
        forged += report.forged;
        refused += report.refused;
        if let Some(first) = report.violations.first() {
            failures.push(format!("SEED={seed} make sim-sbac    # {first}"));
        }
    }
    assert!(failures.is_empty(), "replay with:\n{}", failures.join("\n"));
    // The workload exercises both outcomes (double spends and the fussy checker abort some).
    assert!(committed > 0 && aborted > 0, "committed {committed}, aborted {aborted}");
    // The lying replica slipped forged requests into its shard's log, and they were refused.
    assert!(forged > 0 && refused > 0, "forged {forged}, refused {refused}");
}
