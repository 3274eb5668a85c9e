//! S-BAC across two or three shards on the simulator: each seed creates coins,
//! then spends them with cross-shard transactions (some with a dependency whose
//! input lives on a third shard, some reading a reference), double spends and
//! checker rejections, under its own network faults, crashes and restarts, and,
//! in half the seeds, one lying replica per shard (of one shard or of all) that
//! signs the opposite of every verdict and vote, signs votes in another shard's
//! name, and orders replayed decisions and prepares with a verdict only it
//! signed. I1–I4 hold at every step, every attempt is decided by every
//! concerned shard, and no lock is left (I6).

use shardspace_testkit::sim::sbac::run_sbac_seed;

const SEEDS: std::ops::Range<u64> = 0..40;

#[test]
fn every_sbac_seed_keeps_the_invariants_and_decides_every_attempt() {
    let mut failures = Vec::new();
    let (mut committed, mut aborted, mut forged, mut refused) = (0, 0, 0, 0);
    let (mut three_shards, mut third_shard_dependencies, mut with_references) = (0, 0, 0);
    for seed in SEEDS {
        let report = run_sbac_seed(seed);
        committed += report.committed;
        aborted += report.aborted;
        forged += report.forged;
        refused += report.refused;
        three_shards += usize::from(report.shards == 3);
        third_shard_dependencies += report.third_shard_dependencies;
        with_references += report.with_references;
        if let Some(first) = report.violations.first() {
            failures.push(format!("SEED={seed} make sim    # {first}"));
        }
    }
    assert!(failures.is_empty(), "replay with:\n{}", failures.join("\n"));
    // The workload exercises both outcomes (double spends and the fussy checker abort some).
    assert!(committed > 0 && aborted > 0, "committed {committed}, aborted {aborted}");
    // The lying replica slipped forged requests into its shard's log, and they were refused.
    assert!(forged > 0 && refused > 0, "forged {forged}, refused {refused}");
    // Three-shard seeds, dependencies on a shard of their own, and references all ran.
    assert!(
        three_shards > 0 && third_shard_dependencies > 0 && with_references > 0,
        "{three_shards} three-shard seeds, {third_shard_dependencies} such dependencies, {with_references} with references"
    );
}
