//! One seed of the S-BAC simulator: coins are minted, then spent by clients with
//! cross-shard transfers (some nesting a dependency whose input lives on a third
//! shard, some reading a reference), double spends entering through different
//! shards, and checker rejections, under the seed's faults. Clients behave as the
//! node's `ClusterClient` does: they believe f+1 matching answers of a shard, ask
//! again while undecided, and run a lost transfer again as the attempt its
//! records call for (`next_attempt`). Then every fault heals, and every attempt
//! must be decided, every client answered, no lock left (I6), and the coins'
//! total unchanged.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::json;
use shardspace_core::sbac::attempts::next_attempt;
use shardspace_core::sbac::replica::{ClientId, ClientReply, ClientRequest};
use shardspace_core::sbac::{AnswerBody, Attempt, ObjectStatus, TxView};
use shardspace_core::{Envelope, Object, ShardId, Transaction, TxId};

use super::{CheckerState, Coverage, REPLICAS, SbacSimulation};
use crate::sim::network::LinkFaults;

/// How long after the faulty phase every attempt must be decided and answered.
pub const LIVENESS_MS: u64 = 60_000;
/// How often a client asks again about an attempt it has no answer for.
const ASK_AGAIN_MS: u64 = 1_000;
/// The most attempts a client runs of one transfer.
const ATTEMPTS_MAX: u32 = 3;

/// The outcome of one seed.
#[derive(Debug)]
pub struct SbacReport {
    pub seed: u64,
    pub shards: u32,
    /// Attempts with a dependency whose inputs live on a shard the outer call does not touch.
    pub third_shard_dependencies: usize,
    /// Attempts that read a reference.
    pub with_references: usize,
    pub violations: Vec<String>,
    pub committed: usize,
    pub aborted: usize,
    pub coverage: Coverage,
}

/// One transaction a client runs.
#[derive(Debug)]
struct Job {
    envelope: Envelope,
    /// The shards it tells (a faulty client tells some only).
    told: Vec<ShardId>,
    attempt: Attempt,
    client: ClientId,
    /// Whether it runs an aborted attempt again.
    retries: bool,
    /// What it believes each told shard decided (f+1 matching answers).
    believed: BTreeMap<ShardId, TxView>,
}

impl Job {
    fn tx(&self) -> TxId {
        self.envelope.transaction.tx_id()
    }
}

pub(super) fn coin(contract: &str, amount: u64, tag: String) -> String {
    json!({ "amount": amount, "tag": tag, "contract": contract }).to_string()
}

pub(super) fn amount(value: &str) -> u64 {
    serde_json::from_str::<serde_json::Value>(value).ok().and_then(|v| v["amount"].as_u64()).unwrap_or(0)
}

/// A call of `coins` creating these coins from nothing.
pub(super) fn mint(outputs: Vec<String>) -> Envelope {
    let transaction = Transaction {
        contract_id: "coins".into(),
        method_id: "mint".into(),
        input_ids: vec![],
        reference_input_ids: vec![],
        parameters: vec![json!(0)],
        returns: vec![],
        outputs,
        dependencies: vec![],
    };
    Envelope { transaction, store: BTreeMap::new() }
}

/// A call of `coins` consuming `inputs` into one output holding their total.
fn transfer(inputs: &[Object], parameter: i64, tag: String) -> Envelope {
    let total = inputs.iter().map(|input| amount(&input.value)).sum();
    let transaction = Transaction {
        contract_id: "coins".into(),
        method_id: "transfer".into(),
        input_ids: inputs.iter().map(|o| o.id).collect(),
        reference_input_ids: vec![],
        parameters: vec![json!(parameter)],
        returns: vec![],
        outputs: vec![coin("coins", total, tag)],
        dependencies: vec![],
    };
    Envelope { transaction, store: inputs.iter().map(|o| (o.id, o.value.clone())).collect() }
}

/// `outer` reading `reference` (a shared lock) and nesting `dependency`.
fn nest(mut outer: Envelope, dependency: Option<Envelope>, reference: Option<&Object>) -> Envelope {
    if let Some(dependency) = dependency {
        outer.store.extend(dependency.store);
        outer.transaction.dependencies.push(dependency.transaction);
    }
    if let Some(reference) = reference {
        outer.transaction.reference_input_ids.push(reference.id);
        outer.store.insert(reference.id, reference.value.clone());
    }
    outer
}

impl SbacSimulation {
    fn submit(&mut self, job: &Job) {
        let envelope = serde_json::to_string(&job.envelope).expect("an envelope serialises");
        for shard in &job.told {
            for node in self.replicas_of(*shard) {
                let request = ClientRequest::Envelope { envelope: envelope.clone(), attempt: job.attempt };
                self.request(job.client, node, request);
            }
        }
    }

