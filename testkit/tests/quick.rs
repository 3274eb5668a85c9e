#![allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed test

use shardspace_testkit::sim::{Settings, Simulation};

#[test]
fn four_honest_replicas_on_a_perfect_network_decide_every_request() {
    let mut simulation = Simulation::new(Settings::new(1));
    for index in 0..50 {
        simulation.submit(format!("k{index}=v"));
    }
    let settled = simulation.run_until_settled(20_000);
    assert!(simulation.observer.violations.is_empty(), "{:?}", simulation.observer.violations);
    assert!(settled, "undecided {}; heights {:?}", simulation.undecided(), simulation.honest_heights());
}
