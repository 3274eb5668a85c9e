//! Signed answers of one replica to a reader (the client API): an object's
//! value and status, and what its shard recorded about a transaction. A reader
//! trusts an answer once f+1 replicas of the shard sign the same body: at least
//! one of them is honest. A replica seals the answers of one step together (`Seal`).

use serde::{Deserialize, Serialize};

use super::messages::{Attempt, VoteKind};
use super::shard::{ObjectRecord, ObjectStatus, ShardApp, TxRecord};
use crate::bft::{Attestation, Committee, KeyPair, ProtocolError, ReplicaId, Seal};
use crate::ids::{ObjectId, ShardId, TxId};

/// An object as a reader sees it (shared locks are left out: they come and go).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectView {
    pub value: String,
    pub contract: String,
    pub created_by: TxId,
    pub status: ObjectStatus,
}

/// What a shard recorded about a transaction: its latest attempt here, this shard's
/// vote on it, its decision, and the attempt that committed, if one did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxView {
    pub attempt: Attempt,
    pub vote: VoteKind,
    pub decision: Option<bool>,
    pub committed: Option<Attempt>,
}

/// What an answer is about and what it says; `None` when the replica knows nothing of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AnswerBody {
    Object { id: ObjectId, object: Option<ObjectView> },
    Transaction { tx: TxId, record: Option<TxView> },
}

/// One replica's signed answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedAnswer {
    pub shard: ShardId,
    pub replica: ReplicaId,
    pub body: AnswerBody,
    pub seal: Seal,
}

impl SignedAnswer {
    /// What its seal covers; `committee` is the answering replica's shard's.
    pub fn signing_bytes(committee: &Committee, body: &AnswerBody) -> Vec<u8> {
        let encoded = postcard::to_stdvec(body).expect("encoding into memory cannot fail");
        committee.signing_bytes("sbac-answer", &[&encoded])
    }

    /// An answer sealed alone.
    pub fn sign(committee: &Committee, keys: &KeyPair, body: AnswerBody) -> Self {
        let seal = Seal::sign_one(committee, keys, &Self::signing_bytes(committee, &body));
        Self { shard: committee.shard(), replica: keys.id, body, seal }
    }

    /// `committee` is the committee of the shard the answer claims to be from.
    pub fn verify(&self, committee: &Committee) -> Result<(), ProtocolError> {
        if committee.shard() != self.shard {
            return Err(ProtocolError::Malformed { what: "answer", reason: "checked against another shard".into() });
        }
        self.seal.check(committee, self.replica, &Self::signing_bytes(committee, &self.body))
    }
}

impl ShardApp {
    pub fn object_view(&self, id: &ObjectId) -> Option<ObjectView> {
        self.object(id).map(|object| object.view())
    }

    /// The transaction's latest attempt here (the latest that counts, else any).
    pub fn tx_view(&self, tx: &TxId) -> Option<TxView> {
        self.state().transactions.get(tx)?.view()
    }

    /// One attempt's record here (the committed one's, for an attempt of a committed transaction).
    pub fn attempt_view(&self, tx: &TxId, attempt: Attempt) -> Option<TxView> {
        self.state().transactions.get(tx)?.attempt_view(attempt)
    }
}

impl ObjectRecord {
    pub fn view(&self) -> ObjectView {
        ObjectView {
            value: self.value.clone(),
            contract: self.contract.clone(),
            created_by: self.created_by,
            status: self.status.clone(),
        }
    }
}

impl TxRecord {
    /// The latest attempt (the latest that counts, else any).
    pub fn view(&self) -> Option<TxView> {
        self.attempt_view(self.latest().or_else(|| self.attempts.keys().next_back().copied())?)
    }

    /// One attempt (the committed one, for an attempt of a committed transaction).
    pub fn attempt_view(&self, attempt: Attempt) -> Option<TxView> {
        let answered = if self.attempts.contains_key(&attempt) { attempt } else { self.committed? };
        let attempt_record = self.attempts.get(&answered)?;
        Some(TxView {
            attempt: answered,
            vote: attempt_record.vote,
            decision: attempt_record.decision,
            committed: self.committed,
        })
    }
}

impl ShardApp {
    /// This replica's answer about an object, to be sealed.
    pub fn answer_object(&self, id: ObjectId) -> AnswerBody {
        AnswerBody::Object { id, object: self.object_view(&id) }
    }

    /// This replica's answer about a transaction (its latest attempt here), to be sealed.
    pub fn answer_transaction(&self, tx: TxId) -> AnswerBody {
        AnswerBody::Transaction { tx, record: self.tx_view(&tx) }
    }

    /// This replica's answer about one attempt of a transaction, to be sealed.
    pub fn answer_attempt(&self, tx: TxId, attempt: Attempt) -> AnswerBody {
        AnswerBody::Transaction { tx, record: self.attempt_view(&tx, attempt) }
    }
}
