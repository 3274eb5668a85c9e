//! `ShardApp`: the S-BAC state machine of one shard, fed by the shard's decided
//! log (it is the BFT `Application`). It owns the objects of the shard (active,
//! locked, inactive; ids never reused) and the record of every transaction it
//! saw: one vote and one decision per attempt, answered from the record when
//! asked again. Execution never calls a checker: verdicts arrive certified.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::decided::{DecidedEntry, DecidedSource, Position};
use super::messages::{
    AbortReason, Attempt, CheckerAnswer, PreparedCertificate, ShardRequest, VerdictCertificate, VoteBody, VoteKind,
};
use super::table::{Source, Table, TableHead};
use crate::bft::{Application, Committee, Digest, Height, KeyPair, Request};
use crate::ids::{ObjectId, ShardId, TxId};
use crate::limits::Limits;
use crate::shard::ShardMap;
use crate::transaction::{Envelope, Transaction};

/// How far an attempt may run ahead of the latest one a shard recorded. A shard may have
/// missed attempts (an abort decided elsewhere before it prepared them), so the next
/// attempt a client picks may be ahead here. An attempt further ahead is voted down
/// (`too_far_ahead`, no locks taken) and not counted as the latest, so that a far-ahead
/// number cannot shut out every later run; it is still voted on, so that the shards which
/// did prepare it hear an abort and release their locks.
pub const ATTEMPTS_AHEAD_MAX: u32 = 1_024;

/// Where an object stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ObjectStatus {
    Active,
    /// Exclusively locked by an accepted attempt that consumes it.
    Locked {
        tx: TxId,
        attempt: Attempt,
    },
    /// Consumed: never active again.
    Inactive {
        consumed_by: TxId,
    },
}

/// One object of this shard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRecord {
    pub value: String,
    /// The contract whose transaction created it: only that contract may consume it.
    pub contract: String,
    pub created_by: TxId,
    pub status: ObjectStatus,
    /// Accepted attempts that read it as a reference (shared locks).
    pub readers: BTreeSet<(TxId, Attempt)>,
}

/// What this shard recorded about one attempt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// The envelope's JSON text, as prepared, and its digest: what the votes are about.
    pub envelope: String,
    pub digest: [u8; 32],
    pub vote: VoteKind,
    /// `Some(true)` committed, `Some(false)` aborted.
    pub decision: Option<bool>,
}

impl AttemptRecord {
    fn is_too_far_ahead(&self) -> bool {
        self.vote == VoteKind::Abort(AbortReason::TooFarAhead)
    }
}

/// The attempts of one transaction recorded here, in order: a sorted vector, because
/// nearly every transaction has one and a `BTreeMap` allocates a node of eleven entries
/// for it (about 1 KiB per transaction held by every replica, issue 6). Encoded as the
/// map it replaces.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attempts(Vec<(Attempt, AttemptRecord)>);

impl Attempts {
    fn position(&self, attempt: &Attempt) -> Result<usize, usize> {
        self.0.binary_search_by_key(attempt, |(number, _)| *number)
    }

    pub fn get(&self, attempt: &Attempt) -> Option<&AttemptRecord> {
        self.position(attempt).ok().map(|index| &self.0[index].1)
    }

    pub fn get_mut(&mut self, attempt: &Attempt) -> Option<&mut AttemptRecord> {
        self.position(attempt).ok().map(|index| &mut self.0[index].1)
    }

    pub fn contains_key(&self, attempt: &Attempt) -> bool {
        self.position(attempt).is_ok()
    }

    /// Records `attempt`, replacing an earlier record of it.
    pub fn insert(&mut self, attempt: Attempt, record: AttemptRecord) {
        match self.position(&attempt) {
            Ok(index) => self.0[index].1 = record,
            Err(index) => self.0.insert(index, (attempt, record)),
        }
    }

    /// In attempt order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&Attempt, &AttemptRecord)> {
        self.0.iter().map(|(attempt, record)| (attempt, record))
    }

    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &Attempt> {
        self.0.iter().map(|(attempt, _)| attempt)
    }

    pub fn values(&self) -> impl DoubleEndedIterator<Item = &AttemptRecord> {
        self.0.iter().map(|(_, record)| record)
    }
}