    /// What f+1 replicas of a told shard agree the job's attempt came to (signatures checked).
    fn hear(&mut self, job: &mut Job) {
        let Some(replies) = self.replies.get(&job.client) else { return };
        let mut views: Vec<((ShardId, TxView), Vec<u32>)> = Vec::new();
        for (node, reply) in replies {
            let ClientReply::Answer(answer) = reply else { continue };
            let AnswerBody::Transaction { tx, record: Some(view) } = &answer.body else { continue };
            let committee = &self.committees[answer.shard.0 as usize];
            if *tx != job.tx() || view.decision.is_none() || answer.verify(committee).is_err() {
                continue;
            }
            let key = (answer.shard, view.clone());
            let at = match views.iter().position(|(seen, _)| *seen == key) {
                Some(at) => at,
                None => {
                    views.push((key, Vec::new()));
                    views.len() - 1
                }
            };
            if !views[at].1.contains(node) {
                views[at].1.push(*node);
            }
        }
        for ((shard, view), signers) in views {
            if signers.len() >= self.committees[shard.0 as usize].validity() {
                job.believed.insert(shard, view);
            }
        }
    }

    /// Whether every concerned shard decided this attempt (a shard that never prepared it,
    /// because its client did not tell it and an abort was decided elsewhere first, holds
    /// nothing and has nothing to decide).
    fn decided(&self, envelope: &Envelope, attempt: Attempt) -> bool {
        let tx = envelope.transaction.tx_id();
        let shards = self.map.concerned_shards(&envelope.transaction);
        let decided_at = |shard: &ShardId| self.observer.decisions.contains_key(&(tx, attempt, *shard));
        let untouched = |shard: &ShardId| {
            !self.honest(*shard).any(|replica| {
                let record = replica.app().state().transactions.get(&tx);
                record.is_some_and(|record| record.attempts.contains_key(&attempt))
            })
        };
        shards.iter().any(decided_at) && shards.iter().all(|shard| decided_at(shard) || untouched(shard))
    }

    /// Attempts prepared and not decided, at the honest replica of each shard that decided furthest.
    fn pending_attempts(&self) -> Vec<(ShardId, TxId, Attempt)> {
        let mut pending = Vec::new();
        for shard in (0..self.shards()).map(ShardId) {
            let Some(replica) = self.furthest(shard) else { continue };
            pending.extend(replica.app().undecided().map(|(tx, attempt)| (shard, tx, attempt)));
        }
        pending
    }

    /// I6: no honest replica still holds a lock once every attempt was decided.
    fn leftover_locks(&self) -> Vec<String> {
        let mut left = Vec::new();
        for shard in 0..self.shards() {
            let Some(replica) = self.furthest(ShardId(shard)) else { continue };
            for id in replica.app().state().objects.keys_after(None, usize::MAX) {
                let Some(object) = replica.app().object(&id) else { continue };
                if matches!(object.status, ObjectStatus::Locked { .. }) || !object.readers.is_empty() {
                    left.push(format!("I6: {id} is still locked after every attempt was decided: {:?}", object.status));
                }
            }
        }
        left.truncate(3);
        left
    }
}

