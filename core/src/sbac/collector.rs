//! Replica-side gathering, outside the ordered log: signed checker verdicts of
//! this shard into a `VerdictCertificate` (then a `Prepare` can be ordered), and
//! signed votes of every concerned shard into the certificates of a `Decide`.
//! Both are bounded: the oldest unfinished gathering is dropped first.

use std::collections::{BTreeMap, VecDeque};

use super::messages::{Attempt, CheckerAnswer, PreparedCertificate, SignedVote, Verdict, VerdictCertificate};
use crate::bft::{Committee, ProtocolError, ReplicaId, Seal};
use crate::ids::{ShardId, TxId};

/// Seals of matching votes.
type Seals = Vec<(ReplicaId, Seal)>;

/// Each signer's verdict (accept or not) and seal.
type VerdictsBySigner = BTreeMap<ReplicaId, (CheckerAnswer, Seal)>;

/// The last `capacity` keys finished, with what they finished with; the oldest are
/// forgotten first. Votes for attempts already decided are dropped before their
/// signatures are checked, and open no new gathering that would only wait for eviction.
/// Verdicts name the envelope, not the attempt: a later attempt of the same envelope needs
/// a certificate again, so the certificate given is kept and given again, unchecked.
#[derive(Debug)]
struct Finished<K, V = ()> {
    order: VecDeque<K>,
    values: BTreeMap<K, V>,
    capacity: usize,
}

impl<K: Ord + Copy, V> Finished<K, V> {
    fn new(capacity: usize) -> Self {
        Self { order: VecDeque::new(), values: BTreeMap::new(), capacity: capacity.max(1) }
    }

    fn insert_with(&mut self, key: K, value: V) {
        if self.values.insert(key, value).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.values.remove(&oldest);
            }
        }
    }

    fn get(&self, key: &K) -> Option<&V> {
        self.values.get(key)
    }

    fn contains(&self, key: &K) -> bool {
        self.values.contains_key(key)
    }
}

impl<K: Ord + Copy> Finished<K> {
    fn insert(&mut self, key: K) {
        self.insert_with(key, ());
    }
}

/// Gathers this shard's signed verdicts; f+1 matching ones make a certificate.
#[derive(Debug)]
pub struct VerdictCollector {
    committee: Committee,
    /// Verdicts by transaction and envelope, with their arrival number (for eviction).
    gathering: BTreeMap<(TxId, [u8; 32]), (u64, VerdictsBySigner)>,
    /// Certificates given, by transaction and envelope: a verdict still arriving for one
    /// (f of the 2f+1 a shard sends, or all of them again for a later attempt) gets it
    /// again without its signature being checked, a signature check each saved (issue 6).
    certified: Finished<(TxId, [u8; 32]), VerdictCertificate>,
    arrivals: u64,
    capacity: usize,
}

impl VerdictCollector {
    pub fn new(committee: Committee, capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self { committee, gathering: BTreeMap::new(), certified: Finished::new(capacity), arrivals: 0, capacity }
    }

    /// Adds a verdict (checking its seal); returns the certificate when this one completes
    /// it, and again, unchecked, for each verdict on an envelope already certified.
    pub fn add(&mut self, verdict: Verdict) -> Result<Option<VerdictCertificate>, ProtocolError> {
        let key = (verdict.tx, verdict.envelope);
        if let Some(certificate) = self.certified.get(&key) {
            // "No verdict" holds for its attempt only: a verdict of another is gathered anew.
            let for_its_attempt_only = matches!(certificate.answer, CheckerAnswer::Unavailable(_));
            if !for_its_attempt_only || certificate.answer == verdict.answer {
                return Ok(Some(certificate.clone()));
            }
        }
        verdict.verify(&self.committee)?;
        if !self.gathering.contains_key(&key) {
            evict_oldest(&mut self.gathering, self.capacity, |(arrival, _)| *arrival);
            self.arrivals += 1;
        }
        let arrivals = self.arrivals;
        let (_, verdicts) = self.gathering.entry(key).or_insert_with(|| (arrivals, BTreeMap::new()));
        let answer = verdict.answer;
        // A replica's first verdict stands, but for "no verdict", which a later one replaces
        // (the checker came back, or the next attempt found it down too).
        match verdicts.get(&verdict.replica) {
            Some((CheckerAnswer::Unavailable(before), _)) if supersedes(answer, *before) => {
                verdicts.insert(verdict.replica, (answer, verdict.seal));
            }
            Some(_) => {}
            None => {
                verdicts.insert(verdict.replica, (answer, verdict.seal));
            }
        }
        let matching: Seals = verdicts
            .iter()
            .filter(|(_, (each, _))| *each == answer)
            .map(|(replica, (_, seal))| (*replica, seal.clone()))
            .collect();
        if matching.len() < answer.signers_needed(&self.committee) {
            return Ok(None);
        }
        if let CheckerAnswer::Unavailable(_) = answer {
            // The others stay: they may certify the next attempt.
            verdicts.retain(|_, (each, _)| *each != answer);
        } else {
            self.gathering.remove(&key);
        }
        let (tx, envelope) = (verdict.tx, verdict.envelope);
        let certificate = VerdictCertificate { tx, envelope, answer, seals: matching };
        self.certified.insert_with(key, certificate.clone());
        Ok(Some(certificate))
    }
}

