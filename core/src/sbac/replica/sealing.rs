//! One signature per call: what a replica says while it handles one input (its
//! verdicts, its S-BAC votes, its answers to clients) waits in `unsealed` until the
//! call's work is done, then all of it is sealed under one root (`Seal::sign_all`) and
//! goes out. Under load a call executes a block of many transactions, so a replica
//! signs once where it signed once per message, and its peers check one root's
//! signature where they checked each (issue 16). Votes for the same shards go out in one
//! frame (`Frame::Votes`). Going out at the end of the call only moves messages later:
//! they still follow the writes that record them.

use super::{ClientId, ClientReply, Frame, Output, ShardReplica};
use crate::bft::Seal;
use crate::ids::{ShardId, TxId};
use crate::sbac::{AnswerBody, CheckerAnswer, SignedAnswer, SignedVote, Verdict, VoteBody};

/// Something this replica says in this call, before it is sealed.
#[derive(Clone, Debug)]
pub(super) enum Unsealed {
    /// Its checkers' verdict, for its shard.
    Verdict { tx: TxId, envelope: [u8; 32], answer: CheckerAnswer },
    /// Its vote, for every replica of the concerned shards; gathered with theirs when
    /// `gather` is set and the attempt is still undecided here.
    Vote { body: VoteBody, concerned: Vec<ShardId>, gather: bool },
    /// Its answer, to clients reading a record (`read`) or waiting for an outcome.
    Answer { clients: Vec<ClientId>, body: AnswerBody, read: bool },
}

impl ShardReplica {
    /// Seals everything said so far in this call and acts on it.
    pub(super) fn seal(&mut self) {
        let unsealed = std::mem::take(&mut self.unsealed);
        let app = self.replica.app();
        let committee = app.own_committee();
        let messages: Vec<Vec<u8>> = unsealed
            .iter()
            .map(|said| match said {
                Unsealed::Verdict { tx, envelope, answer } => Verdict::signing_bytes(committee, tx, envelope, *answer),
                Unsealed::Vote { body, .. } => body.signing_bytes(committee),
                Unsealed::Answer { body, .. } => SignedAnswer::signing_bytes(committee, body),
            })
            .collect();
        let seals = Seal::sign_all(committee, app.keys(), &messages);
        self.counters.seals += messages.len().div_ceil(crate::bft::SEAL_LEAVES_MAX) as u64;
        self.counters.sealed += messages.len() as u64;
        // Votes for the same shards go in one frame.
        let mut votes: Vec<(Vec<ShardId>, Vec<SignedVote>)> = Vec::new();
        for (said, seal) in unsealed.into_iter().zip(seals) {
            match said {
                Unsealed::Verdict { tx, envelope, answer } => {
                    let verdict = Verdict { tx, envelope, answer, replica: self.own.replica, seal };
                    self.share_verdict(verdict);
                }
                Unsealed::Vote { body, concerned, gather } => {
                    let (tx, attempt) = (body.tx, body.attempt);
                    let vote = body.sealed(self.own.replica, seal);
                    self.counters.votes_sent += 1;
                    match votes.iter_mut().find(|(shards, _)| *shards == concerned) {
                        Some((_, same)) => same.push(vote.clone()),
                        None => votes.push((concerned.clone(), vec![vote.clone()])),
                    }
                    let decided = self.app().attempt_view(&tx, attempt).is_some_and(|view| view.decision.is_some());
                    if gather && !decided {
                        self.gather(vote, concerned);
                    }
                }
                Unsealed::Answer { clients, body, read } => {
                    let answer = SignedAnswer { shard: self.own.shard, replica: self.own.replica, body, seal };
                    for client in clients {
                        let reply = if read {
                            ClientReply::Record(answer.clone())
                        } else {
                            ClientReply::Answer(answer.clone())
                        };
                        self.outputs.push(Output::Reply { client, reply });
                    }
                }
            }
        }
        for (shards, mut votes) in votes {
            let frame = if votes.len() == 1 { Frame::Vote(votes.remove(0)) } else { Frame::Votes(votes) };
            self.outputs.push(Output::Multicast { shards, frame });
        }
    }
}