impl Serialize for Attempts {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for Attempts {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let map = BTreeMap::<Attempt, AttemptRecord>::deserialize(deserializer)?;
        Ok(Self(map.into_iter().collect()))
    }
}

/// What this shard recorded about one transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxRecord {
    pub concerned: Vec<ShardId>,
    pub attempts: Attempts,
    /// The attempt that committed: the transaction is committed for good.
    pub committed: Option<Attempt>,
}

impl TxRecord {
    /// The latest attempt that counts: attempts voted down as too far ahead do not.
    pub fn latest(&self) -> Option<Attempt> {
        self.attempts.iter().rev().find(|(_, record)| !record.is_too_far_ahead()).map(|(attempt, _)| *attempt)
    }

    /// The attempt whose record answers a question about `attempt`: its own, else the
    /// committed one (a committed transaction is committed for good).
    fn answering(&self, attempt: Attempt) -> Option<Attempt> {
        if self.attempts.contains_key(&attempt) { Some(attempt) } else { self.committed }
    }
}

/// The replicated state: what checkpoints snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShardState {
    pub objects: Table<ObjectId, ObjectRecord>,
    pub transactions: Table<TxId, TxRecord>,
    /// Every attempt decided here, in the order decided (`decided.rs`).
    pub decided: Table<Position, DecidedEntry>,
    /// Output ids of accepted, undecided attempts: no other attempt may create them meanwhile.
    pub reserved: BTreeMap<ObjectId, (TxId, Attempt)>,
    /// Attempts prepared here and not decided yet (their records say so too; this finds
    /// them without reading every record).
    pub undecided: BTreeSet<(TxId, Attempt)>,
    /// Requests executed, and a running digest of them: replicas compare these (status).
    pub executed: u64,
    pub log_digest: Digest,
}

/// What a checkpoint signs of a shard's state: all of it but the records, for which the
/// heads of their tables stand. Small, whatever the size of the ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateHead {
    pub reserved: BTreeMap<ObjectId, (TxId, Attempt)>,
    pub undecided: BTreeSet<(TxId, Attempt)>,
    pub executed: u64,
    pub log_digest: Digest,
    pub objects: TableHead,
    pub transactions: TableHead,
    pub decided: TableHead,
}

/// The records themselves, which a head vouches for: sent to a replica that catches up.
#[derive(Serialize, Deserialize)]
struct StateBody {
    objects: Vec<(ObjectId, ObjectRecord)>,
    transactions: Vec<(TxId, TxRecord)>,
    decided: Vec<(Position, DecidedEntry)>,
}

/// The body of a state with these records (`Application::state_body`), for a shell that
/// keeps them in its store.
pub fn encode_body(
    objects: Vec<(ObjectId, ObjectRecord)>,
    transactions: Vec<(TxId, TxRecord)>,
    decided: Vec<(Position, DecidedEntry)>,
) -> Vec<u8> {
    postcard::to_stdvec(&StateBody { objects, transactions, decided }).expect("encoding into memory cannot fail")
}

/// Records changed, for the shell to save, with the head of the state they leave.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StateChanges {
    /// The checkpoint height these changes end at (the shell commits them before it goes
    /// on, so that its store can serve the body of that checkpoint), or `None`: the end
    /// of the step.
    pub until: Option<Height>,
    /// The store's records are to be replaced by these (after a state transfer).
    pub replace: bool,
    pub objects: Vec<(ObjectId, ObjectRecord)>,
    pub transactions: Vec<(TxId, TxRecord)>,
    /// Entries appended to the decided log (never changed once there).
    pub decided: Vec<(Position, DecidedEntry)>,
    /// The encoded `StateHead` after these changes: what a restart takes up.
    pub head: Vec<u8>,
}

/// Where a replica keeps its records (`ShardApp::saved_in`).
pub type ObjectSource = Arc<dyn Source<ObjectId, ObjectRecord>>;
pub type TransactionSource = Arc<dyn Source<TxId, TxRecord>>;

impl ShardState {
    /// What a checkpoint signs (it puts the entries changed since the last time in the digests).
    pub fn head(&mut self) -> StateHead {
        StateHead {
            reserved: self.reserved.clone(),
            undecided: self.undecided.clone(),
            executed: self.executed,
            log_digest: self.log_digest,
            objects: self.objects.head(),
            transactions: self.transactions.head(),
            decided: self.decided.head(),
        }
    }
}

