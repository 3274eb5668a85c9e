//! The shard's decided log: one entry per attempt decided here, in the order the shard's
//! BFT log decided them. Every honest replica appends the same entries at the same
//! positions (execution is deterministic), entries never change, and checkpoints sign the
//! log with the rest of the state: a reader believes an entry once f+1 replicas give it
//! identically at its position, and resumes from a position (issue 19's event feed).

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::messages::{Attempt, VoteKind};
use super::query::{CANDIDATES_AT_ONCE, SCAN_MAX};
use super::table::{Source, Table};
use crate::ids::{ObjectId, ShardId, TxId};
use crate::transaction::Transaction;

/// Where an entry stands in a shard's decided log: 0 for the first decided attempt.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Position(pub u64);

impl fmt::Display for Position {
    /// The number, as the API's cursors give it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// One decided attempt, as this shard decided it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecidedEntry {
    pub tx: TxId,
    pub attempt: Attempt,
    pub committed: bool,
    /// The shards the transaction concerns, in order: the first one lists it in the
    /// cluster's feed, so that a reader of every shard's log sees it once.
    pub concerned: Vec<ShardId>,
    /// The contract and method of the transaction (not of its dependencies).
    pub contract: String,
    pub method: String,
    /// This shard's vote, with its reason when it voted abort.
    pub vote: VoteKind,
    /// The concerned shards whose certificate said abort (none when this shard decided alone).
    pub aborted_by: Vec<ShardId>,
    /// The objects the transaction consumes and creates, its dependencies' included.
    pub inputs: Vec<ObjectId>,
    pub outputs: Vec<ObjectId>,
}

impl DecidedEntry {
    /// The entry of `transaction`'s attempt decided here.
    pub fn of(
        transaction: &Transaction,
        (tx, attempt, committed): (TxId, Attempt, bool),
        concerned: Vec<ShardId>,
        vote: VoteKind,
        aborted_by: Vec<ShardId>,
    ) -> Self {
        let mut inputs = Vec::new();
        transaction.visit(&mut |node| inputs.extend(node.input_ids.iter().copied()));
        let outputs = transaction.created_objects().iter().map(|object| object.id).collect();
        let (contract, method) = (transaction.contract_id.clone(), transaction.method_id.clone());
        Self { tx, attempt, committed, concerned, contract, method, vote, aborted_by, inputs, outputs }
    }

    /// The shard whose log lists this entry in the cluster's feed: the first concerned one.
    pub fn home(&self) -> Option<ShardId> {
        self.concerned.first().copied()
    }
}

/// Where a replica keeps its decided log (`ShardApp::saved_in`).
pub type DecidedSource = Arc<dyn Source<Position, DecidedEntry>>;

/// Which entries of a decided log a search finds: all of those given must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecidedFilter {
    pub contract: Option<String>,
    pub committed: Option<bool>,
}

impl DecidedFilter {
    pub fn matches(&self, entry: &DecidedEntry) -> bool {
        self.contract.as_ref().is_none_or(|contract| *contract == entry.contract)
            && self.committed.is_none_or(|committed| committed == entry.committed)
    }

    /// The store's columns an entry must hold, for its index to narrow the search.
    fn columns(&self) -> Vec<(&'static str, String)> {
        let contract = self.contract.iter().map(|contract| ("contract", contract.clone()));
        let decision = self.committed.map(|committed| ("decision", if committed { "commit" } else { "abort" }.into()));
        contract.chain(decision).collect()
    }
}

/// What a search of the log found from a position on: the entries `filter` finds, with
/// their positions, and how far it read (`searched_to`, exclusive): every entry before
/// that, from `from`, that the filter finds is among them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Found {
    pub entries: Vec<(Position, DecidedEntry)>,
    pub searched_to: Position,
    /// How many entries the log holds here: a reader tells "no further yet" from "the end".
    pub length: u64,
}

