//! A seed's run: the seed draws its own fault mix (Byzantine behaviours, link
//! faults, crashes with or without a disk, partitions), a safety phase with
//! those faults and a client workload, then a liveness phase in which 2f+1
//! honest replicas are up and connected and every request must be decided.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use shardspace_core::bft::ReplicaId;

use super::byzantine::{BEHAVIOURS, Behaviour};
use super::network::LinkFaults;
use super::{DecisionCost, Scheduled, Settings, Simulation};

/// How long the liveness phase may take to decide everything, in simulated ms.
pub const LIVENESS_BOUND_MS: u64 = 60_000;

/// Requests decided one by one, with f replicas down, after the liveness phase.
pub const DEGRADED_DECISIONS: u64 = 10;
/// Rounds one of them may take on average with a crashed replica: a decision takes 3
/// rounds (a block, its child, and the proposal that carries the child's certificate), and
/// leaders by reputation stop handing rounds to the crashed replica within a few blocks.
/// Round-robin leaders took 4 (docs/protocol.md §3.11).
pub const DEGRADED_ROUNDS_MAX: f64 = 3.5;
/// The same with a Byzantine replica, which votes and so keeps its turns as leader: one
/// that equivocates wastes each of them, and its time bound has a second round timeout.
pub const DEGRADED_ROUNDS_MAX_BYZANTINE: f64 = 5.0;
/// Simulated time one of them may take on average: one round timeout (two with a Byzantine
/// replica) plus this many of the seed's longest message delay (a decision is about 6
/// message delays) and of its ticks.
pub const DEGRADED_DELAYS_MAX: u64 = 6;
pub const DEGRADED_TICKS_MAX: u64 = 3;

/// The outcome of one seed.
#[derive(Debug)]
pub struct Report {
    pub seed: u64,
    pub summary: String,
    pub violations: Vec<String>,
    pub simulated_ms: u64,
    /// What a decision cost with f replicas down (`DEGRADED_DECISIONS` of them, one by one).
    pub degraded: Option<DecisionCost>,
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

    // Degraded phase: f replicas down (the Byzantine one, or an honest one crashed), a
    // client waiting for each answer.
    let mut degraded = None;
    if settled {
        let down = byzantine.unwrap_or_else(|| honest[plan.random_range(0..honest.len())]);
        if byzantine.is_none() {
            simulation.crash(down);
        }
        let seen = simulation.observer.violations.len();
        degraded = simulation.decide_one_by_one("degraded", DEGRADED_DECISIONS, LIVENESS_BOUND_MS);
        let rounds_max = if byzantine.is_some() { DEGRADED_ROUNDS_MAX_BYZANTINE } else { DEGRADED_ROUNDS_MAX };
        let timeouts = if byzantine.is_some() { 2 } else { 1 };
        let ms_max = timeouts * settings.config.round_timeout_ms
            + DEGRADED_DELAYS_MAX * settings.links.delay_max_ms
            + DEGRADED_TICKS_MAX * settings.tick_ms;
        match degraded {
            Some(cost) => {
                let (ms, rounds) = (cost.ms_per_decision(), cost.rounds_per_decision());
                summary.push(format!("{down} down: {ms:.0} ms and {rounds:.1} rounds per decision"));
                if rounds > rounds_max || ms > ms_max as f64 {
                    violations.push(format!(
                        "liveness: with {down} down a decision took {ms:.0} ms and {rounds:.1} rounds on average \
                         (bounds {ms_max} ms, {rounds_max} rounds)"
                    ));
                }
            }
            None => violations
                .push(format!("liveness: with {down} down a request was not decided in {LIVENESS_BOUND_MS} ms")),
        }
        violations.extend(simulation.observer.violations.iter().skip(seen).cloned());
    }
    Report {
        seed,
        summary: summary.join("; "),
        violations,
        simulated_ms: simulation.now(),
        degraded,
        coverage: Default::default(),
    }
}
