//! The pacemaker: which round a replica is in, and when to give up on it.
//! It owns the round, the round timer and its backoff, this replica's own timeout, the
//! timeouts gathered from peers and the highest timeout certificate. `Replica` asks it
//! and acts (signs, persists, sends): the `impl Replica` below is that wiring. Rounds
//! move on a certificate (a QC of the round or later, a TC) or on f+1 timeouts for a
//! later round (`docs/protocol.md` §3.2, §3.3).

use super::aggregator::TimeoutAggregator;
use super::{Action, Config, Out, Replica};
use crate::bft::{Application, Committee, PeerMessage, ReplicaId, Round, TimeMs, Timeout, TimeoutCertificate};

#[derive(Debug)]
pub(super) struct Pacemaker {
    /// How many timeouts are f+1 and 2f+1.
    committee: Committee,
    /// The round timeout now: doubled by each round this replica gives up on, down by a
    /// half with each certificate of its round, within the two bounds below.
    round_timeout_ms: u64,
    round_timeout_min_ms: u64,
    round_timeout_max_ms: u64,
    /// Proposals, votes and timeouts further ahead than this are not kept (memory).
    future_rounds_max: u64,
    round: Round,
    /// When this replica entered its current round (a leader waits `propose_after_ms` from it).
    round_entered: TimeMs,
    /// When this round times out; `None` while there is nothing to order.
    deadline: Option<TimeMs>,
    /// This replica's timeout for the current round, once sent (resent while stuck).
    own_timeout: Option<Timeout>,
    /// The highest timeout certificate: justifies a proposal after a failed round.
    last_tc: Option<TimeoutCertificate>,
    /// Peers' (and its own) timeouts for the current round and later ones.
    timeouts: TimeoutAggregator,
}

/// What a timeout for the current round or a later one calls for, in this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Gathered {
    /// f+1 replicas gave up on a later round: the pacemaker moved there.
    pub entered: bool,
    /// f+1 replicas, one of them honest, gave up on the current round: time out too.
    pub join: bool,
    /// 2f+1 timeouts for the round: its certificate can be formed.
    pub certify: bool,
}

impl Pacemaker {
    /// A pacemaker in `round`, with the timer disarmed.
    pub fn new(committee: Committee, config: &Config, round: Round) -> Self {
        Self {
            committee,
            round_timeout_ms: config.round_timeout_ms.clamp(config.round_timeout_min_ms, config.round_timeout_max_ms),
            round_timeout_min_ms: config.round_timeout_min_ms,
            round_timeout_max_ms: config.round_timeout_max_ms,
            future_rounds_max: config.future_rounds_max,
            round,
            round_entered: TimeMs(0),
            deadline: None,
            own_timeout: None,
            last_tc: None,
            timeouts: TimeoutAggregator::default(),
        }
    }

    pub fn round(&self) -> Round {
        self.round
    }

    pub fn round_entered(&self) -> TimeMs {
        self.round_entered
    }

    pub fn last_tc(&self) -> Option<&TimeoutCertificate> {
        self.last_tc.as_ref()
    }

    /// Whether this replica has given up on its current round.
    pub fn has_timed_out(&self) -> bool {
        self.own_timeout.is_some()
    }

    /// Whether `round` is too far ahead to keep anything of.
    pub fn is_far_ahead(&self, round: Round) -> bool {
        round.0 > self.round.0.saturating_add(self.future_rounds_max)
    }

    /// The current round timeout.
    pub fn round_timeout_ms(&self) -> u64 {
        self.round_timeout_ms
    }

    /// Whether the round timer has run out at `now`.
    pub fn is_due(&self, now: TimeMs) -> bool {
        self.deadline.is_some_and(|deadline| now >= deadline)
    }

    /// Starts the round timer unless it runs already: there is work in this round.
    pub fn arm(&mut self, now: TimeMs) {
        self.deadline.get_or_insert(now.plus(self.round_timeout_ms()));
    }

    /// Moves to `round` if it is later; returns whether it did. A new round starts
    /// with the timer disarmed and without the timeouts of earlier rounds.
    fn enter_round(&mut self, round: Round, now: TimeMs) -> bool {
        if round <= self.round {
            return false;
        }
        self.round = round;
        self.round_entered = now;
        self.deadline = None;
        self.own_timeout = None;
        self.timeouts.forget_before(round);
        true
    }

