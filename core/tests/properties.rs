//! Properties of the encoding, the parser and the shard map.

#![allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed test

mod common;

use proptest::prelude::*;
use shardspace_core::{Envelope, Limits, ObjectId, ShardMap, Transaction};

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn a_transaction_survives_json_and_keeps_its_id(transaction in common::transaction()) {
        let json = serde_json::to_vec(&transaction).unwrap();
        let parsed: Transaction = serde_json::from_slice(&json).unwrap();
        prop_assert_eq!(parsed.tx_id(), transaction.tx_id());
        prop_assert_eq!(&parsed, &transaction);
        // The canonical text is itself JSON of the same transaction.
        let reparsed: Transaction = serde_json::from_str(&transaction.canonical()).unwrap();
        prop_assert_eq!(reparsed, transaction);
    }

    #[test]
    fn canonical_text_is_printable_ascii(transaction in common::transaction()) {
        prop_assert!(transaction.canonical().bytes().all(|b| (b' '..=b'~').contains(&b)));
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_parser(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Envelope::from_json(&bytes, &Limits::default());
        let _ = Transaction::from_json(&bytes, &Limits::default());
    }

    #[test]
    fn mutated_envelopes_never_panic_the_parser(transaction in common::transaction(), cut in any::<usize>(), byte in any::<u8>()) {
        let mut json = serde_json::to_vec(&serde_json::json!({"transaction": transaction, "store": {}})).unwrap();
        let at = cut % json.len();
        json[at] = byte;
        let _ = Envelope::from_json(&json, &Limits::default());
    }

    #[test]
    fn the_shard_of_an_id_is_its_value_modulo_the_shard_count(bytes in any::<[u8; 32]>(), shards in 1u32..64) {
        let id = ObjectId(bytes);
        let shard = ShardMap::new(shards).unwrap().shard_of(&id).0;
        prop_assert!(shard < shards);
        // Cross-check with u128 arithmetic on the two halves: id = high * 2^128 + low.
        let high = u128::from_be_bytes(bytes[..16].try_into().unwrap()) % u128::from(shards);
        let low = u128::from_be_bytes(bytes[16..].try_into().unwrap()) % u128::from(shards);
        let two_to_128 = (u128::MAX % u128::from(shards) + 1) % u128::from(shards);
        prop_assert_eq!(u128::from(shard), (high * two_to_128 + low) % u128::from(shards));
    }

    #[test]
    fn concerned_shards_cover_every_object_named_or_created(transaction in common::transaction(), shards in 1u32..12) {
        let map = ShardMap::new(shards).unwrap();
        let concerned = map.concerned_shards(&transaction);
        let mut named = Vec::new();
        transaction.visit(&mut |node| named.extend(node.input_ids.iter().chain(&node.reference_input_ids).copied()));
        named.extend(transaction.created_objects().into_iter().map(|object| object.id));
        for id in &named {
            prop_assert!(concerned.contains(&map.shard_of(id)));
        }
        prop_assert!(concerned.iter().all(|shard| named.iter().any(|id| map.shard_of(id) == *shard)));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    /// Whatever a Byzantine leader orders, a shard refuses it or acts on it: it never panics.
    #[test]
    fn arbitrary_ordered_bytes_never_panic_a_shard(bytes in proptest::collection::vec(any::<u8>(), 0..1_024)) {
        use shardspace_core::bft::{Application, Committee, Height, KeyPair, ReplicaId, Request};
        use shardspace_core::sbac::ShardApp;
        let keys: Vec<KeyPair> = (0..4).map(|i| KeyPair::from_seed(ReplicaId(i), [i as u8 + 1; 32])).collect();
        let committee = Committee::new("test", shardspace_core::ShardId(0), keys.iter().map(KeyPair::public).collect());
        let mut app = ShardApp::new(shardspace_core::ShardId(0), vec![committee], keys[0].clone(), Limits::default());
        let outputs = app.execute(Height(1), &Request::new(bytes));
        prop_assert_eq!(outputs.len(), 1);
    }
}
