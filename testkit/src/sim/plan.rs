//! A seed's run: the seed draws its own fault mix (Byzantine behaviours, link
//! faults, crashes with or without a disk, partitions), a safety phase with
//! those faults and a client workload, then a liveness phase in which 2f+1
//! honest replicas are up and connected and every request must be decided.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use shardspace_core::bft::ReplicaId;

use super::byzantine::{BEHAVIOURS, Behaviour};
use super::network::LinkFaults;
use super::{Scheduled, Settings, Simulation};

/// How long the liveness phase may take to decide everything, in simulated ms.
pub const LIVENESS_BOUND_MS: u64 = 60_000;

/// The outcome of one seed.
#[derive(Debug)]
pub struct Report {
    pub seed: u64,
    pub summary: String,
    pub violations: Vec<String>,
    pub simulated_ms: u64,
    /// How often each protocol path was taken (the S-BAC simulator counts them).
    pub coverage: std::collections::BTreeMap<String, u64>,
}

/// Runs one seed from start to end.
pub fn run_seed(seed: u64) -> Report {
    // The plan's own RNG: drawing the plan does not shift the simulation's choices.
    let mut plan = StdRng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15);
    let mut settings = Settings::new(seed);
    settings.links = LinkFaults {
        loss: if plan.random_bool(0.5) { plan.random_range(0.0..0.2) } else { 0.0 },
        duplication: plan.random_range(0.0..0.1),
        delay_min_ms: 1,
        delay_max_ms: plan.random_range(2..60),
        straggler: plan.random_range(0.0..0.05),
    };
    let crashes = plan.random_bool(0.5);
    settings.crash_mid_step = if crashes { 0.002 } else { 0.0 };
    let mut simulation = Simulation::new(settings.clone());
    let replicas = simulation.replica_ids();
    let mut summary = vec![format!("links {:?}", settings.links)];

    let byzantine = plan.random_bool(0.6).then(|| replicas[plan.random_range(0..replicas.len())]);
    if let Some(liar) = byzantine {
        let behaviours: Vec<Behaviour> = BEHAVIOURS.iter().copied().filter(|_| plan.random_bool(0.4)).collect();
        summary.push(format!("byzantine {liar} {behaviours:?}"));
        simulation.make_byzantine(liar, behaviours);
    }
    let honest: Vec<ReplicaId> = replicas.iter().copied().filter(|r| Some(*r) != byzantine).collect();
    let safety_ms = plan.random_range(3_000..8_000);

    if crashes {
        for _ in 0..plan.random_range(1..4) {
            let (victim, at) = (honest[plan.random_range(0..honest.len())], plan.random_range(0..safety_ms));
            // A wiped disk forgets its votes: that replica counts as faulty, so
            // wipes happen only where no replica is Byzantine (f = 1).
            let empty_disk = byzantine.is_none() && plan.random_bool(0.3);
            simulation.schedule(at, Scheduled::Crash(victim));
            simulation.schedule(at + plan.random_range(100..2_000), Scheduled::Restart { replica: victim, empty_disk });
            summary.push(format!("crash {victim} at {at} ms{}", if empty_disk { ", empty disk" } else { "" }));
        }
    }
    if plan.random_bool(0.5) {
        for _ in 0..plan.random_range(1..4) {
            let (target, at) = (replicas[plan.random_range(0..replicas.len())], plan.random_range(0..safety_ms));
            let partition =
                if plan.random_bool(0.5) { Scheduled::Isolate(vec![target]) } else { Scheduled::Deafen(target) };
            summary.push(format!("{partition:?} at {at} ms"));
            simulation.schedule(at, partition);
            simulation.schedule(at + plan.random_range(100..2_000), Scheduled::Heal);
        }
    }

    // Safety phase: a workload under faults.
    let requests = plan.random_range(20..120);
    for index in 0..requests {
        let at = plan.random_range(0..safety_ms);
        simulation.run_until(at.max(simulation.now()));
        simulation.submit(format!("k{}=v{index}", index % 17));
    }
    simulation.run_until(safety_ms);

    // Liveness phase: everyone honest back and connected, messages eventually delivered.
    simulation.settings.crash_mid_step = 0.0;
    simulation.schedule(safety_ms, Scheduled::Heal);
    simulation
        .schedule(safety_ms, Scheduled::Links(LinkFaults { loss: 0.0, straggler: 0.0, ..settings.links.clone() }));
    for replica in &honest {
        simulation.restart(*replica, false);
    }
    for index in 0..5 {
        simulation.submit(format!("late{index}=done"));
    }
    let settled = simulation.run_until_settled(safety_ms + LIVENESS_BOUND_MS);
    let mut violations = simulation.observer.violations.clone();
    if !settled {
        violations.push(format!(
            "liveness: after {LIVENESS_BOUND_MS} ms, {} requests undecided; heights {:?}",
            simulation.undecided(),
            simulation.honest_heights()
        ));
        violations.push(simulation.describe());
    }
    summary.push(format!("{requests} requests, decided to height {}", simulation.observer.highest_decided().0));
    Report {
        seed,
        summary: summary.join("; "),
        violations,
        simulated_ms: simulation.now(),
        coverage: Default::default(),
    }
}