/// The entries from `from` on that `filter` finds: at most `limit`, reading at most
/// `SCAN_MAX` candidates and entries of at most `bytes_max` (one at least).
pub fn search(
    log: &Table<Position, DecidedEntry>,
    filter: &DecidedFilter,
    from: Position,
    limit: usize,
    bytes_max: usize,
) -> Found {
    let columns = filter.columns();
    let mut found = Found { length: log.len(), ..Found::default() };
    let (mut budget, mut read) = (bytes_max, 0);
    let mut after = from.0.checked_sub(1).map(Position);
    while found.entries.len() < limit && read < SCAN_MAX {
        let asked = (SCAN_MAX - read).min(limit.max(CANDIDATES_AT_ONCE));
        let candidates = log.keys_where(&columns, |entry| filter.matches(entry), after.as_ref(), asked);
        if candidates.is_empty() {
            // Read to the end: what this replica's log holds.
            found.searched_to = Position(log.len().max(from.0));
            return found;
        }
        for position in candidates {
            read += 1;
            after = Some(position);
            let Some(entry) = log.get(&position).filter(|entry| filter.matches(entry)) else { continue };
            let size = postcard::experimental::serialized_size(&*entry).unwrap_or(usize::MAX);
            if size > budget && !found.entries.is_empty() {
                found.searched_to = position; // this one not included
                return found;
            }
            budget = budget.saturating_sub(size);
            found.entries.push((position, entry.into_owned()));
            if found.entries.len() == limit {
                break;
            }
        }
    }
    found.searched_to = after.map_or(from, |last| Position(last.0 + 1));
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u64, contract: &str, committed: bool) -> DecidedEntry {
        DecidedEntry {
            tx: TxId([n as u8; 32]),
            attempt: Attempt(1),
            committed,
            concerned: vec![ShardId(0)],
            contract: contract.into(),
            method: "m".into(),
            vote: VoteKind::Accept,
            aborted_by: vec![],
            inputs: vec![],
            outputs: vec![],
        }
    }

    #[test]
    fn a_search_finds_what_holds_and_says_how_far_it_read() {
        // Every third entry is bank's; every other one of those aborted.
        let log = Table::from_entries((0..9_000u64).map(|n| {
            let contract = if n % 3 == 0 { "bank" } else { "dump" };
            (Position(n), entry(n, contract, n % 2 == 0))
        }));
        let bank = DecidedFilter { contract: Some("bank".into()), committed: None };
        let found = search(&log, &bank, Position(1), 2, usize::MAX);
        assert_eq!(found.entries.iter().map(|(at, _)| at.0).collect::<Vec<_>>(), vec![3, 6]);
        assert_eq!(found.searched_to, Position(7), "read up to the last it found");
        // A sixth of the entries are bank's aborts: 1,500, more than one search reads.
        let aborted = DecidedFilter { committed: Some(false), ..bank };
        let found = search(&log, &aborted, Position(0), 10_000, usize::MAX);
        assert_eq!(found.entries.len(), SCAN_MAX, "SCAN_MAX read at most");
        let last = 6 * (SCAN_MAX as u64 - 1) + 3; // aborts are at 3, 9, 15, ...: odd multiples of 3
        assert_eq!(found.searched_to, Position(last + 1), "read up to the last it found");
        let rest = search(&log, &aborted, found.searched_to, 10_000, usize::MAX);
        assert_eq!(rest.entries.len() + found.entries.len(), 1_500, "a third are bank's, half of them aborted");
        assert_eq!(rest.searched_to, Position(9_000), "the end of the log");
        let found = search(&log, &DecidedFilter { contract: Some("none".into()), committed: None }, Position(5), 9, 0);
        assert_eq!((found.entries.len(), found.searched_to), (0, Position(9_000)));
        let first = search(&log, &DecidedFilter::default(), Position(0), 10_000, usize::MAX);
        assert_eq!(first.searched_to, Position(SCAN_MAX as u64), "SCAN_MAX read at most");
        let small = search(&log, &DecidedFilter::default(), Position(0), 10, 1);
        assert_eq!((small.entries.len(), small.searched_to), (1, Position(1)), "the bytes bound, one at least");
        let past = search(&log, &DecidedFilter::default(), Position(20_000), 10, usize::MAX);
        assert_eq!((past.entries.len(), past.searched_to), (0, Position(20_000)));
    }
}
