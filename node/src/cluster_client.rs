//! `ClusterClient`: what a client of the whole cluster does through the
//! replicas' request interface (the client API builds on it, tests drive it).
//! It sends an attempt's envelope to every replica of every concerned shard,
//! and believes a shard's outcome, an object or a refusal once f+1 of the
//! shard's replicas sign or say the same: at least one of them is honest.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use shardspace_core::bft::{Committee, ReplicaId};
use shardspace_core::sbac::{
    AbortReason, AnswerBody, Attempt, DecidedEntry, DecidedFilter, Found, ObjectView, Position, SignedAnswer, TxView,
    VoteKind,
};
use shardspace_core::{Envelope, ObjectId, ShardId, ShardMap, TxId};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::client::{ClientReply, ClientRequest, Doors, Listing, Page, RejectKind, ReplicaClient};
use crate::config::ClusterFile;
use crate::replica_link::{About, Heard, ReplicaLink, Subscriptions};
use crate::secure::Credentials;

/// What a question hears from the replicas it asked: one bounded channel per replica,
/// merged, so that a replica flooding its own channel crowds out no other replica.
type Hearing = futures::stream::SelectAll<futures::stream::BoxStream<'static, Heard>>;
/// Replies one question keeps waiting from one replica (an honest one sends two or three).
const REPLIES_PER_REPLICA: usize = 16;

/// Why the cluster gave no outcome.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// f+1 replicas of a shard refused the envelope before ordering it: nothing changed.
    #[error("{shard} refused {tx:?}: {kind}: {message}")]
    Rejected { shard: ShardId, tx: Option<TxId>, kind: RejectKind, message: String },
    /// No f+1 matching answers in time; the transaction may still be decided (ask again).
    #[error("no answer from f+1 replicas of {shards:?} within {waited:?} about {what}; ask again")]
    Timeout { what: String, shards: Vec<ShardId>, waited: Duration },
    #[error("the transaction cannot be sent: {0}")]
    Invalid(String),
}

/// One replica's dry-run verdict (none when no checker answered) and reason.
pub type CheckedBy = (Option<bool>, Option<String>);

/// A dry run's answer: what each replica of the concerned shards said of the envelope, and
/// the verdict f+1 of each shard agree on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DryRun {
    pub tx: TxId,
    /// Valid when f+1 replicas of every concerned shard said so; invalid when f+1 of one
    /// shard said it is not (with their reason); none when neither (checkers down).
    pub valid: Option<bool>,
    pub reason: Option<String>,
    /// f+1 replicas of a shard gave `reason` (one of them honest); otherwise it may be one
    /// replica's word.
    pub reason_agreed: bool,
    /// By shard, then replica: its verdict and reason, or none if it did not answer in time.
    pub replicas: BTreeMap<ShardId, Vec<Option<CheckedBy>>>,
}

/// A run of a shard's decided log that f+1 replicas give alike, and how long the log is on
/// at least one honest replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecidedRun {
    pub entries: Vec<DecidedEntry>,
    pub length: u64,
}

/// A transaction's outcome: each concerned shard's record, confirmed by f+1 of its replicas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub tx: TxId,
    pub attempt: Attempt,
    pub shards: BTreeMap<ShardId, TxView>,
}

impl Outcome {
    /// Committed: every concerned shard decided commit (they always agree: I2).
    pub fn committed(&self) -> bool {
        self.shards.values().all(|view| view.committed.is_some())
    }
}

pub use shardspace_core::sbac::attempts::{final_refusal, next_attempt};

/// How long one round of asking a shard's replicas for a page waits for them.
const PAGE_ROUND_MAX: Duration = Duration::from_secs(2);

/// The cluster's shards, their committees and their replicas' client addresses.
#[derive(Clone, Debug)]
pub struct ClusterClient {
    committees: Vec<Committee>,
    map: ShardMap,
    /// Client addresses, by shard then replica.
    addresses: Vec<Vec<String>>,
    /// Each replica's address and key, and this client's key.
    doors: Doors,
    /// One long-lived connection per replica, by shard then replica; shared by clones.
    links: Arc<Vec<Vec<ReplicaLink>>>,
    deadline: Duration,
}

