//! What the S-BAC simulator checks and counts. After every output of an honest
//! replica: I1 (no object consumed by two committed transactions), I2 (an attempt
//! is committed by every shard that decides it or by none), I3 (honest replicas
//! of a shard decide the same blocks and the same outcomes), I4 (an honest replica
//! votes once per attempt, persists its vote before sending it, and a transaction
//! commits at most once), I5 (what an honest replica tells a client matches the
//! ledger). Honest replicas of a shard also hold the same decided log: the same entry
//! at each position, each decided attempt once, as decided (the feed a reader believes
//! from f+1 of them). The coverage table counts each protocol path and each check.

use std::collections::BTreeMap;

use shardspace_core::bft::{Committee, Digest};
use shardspace_core::sbac::replica::{ClientReply, Counters, Frame, Output, Write};
use shardspace_core::sbac::{AbortReason, AnswerBody, Attempt, DecidedEntry, Position, Source, TxRecord, VoteKind};
use shardspace_core::{Envelope, ObjectId, ShardId, ShardMap, TxId};

use super::liar::Liar;
use super::store::SimStore;

/// How often each protocol path was taken, by name.
pub type Coverage = BTreeMap<String, u64>;

/// Every path the default seeds must take at least once (`make sim` prints the table; a
/// test fails on a zero): a path never taken is a path never proven.
pub const PATHS: &[&str] = &[
    "stand-in submission",
    "early certificate used",
    "pass-on",
    "vote again",
    "answered from the record",
    "attempt 2 or later",
    "superseded vote",
    "attempt too far ahead",
    "state transfer",
    "snapshot served",
    "restart from disk",
    "lost disk",
    "crash between outputs",
    "crash before a group commit",
    "steps grouped in one commit",
    "partition",
    "checker unavailable",
    "checker 5xx",
    "checker error abort",
    "checker hangs",
    "dependency checked",
    "reference locked",
    "envelope rejected",
    "byzantine: withhold",
    "byzantine: equivocate verdicts",
    "byzantine: opposite vote",
    "byzantine: vote in another shard's name",
    "byzantine: lying answer",
    "byzantine: decide replayed into another attempt",
    "byzantine: decide replayed into another transaction",
    "byzantine: verdict certificate replayed into another attempt",
    "byzantine: old vote replayed",
    "byzantine: vote replayed into another attempt",
    "byzantine: vote replayed into another transaction",
    "byzantine: garbage",
    "I1 I4 checked: commit",
    "I2 I3 checked: decision",
    "I3 checked: decided block",
    "I3 checked: state at a height",
    "I3 checked: decided log entry",
    "I4 checked: vote persisted before sent",
    "I5 checked: answer",
];

/// Lines of violation kept (the first ones say what went wrong).
const VIOLATIONS_MAX: usize = 20;

#[derive(Debug, Default)]
pub struct Observer {
    pub violations: Vec<String>,
    pub coverage: Coverage,
    /// The decision of each attempt at each shard, as the first honest replica saved it.
    pub decisions: BTreeMap<(TxId, Attempt, ShardId), bool>,
    /// The block decided at each height of each shard.
    blocks: BTreeMap<(ShardId, u64), Digest>,
    /// The head of the state each shard saved at each height (encoded `StateHead`).
    heads: BTreeMap<(ShardId, u64), Vec<u8>>,
    /// Each honest replica's vote on each attempt (accept or not, and on which envelope).
    votes: BTreeMap<(u32, TxId, Attempt), (bool, [u8; 32])>,
    /// The attempt that committed each transaction.
    committed: BTreeMap<TxId, Attempt>,
    /// Which committed transaction consumed each object.
    consumed: BTreeMap<ObjectId, TxId>,
    /// Each shard's decided log as honest replicas saved it, and where each attempt is in it.
    logged: BTreeMap<(ShardId, Position), DecidedEntry>,
    logged_at: BTreeMap<(ShardId, TxId, Attempt), Position>,
}

impl Observer {
    pub fn new(_shards: u32) -> Self {
        Self::default()
    }

    pub fn cover(&mut self, path: &str) {
        *self.coverage.entry(path.to_string()).or_default() += 1;
    }

    fn cover_by(&mut self, path: &str, count: u64) {
        *self.coverage.entry(path.to_string()).or_default() += count;
    }

    pub fn violation(&mut self, violation: String) {
        if self.violations.len() < VIOLATIONS_MAX {
            self.violations.push(violation);
        }
    }

