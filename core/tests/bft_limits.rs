//! The BFT replica's bounds on catching up, hit: a block no peer gives is asked for
//! `FETCH_ATTEMPTS_MAX` times, round the peers, then given up; a peer asking for more
//! than `SYNC_ANSWERS_PER_SECOND_MAX` sync answers in a second is ignored (not blamed)
//! until the next second, and the others are served meanwhile.

#![allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed test

use shardspace_core::ShardId;
use shardspace_core::bft::{
    Action, Committee, Config, Digest, Event, FETCH_ATTEMPTS_MAX, Height, KeyPair, PeerMessage, ProtocolError,
    QuorumCertificate, Replica, ReplicaId, Round, SYNC_ANSWERS_PER_SECOND_MAX, TimeMs, kv::KvApp,
};

fn replica() -> (Replica<KvApp>, Committee, Vec<KeyPair>) {
    let keys: Vec<KeyPair> = (0..4).map(|i| KeyPair::from_seed(ReplicaId(i), [i as u8 + 21; 32])).collect();
    let committee = Committee::new("limits", ShardId(0), keys.iter().map(KeyPair::public).collect());
    let replica = Replica::new(committee.clone(), keys[0].clone(), Config::default(), KvApp::default());
    (replica, committee, keys)
}

fn message(from: u32, message: PeerMessage) -> Event {
    Event::Message { from: ReplicaId(from), message: Box::new(message) }
}

fn over_budget<O>(actions: &[Action<O>]) -> bool {
    actions.iter().any(|action| {
        matches!(action, Action::Dropped { error: ProtocolError::Unsolicited { what }, .. } if what.contains("budget"))
    })
}

#[test]
fn a_peer_past_sync_answers_per_second_max_is_ignored_until_the_next_second_and_others_are_served() {
    let (mut replica, _, _) = replica();
    let ask = PeerMessage::BlockRequest { block: Digest([9; 32]), height: Height(0) };
    replica.handle(Event::Tick(TimeMs(1)));
    for n in 0..SYNC_ANSWERS_PER_SECOND_MAX {
        assert!(!over_budget(&replica.handle(message(1, ask.clone()))), "request {n} is within the budget");
    }
    assert!(over_budget(&replica.handle(message(1, ask.clone()))), "one past the budget is ignored");
    assert!(!over_budget(&replica.handle(message(2, ask.clone()))), "another peer has its own budget");
    replica.handle(Event::Tick(TimeMs(1 + 999)));
    assert!(over_budget(&replica.handle(message(1, ask.clone()))), "still the same second");
    replica.handle(Event::Tick(TimeMs(1 + 1_000)));
    assert!(!over_budget(&replica.handle(message(1, ask))), "a new second, a new budget");
}

#[test]
fn a_block_no_peer_gives_is_asked_for_fetch_attempts_max_times_round_the_peers_then_given_up() {
    let (mut replica, committee, keys) = replica();
    // A certificate of 2f+1 replicas for a block this replica has never seen.
    let missing = Digest([7; 32]);
    let round = Round(5);
    let bytes = QuorumCertificate::signing_bytes(&committee, &missing, round);
    let votes = (1..4).map(|i| (ReplicaId(i), keys[i as usize].sign(&bytes))).collect();
    let certificate = QuorumCertificate { block: missing, round, votes };
    let asked = |actions: &[Action<_>]| -> Vec<ReplicaId> {
        actions
            .iter()
            .filter_map(|action| match action {
                Action::Send { to, message: PeerMessage::BlockRequest { block, .. } } if *block == missing => Some(*to),
                _ => None,
            })
            .collect()
    };
    let catchup = PeerMessage::Catchup { high_qc: certificate, timeout_certificate: None };
    let mut peers = asked(&replica.handle(message(1, catchup)));
    assert_eq!(peers, vec![ReplicaId(1)], "asked first of the peer that showed the certificate");
    // Nobody answers: ticks long past every retry.
    let retry_ms = Config::default().sync_retry_ms;
    for n in 1..=(FETCH_ATTEMPTS_MAX as u64 * 4) {
        peers.extend(asked(&replica.handle(Event::Tick(TimeMs(n * retry_ms)))));
    }
    assert_eq!(peers.len(), FETCH_ATTEMPTS_MAX as usize, "asked FETCH_ATTEMPTS_MAX times, then given up");
    assert!(peers.iter().all(|peer| *peer != ReplicaId(0)), "never itself");
    assert!(peers.windows(2).all(|pair| pair[0] != pair[1]), "each time another peer: {peers:?}");
}
