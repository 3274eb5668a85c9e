//! The shard map: which shard owns an object, and which shards a transaction concerns.

use std::collections::BTreeSet;

use crate::ids::{ObjectId, ShardId};
use crate::transaction::Transaction;

/// Objects spread over `shards` shards by id (DESIGN.md §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardMap {
    shards: u32,
}

/// Why a shard map cannot be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a cluster has at least one shard")]
pub struct NoShards;

impl ShardMap {
    pub fn new(shards: u32) -> Result<Self, NoShards> {
        if shards == 0 {
            return Err(NoShards);
        }
        Ok(Self { shards })
    }

    pub fn shards(&self) -> u32 {
        self.shards
    }

    /// The id read as a 256-bit big-endian integer, modulo the number of shards.
    pub fn shard_of(&self, id: &ObjectId) -> ShardId {
        let modulus = u64::from(self.shards);
        // Horner's rule, byte by byte: (r * 256 + b) mod n never exceeds 2^40.
        let remainder = id.as_bytes().iter().fold(0u64, |r, &byte| (r * 256 + u64::from(byte)) % modulus);
        ShardId(u32::try_from(remainder).expect("a remainder modulo a u32 fits a u32"))
    }

    /// The shards of every input, reference and output of `transaction`, dependencies' included.
    pub fn concerned_shards(&self, transaction: &Transaction) -> BTreeSet<ShardId> {
        let mut shards = BTreeSet::new();
        transaction.visit(&mut |node| {
            let named = node.input_ids.iter().chain(&node.reference_input_ids);
            shards.extend(named.map(|id| self.shard_of(id)));
        });
        shards.extend(transaction.created_objects().iter().map(|object| self.shard_of(&object.id)));
        shards
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_is_the_id_modulo_the_shard_count() {
        // 0x..ff ff mod 10 = 2^256 - 1 mod 10 = 5 (2^256 ends in 6).
        let all_ones = ObjectId([0xff; 32]);
        assert_eq!(ShardMap::new(10).unwrap().shard_of(&all_ones), ShardId(5));
        let mut small = [0u8; 32];
        small[31] = 7;
        assert_eq!(ShardMap::new(3).unwrap().shard_of(&ObjectId(small)), ShardId(1));
        assert_eq!(ShardMap::new(1).unwrap().shard_of(&all_ones), ShardId(0));
    }

    #[test]
    fn zero_shards_is_refused() {
        assert_eq!(ShardMap::new(0), Err(NoShards));
    }
}
