//! S-BAC across two or three shards on the simulator, which runs the production
//! `ShardReplica` of every replica: each seed mints coins, then spends them with
//! cross-shard transfers (some with a dependency whose input lives on a third
//! shard, some reading a reference), double spends and checker rejections, under
//! its own network faults, crashes between outputs, lost disks, failing checkers
//! and, in half the seeds, one Byzantine replica per shard (of one shard or of
//! all). I1–I5 hold at every step; once the faults heal every attempt is decided
//! and answered, no lock is left (I6) and no value was minted. Every protocol path
//! of `PATHS` is taken at least once over the seeds.

use std::collections::BTreeMap;

use shardspace_testkit::sim::sbac::{
    CATCH_UP_MS, PATHS, run_sbac_seed, transfer_while_the_next_checkpoint_is_uncertified,
};

const SEEDS: std::ops::Range<u64> = 0..48;

#[test]
fn every_sbac_seed_keeps_the_invariants_decides_every_attempt_and_takes_every_path() {
    let mut failures = Vec::new();
    let (mut committed, mut aborted) = (0, 0);
    let (mut three_shards, mut third_shard_dependencies, mut with_references) = (0, 0, 0);
    let mut coverage: BTreeMap<String, u64> = BTreeMap::new();
    for seed in SEEDS {
        let report = run_sbac_seed(seed);
        committed += report.committed;
        aborted += report.aborted;
        three_shards += usize::from(report.shards == 3);
        third_shard_dependencies += report.third_shard_dependencies;
        with_references += report.with_references;
        for (path, count) in report.coverage {
            *coverage.entry(path).or_default() += count;
        }
        if let Some(first) = report.violations.first() {
            failures.push(format!("SEED={seed} make sim-sbac    # {first}"));
        }
    }
    assert!(failures.is_empty(), "replay with:\n{}", failures.join("\n"));
    // The workload exercises both outcomes (double spends and the checker abort some).
    assert!(committed > 0 && aborted > 0, "committed {committed}, aborted {aborted}");
    assert!(
        three_shards > 0 && third_shard_dependencies > 0 && with_references > 0,
        "{three_shards} three-shard seeds, {third_shard_dependencies} such dependencies, {with_references} with references"
    );
    let never: Vec<&str> =
        PATHS.iter().copied().filter(|path| coverage.get(*path).copied().unwrap_or(0) == 0).collect();
    assert!(never.is_empty(), "paths never taken over seeds {SEEDS:?}: {never:?}\n{coverage:#?}");
}

/// `docs/protocol.md` §7: a replica that needs a state transfer gets the stable
/// checkpoint's body even when the live replicas have cut the next checkpoint and the
/// replica that would have certified it crashed first (it stays down).
#[test]
fn a_replica_behind_gets_the_stable_state_while_the_next_checkpoint_cannot_be_certified() {
    let mut reached = Vec::new();
    for seed in 0..40 {
        let report = transfer_while_the_next_checkpoint_is_uncertified(seed);
        if report.reached.is_ok() {
            reached.push(report);
        }
        if reached.len() == 3 {
            break;
        }
    }
    assert!(!reached.is_empty(), "no seed of 0..40 reached the state the scenario is about");
    for report in &reached {
        assert!(report.violations.is_empty(), "seed {}: {:?}", report.seed, report.violations);
        assert!(
            report.caught_up_ms.is_some(),
            "seed {}: replica 1 did not get past height {} within {} ms with the stable checkpoint at {}",
            report.seed,
            report.cut,
            CATCH_UP_MS,
            report.stable
        );
    }
}
