//! A scripted scenario the seeded faults reach too rarely: the liveness gap of
//! `docs/protocol.md` §7. A replica that needs a state transfer must get the body of the
//! stable checkpoint from a live peer even when the live replicas have already cut the
//! next checkpoint and that one cannot be certified, because the replica that would
//! have signed it crashed first.
//!
//! One shard, minted coins all along. Replica 1 is cut off (it falls behind the next
//! stable checkpoint S); replicas 0, 2 and 3 go on. When 2 and 3 have cut S' (the
//! checkpoint after S) and 0 has not, 0 crashes for good and the network heals: S' has
//! two signers and can get no third, so the stable checkpoint stays S, and 1 can only
//! go on with S's body from 2 or 3.

use shardspace_core::ShardId;
use shardspace_core::bft::ReplicaId;
use shardspace_core::sbac::Attempt;
use shardspace_core::sbac::replica::ClientRequest;

use super::workload::{coin, mint};
use super::{SbacSimulation, global};
use crate::sim::network::LinkFaults;

/// How long replica 1 has to catch up once the network heals.
pub const CATCH_UP_MS: u64 = 20_000;
/// Simulated time between two mints.
const MINT_EVERY_MS: u64 = 10;
/// How long the scenario may take to reach each phase.
const PHASE_MS: u64 = 30_000;

const BEHIND: u32 = 1;
const CRASHED: u32 = 0;
const LIVE: [u32; 2] = [2, 3];

/// What one seed of the scenario came to.
#[derive(Debug)]
pub struct GapReport {
    pub seed: u64,
    /// The seed reached the state the scenario is about (otherwise it says why not).
    pub reached: Result<(), String>,
    /// The stable checkpoint when replica 0 crashed, and the one cut after it.
    pub stable: u64,
    pub cut: u64,
    /// Simulated ms from the heal until replica 1 had decided past `cut`, if it did.
    pub caught_up_ms: Option<u64>,
    pub violations: Vec<String>,
}

struct Load {
    seed: u64,
    minted: u64,
    next_at: u64,
}

impl Load {
    /// Runs the simulation to `until`, minting a coin every `MINT_EVERY_MS`.
    fn run_until(&mut self, simulation: &mut SbacSimulation, until: u64) {
        while self.next_at <= until {
            simulation.run_until(self.next_at);
            self.mint(simulation);
            self.next_at += MINT_EVERY_MS;
        }
        simulation.run_until(until);
    }

    fn mint(&mut self, simulation: &mut SbacSimulation) {
        self.minted += 1;
        let coin = coin("coins", 1, format!("gap-{}-{}", self.seed, self.minted));
        let envelope = serde_json::to_string(&mint(vec![coin])).expect("an envelope serialises");
        let client = simulation.client();
        for node in simulation.replicas_of(ShardId(0)) {
            let request = ClientRequest::Envelope { envelope: envelope.clone(), attempt: Attempt(1) };
            simulation.request(client, node, request);
        }
    }
}

fn decided(simulation: &SbacSimulation, node: u32) -> u64 {
    simulation.replica(node).map_or(0, |replica| replica.replica().tip().height.0)
}

fn stable(simulation: &SbacSimulation, node: u32) -> u64 {
    let stable = simulation.replica(node).and_then(|replica| replica.replica().stable().cloned());
    stable.map_or(0, |stable| stable.certificate.point.height.0)
}

/// Steps 1 ms at a time until `done` holds (true) or `PHASE_MS` passed (false).
fn step_until(simulation: &mut SbacSimulation, load: &mut Load, done: impl Fn(&SbacSimulation) -> bool) -> bool {
    let deadline = simulation.now() + PHASE_MS;
    while simulation.now() < deadline {
        if done(simulation) {
            return true;
        }
        let next = simulation.now() + 1;
        load.run_until(simulation, next);
    }
    done(simulation)
}

/// Runs the scenario on one seed.
pub fn transfer_while_the_next_checkpoint_is_uncertified(seed: u64) -> GapReport {
    let links = LinkFaults { loss: 0.0, duplication: 0.0, delay_min_ms: 1, delay_max_ms: 8, straggler: 0.0 };
    let mut simulation = SbacSimulation::new(seed, 1, links, &[]);
    let mut load = Load { seed, minted: 0, next_at: simulation.now() };
    let mut report = GapReport { seed, reached: Ok(()), stable: 0, cut: 0, caught_up_ms: None, violations: vec![] };
    let interval = simulation.checkpoint_interval();
    let all = [CRASHED, BEHIND, LIVE[0], LIVE[1]];
    if !step_until(&mut simulation, &mut load, |s| all.iter().all(|&node| stable(s, node) >= interval)) {
        report.reached = Err("no first stable checkpoint".into());
        return report;
    }
    simulation.isolate_now(vec![global(ShardId(0), ReplicaId(BEHIND))]);
    let first = stable(&simulation, LIVE[0]);
    // The next checkpoint becomes stable without replica 1 (0, 2 and 3 sign it) ...
    if !step_until(&mut simulation, &mut load, |s| LIVE.iter().all(|&node| stable(s, node) > first)) {
        report.reached = Err("no stable checkpoint while replica 1 was cut off".into());
        return report;
    }
    report.stable = stable(&simulation, LIVE[0]);
    report.cut = report.stable + interval;
    if decided(&simulation, BEHIND) >= report.stable {
        report.reached = Err("replica 1 was not behind the stable checkpoint".into());
        return report;
    }
    // ... then 2 and 3 cut the one after it, and 0 crashes before it does.
    let cut = report.cut;
    let cut_by = |s: &SbacSimulation, nodes: &[u32]| nodes.iter().any(|&node| decided(s, node) >= cut);
    if !step_until(&mut simulation, &mut load, |s| cut_by(s, &LIVE) || cut_by(s, &[CRASHED])) {
        report.reached = Err("the next checkpoint was never cut".into());
        return report;
    }
    if !step_until(&mut simulation, &mut load, |s| {
        LIVE.iter().all(|&node| decided(s, node) >= cut) || cut_by(s, &[CRASHED])
    }) {
        report.reached = Err("replicas 2 and 3 did not both cut the next checkpoint".into());
        return report;
    }
    if cut_by(&simulation, &[CRASHED]) || LIVE.iter().any(|&node| stable(&simulation, node) != report.stable) {
        report.reached = Err("replica 0 cut the next checkpoint as early as 2 and 3".into());
        return report;
    }
    simulation.crash_now(CRASHED);
    simulation.heal_network();
    let healed = simulation.now();
    let caught_up = step_until(&mut simulation, &mut load, |s| decided(s, BEHIND) > cut && stable(s, LIVE[0]) >= cut);
    if caught_up && simulation.now() - healed <= CATCH_UP_MS {
        report.caught_up_ms = Some(simulation.now() - healed);
    }
    simulation.finish();
    report.violations = simulation.observer.violations.clone();
    report
}