    /// A certificate of `certified` was seen: one of the current round or later is
    /// progress (the round timeout halves, not below its minimum) and moves
    /// to the round after it. Returns whether the round changed.
    pub fn on_quorum_certificate(&mut self, certified: Round, now: TimeMs) -> bool {
        if certified < self.round {
            return false;
        }
        self.round_timeout_ms = (self.round_timeout_ms / 2).max(self.round_timeout_min_ms);
        self.enter_round(certified.next(), now)
    }

    /// A verified timeout certificate (its QC already processed): unless its round is
    /// past, it is kept if newer and moves to the round after it. Returns whether the
    /// round changed.
    pub fn on_timeout_certificate(&mut self, certificate: TimeoutCertificate, now: TimeMs) -> bool {
        if certificate.round < self.round {
            return false;
        }
        let round = certificate.round.next();
        if self.last_tc.as_ref().is_none_or(|last| last.round < certificate.round) {
            self.last_tc = Some(certificate);
        }
        self.enter_round(round, now)
    }

    /// The round timer ran out (or this replica joins others who gave up): re-arms it
    /// and returns the timeout already sent in this round, to send again; `None` the
    /// first time, when the caller signs one and hands it to `timed_out`.
    pub fn time_out(&mut self, now: TimeMs) -> Option<Timeout> {
        self.deadline = Some(now.plus(self.round_timeout_ms()));
        if self.own_timeout.is_none() {
            self.round_timeout_ms = self.round_timeout_ms.saturating_mul(2).min(self.round_timeout_max_ms);
        }
        self.own_timeout.clone()
    }

    /// Records this replica's own timeout for the current round.
    pub fn timed_out(&mut self, timeout: Timeout) {
        self.own_timeout = Some(timeout);
    }

    /// Gathers a verified timeout of the current round or a later one (not far ahead)
    /// and says what it calls for (`docs/protocol.md` §3.2).
    pub fn on_timeout(&mut self, timeout: Timeout, now: TimeMs) -> Gathered {
        let round = timeout.round;
        let count = self.timeouts.add(timeout);
        let validity = self.committee.validity();
        // Round synchronisation without a certificate: f+1 include an honest replica.
        let entered = round > self.round && count >= validity && self.enter_round(round, now);
        let mut join = false;
        if round == self.round {
            // A peer has work in this round: run the timer even if this replica has none.
            self.arm(now);
            join = count >= validity && self.own_timeout.is_none();
        }
        Gathered { entered, join, certify: count >= self.committee.quorum() }
    }

    /// The certificate of the timeouts gathered for `round`.
    pub fn timeout_certificate(&self, round: Round) -> TimeoutCertificate {
        self.timeouts.certificate(round)
    }

    pub fn deadline(&self) -> Option<TimeMs> {
        self.deadline
    }

    /// How many timeouts each round has gathered, for debugging.
    pub fn timeout_counts(&self) -> impl Iterator<Item = (Round, usize)> + '_ {
        self.timeouts.counts()
    }
}

impl<A: Application> Replica<A> {
    /// Gives up on the current round (or resends the timeout, if still stuck).
    pub(super) fn time_out(&mut self, out: &mut Out<A::Output>) {
        let timeout = match self.pacemaker.time_out(self.now) {
            Some(sent) => sent,
            None => {
                // No vote in this round afterwards, and that is durable before the timeout leaves.
                let round = self.pacemaker.round();
                self.safety.record(round);
                out.push(Action::PersistSafety(self.safety.clone()));
                let timeout = self.sign_timeout(round);
                self.pacemaker.timed_out(timeout.clone());
                timeout
            }
        };
        out.push(Action::Broadcast(PeerMessage::Timeout(timeout.clone())));
        self.on_timeout(self.id(), timeout, out);
    }

    pub(super) fn on_timeout(&mut self, from: ReplicaId, timeout: Timeout, out: &mut Out<A::Output>) {
        self.on_certificate(&timeout.high_qc, from, out);
        let round = timeout.round;
        if round < self.pacemaker.round() {
            // The sender is behind: show it the way forward.
            self.answer_behind(from, round, out);
            return;
        }
        if self.pacemaker.is_far_ahead(round) {
            return;
        }
        let gathered = self.pacemaker.on_timeout(timeout, self.now);
        if gathered.entered {
            self.forget_old_votes();
        }
        if gathered.join {
            self.time_out(out);
        }
        if gathered.certify {
            // If joining completed the certificate already, the round has moved past it and
            // what is left of it here is ignored as a certificate of a past round.
            let certificate = self.pacemaker.timeout_certificate(round);
            self.on_timeout_certificate(certificate, self.id(), out);
        }
    }

