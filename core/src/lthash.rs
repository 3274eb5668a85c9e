//! `LtHash`: a multiset hash (Bellare and Micciancio's lattice hash, with the parameters of
//! Lewi, Kim, Maykov and Weis, "Securing Update Propagation with Homomorphic Hashing",
//! 2019). The hash of a set of entries is the lane-wise sum of each entry's expansion, so
//! adding or removing one entry costs one expansion, whatever the size of the set: a
//! shard's checkpoint signs the digest of its whole state without a pass over it (issue 6).
//! A plain sum of 256-bit hashes would not do: generalised birthday attacks find
//! collisions of such sums; 1,024 lanes of 16 bits are what the paper analyses.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::bft::Digest;

/// Lanes of 16 bits (2 KiB).
pub const LANES: usize = 1_024;
/// BLAKE3's key derivation context: expansions are for this hash and nothing else.
const EXPANSION_CONTEXT: &str = "shardspace 2026-12 LtHash lane expansion";

/// The multiset hash of the entries added and not removed, in any order.
#[derive(Clone, PartialEq, Eq)]
pub struct LtHash(Box<[u16; LANES]>);

impl Default for LtHash {
    fn default() -> Self {
        Self(Box::new([0; LANES]))
    }
}

impl LtHash {
    /// The hash of these entries.
    pub fn of<'a>(entries: impl IntoIterator<Item = &'a [u8]>) -> Self {
        let mut hash = Self::default();
        entries.into_iter().for_each(|entry| hash.add(entry));
        hash
    }

    pub fn add(&mut self, entry: &[u8]) {
        let expanded = expand(entry);
        for (lane, value) in self.0.iter_mut().zip(expanded.iter()) {
            *lane = lane.wrapping_add(*value);
        }
    }

    /// Removes an entry added before (removing one never added leaves a hash of nothing real).
    pub fn remove(&mut self, entry: &[u8]) {
        let expanded = expand(entry);
        for (lane, value) in self.0.iter_mut().zip(expanded.iter()) {
            *lane = lane.wrapping_sub(*value);
        }
    }

    /// A short digest of the lanes, for signatures and comparisons.
    pub fn digest(&self) -> Digest {
        Digest::of(&self.to_bytes())
    }

    fn to_bytes(&self) -> Vec<u8> {
        self.0.iter().flat_map(|lane| lane.to_le_bytes()).collect()
    }
}

/// An entry's 2 KiB expansion: BLAKE3's extendable output, keyed for this use alone. One
/// call fills all lanes, where 64 SHA-256 compressions (5.5 µs) were 4 % of a replica: a
/// changed record is expanded once out and once in.
fn expand(entry: &[u8]) -> [u16; LANES] {
    let mut bytes = [0u8; LANES * 2];
    blake3::Hasher::new_derive_key(EXPANSION_CONTEXT).update(entry).finalize_xof().fill(&mut bytes);
    let mut lanes = [0u16; LANES];
    for (lane, pair) in lanes.iter_mut().zip(bytes.chunks_exact(2)) {
        *lane = u16::from_le_bytes([pair[0], pair[1]]);
    }
    lanes
}

impl fmt::Debug for LtHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LtHash({})", self.digest())
    }
}

impl Serialize for LtHash {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.to_bytes())
    }
}

impl<'de> Deserialize<'de> for LtHash {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let bytes = crate::bft::SnapshotBytes::deserialize(deserializer)?;
        if bytes.len() != LANES * 2 {
            return Err(serde::de::Error::invalid_length(bytes.len(), &"2048 bytes of lanes"));
        }
        let mut lanes = Box::new([0u16; LANES]);
        for (lane, pair) in lanes.iter_mut().zip(bytes.chunks_exact(2)) {
            *lane = u16::from_le_bytes([pair[0], pair[1]]);
        }
        Ok(Self(lanes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_of_a_set_does_not_depend_on_the_order_or_the_history() {
        let entries: [&[u8]; 3] = [b"alpha", b"beta", b"gamma"];
        let forwards = LtHash::of(entries);
        let backwards = LtHash::of(entries.iter().rev().copied());
        assert_eq!(forwards, backwards);
        let mut edited = LtHash::of([b"alpha".as_slice(), b"delta", b"beta", b"gamma"]);
        edited.remove(b"delta");
        assert_eq!(edited, forwards, "adding then removing an entry leaves the set's hash");
        assert_ne!(LtHash::of(entries[..2].iter().copied()), forwards);
        assert_ne!(LtHash::of([b"alpha".as_slice(), b"beta", b"gammb"]), forwards);
        assert_ne!(LtHash::of([b"alpha".as_slice(), b"alpha", b"beta", b"gamma"]), forwards, "a multiset");
    }

    #[test]
    fn a_hash_reads_back_and_refuses_the_wrong_length() {
        let hash = LtHash::of([b"entry".as_slice()]);
        let bytes = postcard::to_stdvec(&hash).unwrap();
        assert_eq!(postcard::from_bytes::<LtHash>(&bytes).unwrap(), hash);
        let short = postcard::to_stdvec(&crate::bft::SnapshotBytes::from(vec![0u8; 10])).unwrap();
        assert!(postcard::from_bytes::<LtHash>(&short).is_err());
    }
}