/// What executing a request asks the shell to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShardOutput {
    /// This replica's vote: sign it and send it to every replica of every concerned shard,
    /// unless this shard is the only one (then the vote is the decision, which follows).
    Vote { vote: VoteBody, concerned: Vec<ShardId> },
    /// An attempt was decided here.
    Decided { tx: TxId, attempt: Attempt, committed: bool },
    /// The request was refused before anything changed (for logs and counters).
    Refused { reason: String },
}

/// The S-BAC application of one replica of one shard.
#[derive(Debug)]
pub struct ShardApp {
    shard: ShardId,
    map: ShardMap,
    /// Every shard's committee, by shard id: certificates from all of them are checked.
    committees: Vec<Committee>,
    /// This replica's key, for the answers and votes it signs (signatures are outputs, not state).
    keys: KeyPair,
    limits: Limits,
    state: ShardState,
    /// Changes cut at checkpoints and not taken by the shell yet (tables with a source only).
    cut: Vec<StateChanges>,
    /// A state transfer replaced the records: the next changes replace the store's.
    replaced: bool,
}

impl ShardApp {
    pub fn new(shard: ShardId, committees: Vec<Committee>, keys: KeyPair, limits: Limits) -> Self {
        let shards = u32::try_from(committees.len()).expect("fewer than 2^32 shards");
        let map = ShardMap::new(shards).expect("a cluster has at least one shard");
        Self { shard, map, committees, keys, limits, state: ShardState::default(), cut: Vec::new(), replaced: false }
    }

    /// Reads the records from the shell's store, holding only those changed since the
    /// shell last took the changes (`take_changes`): memory no longer grows with the ledger.
    pub fn saved_in(mut self, objects: ObjectSource, transactions: TransactionSource, decided: DecidedSource) -> Self {
        self.state.objects = Table::with_source(objects, TableHead::default());
        self.state.transactions = Table::with_source(transactions, TableHead::default());
        self.state.decided = Table::with_source(decided, TableHead::default());
        self
    }

    fn is_saved(&self) -> bool {
        self.state.objects.source().is_some()
    }

    fn encoded_head(&mut self) -> Vec<u8> {
        postcard::to_stdvec(&self.state.head()).expect("encoding into memory cannot fail")
    }

    /// Cuts the changes made since the last cut, with the head they leave.
    fn cut(&mut self, until: Option<Height>) -> StateChanges {
        let objects = self.state.objects.take_unsaved();
        let transactions = self.state.transactions.take_unsaved();
        let decided = self.state.decided.take_unsaved();
        let (replace, head) = (std::mem::take(&mut self.replaced), self.encoded_head());
        StateChanges { until, replace, objects, transactions, decided, head }
    }

    /// What went wrong reading the saved records, if a read failed (it then answered
    /// "none", which may be false: nothing read since may be said or saved).
    pub fn read_fault(&self) -> Option<String> {
        let objects = self.state.objects.source().and_then(|source| source.fault());
        let transactions = || self.state.transactions.source().and_then(|source| source.fault());
        objects.or_else(transactions).or_else(|| self.state.decided.source().and_then(|source| source.fault()))
    }

    pub fn state(&self) -> &ShardState {
        &self.state
    }