    /// A replica's counters, when it crashes or at the end.
    pub fn add_counters(&mut self, counters: &Counters) {
        self.cover_by("stand-in submission", counters.stand_in_submissions);
        self.cover_by("early certificate used", counters.early_certificates_used);
        self.cover_by("later attempt took over a pending envelope", counters.attempts_taken_over);
        self.cover_by("pass-on", counters.passed_on);
        self.cover_by("vote again", counters.votes_again);
        self.cover_by("answered from the record", counters.answered_from_record);
        self.cover_by("state transfer", counters.state_transfers);
        self.cover_by("checker unavailable", counters.checker_unavailable);
        self.cover_by("envelope rejected", counters.envelopes_rejected);
    }

    pub fn add_liar(&mut self, liar: &Liar) {
        for (behaviour, count) in &liar.behaviours {
            self.cover_by(&format!("byzantine: {behaviour}"), *count);
        }
    }

    /// Checks an honest replica's output before it is carried out (`store` is its disk as it
    /// is before this output).
    pub fn output(&mut self, node: u32, shard: ShardId, output: &Output, store: &SimStore, map: &ShardMap) {
        match output {
            Output::Persist(writes) => {
                for write in writes {
                    match write {
                        Write::Decided { height, block } => self.decided_block(shard, *height, block.digest()),
                        Write::Resume { tip, head } => self.head(node, shard, tip.height.0, head),
                        Write::Records { changes, .. } => {
                            for (tx, record) in &changes.transactions {
                                self.record(node, shard, *tx, record, map);
                            }
                            for (position, entry) in &changes.decided {
                                self.decided_entry(node, shard, *position, entry);
                            }
                        }
                        _ => {}
                    }
                }
            }
            Output::Multicast { frame, .. } if !frame.votes().is_empty() => {
                if matches!(frame, Frame::Votes(_)) {
                    self.cover("votes of one call in one frame");
                }
                for vote in frame.votes() {
                    self.cover("I4 checked: vote persisted before sent");
                    let saved = Source::<TxId, TxRecord>::get(store.records.as_ref(), &vote.tx);
                    let recorded = saved.as_ref().and_then(|record| record.attempts.get(&vote.attempt)).map(|a| a.vote);
                    if recorded != Some(vote.vote) {
                        self.violation(format!(
                            "I4: {shard} replica {node} sent its vote on attempt {} of {} before persisting it ({recorded:?})",
                            vote.attempt.0, vote.tx
                        ));
                    }
                    self.vote(node, shard, vote.tx, vote.attempt, vote.vote.is_accept(), vote.envelope);
                }
            }
            _ => {}
        }
    }

    fn decided_block(&mut self, shard: ShardId, height: u64, digest: Digest) {
        self.cover("I3 checked: decided block");
        let first = *self.blocks.entry((shard, height)).or_insert(digest);
        if first != digest {
            self.violation(format!("I3: {shard} decided two blocks at height {height}"));
        }
    }

    /// I3: honest replicas of a shard hold the same state at the same height.
    fn head(&mut self, node: u32, shard: ShardId, height: u64, head: &[u8]) {
        self.cover("I3 checked: state at a height");
        let first = self.heads.entry((shard, height)).or_insert_with(|| head.to_vec());
        if first.as_slice() != head {
            let theirs: Option<shardspace_core::sbac::StateHead> = postcard::from_bytes(first).ok();
            let mine: Option<shardspace_core::sbac::StateHead> = postcard::from_bytes(head).ok();
            self.violation(format!(
                "I3: {shard} replica {node} holds another state at height {height}: {mine:?}, the first had {theirs:?}"
            ));
        }
    }

    fn vote(&mut self, node: u32, shard: ShardId, tx: TxId, attempt: Attempt, accept: bool, envelope: [u8; 32]) {
        let first = *self.votes.entry((node, tx, attempt)).or_insert((accept, envelope));
        if first != (accept, envelope) {
            self.violation(format!("I4: {shard} replica {node} voted twice on attempt {} of {tx}", attempt.0));
        }
    }