/// Whether `answer` replaces a replica's "no verdict" for attempt `before`.
fn supersedes(answer: CheckerAnswer, before: Attempt) -> bool {
    match answer {
        CheckerAnswer::Unavailable(attempt) => attempt > before,
        CheckerAnswer::Valid | CheckerAnswer::Invalid => true,
    }
}

/// One attempt's votes, by shard and replica, and which shards and envelope it concerns once known.
#[derive(Debug, Default)]
struct Gathering {
    arrival: u64,
    concerned: Option<(Vec<ShardId>, [u8; 32])>,
    votes: BTreeMap<ShardId, BTreeMap<ReplicaId, SignedVote>>,
}

/// Gathers votes from every concerned shard into the certificates that decide an attempt.
#[derive(Debug)]
pub struct VoteCollector {
    /// Every shard's committee, by shard id.
    committees: Vec<Committee>,
    gathering: BTreeMap<(TxId, Attempt), Gathering>,
    /// Attempts decided here (`forget`).
    decided: Finished<(TxId, Attempt)>,
    /// Certificates completed here, by attempt: the votes still arriving for it (up to f of
    /// each shard's) are dropped before their seals are checked, and the certificates are
    /// given again when this replica gathers for the attempt again (pass-on).
    certified: Finished<(TxId, Attempt), Vec<PreparedCertificate>>,
    arrivals: u64,
    capacity: usize,
}

/// Certified attempts remembered: only those between their certificates and their
/// decision need to be (a few hundred at the peak); the oldest are forgotten first.
const CERTIFIED_MAX: usize = 4096;

impl VoteCollector {
    pub fn new(committees: Vec<Committee>, capacity: usize) -> Self {
        let decided = Finished::new(capacity);
        let certified = Finished::new(CERTIFIED_MAX.min(capacity));
        Self { committees, gathering: BTreeMap::new(), decided, certified, arrivals: 0, capacity: capacity.max(1) }
    }

    /// The local shard prepared this attempt of this envelope: its concerned shards are now known.
    pub fn expect(
        &mut self,
        tx: TxId,
        attempt: Attempt,
        envelope: [u8; 32],
        concerned: Vec<ShardId>,
    ) -> Option<Vec<PreparedCertificate>> {
        if let Some(certificates) = self.certified.get(&(tx, attempt)) {
            return Some(certificates.clone());
        }
        self.entry(tx, attempt).concerned = Some((concerned, envelope));
        self.complete(tx, attempt)
    }

    /// Forgets an attempt's gathering (it was decided).
    pub fn forget(&mut self, tx: TxId, attempt: Attempt) {
        self.gathering.remove(&(tx, attempt));
        self.decided.insert((tx, attempt));
    }

    /// Adds a vote from any shard (checking its seal against that shard's committee);
    /// returns the certificates of a decision when this vote completes them.
    pub fn add(&mut self, vote: SignedVote) -> Result<Option<Vec<PreparedCertificate>>, ProtocolError> {
        let committee = self.committees.get(vote.shard.0 as usize).ok_or(ProtocolError::Malformed {
            what: "vote",
            reason: format!("from {}, which is not a shard of this cluster", vote.shard),
        })?;
        let key = (vote.tx, vote.attempt);
        if self.decided.contains(&key) || self.certified.contains(&key) {
            return Ok(None);
        }
        vote.verify(committee)?;
        let (tx, attempt) = (vote.tx, vote.attempt);
        let gathering = self.entry(tx, attempt);
        gathering.votes.entry(vote.shard).or_default().entry(vote.replica).or_insert(vote);
        Ok(self.complete(tx, attempt))
    }

