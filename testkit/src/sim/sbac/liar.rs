//! The Byzantine replica of a shard: it runs the real `ShardReplica` (so that it
//! keeps up with its shard) and twists what that replica would say: it
//! equivocates verdicts, signs the opposite vote and a vote in another shard's
//! name, lies to clients, withholds messages, and slips in requests and frames of
//! its own: decisions and verdict certificates replayed into other attempts and
//! other transactions, old votes replayed as they are or into other attempts,
//! seals that do not fit (a vote under the seal of another of its votes, a root
//! signed under a lone message's tag or for another shard), and garbage. Every
//! honest replica must refuse all of it and change nothing.

use std::collections::BTreeMap;

use rand::RngExt;
use rand::rngs::StdRng;
use shardspace_core::bft::{Committee, KeyPair, PeerMessage, ReplicaId, Request, Seal};
use shardspace_core::sbac::replica::{ClientId, ClientReply, ClientRequest, Frame, Input, Output, PeerId};
use shardspace_core::sbac::{
    AbortReason, AnswerBody, Attempt, CheckerAnswer, PreparedCertificate, ShardRequest, SignedAnswer, SignedVote,
    Verdict, VerdictCertificate, VoteBody, VoteKind,
};
use shardspace_core::{ShardId, TxId};

use super::REPLICAS;

/// Messages of each kind kept to replay.
const KEPT_MAX: usize = 64;

#[derive(Debug, Default)]
pub struct Liar {
    prepares: Vec<(String, Attempt, VerdictCertificate)>,
    decides: Vec<(TxId, Attempt, Vec<PreparedCertificate>)>,
    votes: Vec<SignedVote>,
    /// Its own replica's sealed votes, whose seals it moves onto other votes.
    own_votes: Vec<SignedVote>,
    /// How often it did each thing.
    pub behaviours: BTreeMap<&'static str, u64>,
}

fn keep<T>(kept: &mut Vec<T>, item: T) {
    if kept.len() < KEPT_MAX {
        kept.push(item);
    }
}

fn raw(request: &ShardRequest) -> Input {
    let payload = postcard::to_stdvec(request).expect("encoding into memory cannot fail");
    Input::Client { client: ClientId(0), request: ClientRequest::Submit(vec![Request::new(payload)]) }
}

impl Liar {
    pub fn new(_seed: u64) -> Self {
        Self::default()
    }

    fn did(&mut self, behaviour: &'static str) {
        *self.behaviours.entry(behaviour).or_default() += 1;
    }

    /// Keeps what it hears that it may replay.
    pub fn hear(&mut self, input: &Input) {
        let Input::Frame { frame, .. } = input else { return };
        for vote in frame.votes() {
            keep(&mut self.votes, vote.clone());
        }
        let Frame::Bft(PeerMessage::Requests(requests)) = frame else { return };
        for request in requests {
            match postcard::from_bytes::<ShardRequest>(request.payload()) {
                Ok(ShardRequest::Prepare { envelope, attempt, verdict }) => {
                    keep(&mut self.prepares, (envelope, attempt, verdict));
                }
                Ok(ShardRequest::Decide { tx, attempt, certificates }) => {
                    keep(&mut self.decides, (tx, attempt, certificates));
                }
                Err(_) => {}
            }
        }
    }

