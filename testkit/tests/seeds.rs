//! The fixed seed list of `make test`: each seed draws its own fault mix
//! (see `sim::plan`); `make sim SEEDS=N` runs many more.

use shardspace_testkit::sim::plan::run_seed;

/// Seeds run by `make test`.
const SEEDS: std::ops::Range<u64> = 0..300;

#[test]
fn every_seed_of_the_fixed_list_keeps_every_invariant() {
    let mut failures = Vec::new();
    for seed in SEEDS {
        let report = run_seed(seed);
        if let Some(first) = report.violations.first() {
            failures.push(format!("SEED={seed} make sim    # {first}"));
        }
    }
    assert!(failures.is_empty(), "replay with:\n{}", failures.join("\n"));
}
