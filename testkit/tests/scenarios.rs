//! Scenarios of the BFT protocol on the deterministic simulator, named like
//! specifications. Each also passes the observer's invariant checks (I3, one
//! vote per round, no honest message rejected, no halt) at every step.

#![allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed test

use shardspace_core::bft::{Height, ReplicaId};
use shardspace_testkit::sim::byzantine::Behaviour;
use shardspace_testkit::sim::network::LinkFaults;
use shardspace_testkit::sim::plan::DEGRADED_ROUNDS_MAX;
use shardspace_testkit::sim::{Scheduled, Settings, Simulation};

const SETTLE_MS: u64 = 60_000;

fn submit(simulation: &mut Simulation, prefix: &str, count: usize) {
    for index in 0..count {
        simulation.submit(format!("{prefix}{index}=v{index}"));
    }
}

fn assert_clean(simulation: &Simulation) {
    assert!(simulation.observer.violations.is_empty(), "violations: {:#?}", simulation.observer.violations);
}

fn settle(simulation: &mut Simulation) {
    let deadline = simulation.now() + SETTLE_MS;
    let settled = simulation.run_until_settled(deadline);
    assert_clean(simulation);
    assert!(settled, "not settled: {} undecided\n{}", simulation.undecided(), simulation.describe());
}

fn heights(simulation: &Simulation) -> Vec<Height> {
    simulation.honest_heights().into_iter().map(|(_, height)| height).collect()
}

#[test]
fn the_leader_crashes_and_the_next_leader_carries_on() {
    let mut simulation = Simulation::new(Settings::new(11));
    submit(&mut simulation, "before", 20);
    settle(&mut simulation);
    let leader = simulation.current_leader();
    simulation.crash(leader);
    submit(&mut simulation, "after", 20);
    settle(&mut simulation);
    assert_eq!(simulation.honest_heights().len(), 3, "the crashed leader stays down");
}

#[test]
fn an_isolated_leader_that_can_only_send_cannot_stall_the_shard() {
    let mut simulation = Simulation::new(Settings::new(12));
    submit(&mut simulation, "before", 10);
    settle(&mut simulation);
    let leader = simulation.current_leader();
    let now = simulation.now();
    simulation.schedule(now, Scheduled::Deafen(leader));
    submit(&mut simulation, "during", 30);
    let deadline = simulation.now() + 10_000;
    simulation.run_until(deadline);
    assert_clean(&simulation);
    assert_eq!(simulation.undecided(), 0, "the deaf leader stalled the shard\n{}", simulation.describe());
    let now = simulation.now();
    simulation.schedule(now, Scheduled::Heal);
    settle(&mut simulation);
}

#[test]
fn an_equivocating_leader_cannot_split_honest_replicas() {
    let mut simulation = Simulation::new(Settings::new(13));
    simulation.make_byzantine(ReplicaId(1), vec![Behaviour::Equivocate, Behaviour::DoubleVote]);
    for round in 0..10 {
        submit(&mut simulation, &format!("r{round}-"), 10);
        let until = simulation.now() + 500;
        simulation.run_until(until);
    }
    settle(&mut simulation);
    assert!(simulation.equivocations() > 0, "the Byzantine leader never equivocated");
}

#[test]
fn replayed_forged_and_garbage_messages_change_nothing() {
    let mut simulation = Simulation::new(Settings::new(14));
    simulation.make_byzantine(ReplicaId(2), vec![Behaviour::Replay, Behaviour::Forge, Behaviour::Garbage]);
    for round in 0..10 {
        submit(&mut simulation, &format!("r{round}-"), 10);
        let until = simulation.now() + 500;
        simulation.run_until(until);
    }
    settle(&mut simulation);
    assert!(simulation.lies() > 0, "the Byzantine replica never lied");
    let rejected: u64 = ["BadSignature", "UnknownReplica", "Malformed"]
        .iter()
        .map(|kind| simulation.observer.dropped.get(*kind).copied().unwrap_or(0))
        .sum();
    assert!(rejected > 0, "no forged message was rejected: {:?}", simulation.observer.dropped);
}