    pub fn object(&self, id: &ObjectId) -> Option<Cow<'_, ObjectRecord>> {
        self.state.objects.get(id)
    }

    /// The records changed since the last call, for the shell to save, cut at each
    /// checkpoint in between (nothing for tables held whole). Once saved, the records are
    /// read back from the store. It also brings the tables' digests up to date, a little
    /// at each step instead of all at the next checkpoint.
    pub fn take_changes(&mut self) -> Vec<StateChanges> {
        if !self.is_saved() {
            self.state.head();
            return Vec::new();
        }
        let last = self.cut(None);
        let mut changes = std::mem::take(&mut self.cut);
        changes.push(last);
        self.state.objects.forget_saved();
        self.state.transactions.forget_saved();
        self.state.decided.forget_saved();
        changes
    }

    /// This replica's vote on an attempt it already prepared, and where to send it (the
    /// shell signs it): a client asking again is answered from the record without ordering anything (an
    /// identical `Prepare` would be ordered once only).
    pub fn recorded_vote(&self, tx: TxId, attempt: Attempt) -> Option<(VoteBody, Vec<ShardId>)> {
        let record = self.state.transactions.get(&tx)?;
        let answered = record.answering(attempt)?;
        let attempt_record = record.attempts.get(&answered)?;
        Some((self.vote(tx, answered, attempt_record.digest, attempt_record.vote), record.concerned.clone()))
    }

    fn committee(&self) -> &Committee {
        &self.committees[self.shard.0 as usize]
    }

    pub fn own_committee(&self) -> &Committee {
        self.committee()
    }

    pub fn keys(&self) -> &KeyPair {
        &self.keys
    }

    pub fn shard(&self) -> ShardId {
        self.shard
    }

    /// Attempts prepared here and not decided yet (a replica passes these on, so that no lock
    /// waits for a client that went away).
    pub fn undecided(&self) -> impl Iterator<Item = (TxId, Attempt)> + '_ {
        self.state.undecided.iter().copied()
    }

    /// The envelope of an attempt prepared here, and the shards it concerns.
    pub fn prepared(&self, tx: &TxId, attempt: Attempt) -> Option<(String, Vec<ShardId>)> {
        let record = self.state.transactions.get(tx)?;
        let envelope = record.attempts.get(&attempt)?.envelope.clone();
        Some((envelope, record.concerned.clone()))
    }

    fn owns(&self, id: &ObjectId) -> bool {
        self.map.shard_of(id) == self.shard
    }

    /// `owns` without borrowing `self`, for loops that change objects.
    fn owner(&self) -> impl Fn(&&ObjectId) -> bool + use<> {
        let (map, shard) = (self.map, self.shard);
        move |id: &&ObjectId| map.shard_of(id) == shard
    }

    fn vote(&self, tx: TxId, attempt: Attempt, envelope: [u8; 32], vote: VoteKind) -> VoteBody {
        VoteBody { shard: self.shard, tx, attempt, envelope, vote }
    }

    fn prepare(&mut self, envelope_json: String, attempt: Attempt, verdict: VerdictCertificate) -> ShardOutput {
        let refused = |reason: String| ShardOutput::Refused { reason };
        let envelope = match Envelope::from_json(envelope_json.as_bytes(), &self.limits) {
            Ok(envelope) => envelope,
            Err(error) => return refused(format!("a malformed envelope was ordered: {error}")),
        };
        let (tx, digest) = (envelope.transaction.tx_id(), envelope.digest());
        if verdict.tx != tx || verdict.envelope != digest {
            return refused(format!("the verdict is not about this envelope of {tx}"));
        }
        if attempt.0 == 0 {
            return refused(format!("attempt 0 of {tx}: attempts count from 1"));
        }
        if let Err(error) = verdict.verify(self.committee()) {
            return refused(format!("a bad verdict certificate for {tx}: {error}"));
        }
        if let CheckerAnswer::Unavailable(certified) = verdict.answer
            && certified != attempt
        {
            let message = format!("{tx}: no verdict for attempt {} certified for attempt {}", certified.0, attempt.0);
            return refused(message);
        }
        let concerned: Vec<ShardId> = self.map.concerned_shards(&envelope.transaction).into_iter().collect();
        if !concerned.contains(&self.shard) {
            return refused(format!("{tx} does not concern {}", self.shard));
        }
        let record = self.state.transactions.get(&tx);
        let latest = record.as_ref().and_then(|record| record.latest()).map_or(0, |latest| latest.0);
        // Asked again: answer from the record (one vote per attempt).
        if let Some(record) = &record
            && let Some(done) = record.answering(attempt)
            && let Some(recorded) = record.attempts.get(&done)
        {
            let (digest, vote) = (recorded.digest, recorded.vote);
            return ShardOutput::Vote { vote: self.vote(tx, done, digest, vote), concerned };
        }
        // An attempt older than one seen here, or while an older one is undecided, is superseded.
        let older_pending = record.is_some_and(|record| {
            record.attempts.values().any(|earlier| earlier.decision.is_none() && !earlier.is_too_far_ahead())
        });
        let newer_seen = attempt.0 < latest;
        let vote = if attempt.0 > latest.saturating_add(ATTEMPTS_AHEAD_MAX) {
            VoteKind::Abort(AbortReason::TooFarAhead)
        } else if older_pending || newer_seen {
            VoteKind::Abort(AbortReason::Superseded)
        } else {
            self.vote_on(&envelope, tx, attempt, verdict.answer)
        };
        if vote.is_accept() {
            self.lock(&envelope.transaction, tx, attempt);
        }
        let attempt_record = AttemptRecord { envelope: envelope_json, digest, vote, decision: None };
        match self.state.transactions.get_mut(&tx) {
            Some(record) => record.attempts.insert(attempt, attempt_record),
            None => {
                let mut attempts = Attempts::default();
                attempts.insert(attempt, attempt_record);
                let record = TxRecord { concerned: concerned.clone(), attempts, committed: None };
                self.state.transactions.insert(tx, record);
            }
        }
        self.state.undecided.insert((tx, attempt));
        ShardOutput::Vote { vote: self.vote(tx, attempt, digest, vote), concerned }
    }

    /// The vote every honest replica computes for this attempt, from this shard's objects.
    fn vote_on(&self, envelope: &Envelope, tx: TxId, attempt: Attempt, checkers: CheckerAnswer) -> VoteKind {
        let mut verdict = Ok(());
        envelope.transaction.visit(&mut |node| {
            if verdict.is_ok() {
                verdict = self.check_node(node, &envelope.store, (tx, attempt));
            }
        });
        match (verdict, checkers) {
            (Err(reason), _) => VoteKind::Abort(reason),
            (Ok(()), CheckerAnswer::Invalid) => VoteKind::Abort(AbortReason::CheckerRejected),
            (Ok(()), CheckerAnswer::Unavailable(_)) => VoteKind::Abort(AbortReason::CheckerError),
            (Ok(()), CheckerAnswer::Valid) => VoteKind::Accept,
        }
    }

    /// Checks the objects of one transaction node that this shard owns.
    fn check_node(&self, node: &Transaction, store: &crate::Store, run: (TxId, Attempt)) -> Result<(), AbortReason> {
        for id in node.input_ids.iter().filter(|id| self.owns(id)) {
            let object = self.state.objects.get(id).ok_or(AbortReason::InputMissing)?;
            match &object.status {
                ObjectStatus::Inactive { .. } => return Err(AbortReason::InputInactive),
                ObjectStatus::Locked { tx, attempt } if (*tx, *attempt) != run => return Err(AbortReason::InputLocked),
                _ if !object.readers.is_empty() => return Err(AbortReason::InputLocked),
                _ => {}
            }
            if object.contract != node.contract_id {
                return Err(AbortReason::InputWrongContract);
            }
            if store.get(id) != Some(&object.value) {
                return Err(AbortReason::ValueMismatch);
            }
        }
        for id in node.reference_input_ids.iter().filter(|id| self.owns(id)) {
            let object = self.state.objects.get(id).ok_or(AbortReason::ReferenceMissing)?;
            match &object.status {
                ObjectStatus::Inactive { .. } => return Err(AbortReason::ReferenceInactive),
                ObjectStatus::Locked { .. } => return Err(AbortReason::ReferenceLocked),
                ObjectStatus::Active => {}
            }
            if store.get(id) != Some(&object.value) {
                return Err(AbortReason::ValueMismatch);
            }
        }
        let outputs = node.own_outputs();
        let taken = |id: &ObjectId| {
            self.state.objects.contains_key(id) || self.state.reserved.get(id).is_some_and(|holder| *holder != run)
        };
        if outputs.iter().any(|output| self.owns(&output.id) && taken(&output.id)) {
            return Err(AbortReason::OutputExists);
        }
        Ok(())
    }

    fn lock(&mut self, transaction: &Transaction, tx: TxId, attempt: Attempt) {
        let owns = self.owner();
        let (mut inputs, mut references) = (Vec::new(), Vec::new());
        transaction.visit(&mut |node| {
            inputs.extend(node.input_ids.iter().copied());
            references.extend(node.reference_input_ids.iter().copied());
        });
        for output in transaction.created_objects().iter().filter(|output| owns(&&output.id)) {
            self.state.reserved.insert(output.id, (tx, attempt));
        }
        for id in inputs.iter().filter(&owns) {
            if let Some(object) = self.state.objects.get_mut(id) {
                object.status = ObjectStatus::Locked { tx, attempt };
            }
        }
        for id in references.iter().filter(&owns) {
            if let Some(object) = self.state.objects.get_mut(id) {
                object.readers.insert((tx, attempt));
            }
        }
    }

    fn decide(&mut self, tx: TxId, attempt: Attempt, certificates: Vec<PreparedCertificate>) -> ShardOutput {
        let refused = |reason: String| ShardOutput::Refused { reason };
        let Some(record) = self.state.transactions.get(&tx) else {
            return refused(format!("a decision for {tx}, which was never prepared here"));
        };
        let Some(attempt_record) = record.attempts.get(&attempt) else {
            return refused(format!("a decision for attempt {} of {tx}, which was never prepared here", attempt.0));
        };
        if let Some(committed) = attempt_record.decision {
            return ShardOutput::Decided { tx, attempt, committed }; // answered from the record
        }
        let commit = match self.check_certificates(&record, (tx, attempt, attempt_record.digest), &certificates) {
            Ok(commit) => commit,
            Err(reason) => return refused(reason),
        };
        if commit && !attempt_record.vote.is_accept() {
            return refused(format!("2f+1 replicas of {} certify an accept this shard did not vote", self.shard));
        }
        let aborted_by = certificates.iter().filter(|c| !c.accept || c.envelope != attempt_record.digest);
        let aborted_by: BTreeSet<ShardId> = aborted_by.map(|certificate| certificate.shard).collect();
        self.apply_decision(tx, attempt, commit, aborted_by.into_iter().collect())
    }

    /// A transaction that concerns this shard alone is decided as it is prepared: every
    /// honest replica executes the same `Prepare` at the same place in the shard's log and
    /// computes the same vote, and no other shard needs convincing, so the vote is the
    /// decision. No votes travel and no `Decide` is ordered: half the ordering, signatures
    /// and latency of the two-phase path (issue 6).
    fn decide_alone(&mut self, vote: &ShardOutput) -> Option<ShardOutput> {
        let ShardOutput::Vote { vote, concerned } = vote else { return None };
        if concerned.as_slice() != [self.shard] {
            return None;
        }
        let record = self.state.transactions.get(&vote.tx)?;
        if record.attempts.get(&vote.attempt)?.decision.is_some() {
            return None; // answered from the record
        }
        Some(self.apply_decision(vote.tx, vote.attempt, vote.vote.is_accept(), Vec::new()))
    }

    /// Commits or aborts a prepared, undecided attempt here, records it, and appends it to
    /// the decided log (`aborted_by`: the shards whose certificates said abort).
    fn apply_decision(&mut self, tx: TxId, attempt: Attempt, commit: bool, aborted_by: Vec<ShardId>) -> ShardOutput {
        let refused = |reason: String| ShardOutput::Refused { reason };
        let recorded = self.state.transactions.get(&tx);
        let Some(envelope) = recorded.and_then(|record| Some(record.attempts.get(&attempt)?.envelope.clone())) else {
            return refused(format!("a decision for attempt {} of {tx}, which was never prepared here", attempt.0));
        };
        // Validated when it was prepared: read it back without today's limits, which a
        // restart with another configuration could change (a refused decision would hold locks).
        let envelope = match serde_json::from_str::<Envelope>(&envelope) {
            Ok(envelope) => envelope,
            Err(error) => return refused(format!("the recorded envelope of {tx} no longer parses: {error}")),
        };
        match commit {
            true => self.apply_commit(&envelope.transaction, tx),
            false => self.release(&envelope.transaction, tx, attempt),
        }
        let Some(record) = self.state.transactions.get_mut(&tx) else {
            return refused(format!("{tx} vanished while being decided"));
        };
        let mut vote = VoteKind::Abort(AbortReason::Malformed);
        if let Some(attempt_record) = record.attempts.get_mut(&attempt) {
            attempt_record.decision = Some(commit);
            vote = attempt_record.vote;
        }
        let concerned = record.concerned.clone();
        if commit {
            record.committed = Some(attempt);
        }
        self.state.undecided.remove(&(tx, attempt));
        let entry = DecidedEntry::of(&envelope.transaction, (tx, attempt, commit), concerned, vote, aborted_by);
        // One past the last entry: new by construction, so the store is not asked for it.
        self.state.decided.insert_new(Position(self.state.decided.len()), entry);
        ShardOutput::Decided { tx, attempt, committed: commit }
    }

    /// Certificates for this attempt from concerned shards: one valid abort certificate
    /// decides abort (a shard that said no need not wait for the others), and so does one
    /// on another envelope of this attempt (the shards were shown different stores: no
    /// shard can ever gather a commit); commit needs a valid accept certificate on this
    /// envelope from every concerned shard.
    fn check_certificates(
        &self,
        record: &TxRecord,
        (tx, attempt, digest): (TxId, Attempt, [u8; 32]),
        certificates: &[PreparedCertificate],
    ) -> Result<bool, String> {
        let valid = |certificate: &PreparedCertificate| -> Result<(), String> {
            let shard = certificate.shard;
            if !record.concerned.contains(&shard) {
                return Err(format!("a certificate from {shard}, which {tx} does not concern"));
            }
            if certificate.tx != tx || certificate.attempt != attempt {
                return Err(format!("the certificate of {shard} is for another attempt or transaction"));
            }
            let committee = self.committees.get(shard.0 as usize).ok_or_else(|| format!("no committee for {shard}"))?;
            certificate.verify(committee).map_err(|error| format!("a bad certificate from {shard}: {error}"))
        };
        for certificate in certificates {
            valid(certificate)?;
        }
        if certificates.iter().any(|certificate| !certificate.accept || certificate.envelope != digest) {
            return Ok(false);
        }
        match record.concerned.iter().find(|shard| !certificates.iter().any(|c| c.shard == **shard)) {
            Some(shard) => Err(format!("no certificate from {shard} for {tx}")),
            None => Ok(true),
        }
    }

    fn apply_commit(&mut self, transaction: &Transaction, tx: TxId) {
        let owns = self.owner();
        let mut nodes = Vec::new();
        transaction.visit(&mut |node| nodes.push(node.clone()));
        for node in &nodes {
            for id in node.input_ids.iter().filter(&owns) {
                if let Some(object) = self.state.objects.get_mut(id) {
                    object.status = ObjectStatus::Inactive { consumed_by: tx };
                }
            }
            for id in node.reference_input_ids.iter().filter(&owns) {
                if let Some(object) = self.state.objects.get_mut(id) {
                    object.readers.retain(|(reader, _)| *reader != tx);
                }
            }
            let creator = node.tx_id();
            for output in node.own_outputs().into_iter().filter(|output| owns(&&output.id)) {
                self.state.reserved.remove(&output.id);
                let record = ObjectRecord {
                    value: output.value,
                    contract: node.contract_id.clone(),
                    created_by: creator,
                    status: ObjectStatus::Active,
                    readers: BTreeSet::new(),
                };
                if !self.state.objects.contains_key(&output.id) {
                    self.state.objects.insert(output.id, record);
                }
            }
        }
    }

    /// An aborted attempt lets go of every lock it took here.
    fn release(&mut self, transaction: &Transaction, tx: TxId, attempt: Attempt) {
        let owns = self.owner();
        self.state.reserved.retain(|_, holder| *holder != (tx, attempt));
        let mut named = Vec::new();
        transaction.visit(&mut |node| named.extend(node.input_ids.iter().chain(&node.reference_input_ids).copied()));
        for id in named.iter().filter(&owns) {
            if let Some(object) = self.state.objects.get_mut(id) {
                if object.status == (ObjectStatus::Locked { tx, attempt }) {
                    object.status = ObjectStatus::Active;
                }
                object.readers.remove(&(tx, attempt));
            }
        }
    }
}