impl ClusterClient {
    /// A client of the cluster in `file`, whose links are made with `credentials` (a key
    /// of the file's `[[clients]]`: `ClusterFile::client_credentials`).
    pub fn new(file: &ClusterFile, credentials: Credentials, deadline: Duration) -> Result<Self, ClusterError> {
        let committees = file.committees().map_err(ClusterError::Invalid)?;
        let shards = u32::try_from(file.shards.len()).map_err(|_| ClusterError::Invalid("too many shards".into()))?;
        let map = ShardMap::new(shards).map_err(|error| ClusterError::Invalid(error.to_string()))?;
        let addresses: Vec<Vec<String>> =
            file.shards.iter().map(|shard| shard.replicas.iter().map(|r| r.client_address.clone()).collect()).collect();
        let doors = Doors::new(file, credentials);
        let links = doors.replicas().iter().enumerate().map(|(shard, replicas)| {
            let links = replicas.iter().enumerate();
            links
                .map(|(replica, (address, key))| {
                    let credentials = doors.credentials().clone();
                    ReplicaLink::new(ShardId(shard as u32), replica, address.clone(), *key, credentials)
                })
                .collect()
        });
        let links = Arc::new(links.collect());
        Ok(Self { committees, map, addresses, doors, links, deadline })
    }

    /// A connection of its own to one replica (for reads that are not routed by id: status,
    /// listings).
    pub async fn replica_client(&self, shard: usize, replica: usize) -> std::io::Result<ReplicaClient> {
        self.doors.connect(shard, replica).await
    }