#[test]
fn a_replica_restarted_with_an_empty_disk_catches_up_from_a_snapshot() {
    let mut simulation = Simulation::new(Settings::new(15));
    submit(&mut simulation, "early", 5);
    settle(&mut simulation);
    simulation.crash(ReplicaId(3));
    // Enough blocks that the others checkpoint and drop the log the wiped replica would need.
    for round in 0..12 {
        submit(&mut simulation, &format!("r{round}-"), 3);
        let until = simulation.now() + 400;
        simulation.run_until(until);
    }
    settle(&mut simulation);
    simulation.restart(ReplicaId(3), true);
    submit(&mut simulation, "late", 5);
    settle(&mut simulation);
    let all = heights(&simulation);
    assert_eq!(all.len(), 4);
    assert!(all.iter().all(|height| *height == all[0]), "heights differ: {all:?}");
    assert!(simulation.has_checkpoint_on_disk(ReplicaId(3)));
    assert!(simulation.observer.snapshots_installed > 0, "the wiped replica did not install a snapshot");
    let states: Vec<_> = (0..4).map(|i| simulation.app_of(ReplicaId(i)).unwrap().state()).collect();
    assert!(states.iter().all(|state| *state == states[0]), "states differ");
}

#[test]
fn f_plus_one_crashed_replicas_stop_progress_without_divergence_and_it_resumes() {
    let mut simulation = Simulation::new(Settings::new(16));
    submit(&mut simulation, "before", 10);
    settle(&mut simulation);
    let before = heights(&simulation)[0];
    simulation.crash(ReplicaId(0));
    simulation.crash(ReplicaId(1));
    submit(&mut simulation, "stuck", 10);
    let until = simulation.now() + 10_000;
    simulation.run_until(until);
    assert_clean(&simulation);
    assert!(heights(&simulation).iter().all(|height| *height == before), "two of four replicas decided alone");
    assert!(simulation.undecided() > 0);
    simulation.restart(ReplicaId(1), false);
    settle(&mut simulation);
    assert!(heights(&simulation)[0] > before);
}

#[test]
fn replicas_crashing_between_persisting_and_sending_never_vote_twice() {
    let mut settings = Settings::new(17);
    settings.crash_mid_step = 0.02;
    settings.links = LinkFaults { loss: 0.05, duplication: 0.05, delay_min_ms: 1, delay_max_ms: 30, straggler: 0.02 };
    let mut simulation = Simulation::new(settings);
    for round in 0..20 {
        submit(&mut simulation, &format!("r{round}-"), 5);
        let until = simulation.now() + 300;
        simulation.run_until(until);
        for replica in simulation.honest_ids() {
            simulation.restart(replica, false);
        }
    }
    assert_clean(&simulation);
    simulation.settings.crash_mid_step = 0.0;
    settle(&mut simulation);
}

#[test]
fn a_minority_partition_heals_and_catches_up() {
    let mut simulation = Simulation::new(Settings::new(18));
    let now = simulation.now();
    simulation.schedule(now, Scheduled::Isolate(vec![ReplicaId(2)]));
    submit(&mut simulation, "split", 30);
    let until = simulation.now() + 5_000;
    simulation.run_until(until);
    assert_eq!(simulation.undecided(), 0, "the majority did not go on without the minority");
    let now = simulation.now();
    simulation.schedule(now, Scheduled::Heal);
    submit(&mut simulation, "healed", 5);
    settle(&mut simulation);
}

/// Leaders by reputation stop handing rounds to a crashed replica: whichever one crashes,
/// a client waiting for each answer sees decisions take 3 rounds or so and less than a
/// round timeout on average (round-robin leaders took 4 rounds and 3 round timeouts).
#[test]
fn whichever_replica_crashes_decisions_go_on_at_nearly_full_speed() {
    for crashed in 0..4 {
        let mut simulation = Simulation::new(Settings::new(21));
        let round_timeout_ms = simulation.settings.config.round_timeout_ms;
        submit(&mut simulation, "warm", 5);
        settle(&mut simulation);
        let healthy = simulation.decide_one_by_one("healthy", 20, SETTLE_MS).unwrap();
        simulation.crash(ReplicaId(crashed));
        let degraded = simulation.decide_one_by_one("degraded", 20, SETTLE_MS).unwrap();
        assert_clean(&simulation);
        let (ms, rounds) = (degraded.ms_per_decision(), degraded.rounds_per_decision());
        assert!(rounds <= DEGRADED_ROUNDS_MAX, "r{crashed} crashed: {rounds:.2} rounds per decision");
        assert!(
            ms < healthy.ms_per_decision() + round_timeout_ms as f64,
            "r{crashed} crashed: {ms:.0} ms per decision, healthy {:.0}",
            healthy.ms_per_decision()
        );
    }
}