    /// Answers a peer stuck timing out in `round`, which this replica has left: with
    /// a certificate that ends that round if it holds one, or else with its own
    /// timeout for that round, so that the peer can form the certificate. (Signing a
    /// timeout for a past round is safe: it reports the replica's highest certificate,
    /// which only grows, and does not lower the round it will vote in.)
    fn answer_behind(&mut self, to: ReplicaId, round: Round, out: &mut Out<A::Output>) {
        let certified =
            self.safety.high_qc.round >= round || self.pacemaker.last_tc().is_some_and(|tc| tc.round >= round);
        if certified {
            self.answer_catchup(to, out);
            return;
        }
        if !self.sync.may_answer(to, self.now) {
            return;
        }
        let timeout = self.sign_timeout(round);
        out.push(Action::Send { to, message: PeerMessage::Timeout(timeout) });
    }

    pub(super) fn on_timeout_certificate(
        &mut self,
        certificate: TimeoutCertificate,
        from: ReplicaId,
        out: &mut Out<A::Output>,
    ) {
        self.on_certificate(&certificate.high_qc, from, out);
        if self.pacemaker.on_timeout_certificate(certificate, self.now) {
            self.forget_old_votes();
        }
    }

    /// This replica's timeout for `round`, reporting its highest certificate.
    fn sign_timeout(&self, round: Round) -> Timeout {
        let high_qc = self.safety.high_qc.clone();
        let bytes = Timeout::signing_bytes(&self.committee, round, high_qc.round);
        Timeout { round, high_qc, author: self.id(), signature: self.keys.sign(&bytes) }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Event, test_committee};
    use super::*;
    use crate::bft::kv::KvApp;
    use crate::bft::{Digest, QuorumCertificate, Request};
    use ed25519_dalek::Signature;

    // n = 4, f = 1: f+1 = 2 timeouts include an honest one, 2f+1 = 3 are a quorum.

    fn config(round_timeout_ms: u64, round_timeout_max_ms: u64) -> Config {
        let round_timeout_min_ms = round_timeout_ms / 4;
        Config {
            round_timeout_ms,
            round_timeout_min_ms,
            round_timeout_max_ms,
            future_rounds_max: 10,
            ..Config::default()
        }
    }

    fn pacemaker(config: &Config, round: u64) -> Pacemaker {
        Pacemaker::new(test_committee(4).1, config, Round(round))
    }

    fn qc(round: u64) -> QuorumCertificate {
        QuorumCertificate { block: Digest([round as u8; 32]), round: Round(round), votes: Vec::new() }
    }

    fn timeout(author: u32, round: u64, high_qc_round: u64) -> Timeout {
        let signature = Signature::from_bytes(&[0; 64]);
        Timeout { round: Round(round), high_qc: qc(high_qc_round), author: ReplicaId(author), signature }
    }

    fn tc(round: u64) -> TimeoutCertificate {
        TimeoutCertificate { round: Round(round), timeouts: Vec::new(), high_qc: QuorumCertificate::genesis() }
    }

    /// Times out in the current round at `now`, as `Replica::time_out` does the first time.
    fn time_out_first(pacemaker: &mut Pacemaker, now: u64) {
        assert_eq!(pacemaker.time_out(TimeMs(now)), None, "nothing sent in this round yet");
        pacemaker.timed_out(timeout(0, pacemaker.round().0, 0));
    }

