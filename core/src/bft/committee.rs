//! A shard's committee: its replicas' public keys, quorum sizes, and
//! domain-separated signing (who leads a round is `leaders.rs`).

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

use super::error::ProtocolError;
use super::seal::Attestation;
use super::types::{Digest, ReplicaId};
use crate::ids::ShardId;

/// The replicas of one shard and what they sign for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committee {
    /// Digest of the cluster's name: a signature for one cluster is void in another.
    cluster: Digest,
    shard: ShardId,
    /// Public keys, indexed by `ReplicaId`.
    keys: Vec<VerifyingKey>,
}

impl Committee {
    pub fn new(cluster: &str, shard: ShardId, keys: Vec<VerifyingKey>) -> Self {
        assert!(!keys.is_empty(), "a committee has at least one replica");
        Self { cluster: Digest::of(cluster.as_bytes()), shard, keys }
    }

    pub fn shard(&self) -> ShardId {
        self.shard
    }

    pub fn size(&self) -> usize {
        self.keys.len()
    }

    /// f: how many replicas may be faulty, with n >= 3f + 1.
    pub fn faults_max(&self) -> usize {
        (self.size() - 1) / 3
    }

    /// Signatures that make a certificate: any two such sets share f + 1 replicas.
    pub fn quorum(&self) -> usize {
        (self.size() + self.faults_max()) / 2 + 1
    }

    /// f + 1: at least one of them is honest.
    pub fn validity(&self) -> usize {
        self.faults_max() + 1
    }

    pub fn replicas(&self) -> impl Iterator<Item = ReplicaId> + '_ {
        (0..self.keys.len())
            .map(|index| ReplicaId(u32::try_from(index).expect("a committee has fewer than 2^32 replicas")))
    }

    /// A replica's public key (the links between processes are keyed by it as well).
    pub fn key(&self, replica: ReplicaId) -> Option<&VerifyingKey> {
        self.keys.get(replica.0 as usize)
    }

    pub fn contains(&self, replica: ReplicaId) -> bool {
        (replica.0 as usize) < self.keys.len()
    }

    /// The bytes a replica signs: a tag, the cluster and shard, then the fields.
    pub fn signing_bytes(&self, tag: &str, fields: &[&[u8]]) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(96);
        bytes.extend_from_slice(b"shardspace/");
        bytes.extend_from_slice(tag.as_bytes());
        bytes.push(0);
        bytes.extend_from_slice(&self.cluster.0);
        bytes.extend_from_slice(&self.shard.0.to_be_bytes());
        for field in fields {
            bytes.extend_from_slice(&u32::try_from(field.len()).unwrap_or(u32::MAX).to_be_bytes());
            bytes.extend_from_slice(field);
        }
        bytes
    }

    /// Checks that `signer` belongs here and signed `message`. A signature found valid
    /// once is not checked again (`VERIFIED`): a replica meets each verdict and vote first
    /// alone, then inside the request or certificate that carries it.
    pub fn verify(&self, signer: ReplicaId, message: &[u8], signature: &Signature) -> Result<(), ProtocolError> {
        let key = self.keys.get(signer.0 as usize).ok_or(ProtocolError::UnknownReplica { replica: signer })?;
        let identity = signature_identity(key, message, signature);
        if VERIFIED.contains(&identity) {
            return Ok(());
        }
        key.verify(message, signature).map_err(|_| ProtocolError::BadSignature { replica: signer })?;
        VERIFIED.insert(identity);
        Ok(())
    }

    /// Checks a certificate's signatures: a quorum of them, distinct signers, each valid.
    pub fn verify_quorum<A: Attestation>(
        &self,
        message: &[u8],
        signatures: &[(ReplicaId, A)],
    ) -> Result<(), ProtocolError> {
        self.verify_signers(message, signatures, self.quorum())
    }

    /// Checks signatures (or seals) over one message: at least `needed`, distinct members, each valid.
    pub fn verify_signers<A: Attestation>(
        &self,
        message: &[u8],
        signatures: &[(ReplicaId, A)],
        needed: usize,
    ) -> Result<(), ProtocolError> {
        if signatures.len() < needed {
            return Err(ProtocolError::TooFewSignatures { count: signatures.len(), quorum: needed });
        }
        let mut seen = vec![false; self.size()];
        for (signer, signature) in signatures {
            let slot = seen.get_mut(signer.0 as usize).ok_or(ProtocolError::UnknownReplica { replica: *signer })?;
            if std::mem::replace(slot, true) {
                return Err(ProtocolError::DuplicateSigner { replica: *signer });
            }
            signature.check(self, *signer, message)?;
        }
        Ok(())
    }
}