/// One seed: a faulty phase, then a healed one that must decide and answer everything.
pub fn run_sbac_seed(seed: u64) -> SbacReport {
    let mut plan = StdRng::seed_from_u64(seed ^ 0x5bac);
    let links = LinkFaults {
        loss: if plan.random_bool(0.5) { plan.random_range(0.0..0.1) } else { 0.0 },
        duplication: plan.random_range(0.0..0.1),
        delay_min_ms: 1,
        delay_max_ms: plan.random_range(2..40),
        straggler: plan.random_range(0.0..0.03),
    };
    let shards = if plan.random_bool(0.3) { 3 } else { 2 };
    let liars: Vec<u32> = match plan.random_range(0..4) {
        0 | 1 => vec![],
        2 => vec![0],
        _ => (0..shards).collect(),
    };
    let mut simulation = SbacSimulation::new(seed, shards, links, &liars);
    let faulty_until = 8_000;
    let crash_mid_step = if plan.random_bool(0.5) { plan.random_range(0.0..0.004) } else { 0.0 };
    simulation.set_faults(crash_mid_step, faulty_until);
    schedule_faults(&mut simulation, &mut plan, &liars, faulty_until);

    // Mint coins, each of 10, spread over the shards.
    let mint = mint((0..12).map(|i| coin("coins", 10, format!("coin-{seed}-{i}"))).collect());
    let minted: u64 = 120;
    let coins = mint.transaction.own_outputs();
    let client = simulation.client();
    let told = simulation.map.concerned_shards(&mint.transaction).into_iter().collect();
    let mut jobs =
        vec![Job { envelope: mint, told, attempt: Attempt(1), client, retries: true, believed: BTreeMap::new() }];
    simulation.submit(&jobs[0]);
    simulation.run_until(2_000);
    for index in 0..plan.random_range(4..12) {
        // Two coins, possibly on two shards; coins are reused on purpose (double spends).
        let (a, b) = (plan.random_range(0..coins.len()), plan.random_range(0..coins.len()));
        let inputs: Vec<Object> =
            if a == b { vec![coins[a].clone()] } else { vec![coins[a].clone(), coins[b].clone()] };
        let spend = transfer(&inputs, plan.random_range(0..4), format!("spent-{seed}-{index}"));
        let others: Vec<&Object> = coins.iter().filter(|coin| !inputs.contains(coin)).collect();
        let (c, r) = (plan.random_range(0..others.len()), plan.random_range(0..others.len()));
        let dependency = plan
            .random_bool(0.3)
            .then(|| transfer(&[others[c].clone()], plan.random_range(0..4), format!("dependency-{seed}-{index}")));
        let reference = (plan.random_bool(0.2) && (dependency.is_none() || r != c)).then_some(others[r]);
        let spend = nest(spend, dependency, reference);
        let concerned: Vec<ShardId> = simulation.map.concerned_shards(&spend.transaction).into_iter().collect();
        let told = if plan.random_bool(0.2) {
            // A client that tells one of the concerned shards only.
            vec![concerned[plan.random_range(0..concerned.len())]]
        } else {
            concerned
        };
        let client = simulation.client();
        let job = Job {
            envelope: spend,
            told,
            attempt: Attempt(1),
            client,
            retries: plan.random_bool(0.5),
            believed: BTreeMap::new(),
        };
        simulation.submit(&job);
        jobs.push(job);
        let until = simulation.now() + plan.random_range(0..300);
        simulation.run_until(until);
    }
    // The faulty phase runs its course; then everything heals, and must settle.
    simulation.run_until(faulty_until);
    simulation.heal_all();
    let deadline = simulation.now() + LIVENESS_MS;
    let mut ask_at = simulation.now();
    loop {
        let mut settled = true;
        for job in &mut jobs {
            simulation.hear(job);
            let decided = simulation.decided(&job.envelope, job.attempt);
            let aborted = job.believed.values().any(|view| view.attempt == job.attempt && view.decision == Some(false));
            if decided
                && aborted
                && job.retries
                && job.attempt.0 < ATTEMPTS_MAX
                && job.believed.values().all(|v| v.committed.is_none())
            {
                // Run it again, as the attempt the records call for.
                job.attempt = next_attempt(job.believed.values());
                job.believed.clear();
                job.client = simulation.client();
                simulation.submit(job);
                settled = false;
                continue;
            }
            let answered = job.told.iter().all(|shard| job.believed.contains_key(shard));
            settled &= decided && answered;
        }
        // Attempts no client asked for (a Byzantine replica's replays) must be decided too.
        settled &= simulation.pending_attempts().is_empty();
        if settled || simulation.now() >= deadline {
            break;
        }
        if simulation.now() >= ask_at {
            ask_at = simulation.now() + ASK_AGAIN_MS;
            for job in jobs.iter().filter(|job| job.told.iter().any(|shard| !job.believed.contains_key(shard))) {
                simulation.submit(job);
            }
        }
        let next = simulation.now() + 100;
        simulation.run_until(next);
    }
    simulation.finish();
    let mut violations = simulation.observer.violations.clone();
    let stuck: Vec<String> = jobs
        .iter()
        .filter(|job| {
            !simulation.decided(&job.envelope, job.attempt) || job.told.iter().any(|s| !job.believed.contains_key(s))
        })
        .map(|job| format!("{} attempt {} (told {:?}, believed {:?})", job.tx(), job.attempt.0, job.told, job.believed))
        .collect();
    let pending = simulation.pending_attempts();
    if !pending.is_empty() {
        violations
            .push(format!("liveness: attempts still undecided {} s after healing: {pending:?}", LIVENESS_MS / 1_000));
    }
    if !stuck.is_empty() {
        violations.push(format!(
            "liveness: not decided and answered within {} s of healing: {}",
            LIVENESS_MS / 1_000,
            stuck.join("; ")
        ));
    } else if pending.is_empty() {
        violations.extend(simulation.leftover_locks());
        violations.extend(conservation(&simulation, minted));
    }
    // I5 as a client sees it: what it believes is what the shards decided.
    for job in &jobs {
        for (shard, view) in &job.believed {
            let decided = simulation.observer.decisions.get(&(job.tx(), view.attempt, *shard));
            if decided != view.decision.as_ref() {
                violations.push(format!(
                    "I5: a client believes {:?} of {} at {shard}; the ledger says {decided:?}",
                    view.decision,
                    job.tx()
                ));
            }
        }
    }
    let outcomes: Vec<Option<bool>> = jobs
        .iter()
        .map(|job| {
            let shard = *simulation.map.concerned_shards(&job.envelope.transaction).iter().next()?;
            simulation.observer.decisions.get(&(job.tx(), job.attempt, shard)).copied()
        })
        .collect();
    let third_shard_dependencies = jobs
        .iter()
        .filter(|job| {
            let outer = Transaction { dependencies: vec![], ..job.envelope.transaction.clone() };
            let outer_shards = simulation.map.concerned_shards(&outer);
            job.envelope.transaction.dependencies.iter().any(|dependency| {
                dependency.input_ids.iter().any(|id| !outer_shards.contains(&simulation.map.shard_of(id)))
            })
        })
        .count();
    let with_references = jobs.iter().filter(|job| !job.envelope.transaction.reference_input_ids.is_empty()).count();
    SbacReport {
        seed,
        shards,
        third_shard_dependencies,
        with_references,
        violations,
        committed: outcomes.iter().filter(|o| **o == Some(true)).count(),
        aborted: outcomes.iter().filter(|o| **o == Some(false)).count(),
        coverage: simulation.observer.coverage.clone(),
    }
}