impl Application for ShardApp {
    type Output = ShardOutput;

    fn execute(&mut self, _height: Height, request: &Request) -> Vec<ShardOutput> {
        let mut chained = self.state.log_digest.0.to_vec();
        chained.extend_from_slice(&request.digest().0);
        self.state.log_digest = Digest::of(&chained);
        self.state.executed += 1;
        let output = match postcard::from_bytes::<ShardRequest>(request.payload()) {
            Ok(ShardRequest::Prepare { envelope, attempt, verdict }) => {
                let vote = self.prepare(envelope, attempt, verdict);
                let decided = self.decide_alone(&vote);
                return std::iter::once(vote).chain(decided).collect();
            }
            Ok(ShardRequest::Decide { tx, attempt, certificates }) => self.decide(tx, attempt, certificates),
            Err(error) => ShardOutput::Refused { reason: format!("an undecodable request was ordered: {error}") },
        };
        vec![output]
    }

    fn state_head(&mut self, height: Height) -> Vec<u8> {
        if !self.is_saved() {
            return self.encoded_head();
        }
        let changes = self.cut(Some(height));
        let head = changes.head.clone();
        self.cut.push(changes);
        head
    }

    fn shell_keeps_body(&self) -> bool {
        self.is_saved()
    }

    fn state_body(&self) -> Option<Vec<u8>> {
        if self.is_saved() {
            return None; // the shell's store serves it
        }
        let (objects, transactions) = (self.state.objects.held(), self.state.transactions.held());
        let objects = objects.map(|(id, record)| (*id, record.clone())).collect();
        let transactions = transactions.map(|(tx, record)| (*tx, record.clone())).collect();
        let decided = self.state.decided.held().map(|(position, entry)| (*position, entry.clone())).collect();
        Some(encode_body(objects, transactions, decided))
    }

