//! One signature for many messages: a replica signs the root of a Merkle tree whose
//! leaves are the signing bytes of everything it says in one step (verdicts, S-BAC
//! votes, answers to readers), and each message carries the path from its leaf to
//! that root (`Seal`). A receiver checks the root's signature once (`Committee::verify`
//! remembers it) and a few hashes per message, where it checked one signature per
//! message before (issue 16: signatures were a third of the cluster's CPU).
//!
//! A leaf is the exact bytes a lone signature would cover (tag, cluster, shard, then
//! the fields), so a seal proves what that signature proved and no more: a path for
//! another message, another attempt or another batch leads to another root, and the
//! root is signed under its own tag. Leaves and inner nodes hash with distinct
//! prefixes, so no inner node can pass for a leaf.

use ed25519_dalek::Signature;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::committee::{Committee, KeyPair};
use super::error::ProtocolError;
use super::types::ReplicaId;

/// Leaves under one root: a path is at most `SEAL_PATH_MAX` hashes long.
pub const SEAL_LEAVES_MAX: usize = 1 << 12;
/// The longest path a seal may carry; a longer one is malformed.
pub const SEAL_PATH_MAX: usize = 12;

/// A leaf's sides and path to its root (`Seal::sides`, `Seal::path`).
type Path = (u32, Vec<[u8; 32]>);

const LEAF: u8 = 0;
const NODE: u8 = 1;

/// A replica's signature over the root of a batch, and the path from one message to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seal {
    pub root_signature: Signature,
    /// Bit k set: at step k of `path` the node so far is the right child.
    pub sides: u32,
    /// Sibling hashes, from the leaf up.
    pub path: Vec<[u8; 32]>,
}

impl Seal {
    /// Seals each of `messages` under one signature (one per `SEAL_LEAVES_MAX`).
    pub fn sign_all(committee: &Committee, keys: &KeyPair, messages: &[Vec<u8>]) -> Vec<Seal> {
        let mut seals = Vec::with_capacity(messages.len());
        for chunk in messages.chunks(SEAL_LEAVES_MAX) {
            let leaves: Vec<[u8; 32]> = chunk.iter().map(|message| leaf(message)).collect();
            let (root, paths) = tree(&leaves);
            let root_signature = keys.sign(&root_bytes(committee, &root));
            seals.extend(paths.into_iter().map(|(sides, path)| Seal { root_signature, sides, path }));
        }
        seals
    }

    /// A batch of one (tests, the simulator's Byzantine replicas, and lone messages).
    pub fn sign_one(committee: &Committee, keys: &KeyPair, message: &[u8]) -> Seal {
        let mut seals = Self::sign_all(committee, keys, &[message.to_vec()]);
        seals.pop().expect("one message gives one seal")
    }

    /// The root this seal's path leads to from `message`.
    fn root_of(&self, message: &[u8]) -> Result<[u8; 32], ProtocolError> {
        if self.path.len() > SEAL_PATH_MAX {
            return Err(ProtocolError::TooLarge { what: "seal path", count: self.path.len(), max: SEAL_PATH_MAX });
        }
        let mut hash = leaf(message);
        for (step, sibling) in self.path.iter().enumerate() {
            hash = if self.sides >> step & 1 == 1 { node(sibling, &hash) } else { node(&hash, sibling) };
        }
        Ok(hash)
    }
}

/// What a replica's word on a message is: a lone signature (BFT messages) or a seal.
pub trait Attestation {
    fn check(&self, committee: &Committee, signer: ReplicaId, message: &[u8]) -> Result<(), ProtocolError>;
}

impl Attestation for Signature {
    fn check(&self, committee: &Committee, signer: ReplicaId, message: &[u8]) -> Result<(), ProtocolError> {
        committee.verify(signer, message, self)
    }
}

impl Attestation for Seal {
    /// `signer` sealed `message`: the path leads to a root it signed.
    fn check(&self, committee: &Committee, signer: ReplicaId, message: &[u8]) -> Result<(), ProtocolError> {
        let root = self.root_of(message)?;
        committee.verify(signer, &root_bytes(committee, &root), &self.root_signature)
    }
}

/// What the root's signature covers: its own tag, so that it is no message's lone signature.
fn root_bytes(committee: &Committee, root: &[u8; 32]) -> Vec<u8> {
    committee.signing_bytes("seal-root", &[root])
}

fn leaf(message: &[u8]) -> [u8; 32] {
    Sha256::new().chain_update([LEAF]).chain_update(message).finalize().into()
}

fn node(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    Sha256::new().chain_update([NODE]).chain_update(left).chain_update(right).finalize().into()
}

