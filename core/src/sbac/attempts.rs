//! A client's side of attempts, sans-IO: which attempt of a transaction to run given
//! what its shards recorded, and which refusals of a shard to believe. The node's
//! `ClusterClient` and the simulator's clients both decide with these.

use std::collections::BTreeMap;

use super::replica::RejectKind;
use super::{Attempt, TxView};
use crate::bft::Committee;

/// The attempt to run given the concerned shards' records: a committed one is asked again
/// (the shards answer from the record), the latest is joined while undecided, else the next.
pub fn next_attempt<'a>(records: impl Iterator<Item = &'a TxView>) -> Attempt {
    let records: Vec<&TxView> = records.collect();
    if let Some(committed) = records.iter().find_map(|view| view.committed) {
        return committed;
    }
    let latest = records.iter().map(|view| view.attempt).max().unwrap_or(Attempt(0));
    let undecided = records.iter().any(|view| view.attempt == latest && view.decision.is_none());
    if latest.0 > 0 && undecided { latest } else { Attempt(latest.0.saturating_add(1)) }
}

/// A shard's refusal the client should believe: f+1 replicas giving the same final kind
/// (`RejectKind::is_final`: nothing changed, and nothing will by waiting), or so many
/// refusals that the rest cannot certify a verdict (n − f of any kind).
pub fn final_refusal(
    refused: &BTreeMap<usize, (RejectKind, String)>,
    committee: &Committee,
) -> Option<(RejectKind, String)> {
    let mut by_kind: BTreeMap<RejectKind, (usize, &str)> = BTreeMap::new();
    for (kind, message) in refused.values() {
        by_kind.entry(*kind).or_insert((0, message.as_str())).0 += 1;
    }
    let found = by_kind.iter().find(|(kind, (count, _))| kind.is_final() && *count >= committee.validity());
    if let Some((kind, (_, message))) = found {
        return Some((*kind, message.to_string()));
    }
    if refused.len() > committee.size() - committee.validity() {
        // Too few replicas left to certify a verdict, and no f+1 agree on why: passing.
        let kinds: Vec<&str> = by_kind.keys().map(|kind| kind.as_str()).collect();
        let message = format!("the replicas refused it for different reasons ({}): try again", kinds.join(", "));
        return Some((RejectKind::Busy, message));
    }
    None
}