    /// What a reloaded cluster file changes that this client cannot take without a restart:
    /// the replicas (shards, addresses, keys) it reaches.
    pub fn needs_restart_for(&self, file: &ClusterFile) -> Option<&'static str> {
        let reloaded = Doors::new(file, self.doors.credentials().clone());
        (reloaded.replicas() != self.doors.replicas()).then_some("the shards, or their replicas' addresses or keys")
    }

    pub fn map(&self) -> &ShardMap {
        &self.map
    }

    pub fn committees(&self) -> &[Committee] {
        &self.committees
    }

    /// Client addresses, by shard then replica.
    pub fn addresses(&self) -> &[Vec<String>] {
        &self.addresses
    }

    /// Those of `shards` of which fewer than f+1 replicas could be connected to at the last
    /// try, with how many could not, and how many of those refused this client's key: no
    /// outcome can be heard from them.
    pub fn cut_off(&self, shards: &[ShardId]) -> Vec<(ShardId, usize, usize)> {
        let count = |shard: &ShardId, which: fn(&ReplicaLink) -> bool| {
            self.links[shard.0 as usize].iter().filter(|link| which(link)).count()
        };
        let cut = shards
            .iter()
            .map(|shard| (*shard, count(shard, ReplicaLink::is_down), count(shard, ReplicaLink::is_refused)));
        cut.filter(|(shard, down, _)| {
            self.addresses[shard.0 as usize].len() - down < self.committees[shard.0 as usize].validity()
        })
        .collect()
    }

    /// Runs the envelope as the attempt its records call for, and waits for the outcome:
    /// a committed transaction gets its recorded outcome; an undecided attempt is joined;
    /// otherwise (never seen, or aborted) the next attempt runs.
    ///
    /// Most transactions are new, so attempt 1 is sent at once, without reading the records
    /// first (a signed answer from every replica, and a round trip, saved). Its outcome
    /// stands when it is a commit, or an abort that every replica counted for it took part
    /// in (each said `Accepted` before its answer: the attempt was not decided there
    /// before) and that no shard voted because a later attempt exists. Otherwise the
    /// records decide, as above. A Byzantine replica can only send it the slow way.
    pub async fn process(&self, envelope: &Envelope) -> Result<Outcome, ClusterError> {
        let tx = envelope.transaction.tx_id();
        let started = Instant::now();
        let (first, took_part) = self.run_attempt(envelope, Attempt(1)).await?;
        let later_exists = first
            .shards
            .values()
            .any(|view| matches!(view.vote, VoteKind::Abort(AbortReason::Superseded | AbortReason::TooFarAhead)));
        if first.committed() || (took_part && !later_exists) {
            tracing::debug!(%tx, total = ?started.elapsed(), "processed as attempt 1");
            return Ok(first);
        }
        let shards: Vec<ShardId> = self.map.concerned_shards(&envelope.transaction).into_iter().collect();
        let records = self.records(tx, &shards).await?;
        let attempt = next_attempt(records.values().flatten());
        let outcome = self.submit(envelope, attempt).await;
        tracing::debug!(%tx, attempt = attempt.0, total = ?started.elapsed(), "processed");
        outcome
    }

    /// What f+1 replicas of each of `shards` recorded about a transaction, asked at once.
    pub async fn records(
        &self,
        tx: TxId,
        shards: &[ShardId],
    ) -> Result<BTreeMap<ShardId, Option<TxView>>, ClusterError> {
        let asked = shards.iter().map(|shard| async move { (*shard, self.transaction(*shard, tx).await) });
        let mut records = BTreeMap::new();
        for (shard, record) in futures::future::join_all(asked).await {
            records.insert(shard, record?);
        }
        Ok(records)
    }

    /// Every shard's record of a transaction (its concerned shards are not known from its id).
    pub async fn records_everywhere(&self, tx: TxId) -> Result<BTreeMap<ShardId, TxView>, ClusterError> {
        let shards: Vec<ShardId> = (0..self.committees.len() as u32).map(ShardId).collect();
        let records = self.records(tx, &shards).await?;
        Ok(records.into_iter().filter_map(|(shard, record)| Some((shard, record?))).collect())
    }

    /// Sends one attempt to every replica of every concerned shard and waits for its outcome.
    pub async fn submit(&self, envelope: &Envelope, attempt: Attempt) -> Result<Outcome, ClusterError> {
        Ok(self.run_attempt(envelope, attempt).await?.0)
    }

    /// As `submit`; also whether, in every concerned shard, each replica whose signed outcome
    /// was counted said `Accepted` (took the attempt up undecided) before it.
    async fn run_attempt(&self, envelope: &Envelope, attempt: Attempt) -> Result<(Outcome, bool), ClusterError> {
        let tx = envelope.transaction.tx_id();
        let json = serde_json::to_string(envelope).map_err(|error| ClusterError::Invalid(error.to_string()))?;
        let shards: Vec<ShardId> = self.map.concerned_shards(&envelope.transaction).into_iter().collect();
        let request = ClientRequest::Envelope { envelope: json, attempt };
        let (_subscriptions, mut hearing) = self.ask_all(&shards, About::Outcome(tx), request);
        let mut accepted: BTreeMap<ShardId, std::collections::BTreeSet<usize>> = BTreeMap::new();
        let mut took_part: BTreeMap<ShardId, bool> = BTreeMap::new();
        let deadline = Instant::now() + self.deadline;
        // Each signer's decided answer, and each replica's refusal, by shard: counted once each.
        let mut answers: BTreeMap<ShardId, BTreeMap<ReplicaId, AnswerBody>> = BTreeMap::new();
        let mut rejections: BTreeMap<ShardId, BTreeMap<usize, (RejectKind, String)>> = BTreeMap::new();
        let mut outcome = BTreeMap::new();
        loop {
            if outcome.len() == shards.len() {
                let took_part = shards.iter().all(|shard| took_part.get(shard) == Some(&true));
                break Ok((Outcome { tx, attempt, shards: outcome }, took_part));
            }
            let Ok(Some((shard, replica, heard))) = tokio::time::timeout_at(deadline, hearing.next()).await else {
                let missing = shards.iter().filter(|s| !outcome.contains_key(*s)).copied().collect();
                let what = format!("txId {tx} (it may still be decided)");
                break Err(ClusterError::Timeout { what, shards: missing, waited: self.deadline });
            };
            let committee = &self.committees[shard.0 as usize];
            match heard {
                ClientReply::Rejected { kind, message, .. } => {
                    let refused = rejections.entry(shard).or_default();
                    refused.insert(replica, (kind, message));
                    if let Some((kind, message)) = final_refusal(refused, committee) {
                        break Err(ClusterError::Rejected { shard, tx: Some(tx), kind, message });
                    }
                }
                ClientReply::Answer(answer) => {
                    let AnswerBody::Transaction { tx: about, record: Some(view) } = &answer.body else { continue };
                    if answer.replica.0 as usize != replica {
                        continue; // a replica speaks for itself only: no replaying others' signatures
                    }
                    let decided = view.committed.is_some() || (view.attempt == attempt && view.decision.is_some());
                    if *about != tx || !decided || self.verify(shard, &answer).is_err() {
                        continue;
                    }
                    let signed = answers.entry(shard).or_default();
                    signed.insert(answer.replica, answer.body.clone());
                    let matching = signed.values().filter(|body| **body == answer.body).count();
                    if matching >= committee.validity() {
                        outcome.insert(shard, view.clone());
                        // Taken up undecided by every signer counted: each said `Accepted` before
                        // its answer. A replica that had it decided answers from the record at
                        // once, without `Accepted`, and is among the first to answer.
                        let said_accepted = accepted.get(&shard);
                        let counted = signed.iter().filter(|(_, body)| **body == answer.body);
                        let all = counted
                            .map(|(signer, _)| signer.0 as usize)
                            .all(|signer| said_accepted.is_some_and(|replicas| replicas.contains(&signer)));
                        took_part.insert(shard, all);
                    }
                }
                ClientReply::Accepted { tx: about, attempt: taken } if about == tx && taken == attempt => {
                    accepted.entry(shard).or_default().insert(replica);
                }
                _ => {}
            }
        }
    }

    /// Asks the checkers of every replica of the envelope's shards about it, without
    /// ordering anything (a dry run): no object is locked, consumed or created, and the
    /// inputs' values are the envelope's own (not compared with the ledger). Waits at most
    /// the client's deadline.
    pub async fn dry_run(&self, envelope: &Envelope) -> Result<DryRun, ClusterError> {
        self.dry_run_within(envelope, self.deadline).await
    }

    /// As `dry_run`, waiting at most `wait`: what the replicas said by then decides. Asked
    /// on the links submissions use; it ends as soon as every shard has a verdict (an
    /// invalid one once f+1 replicas give the same reason, or all have answered).
    pub async fn dry_run_within(&self, envelope: &Envelope, wait: Duration) -> Result<DryRun, ClusterError> {
        let tx = envelope.transaction.tx_id();
        let json = serde_json::to_string(envelope).map_err(|error| ClusterError::Invalid(error.to_string()))?;
        let shards: Vec<ShardId> = self.map.concerned_shards(&envelope.transaction).into_iter().collect();
        let request = ClientRequest::Check { envelope: json };
        let (_subscriptions, mut hearing) = self.ask_all(&shards, About::Checked(tx), request);
        let mut replicas: BTreeMap<ShardId, Vec<Option<CheckedBy>>> =
            shards.iter().map(|shard| (*shard, vec![None; self.addresses[shard.0 as usize].len()])).collect();
        let deadline = Instant::now() + wait;
        let settled = |replicas: &BTreeMap<ShardId, Vec<Option<CheckedBy>>>| {
            let verdicts: Vec<_> =
                replicas.iter().map(|(shard, answers)| shard_verdict(answers, self.validity(*shard))).collect();
            let agreed_no = verdicts.iter().any(|verdict| matches!(verdict, Some((false, _, true))));
            agreed_no
                || verdicts.iter().zip(replicas.values()).all(|(verdict, answers)| match verdict {
                    Some((true, _, _)) => true,
                    _ => answers.iter().all(Option::is_some),
                })
        };
        while !settled(&replicas) {
            let Ok(Some((shard, replica, heard))) = tokio::time::timeout_at(deadline, hearing.next()).await else {
                break;
            };
            if let ClientReply::Checked { tx: about, valid, reason } = heard
                && about == tx
                && let Some(slot) = replicas.get_mut(&shard).and_then(|answers| answers.get_mut(replica))
            {
                *slot = Some((valid, reason)); // a replica's last word counts, once
            }
        }
        let verdicts: Vec<_> =
            replicas.iter().map(|(shard, answers)| shard_verdict(answers, self.validity(*shard))).collect();
        let invalid: Vec<_> = verdicts.iter().flatten().filter(|(valid, ..)| !valid).collect();
        let (valid, reason, reason_agreed) =
            if let Some((_, reason, agreed)) = invalid.iter().find(|(.., agreed)| *agreed).or(invalid.first()) {
                (Some(false), reason.clone(), *agreed)
            } else if verdicts.iter().all(|verdict| matches!(verdict, Some((true, ..)))) {
                (Some(true), None, false)
            } else {
                let why = replicas.values().flatten().flatten().find_map(|(said, why)| said.is_none().then_some(why));
                (None, why.cloned().flatten(), false)
            };
        Ok(DryRun { tx, valid, reason, reason_agreed, replicas })
    }

    /// Entries of `shard`'s decided log from `from` on, as f+1 of its replicas give them
    /// alike at each position (one of them honest): the longest such run from `from`, at
    /// most `limit`. Answers once a quorum of the replicas have answered (the others may
    /// be down), or at `wait` if f+1 have; empty when no entry from `from` is agreed yet.
    pub async fn decided_log(
        &self,
        shard: ShardId,
        from: Position,
        limit: u32,
        wait: Duration,
    ) -> Result<DecidedRun, ClusterError> {
        let request = ClientRequest::Decided { from, limit };
        let (_subscriptions, mut hearing) = self.ask_all(&[shard], About::DecidedLog(from), request);
        let committee = &self.committees[shard.0 as usize];
        let mut answers: BTreeMap<usize, (Vec<DecidedEntry>, u64)> = BTreeMap::new();
        let deadline = Instant::now() + wait;
        while answers.len() < committee.quorum() {
            let Ok(Some((_, replica, heard))) = tokio::time::timeout_at(deadline, hearing.next()).await else { break };
            if let ClientReply::DecidedLog { from: about, mut entries, length } = heard
                && about == from
            {
                entries.truncate(limit as usize);
                answers.insert(replica, (entries, length)); // a replica's last word counts, once
            }
        }
        let validity = committee.validity();
        if answers.len() < validity {
            let what = format!("the decided log of {shard} from {from}");
            return Err(ClusterError::Timeout { what, shards: vec![shard], waited: wait });
        }
        // At least one honest replica holds this many entries (of f+1 that say as many).
        let mut lengths: Vec<u64> = answers.values().map(|(_, length)| *length).collect();
        lengths.sort_unstable_by(|a, b| b.cmp(a));
        let length = lengths[validity - 1];
        let entries = agreed_run(answers.into_values().map(|(entries, _)| entries).collect(), validity);
        Ok(DecidedRun { entries, length })
    }

    /// The entries of `shard`'s decided log from `from` on that `filter` finds, each given
    /// alike by f+1 replicas, and how far the search is complete (`searched_to`): the
    /// (2f+1)-th furthest that replicas searched, so that 2f+1 of them (f+1 honest) searched
    /// up to there, and each entry found before it is in f+1 answers; `length` is the
    /// (f+1)-th longest log said (one honest replica holds that many). Answers once every
    /// replica has, or `SEARCH_GRACE` after a quorum did (a liar that says it searched
    /// nothing is then outnumbered by the replica that answered last); an error when fewer
    /// than a quorum answer within `wait`.
    pub async fn search(
        &self,
        shard: ShardId,
        from: Position,
        filter: DecidedFilter,
        limit: u32,
        wait: Duration,
    ) -> Result<Found, ClusterError> {
        let request = ClientRequest::Search { from, filter: filter.clone(), limit };
        let (_subscriptions, mut hearing) = self.ask_all(&[shard], About::DecidedLog(from), request);
        let committee = &self.committees[shard.0 as usize];
        let mut answers: BTreeMap<usize, Found> = BTreeMap::new();
        let mut until = Instant::now() + wait;
        while answers.len() < committee.size() {
            let Ok(Some((_, replica, heard))) = tokio::time::timeout_at(until, hearing.next()).await else { break };
            if let ClientReply::DecidedFound { from: about, filter: theirs, found } = heard
                && about == from
                && theirs == filter
            {
                answers.insert(replica, found); // a replica's last word counts, once
                if answers.len() == committee.quorum() {
                    until = until.min(Instant::now() + SEARCH_GRACE);
                }
            }
        }
        agreed_search(answers.into_values().collect(), committee.quorum(), committee.validity(), from).ok_or_else(
            || {
                let what = format!("a search of the decided log of {shard} from {from}");
                ClusterError::Timeout { what, shards: vec![shard], waited: wait }
            },
        )
    }

    fn validity(&self, shard: ShardId) -> usize {
        self.committees[shard.0 as usize].validity()
    }

    /// An object as f+1 replicas of its shard sign it; `None` when they agree it does not exist.
    pub async fn object(&self, id: ObjectId) -> Result<Option<ObjectView>, ClusterError> {
        let shard = self.map.shard_of(&id);
        let body = self.read(shard, ClientRequest::Object(id)).await?;
        match body {
            AnswerBody::Object { object, .. } => Ok(object),
            AnswerBody::Transaction { .. } => Err(ClusterError::Invalid("an answer about something else".into())),
        }
    }

    /// What f+1 replicas of `shard` recorded about a transaction.
    pub async fn transaction(&self, shard: ShardId, tx: TxId) -> Result<Option<TxView>, ClusterError> {
        match self.read(shard, ClientRequest::Transaction(tx)).await? {
            AnswerBody::Transaction { record, .. } => Ok(record),
            AnswerBody::Object { .. } => Err(ClusterError::Invalid("an answer about something else".into())),
        }
    }

    /// A page of objects or transaction records across every shard, in id order after
    /// `after`: each shard's page is one that f+1 of its replicas give identically, so that
    /// at least one honest replica holds it (asked again while they differ, as replicas a
    /// block apart may, until the deadline).
    pub async fn list(&self, what: Listing, after: Option<[u8; 32]>, limit: u32) -> Result<Page, ClusterError> {
        let deadline = Instant::now() + self.deadline;
        let shards = (0..self.addresses.len() as u32).map(ShardId);
        let pages = shards.map(|shard| self.agreed_page(shard, &what, after, limit, deadline));
        let mut merged = Page::default();
        let mut cut_at: Option<ObjectId> = None;
        for page in futures::future::join_all(pages).await {
            let page = page?;
            let last_if_cut = page.objects.last().filter(|_| page.cut).map(|(last, _)| *last);
            for end in last_if_cut.into_iter().chain(page.scanned_to) {
                cut_at = Some(cut_at.map_or(end, |known| known.min(end)));
            }
            merged.objects.extend(page.objects);
            merged.transactions.extend(page.transactions);
            merged.envelopes.extend(page.envelopes);
        }
        merged.objects.sort_by_key(|(id, _)| *id);
        merged.transactions.sort_by_key(|(tx, _)| *tx);
        merged.objects.truncate(limit as usize);
        // A shard whose page was cut by its bytes, or stopped by its scan, may have more
        // before other shards' ids: the merged page ends there. When it is not full, the
        // next page starts there (`scanned_to`), whether it lists that id or not.
        if let Some(end) = cut_at {
            merged.objects.retain(|(id, _)| *id <= end);
            merged.cut = true;
            merged.scanned_to = (merged.objects.len() < limit as usize).then_some(end);
        }
        // A transaction of several shards has a record in each: a page never ends between
        // them (the next page starts after the last id, and would skip the rest). Each shard's
        // page holds its record of that last id, as fewer than `limit` records come before it.
        let mut end = (limit as usize).min(merged.transactions.len());
        while end > 0 && end < merged.transactions.len() && merged.transactions[end].0 == merged.transactions[end - 1].0
        {
            end += 1;
        }
        merged.transactions.truncate(end);
        merged.envelopes.sort_by_key(|(tx, _)| *tx);
        merged.envelopes.dedup_by_key(|(tx, _)| *tx);
        merged.envelopes.retain(|(tx, _)| merged.transactions.binary_search_by_key(tx, |(listed, _)| *listed).is_ok());
        Ok(merged)
    }

    /// The page of `shard` that f+1 of its replicas give alike (each round asks them all
    /// again, for at most `PAGE_ROUND_MAX`).
    async fn agreed_page(
        &self,
        shard: ShardId,
        what: &Listing,
        after: Option<[u8; 32]>,
        limit: u32,
        deadline: Instant,
    ) -> Result<Page, ClusterError> {
        let validity = self.committees[shard.0 as usize].validity();
        loop {
            // A round waits for a replica that is down or cut off no longer than this.
            let round_ends = deadline.min(Instant::now() + PAGE_ROUND_MAX);
            let asked = (0..self.addresses[shard.0 as usize].len()).map(|replica| async move {
                let asked = async {
                    self.replica_client(shard.0 as usize, replica).await?.list(what.clone(), after, limit).await
                };
                tokio::time::timeout_at(round_ends, asked).await.ok()?.ok()
            });
            let mut answers: futures::stream::FuturesUnordered<_> = asked.collect();
            let mut seen: Vec<(Page, usize)> = Vec::new();
            while let Some(answer) = answers.next().await {
                let Some(page) = answer else { continue };
                let count = match seen.iter_mut().find(|(known, _)| *known == page) {
                    Some((_, count)) => {
                        *count += 1;
                        *count
                    }
                    None => {
                        seen.push((page.clone(), 1));
                        1
                    }
                };
                if count >= validity {
                    return Ok(page);
                }
            }
            if Instant::now() >= deadline {
                let (what, shards, waited) = ("a page that f+1 replicas agree on".into(), vec![shard], self.deadline);
                return Err(ClusterError::Timeout { what, shards, waited });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Asks every replica of `shard` and returns the first body about the thing asked that
    /// f+1 of them sign (each signer counted once).
    async fn read(&self, shard: ShardId, request: ClientRequest) -> Result<AnswerBody, ClusterError> {
        let about = match &request {
            ClientRequest::Object(id) => About::Object(*id),
            ClientRequest::Transaction(tx) => About::Record(*tx),
            _ => return Err(ClusterError::Invalid("only objects and transactions are read".into())),
        };
        let (_subscriptions, mut hearing) = self.ask_all(&[shard], about, request.clone());
        let validity = self.committees[shard.0 as usize].validity();
        let deadline = Instant::now() + self.deadline;
        let mut signed: BTreeMap<ReplicaId, AnswerBody> = BTreeMap::new();
        loop {
            let Ok(Some((_, replica, reply))) = tokio::time::timeout_at(deadline, hearing.next()).await else {
                let what = format!("{request:?}");
                break Err(ClusterError::Timeout { what, shards: vec![shard], waited: self.deadline });
            };
            let ClientReply::Record(answer) = reply else { continue };
            let about_it = match (&answer.body, &request) {
                (AnswerBody::Object { id, .. }, ClientRequest::Object(asked)) => id == asked,
                (AnswerBody::Transaction { tx, .. }, ClientRequest::Transaction(asked)) => tx == asked,
                _ => false,
            };
            // A replica speaks for itself only: it cannot replay other replicas' old signatures.
            if !about_it || answer.replica.0 as usize != replica || self.verify(shard, &answer).is_err() {
                continue;
            }
            signed.insert(answer.replica, answer.body.clone());
            if signed.values().filter(|body| **body == answer.body).count() >= validity {
                break Ok(answer.body);
            }
        }
    }

    fn verify(&self, shard: ShardId, answer: &SignedAnswer) -> Result<(), String> {
        if answer.shard != shard {
            return Err(format!("an answer from {} where {shard} was asked", answer.shard));
        }
        answer.verify(&self.committees[shard.0 as usize]).map_err(|error| error.to_string())
    }

    /// Sends `request` to every replica of each shard on its link; what they say about
    /// `about` comes to `tx_heard` until the subscriptions returned are dropped.
    fn ask_all(&self, shards: &[ShardId], about: About, request: ClientRequest) -> (Subscriptions, Hearing) {
        let mut subscriptions = Subscriptions::default();
        let mut hearing = Hearing::new();
        for shard in shards {
            for link in &self.links[shard.0 as usize] {
                let (tx_heard, rx_heard) = mpsc::channel(REPLIES_PER_REPLICA);
                link.ask(about, request.clone(), tx_heard, &mut subscriptions);
                let replies =
                    futures::stream::unfold(rx_heard, |mut rx| async move { rx.recv().await.map(|h| (h, rx)) });
                hearing.push(replies.boxed());
            }
        }
        (subscriptions, hearing)
    }
}

/// A shard's dry-run verdict once f+1 of its replicas give it: valid, or invalid with the
/// reason most of those saying no give, and whether f+1 give that reason (one of them
/// honest). None while no verdict has f+1 replicas.
fn shard_verdict(answers: &[Option<CheckedBy>], validity: usize) -> Option<(bool, Option<String>, bool)> {
    let said = |verdict: bool| answers.iter().flatten().filter(move |(said, _)| *said == Some(verdict));
    let noes: Vec<&Option<String>> = said(false).map(|(_, why)| why).collect();
    if noes.len() >= validity {
        let count = |reason: &Option<String>| noes.iter().filter(|why| **why == reason).count();
        // The first of the most given (`rev`: `max_by_key` keeps the last of equals).
        let reason = noes.iter().rev().max_by_key(|reason| count(reason)).and_then(|reason| (*reason).clone());
        let agreed = count(&reason) >= validity;
        return Some((false, reason, agreed));
    }
    (said(true).count() >= validity).then_some((true, None, true))
}

/// The longest run of entries, from the first, that `validity` of the answers give alike
/// at each position.
fn agreed_run(answers: Vec<Vec<DecidedEntry>>, validity: usize) -> Vec<DecidedEntry> {
    let mut agreed = Vec::new();
    for index in 0.. {
        let given: Vec<&DecidedEntry> = answers.iter().filter_map(|entries| entries.get(index)).collect();
        let alike = |entry: &&&DecidedEntry| given.iter().filter(|other| **other == **entry).count() >= validity;
        match given.iter().find(alike) {
            Some(entry) => agreed.push((*entry).clone()),
            None => break,
        }
    }
    agreed
}

/// How long a search waits for the replicas left once a quorum has answered.
const SEARCH_GRACE: Duration = Duration::from_millis(100);

/// What `quorum` answers of a search (or more) allow a reader to believe: the entries that
/// `validity` of them give alike, before the `quorum`-th furthest point searched, and the
/// `validity`-th longest log. None with fewer than a quorum.
fn agreed_search(answers: Vec<Found>, quorum: usize, validity: usize, from: Position) -> Option<Found> {
    if answers.len() < quorum {
        return None;
    }
    let mut reached: Vec<Position> = answers.iter().map(|found| found.searched_to.max(from)).collect();
    reached.sort_unstable_by(|a, b| b.cmp(a));
    let searched_to = reached[quorum - 1];
    let mut lengths: Vec<u64> = answers.iter().map(|found| found.length).collect();
    lengths.sort_unstable_by(|a, b| b.cmp(a));
    let length = lengths[validity - 1];
    // What each answer gives at each position: once per answer, however often it says it.
    let mut given: BTreeMap<Position, Vec<&DecidedEntry>> = BTreeMap::new();
    for found in &answers {
        let mut said = BTreeMap::new();
        for (position, entry) in found.entries.iter().filter(|(position, _)| *position >= from) {
            said.entry(*position).or_insert(entry);
        }
        said.into_iter().for_each(|(position, entry)| given.entry(position).or_default().push(entry));
    }
    let mut entries = Vec::new();
    for (position, said) in given.range(from..searched_to) {
        let alike = |entry: &&&DecidedEntry| said.iter().filter(|other| ***other == ***entry).count() >= validity;
        if let Some(entry) = said.iter().find(alike) {
            entries.push((*position, (**entry).clone()));
        }
    }
    Some(Found { entries, searched_to, length })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u8, committed: bool) -> DecidedEntry {
        DecidedEntry {
            tx: TxId([n; 32]),
            attempt: Attempt(1),
            committed,
            concerned: vec![ShardId(0)],
            contract: "dump".into(),
            method: "put".into(),
            vote: VoteKind::Accept,
            aborted_by: Vec::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
        }
    }

    /// f+1 alike at each position: a lagging replica shortens nothing that two others give;
    /// a liar's entry counts only with another's, and its extra entries not at all.
    #[test]
    fn the_agreed_run_is_what_f_plus_1_replicas_give_alike_at_each_position() {
        let honest = vec![entry(1, true), entry(2, false), entry(3, true)];
        let lagging = honest[..1].to_vec();
        let liar = vec![entry(1, true), entry(2, true), entry(3, true), entry(4, true)];
        let agreed = agreed_run(vec![honest.clone(), lagging.clone(), honest.clone(), liar.clone()], 2);
        assert_eq!(agreed, honest, "the liar's fourth entry has no one beside it");
        // One honest replica up to date, one lagging, and the liar: the liar's second entry
        // differs from the honest one, and neither has another beside it.
        assert_eq!(agreed_run(vec![honest.clone(), lagging.clone(), liar.clone()], 2), lagging);
        assert_eq!(agreed_run(vec![lagging.clone(), liar], 2), lagging);
        assert_eq!(agreed_run(vec![honest.clone()], 2), Vec::new(), "one replica alone is not believed");
        assert_eq!(agreed_run(Vec::new(), 2), Vec::new());
    }

    #[test]
    fn a_search_believes_what_f_plus_1_find_up_to_where_a_quorum_searched() {
        let found = |positions: &[u64], searched_to: u64| Found {
            entries: positions.iter().map(|at| (Position(*at), entry(*at as u8, true))).collect(),
            searched_to: Position(searched_to),
            length: searched_to,
        };
        let honest = found(&[2, 5, 9], 12);
        let lagging = found(&[2, 5], 7);
        // A liar leaves out 5, makes up 3, and says it searched to the end.
        let liar = found(&[2, 3, 9], 1_000);
        let agreed = agreed_search(vec![honest.clone(), lagging.clone(), liar.clone()], 3, 2, Position(0)).unwrap();
        let parts = |found: Found| (found.entries, found.searched_to);
        assert_eq!(parts(agreed), parts(found(&[2, 5], 7)), "the lagging one bounds it; 3 is the liar's alone");
        let two_honest = vec![honest.clone(), honest.clone(), liar.clone(), lagging];
        assert_eq!(agreed_search(two_honest, 3, 2, Position(0)).unwrap(), found(&[2, 5, 9], 12));
        assert_eq!(
            agreed_search(vec![liar.clone(), honest.clone(), honest.clone()], 3, 2, Position(0)).unwrap().length,
            12,
            "the liar's 1,000 is one voice"
        );
        // Only f+1 liars (more than the shard tolerates) hide 5.
        let lying = found(&[2, 9], 1_000);
        assert_eq!(
            parts(agreed_search(vec![honest.clone(), liar, lying], 3, 2, Position(0)).unwrap()),
            parts(found(&[2, 9], 12))
        );
        assert_eq!(agreed_search(vec![honest.clone(), honest.clone()], 3, 2, Position(0)), None, "fewer than a quorum");
        // Saying one made-up entry twice counts once.
        let twice = found(&[3, 3], 1_000);
        let agreed = agreed_search(vec![honest.clone(), twice, honest.clone()], 3, 2, Position(0)).unwrap();
        assert_eq!((agreed.entries, agreed.searched_to), (honest.entries.clone(), Position(12)));
        // A liar that says it searched nothing holds a quorum of three back; with the
        // fourth answer, the search goes on, and the length says there is more meanwhile.
        let nothing = Found { entries: vec![], searched_to: Position(0), length: 0 };
        let held = agreed_search(vec![honest.clone(), nothing.clone(), honest.clone()], 3, 2, Position(0)).unwrap();
        assert_eq!((held.entries.len(), held.searched_to, held.length), (0, Position(0), 12));
        let four = vec![honest.clone(), nothing, honest.clone(), honest.clone()];
        assert_eq!(agreed_search(four, 3, 2, Position(0)).unwrap().searched_to, Position(12));
    }
}