    /// What it says instead of what its replica would.
    pub fn twist(
        &mut self,
        outputs: Vec<Output>,
        committees: &[Committee],
        keys: &KeyPair,
        rng: &mut StdRng,
    ) -> Vec<Output> {
        let mut twisted = Vec::with_capacity(outputs.len());
        for output in outputs {
            let withhold = matches!(output, Output::Send { .. } | Output::Multicast { .. }) && rng.random_bool(0.05);
            if withhold {
                self.did("withhold");
                continue;
            }
            match output {
                Output::Multicast { shards, frame: Frame::Verdict(verdict) } => {
                    self.did("equivocate verdicts");
                    let committee = &committees[shards[0].0 as usize];
                    for replica in (0..REPLICAS).map(ReplicaId).filter(|r| *r != keys.id) {
                        let answer = match rng.random_range(0..3) {
                            0 => CheckerAnswer::Invalid,
                            1 => CheckerAnswer::Valid,
                            _ => CheckerAnswer::Unavailable(Attempt(rng.random_range(1..4))),
                        };
                        let lie = Verdict::sign(committee, keys, verdict.tx, verdict.envelope, answer);
                        twisted.push(Output::Send {
                            to: PeerId { shard: shards[0], replica },
                            frame: Frame::Verdict(lie),
                        });
                    }
                }
                Output::Multicast { shards, frame } if !frame.votes().is_empty() => {
                    let (mut lies, mut forged) = (Vec::new(), Vec::new());
                    for vote in frame.votes() {
                        keep(&mut self.own_votes, vote.clone());
                        self.did("opposite vote");
                        let opposite = if vote.vote.is_accept() {
                            VoteKind::Abort(AbortReason::Malformed)
                        } else {
                            VoteKind::Accept
                        };
                        lies.push(sign_vote(vote, vote.shard, opposite, committees, keys));
                        if committees.len() > 1 {
                            self.did("vote in another shard's name");
                            let other = ShardId((vote.shard.0 + 1) % committees.len() as u32);
                            forged.push(sign_vote(vote, other, VoteKind::Accept, committees, keys));
                        }
                    }
                    // Its lies go out as its replica's votes did: together or alone.
                    let frame_of = |votes: Vec<SignedVote>| match <[SignedVote; 1]>::try_from(votes) {
                        Ok([vote]) => Frame::Vote(vote),
                        Err(votes) => Frame::Votes(votes),
                    };
                    twisted.push(Output::Multicast { shards: shards.clone(), frame: frame_of(lies) });
                    if !forged.is_empty() {
                        twisted.push(Output::Multicast { shards, frame: frame_of(forged) });
                    }
                }
                Output::Reply { client, reply: ClientReply::Answer(answer) } => {
                    let reply = ClientReply::Answer(self.lie_in(answer, committees, keys));
                    twisted.push(Output::Reply { client, reply });
                }
                other => twisted.push(other),
            }
        }
        twisted
    }

    /// The opposite decision, signed: a client must not believe it alone.
    fn lie_in(&mut self, answer: SignedAnswer, committees: &[Committee], keys: &KeyPair) -> SignedAnswer {
        let AnswerBody::Transaction { tx, record: Some(mut view) } = answer.body.clone() else { return answer };
        let Some(decision) = view.decision else { return answer };
        self.did("lying answer");
        view.decision = Some(!decision);
        view.committed = if decision { None } else { Some(view.attempt) };
        SignedAnswer::sign(
            &committees[answer.shard.0 as usize],
            keys,
            AnswerBody::Transaction { tx, record: Some(view) },
        )
    }