    fn restore(&mut self, head: &[u8], body: &[u8]) -> Result<(), String> {
        let head: StateHead = postcard::from_bytes(head).map_err(|error| format!("the head: {error}"))?;
        let body: StateBody = postcard::from_bytes(body).map_err(|error| format!("the body: {error}"))?;
        let mut objects = Table::from_entries(body.objects);
        let mut transactions = Table::from_entries(body.transactions);
        let mut decided = Table::from_entries(body.decided);
        if objects.head() != head.objects {
            return Err("the objects do not match the digest the checkpoint signs".into());
        }
        if transactions.head() != head.transactions {
            return Err("the transaction records do not match the digest the checkpoint signs".into());
        }
        if decided.head() != head.decided {
            return Err("the decided log does not match the digest the checkpoint signs".into());
        }
        if let (Some(object_source), Some(transaction_source), Some(decided_source)) = (
            self.state.objects.source().cloned(),
            self.state.transactions.source().cloned(),
            self.state.decided.source().cloned(),
        ) {
            objects = objects.saved_to(object_source);
            transactions = transactions.saved_to(transaction_source);
            decided = decided.saved_to(decided_source);
            self.replaced = true;
        }
        let (reserved, undecided, executed, log_digest) =
            (head.reserved, head.undecided, head.executed, head.log_digest);
        self.state = ShardState { objects, transactions, decided, reserved, undecided, executed, log_digest };
        Ok(())
    }