/// The root over `leaves` (at least one), and each leaf's (sides, path). Pairs are hashed
/// level by level; a node left without a sibling goes up as it is.
fn tree(leaves: &[[u8; 32]]) -> ([u8; 32], Vec<Path>) {
    let mut paths: Vec<Path> = vec![(0, Vec::new()); leaves.len()];
    // Each node of the level, with the leaves under it.
    let mut level: Vec<([u8; 32], std::ops::Range<usize>)> =
        leaves.iter().enumerate().map(|(index, hash)| (*hash, index..index + 1)).collect();
    while level.len() > 1 {
        let mut next = Vec::with_capacity(level.len().div_ceil(2));
        for pair in level.chunks(2) {
            let [(left, left_leaves), (right, right_leaves)] = pair else {
                next.push(pair[0].clone());
                continue;
            };
            for index in left_leaves.clone() {
                paths[index].1.push(*right);
            }
            for index in right_leaves.clone() {
                let (sides, path) = &mut paths[index];
                *sides |= 1 << path.len();
                path.push(*left);
            }
            next.push((node(left, right), left_leaves.start..right_leaves.end));
        }
        level = next;
    }
    (level[0].0, paths)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ShardId;

    fn committee() -> (Committee, Vec<KeyPair>) {
        let keys: Vec<KeyPair> = (0..4).map(|i| KeyPair::from_seed(ReplicaId(i), [i as u8 + 7; 32])).collect();
        (Committee::new("seal-test", ShardId(0), keys.iter().map(KeyPair::public).collect()), keys)
    }

    fn batch(committee: &Committee, count: usize) -> Vec<Vec<u8>> {
        (0..count).map(|i| committee.signing_bytes("test", &[&i.to_be_bytes()])).collect()
    }

    #[test]
    fn every_message_of_a_batch_of_any_size_checks_under_one_signature() {
        let (committee, keys) = committee();
        for count in [1, 2, 3, 5, 8, 13, 64, 100] {
            let messages = batch(&committee, count);
            let seals = Seal::sign_all(&committee, &keys[1], &messages);
            assert_eq!(seals.len(), count);
            assert!(seals.iter().all(|seal| seal.root_signature == seals[0].root_signature), "one root per batch");
            assert!(seals.iter().all(|seal| seal.path.len() <= count.next_power_of_two().trailing_zeros() as usize));
            for (message, seal) in messages.iter().zip(&seals) {
                assert_eq!(seal.check(&committee, ReplicaId(1), message), Ok(()), "batch of {count}");
            }
        }
    }

    #[test]
    fn a_batch_over_seal_leaves_max_takes_a_root_per_chunk_and_paths_stay_within_the_limit() {
        let (committee, keys) = committee();
        let messages = batch(&committee, SEAL_LEAVES_MAX + 1);
        let seals = Seal::sign_all(&committee, &keys[0], &messages);
        assert_eq!(seals.len(), messages.len());
        assert_ne!(seals[0].root_signature, seals[SEAL_LEAVES_MAX].root_signature, "two roots");
        assert!(seals.iter().all(|seal| seal.path.len() <= SEAL_PATH_MAX));
        for index in [0, SEAL_LEAVES_MAX - 1, SEAL_LEAVES_MAX] {
            assert_eq!(seals[index].check(&committee, ReplicaId(0), &messages[index]), Ok(()));
        }
    }

    #[test]
    fn a_seal_proves_its_own_message_only_and_only_for_its_signer() {
        let (committee, keys) = committee();
        let messages = batch(&committee, 6);
        let seals = Seal::sign_all(&committee, &keys[2], &messages);
        // A path for another message of the batch.
        assert!(seals[0].check(&committee, ReplicaId(2), &messages[1]).is_err());
        // A message of another batch under this root.
        let other = batch(&committee, 7);
        assert!(seals[3].check(&committee, ReplicaId(2), &other[6]).is_err());
        // Another replica's name on it.
        assert!(seals[0].check(&committee, ReplicaId(3), &messages[0]).is_err());
        // Sides flipped, a hash of the path changed, a path too long.
        let flipped = Seal { sides: seals[4].sides ^ 1, ..seals[4].clone() };
        assert!(flipped.check(&committee, ReplicaId(2), &messages[4]).is_err());
        let mut changed = seals[4].clone();
        changed.path[1][0] ^= 1;
        assert!(changed.check(&committee, ReplicaId(2), &messages[4]).is_err());
        let long = Seal { path: vec![[0; 32]; SEAL_PATH_MAX + 1], ..seals[4].clone() };
        assert!(matches!(long.check(&committee, ReplicaId(2), &messages[4]), Err(ProtocolError::TooLarge { .. })));
    }

    #[test]
    fn a_root_signed_as_a_lone_message_or_for_another_shard_seals_nothing() {
        let (committee, keys) = committee();
        let message = committee.signing_bytes("test", &[b"m"]);
        // The leaf's hash is the root of a batch of one; signed under a message's tag, it is void.
        let wrong_tag = Seal {
            root_signature: keys[0].sign(&committee.signing_bytes("test", &[&leaf(&message)])),
            sides: 0,
            path: vec![],
        };
        assert!(wrong_tag.check(&committee, ReplicaId(0), &message).is_err());
        let other_shard = Committee::new("seal-test", ShardId(1), (0..4).map(|i| keys[i].public()).collect());
        let sealed_there = Seal::sign_one(&other_shard, &keys[0], &message);
        assert!(sealed_there.check(&committee, ReplicaId(0), &message).is_err());
        assert_eq!(Seal::sign_one(&committee, &keys[0], &message).check(&committee, ReplicaId(0), &message), Ok(()));
    }

    #[test]
    fn an_inner_node_cannot_pass_for_a_message() {
        let (committee, keys) = committee();
        let messages = batch(&committee, 4);
        let seals = Seal::sign_all(&committee, &keys[0], &messages);
        // The two children of the root's left half, presented as a "message" one level up.
        let mut inner = Vec::new();
        inner.extend_from_slice(&leaf(&messages[0]));
        inner.extend_from_slice(&leaf(&messages[1]));
        let shortened = Seal { sides: 0, path: seals[0].path[1..].to_vec(), ..seals[0].clone() };
        assert!(shortened.check(&committee, ReplicaId(0), &inner).is_err());
    }
}