    /// Now and then, something of its own: frames to send (to every replica of a shard)
    /// and requests for its own replica to order.
    pub fn forge(
        &mut self,
        committees: &[Committee],
        keys: &KeyPair,
        rng: &mut StdRng,
    ) -> (Vec<(ShardId, Frame)>, Vec<Input>) {
        let (mut frames, mut inputs) = (Vec::new(), Vec::new());
        if !rng.random_bool(0.05) {
            return (frames, inputs);
        }
        match rng.random_range(0..8) {
            0 if !self.decides.is_empty() => {
                let (tx, attempt, certificates) = self.decides[rng.random_range(0..self.decides.len())].clone();
                let other = Attempt(if rng.random_bool(0.5) { attempt.0 + 1 } else { attempt.0.saturating_sub(1) });
                self.did("decide replayed into another attempt");
                inputs.push(raw(&ShardRequest::Decide { tx, attempt: other, certificates }));
            }
            1 if self.decides.len() > 1 => {
                let (_, attempt, certificates) = self.decides[0].clone();
                let (other, ..) = self.decides[rng.random_range(1..self.decides.len())].clone();
                self.did("decide replayed into another transaction");
                inputs.push(raw(&ShardRequest::Decide { tx: other, attempt, certificates }));
            }
            2 if !self.prepares.is_empty() => {
                let (envelope, attempt, verdict) = self.prepares[rng.random_range(0..self.prepares.len())].clone();
                let ahead = if rng.random_bool(0.5) { 1 } else { 2_000 };
                self.did("verdict certificate replayed into another attempt");
                inputs.push(raw(&ShardRequest::Prepare { envelope, attempt: Attempt(attempt.0 + ahead), verdict }));
            }
            3 if !self.votes.is_empty() => {
                let vote = self.votes[rng.random_range(0..self.votes.len())].clone();
                self.did("old vote replayed");
                frames.push((vote.shard, Frame::Vote(vote.clone())));
                let moved = SignedVote { attempt: Attempt(vote.attempt.0 + 1), ..vote.clone() };
                self.did("vote replayed into another attempt");
                frames.push((vote.shard, Frame::Vote(moved)));
            }
            4 if !self.votes.is_empty() => {
                let vote = self.votes[rng.random_range(0..self.votes.len())].clone();
                let other = self.votes[rng.random_range(0..self.votes.len())].tx;
                self.did("vote replayed into another transaction");
                frames.push((vote.shard, Frame::Vote(SignedVote { tx: other, ..vote })));
            }
            5 if self.own_votes.len() > 1 => {
                // The seal of one of its votes on another of its votes, turned around: the
                // path leads from another leaf, so to another root than the one it signed.
                let vote = self.own_votes[rng.random_range(0..self.own_votes.len())].clone();
                let donor = self.own_votes[rng.random_range(0..self.own_votes.len())].clone();
                let opposite =
                    if vote.vote.is_accept() { VoteKind::Abort(AbortReason::Malformed) } else { VoteKind::Accept };
                let moved = SignedVote { vote: opposite, seal: donor.seal, ..vote.clone() };
                self.did("vote under another vote's seal");
                frames.push((vote.shard, Frame::Vote(moved)));
            }
            6 if !self.own_votes.is_empty() => {
                let vote = self.own_votes[rng.random_range(0..self.own_votes.len())].clone();
                let committee = &committees[vote.shard.0 as usize];
                let opposite =
                    if vote.vote.is_accept() { VoteKind::Abort(AbortReason::Malformed) } else { VoteKind::Accept };
                let body = VoteBody {
                    shard: vote.shard,
                    tx: vote.tx,
                    attempt: vote.attempt,
                    envelope: vote.envelope,
                    vote: opposite,
                };
                let bytes = body.signing_bytes(committee);
                let seal = if rng.random_bool(0.5) {
                    // The message itself signed, as a root: a lone signature is no seal.
                    self.did("root signed under a message's tag");
                    Seal { root_signature: keys.sign(&bytes), sides: 0, path: Vec::new() }
                } else {
                    // A root signed in another shard's name.
                    self.did("root sealed for another shard");
                    let other = ShardId((vote.shard.0 + 1) % committees.len() as u32);
                    Seal::sign_one(&committees[other.0 as usize], keys, &bytes)
                };
                frames.push((vote.shard, Frame::Vote(body.sealed(keys.id, seal))));
            }
            _ => {
                self.did("garbage");
                let garbage = Frame::Envelope { envelope: "{\"transaction\": 7".into(), attempt: Attempt(1) };
                frames.push((ShardId(0), garbage));
            }
        }
        (frames, inputs)
    }
}

fn sign_vote(
    vote: &SignedVote,
    shard: ShardId,
    kind: VoteKind,
    committees: &[Committee],
    keys: &KeyPair,
) -> SignedVote {
    let body = VoteBody { shard, tx: vote.tx, attempt: vote.attempt, envelope: vote.envelope, vote: kind };
    body.sign(&committees[shard.0 as usize], keys)
}