/// What names one (key, message, signature): SHA-256 over all three, so that a hit
/// means exactly this signature on exactly this message by exactly this key.
fn signature_identity(key: &VerifyingKey, message: &[u8], signature: &Signature) -> [u8; 32] {
    use sha2::{Digest as _, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(key.as_bytes());
    hasher.update(signature.to_bytes());
    hasher.update(message);
    hasher.finalize().into()
}

/// Signatures found valid in this process, by identity. Verifying is a pure function of
/// the identity, so sharing the set (between the simulator's replicas too) changes no
/// outcome. Bounded: two generations of `VERIFIED_GENERATION` each, the older dropped whole.
static VERIFIED: VerifiedSignatures = VerifiedSignatures::new();
const VERIFIED_GENERATION: usize = 1 << 16;

#[derive(Debug)]
struct VerifiedSignatures(std::sync::Mutex<[std::collections::BTreeSet<[u8; 32]>; 2]>);

impl VerifiedSignatures {
    const fn new() -> Self {
        Self(std::sync::Mutex::new([std::collections::BTreeSet::new(), std::collections::BTreeSet::new()]))
    }

    fn generations(&self) -> std::sync::MutexGuard<'_, [std::collections::BTreeSet<[u8; 32]>; 2]> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn contains(&self, identity: &[u8; 32]) -> bool {
        self.generations().iter().any(|generation| generation.contains(identity))
    }

    fn insert(&self, identity: [u8; 32]) {
        let mut generations = self.generations();
        if generations[0].len() >= VERIFIED_GENERATION {
            generations[1] = std::mem::take(&mut generations[0]);
        }
        generations[0].insert(identity);
    }
}

/// A replica's own identity and secret key.
#[derive(Clone, Debug)]
pub struct KeyPair {
    pub id: ReplicaId,
    key: SigningKey,
}

impl KeyPair {
    pub fn new(id: ReplicaId, key: SigningKey) -> Self {
        Self { id, key }
    }

    /// A key from a 32-byte seed (tests, the simulator, and key files).
    pub fn from_seed(id: ReplicaId, seed: [u8; 32]) -> Self {
        Self { id, key: SigningKey::from_bytes(&seed) }
    }

    pub fn public(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// The secret key, for the links this replica makes and accepts (`node/src/secure.rs`).
    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    /// Signs `message`, and counts the signature as verified in this process: a replica
    /// checks its own verdicts, votes and proposals again when they come back inside
    /// certificates, and a signature made with a key is valid under it (issue 6: ed25519
    /// was the largest cost of a replica). Under the key actually held, so a key file that
    /// does not match the committee's listed key still fails its checks.
    pub fn sign(&self, message: &[u8]) -> Signature {
        let signature = self.key.sign(message);
        VERIFIED.insert(signature_identity(&self.key.verifying_key(), message, &signature));
        signature
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn committee(size: u32) -> (Committee, Vec<KeyPair>) {
        let pairs: Vec<KeyPair> = (0..size).map(|i| KeyPair::from_seed(ReplicaId(i), [i as u8 + 1; 32])).collect();
        (Committee::new("test", ShardId(0), pairs.iter().map(KeyPair::public).collect()), pairs)
    }

    #[test]
    fn quorums_of_any_two_sets_share_an_honest_replica() {
        for size in 1..40 {
            let (committee, _) = committee(size);
            let (n, f, q) = (committee.size(), committee.faults_max(), committee.quorum());
            assert!(2 * q > n + f, "n={n}: two quorums share fewer than f+1");
            assert!(q <= n - f, "n={n}: a quorum needs a faulty replica");
        }
        let (four, _) = committee(4);
        assert_eq!((four.faults_max(), four.quorum(), four.validity()), (1, 3, 2));
    }

    #[test]
    fn a_certificate_needs_a_quorum_of_distinct_valid_signers() {
        let (committee, pairs) = committee(4);
        let message = committee.signing_bytes("vote", &[b"x"]);
        let signed = |i: usize| (pairs[i].id, pairs[i].sign(&message));
        assert!(committee.verify_quorum(&message, &[signed(0), signed(1), signed(2)]).is_ok());
        let too_few = committee.verify_quorum(&message, &[signed(0), signed(1)]);
        assert!(matches!(too_few, Err(ProtocolError::TooFewSignatures { .. })));
        let repeated = committee.verify_quorum(&message, &[signed(0), signed(1), signed(1)]);
        assert!(matches!(repeated, Err(ProtocolError::DuplicateSigner { .. })));
        let forged = (ReplicaId(3), pairs[0].sign(&message));
        assert!(matches!(
            committee.verify_quorum(&message, &[signed(0), signed(1), forged]),
            Err(ProtocolError::BadSignature { .. })
        ));
        let stranger = (ReplicaId(9), pairs[0].sign(&message));
        assert!(matches!(
            committee.verify_quorum(&message, &[signed(0), signed(1), stranger]),
            Err(ProtocolError::UnknownReplica { .. })
        ));
    }

    #[test]
    fn a_signature_for_another_shard_or_cluster_is_void() {
        let (committee, pairs) = committee(4);
        let other_shard = Committee::new("test", ShardId(1), pairs.iter().map(KeyPair::public).collect());
        let other_cluster = Committee::new("prod", ShardId(0), pairs.iter().map(KeyPair::public).collect());
        let signature = pairs[0].sign(&other_shard.signing_bytes("vote", &[b"x"]));
        let here = committee.signing_bytes("vote", &[b"x"]);
        assert!(committee.verify(ReplicaId(0), &here, &signature).is_err());
        let signature = pairs[0].sign(&other_cluster.signing_bytes("vote", &[b"x"]));
        assert!(committee.verify(ReplicaId(0), &here, &signature).is_err());
    }

    #[test]
    fn a_key_that_is_not_the_listed_one_fails_even_after_signing_here() {
        let (committee, _) = committee(4);
        let impostor = KeyPair::from_seed(ReplicaId(2), [99; 32]);
        let message = committee.signing_bytes("verdict", &[b"y"]);
        let signature = impostor.sign(&message);
        let error = committee.verify(ReplicaId(2), &message, &signature);
        assert!(matches!(error, Err(ProtocolError::BadSignature { .. })), "{error:?}");
    }
}