    #[test]
    fn the_round_timeout_doubles_with_each_failed_round_up_to_its_cap_and_halves_with_each_certificate_down_to_its_floor()
     {
        let mut pacemaker = pacemaker(&config(100, 1_000), 1);
        assert_eq!((pacemaker.round_timeout_ms(), pacemaker.deadline()), (100, None));
        time_out_first(&mut pacemaker, 0);
        assert_eq!(pacemaker.deadline(), Some(TimeMs(100)), "the next deadline is taken before the backoff grows");
        assert_eq!(pacemaker.round_timeout_ms(), 200);
        let resent = pacemaker.time_out(TimeMs(100));
        assert_eq!(resent, Some(timeout(0, 1, 0)), "stuck in the round: the same timeout again");
        assert_eq!(
            (pacemaker.deadline(), pacemaker.round_timeout_ms()),
            (Some(TimeMs(300)), 200),
            "a resend is not a new timeout"
        );
        // Rounds that end by timeout certificates are failures in a row.
        let mut deadlines = Vec::new();
        for round in 1..5 {
            assert!(pacemaker.on_timeout_certificate(tc(round), TimeMs(round * 1_000)));
            assert_eq!(pacemaker.deadline(), None, "a new round starts with the timer disarmed");
            time_out_first(&mut pacemaker, round * 1_000);
            deadlines.push(pacemaker.deadline().map(|deadline| deadline.0 - round * 1_000));
        }
        assert_eq!(deadlines, [Some(200), Some(400), Some(800), Some(1_000)], "doubling, then capped");
        assert_eq!(pacemaker.round_timeout_ms(), 1_000);
        // Certificates of the current round are progress: halved each, to the floor.
        let mut timeouts = Vec::new();
        for round in 5..14 {
            assert!(pacemaker.on_quorum_certificate(Round(round), TimeMs(6_000)));
            timeouts.push(pacemaker.round_timeout_ms());
        }
        assert_eq!(timeouts, [500, 250, 125, 62, 31, 25, 25, 25, 25]);
        assert_eq!(pacemaker.round(), Round(14));
        assert_eq!(pacemaker.round_timeout_ms(), 25, "round_timeout_min_ms");
        // An old certificate is no progress.
        time_out_first(&mut pacemaker, 7_000);
        assert!(!pacemaker.on_quorum_certificate(Round(3), TimeMs(7_000)));
        assert_eq!(pacemaker.round_timeout_ms(), 50);
    }

    #[test]
    fn a_huge_round_timeout_stays_at_its_cap() {
        let mut pacemaker = pacemaker(&config(u64::MAX / 2, u64::MAX), 1);
        for round in 1..=4 {
            time_out_first(&mut pacemaker, 0);
            assert!(pacemaker.on_timeout_certificate(tc(round), TimeMs(0)));
        }
        assert_eq!(pacemaker.round_timeout_ms(), u64::MAX);
    }

    #[test]
    fn a_timeout_certificate_forms_at_2f_plus_1_distinct_timeouts_and_not_at_2f() {
        let mut pacemaker = pacemaker(&config(100, 1_000), 3);
        let gathered = pacemaker.on_timeout(timeout(0, 3, 1), TimeMs(40));
        assert_eq!(gathered, Gathered { entered: false, join: false, certify: false });
        assert_eq!(pacemaker.deadline(), Some(TimeMs(140)), "a peer's timeout arms an idle replica's timer");
        let gathered = pacemaker.on_timeout(timeout(1, 3, 2), TimeMs(50));
        assert_eq!(gathered, Gathered { entered: false, join: true, certify: false }, "f+1: join them");
        let gathered = pacemaker.on_timeout(timeout(1, 3, 2), TimeMs(60));
        assert!(!gathered.certify, "the same replica twice counts once: still 2f");
        let gathered = pacemaker.on_timeout(timeout(2, 3, 1), TimeMs(70));
        assert!(gathered.certify, "2f+1 distinct replicas");
        let certificate = pacemaker.timeout_certificate(Round(3));
        assert_eq!((certificate.round, certificate.timeouts.len(), certificate.high_qc), (Round(3), 3, qc(2)));
        assert_eq!(pacemaker.deadline(), Some(TimeMs(140)), "an armed timer is not pushed back");
    }

    #[test]
    fn once_timed_out_a_replica_does_not_join_again() {
        let mut pacemaker = pacemaker(&config(100, 1_000), 3);
        time_out_first(&mut pacemaker, 0);
        pacemaker.on_timeout(timeout(0, 3, 1), TimeMs(10));
        let gathered = pacemaker.on_timeout(timeout(1, 3, 1), TimeMs(20));
        assert!(!gathered.join);
    }

    #[test]
    fn f_plus_one_timeouts_for_a_later_round_move_the_replica_there_and_it_joins_them() {
        let mut pacemaker = pacemaker(&config(100, 1_000), 1);
        let gathered = pacemaker.on_timeout(timeout(0, 5, 1), TimeMs(50));
        assert_eq!(gathered, Gathered { entered: false, join: false, certify: false }, "one may be faulty");
        assert_eq!((pacemaker.round(), pacemaker.deadline()), (Round(1), None), "nor is round 1's timer armed");
        let gathered = pacemaker.on_timeout(timeout(1, 5, 1), TimeMs(60));
        assert_eq!(gathered, Gathered { entered: true, join: true, certify: false });
        assert_eq!((pacemaker.round(), pacemaker.round_entered()), (Round(5), TimeMs(60)));
        assert_eq!(pacemaker.deadline(), Some(TimeMs(160)));
    }