/// The seed's faults, all within the faulty phase.
fn schedule_faults(simulation: &mut SbacSimulation, plan: &mut StdRng, liars: &[u32], until: u64) {
    let (shards, nodes) = (simulation.shards(), simulation.nodes());
    if plan.random_bool(0.3) {
        // A whole shard, or one replica, cut off for a while, then healed.
        for _ in 0..plan.random_range(1..3) {
            let side: Vec<u32> = if plan.random_bool(0.5) {
                let shard = plan.random_range(0..shards);
                (0..REPLICAS).map(|replica| shard * REPLICAS + replica).collect()
            } else {
                vec![plan.random_range(0..nodes)]
            };
            let at = plan.random_range(0..until - 2_000);
            simulation.schedule_partition(side, at, at + plan.random_range(200..2_000));
        }
    }
    if plan.random_bool(0.5) {
        // Honest replicas crash and come back from their disks.
        for _ in 0..plan.random_range(1..4) {
            let node = plan.random_range(0..nodes);
            if !simulation.is_liar(node) {
                let at = plan.random_range(0..until - 2_000);
                simulation.schedule_crash(node, at, at + plan.random_range(200..2_000));
            }
        }
    }
    if plan.random_bool(0.2) {
        // An honest replica of a shard without a liar loses its disk and catches up.
        let node = plan.random_range(0..nodes);
        if !liars.contains(&simulation.shard_of_node(node).0) {
            let at = plan.random_range(2_000..until - 1_000);
            simulation.schedule_lost_disk(node, at, at + plan.random_range(200..1_000));
        }
    }
    if plan.random_bool(0.4) {
        // Checkers fail for a while: a 5xx, or no answer at all.
        for _ in 0..plan.random_range(1..3) {
            let node = plan.random_range(0..nodes);
            let state = if plan.random_bool(0.5) { CheckerState::Failing } else { CheckerState::Hanging };
            let at = plan.random_range(0..until - 2_000);
            simulation.schedule_checker(node, state, at, at + plan.random_range(500..3_000));
        }
    }
    if plan.random_bool(0.3) {
        // One checker serves a whole shard and answers 5xx for a while (past the replicas'
        // bound): f+1 "no verdict" abort its attempts (`checker_error`), later ones commit.
        let shard = ShardId(plan.random_range(0..simulation.shards()));
        let (at, length) = (plan.random_range(0..until - 3_000), plan.random_range(300..1_500));
        for node in simulation.replicas_of(shard) {
            simulation.schedule_checker(node, CheckerState::Failing, at, at + length);
        }
    }
}

/// Value is neither minted nor lost: the active coins hold what was minted.
fn conservation(simulation: &SbacSimulation, minted: u64) -> Vec<String> {
    let mut total = 0;
    for shard in 0..simulation.shards() {
        let Some(replica) = simulation.furthest(ShardId(shard)) else { return vec![] };
        let objects = replica.app().state().objects.keys_after(None, usize::MAX);
        for id in objects {
            let Some(object) = replica.app().object(&id) else { continue };
            if object.status == ObjectStatus::Active {
                total += amount(&object.value);
            }
        }
    }
    if total == minted { vec![] } else { vec![format!("value: {total} in active coins, {minted} minted")] }
}