    fn entry(&mut self, tx: TxId, attempt: Attempt) -> &mut Gathering {
        if !self.gathering.contains_key(&(tx, attempt)) {
            // Room is made by dropping the oldest gathering this replica does not expect
            // (votes for attempts it never prepared, which anyone can sign up for); the
            // ones it prepared go only when nothing else is left.
            let unexpected = self.gathering.iter().filter(|(_, g)| g.concerned.is_none());
            let oldest = unexpected.min_by_key(|(_, g)| g.arrival).map(|(key, _)| *key);
            match oldest {
                Some(key) if self.gathering.len() >= self.capacity => {
                    self.gathering.remove(&key);
                }
                _ => evict_oldest(&mut self.gathering, self.capacity, |gathering| gathering.arrival),
            }
            self.arrivals += 1;
        }
        let arrival = self.arrivals;
        self.gathering.entry((tx, attempt)).or_insert_with(|| Gathering { arrival, ..Gathering::default() })
    }

    /// The certificates of a decision, once the votes gathered make them (`certificates`).
    fn complete(&mut self, tx: TxId, attempt: Attempt) -> Option<Vec<PreparedCertificate>> {
        let certificates = self.certificates(tx, attempt)?;
        self.gathering.remove(&(tx, attempt));
        self.certified.insert_with((tx, attempt), certificates.clone());
        Some(certificates)
    }

    /// One abort certificate decides, and so does a certificate on another envelope of the
    /// attempt (votes on two stores can never make a commit); otherwise an accept
    /// certificate on this envelope from every concerned shard.
    fn certificates(&self, tx: TxId, attempt: Attempt) -> Option<Vec<PreparedCertificate>> {
        let gathering = self.gathering.get(&(tx, attempt))?;
        let (concerned, envelope) = gathering.concerned.as_ref()?;
        let envelope = *envelope;
        let mut certificates = Vec::new();
        for shard in concerned {
            let quorum = self.committees.get(shard.0 as usize)?.quorum();
            let votes = gathering.votes.get(shard);
            if let Some(other) = votes.and_then(|votes| other_envelope(*shard, votes, envelope, quorum)) {
                return Some(vec![other]);
            }
            let certificate = |accept: bool| -> Option<PreparedCertificate> {
                let seals: Seals = votes?
                    .values()
                    .filter(|vote| vote.vote.is_accept() == accept && vote.envelope == envelope)
                    .map(|vote| (vote.replica, vote.seal.clone()))
                    .take(quorum)
                    .collect();
                (seals.len() == quorum).then_some(PreparedCertificate {
                    shard: *shard,
                    tx,
                    attempt,
                    envelope,
                    accept,
                    seals,
                })
            };
            if let Some(abort) = certificate(false) {
                return Some(vec![abort]);
            }
            certificates.push(certificate(true));
        }
        certificates.into_iter().collect()
    }
}

/// A certificate of `shard` on an envelope of the attempt other than `envelope`, if its votes make one.
fn other_envelope(
    shard: ShardId,
    votes: &BTreeMap<ReplicaId, SignedVote>,
    envelope: [u8; 32],
    quorum: usize,
) -> Option<PreparedCertificate> {
    let mut groups: BTreeMap<([u8; 32], bool), Seals> = BTreeMap::new();
    for vote in votes.values().filter(|vote| vote.envelope != envelope) {
        groups.entry((vote.envelope, vote.vote.is_accept())).or_default().push((vote.replica, vote.seal.clone()));
    }
    let ((other, accept), seals) = groups.into_iter().find(|(_, seals)| seals.len() >= quorum)?;
    let first = votes.values().next()?;
    let seals = seals.into_iter().take(quorum).collect();
    Some(PreparedCertificate { shard, tx: first.tx, attempt: first.attempt, envelope: other, accept, seals })
}

/// Drops the oldest entry when `map` is full.
fn evict_oldest<K: Ord + Clone, V>(map: &mut BTreeMap<K, V>, capacity: usize, arrival: impl Fn(&V) -> u64) {
    if map.len() < capacity {
        return;
    }
    if let Some(oldest) = map.iter().min_by_key(|(_, value)| arrival(value)).map(|(key, _)| key.clone()) {
        map.remove(&oldest);
    }
}