    /// A transaction record an honest replica saves.
    /// An entry of a shard's decided log: the same at its position on every honest replica,
    /// each attempt at one position only, and as the shard decided the attempt.
    fn decided_entry(&mut self, node: u32, shard: ShardId, position: Position, entry: &DecidedEntry) {
        self.cover("I3 checked: decided log entry");
        let first = self.logged.entry((shard, position)).or_insert_with(|| entry.clone());
        if first != entry {
            self.violation(format!("I3: {shard} replica {node} holds another decided entry at {position}"));
        }
        let at = *self.logged_at.entry((shard, entry.tx, entry.attempt)).or_insert(position);
        if at != position {
            let attempt = entry.attempt.0;
            self.violation(format!("I3: {shard} logged attempt {attempt} of {} at {at} and at {position}", entry.tx));
        }
        if let Some(decided) = self.decisions.get(&(entry.tx, entry.attempt, shard))
            && *decided != entry.committed
        {
            self.violation(format!("I3: {shard}'s decided log says otherwise of {}", entry.tx));
        }
    }

    fn record(&mut self, node: u32, shard: ShardId, tx: TxId, record: &TxRecord, map: &ShardMap) {
        for (attempt, saved) in record.attempts.iter() {
            self.vote(node, shard, tx, *attempt, saved.vote.is_accept(), saved.digest);
            match saved.vote {
                VoteKind::Abort(AbortReason::Superseded) => self.cover("superseded vote"),
                VoteKind::Abort(AbortReason::TooFarAhead) => self.cover("attempt too far ahead"),
                VoteKind::Abort(AbortReason::CheckerError) => self.cover("checker error abort"),
                VoteKind::Accept => {
                    let references = Envelope::from_json(saved.envelope.as_bytes(), &Default::default())
                        .map(|envelope| {
                            let mut owned = false;
                            envelope.transaction.visit(&mut |call| {
                                owned |= call.reference_input_ids.iter().any(|id| map.shard_of(id) == shard);
                            });
                            owned
                        })
                        .unwrap_or(false);
                    if references {
                        self.cover("reference locked");
                    }
                }
                _ => {}
            }
            if attempt.0 >= 2 {
                self.cover("attempt 2 or later");
            }
            let Some(committed) = saved.decision else { continue };
            self.cover("I2 I3 checked: decision");
            let first = *self.decisions.entry((tx, *attempt, shard)).or_insert(committed);
            if first != committed {
                self.violation(format!("I3: replicas of {shard} decided attempt {} of {tx} differently", attempt.0));
            }
            let split = self.decisions.iter().any(|((t, a, _), c)| *t == tx && a == attempt && *c != committed);
            if split {
                self.violation(format!(
                    "I2: attempt {} of {tx} committed by one shard and aborted by another",
                    attempt.0
                ));
            }
        }
        let Some(attempt) = record.committed else { return };
        self.cover("I1 I4 checked: commit");
        let first = *self.committed.entry(tx).or_insert(attempt);
        if first != attempt {
            self.violation(format!("I4: {tx} committed twice (attempts {} and {})", first.0, attempt.0));
        }
        let Some(envelope) =
            record.attempts.get(&attempt).and_then(|a| serde_json::from_str::<Envelope>(&a.envelope).ok())
        else {
            return;
        };
        let mut inputs = Vec::new();
        envelope.transaction.visit(&mut |call| inputs.extend(call.input_ids.iter().copied()));
        for input in inputs.into_iter().filter(|id| map.shard_of(id) == shard) {
            let first = *self.consumed.entry(input).or_insert(tx);
            if first != tx {
                self.violation(format!("I1: {input} consumed by {first} and by {tx}"));
            }
        }
    }

    /// I5: what an honest replica tells a client about an attempt's decision is what its
    /// shard decided (the decision is saved before the answer leaves).
    pub fn reply(&mut self, node: u32, honest: bool, reply: &ClientReply, committees: &[Committee]) {
        let ClientReply::Answer(answer) = reply else { return };
        if !honest {
            return;
        }
        if answer.verify(&committees[answer.shard.0 as usize]).is_err() {
            self.violation(format!("an honest replica {node} signed an answer that does not verify"));
        }
        let AnswerBody::Transaction { tx, record: Some(view) } = &answer.body else { return };
        let Some(told) = view.decision else { return };
        self.cover("I5 checked: answer");
        match self.decisions.get(&(*tx, view.attempt, answer.shard)) {
            Some(decided) if *decided == told => {}
            decided => self.violation(format!(
                "I5: replica {node} told a client attempt {} of {tx} was {told}, the ledger says {decided:?}",
                view.attempt.0
            )),
        }
    }
}