    fn resume(&mut self, head: &[u8]) -> Result<(), String> {
        let head: StateHead = postcard::from_bytes(head).map_err(|error| format!("the head: {error}"))?;
        self.state.objects.resume(head.objects)?;
        self.state.transactions.resume(head.transactions)?;
        self.state.decided.resume(head.decided)?;
        (self.state.reserved, self.state.undecided) = (head.reserved, head.undecided);
        (self.state.executed, self.state.log_digest) = (head.executed, head.log_digest);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(vote: VoteKind) -> AttemptRecord {
        AttemptRecord { envelope: "{}".into(), digest: [7; 32], vote, decision: Some(true) }
    }

    #[test]
    fn attempts_keep_their_order_and_encode_as_the_map_they_replace() {
        let mut attempts = Attempts::default();
        let mut map = BTreeMap::new();
        for (number, vote) in
            [(3, VoteKind::Accept), (1, VoteKind::Abort(AbortReason::Superseded)), (2, VoteKind::Accept)]
        {
            attempts.insert(Attempt(number), record(vote));
            map.insert(Attempt(number), record(vote));
        }
        attempts.insert(Attempt(2), record(VoteKind::Abort(AbortReason::InputLocked)));
        map.insert(Attempt(2), record(VoteKind::Abort(AbortReason::InputLocked)));
        assert_eq!(attempts.keys().copied().collect::<Vec<_>>(), [Attempt(1), Attempt(2), Attempt(3)]);
        assert_eq!(attempts.get(&Attempt(2)), map.get(&Attempt(2)));
        assert!(!attempts.contains_key(&Attempt(4)));
        let encoded = postcard::to_stdvec(&attempts).unwrap();
        assert_eq!(encoded, postcard::to_stdvec(&map).unwrap(), "snapshots on disk still read back");
        assert_eq!(postcard::from_bytes::<Attempts>(&encoded).unwrap(), attempts);
    }
}