    #[test]
    fn a_new_round_disarms_the_timer_forgets_earlier_timeouts_and_only_later_certificates_move_it() {
        let mut pacemaker = pacemaker(&config(100, 1_000), 1);
        pacemaker.on_timeout(timeout(1, 1, 0), TimeMs(0));
        pacemaker.on_timeout(timeout(1, 2, 0), TimeMs(0));
        time_out_first(&mut pacemaker, 100);
        assert!(pacemaker.has_timed_out());
        assert!(pacemaker.on_quorum_certificate(Round(1), TimeMs(500)));
        assert_eq!((pacemaker.round(), pacemaker.round_entered(), pacemaker.deadline()), (Round(2), TimeMs(500), None));
        assert!(!pacemaker.has_timed_out(), "its timeout was for round 1");
        assert_eq!(pacemaker.timeout_counts().collect::<Vec<_>>(), [(Round(2), 1)]);
        assert!(!pacemaker.on_quorum_certificate(Round(0), TimeMs(600)), "an older certificate");
        assert!(!pacemaker.on_timeout_certificate(tc(1), TimeMs(600)), "a timeout certificate of a past round");
        assert_eq!((pacemaker.round(), pacemaker.last_tc()), (Round(2), None));
        assert!(pacemaker.on_timeout_certificate(tc(4), TimeMs(700)));
        assert_eq!((pacemaker.round(), pacemaker.last_tc().map(|tc| tc.round)), (Round(5), Some(Round(4))));
    }

    #[test]
    fn rounds_beyond_future_rounds_max_are_far_ahead() {
        let pacemaker = pacemaker(&config(100, 1_000), 3);
        assert!(!pacemaker.is_far_ahead(Round(13)));
        assert!(pacemaker.is_far_ahead(Round(14)));
    }

    /// The timeouts a replica broadcasts, and where its `PersistSafety` actions are, in one step.
    fn timeouts_and_persists<O>(actions: &[Action<O>]) -> (Vec<(usize, Timeout)>, Vec<usize>) {
        let mut timeouts = Vec::new();
        let mut persists = Vec::new();
        for (position, action) in actions.iter().enumerate() {
            match action {
                Action::Broadcast(PeerMessage::Timeout(timeout)) => timeouts.push((position, timeout.clone())),
                Action::PersistSafety(_) => persists.push(position),
                _ => {}
            }
        }
        (timeouts, persists)
    }

    #[test]
    fn at_its_deadline_a_replica_persists_then_broadcasts_its_timeout_and_later_resends_the_same_one() {
        let (keys, committee) = test_committee(4);
        // Replica 2 does not lead round 1: a request it holds arms its timer (1 000 ms).
        let mut replica = Replica::new(committee, keys[2].clone(), Config::default(), KvApp::default());
        replica.handle(Event::Submit(Request::new(b"k=v".to_vec())));
        let (timeouts, _) = timeouts_and_persists(&replica.handle(Event::Tick(TimeMs(999))));
        assert!(timeouts.is_empty());

        let (timeouts, persists) = timeouts_and_persists(&replica.handle(Event::Tick(TimeMs(1_000))));
        let [(sent_at, sent)] = timeouts.as_slice() else { panic!("one timeout: {timeouts:?}") };
        assert_eq!((sent.round, sent.author), (Round(1), ReplicaId(2)));
        assert!(matches!(persists.as_slice(), [persisted] if persisted < sent_at), "persist before speaking");
        assert_eq!(replica.safety().last_voted_round, Round(1), "no vote in round 1 any more");

        // Resent unchanged after the base timeout, then after twice that; nothing new to persist.
        for (quiet, due) in [(1_999, 2_000), (3_999, 4_000)] {
            assert!(timeouts_and_persists(&replica.handle(Event::Tick(TimeMs(quiet)))).0.is_empty());
            let (timeouts, persists) = timeouts_and_persists(&replica.handle(Event::Tick(TimeMs(due))));
            assert_eq!(timeouts.iter().map(|(_, timeout)| timeout).collect::<Vec<_>>(), [sent]);
            assert!(persists.is_empty());
        }
    }
}
