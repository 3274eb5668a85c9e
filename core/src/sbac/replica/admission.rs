//! Admission of an attempt's envelope (from a client, or passed on by a peer): answered
//! from the record if this shard voted on it, refused with a reason if it cannot be
//! taken, else checked. The checkers' answer becomes this replica's sealed verdict,
//! shared with its shard; f+1 matching verdicts make the certificate of the `Prepare`.

use super::{ClientId, ClientReply, ENVELOPES_MAX, Frame, Output, RejectKind, ShardReplica, Unsealed};
use crate::Envelope;
use crate::bft::TimeMs;
use crate::ids::TxId;
use crate::sbac::{ATTEMPTS_AHEAD_MAX, Attempt, CheckerAnswer, ShardRequest, Verdict, VerdictCertificate};

/// An envelope this replica checks, or checked: what its shard's verdict certificate prepares.
#[derive(Debug)]
pub(super) struct Pending {
    json: String,
    attempt: Attempt,
    pub(super) since: TimeMs,
    /// Its `Prepare` was submitted or stood by already: the verdict collector gives the
    /// certificate again for each verdict still arriving, and once is enough.
    submitted: bool,
}

impl ShardReplica {
    fn reject(&mut self, client: Option<ClientId>, tx: Option<TxId>, kind: RejectKind, message: String) {
        self.counters.envelopes_rejected += 1;
        if let Some(client) = client {
            let reply = ClientReply::Rejected { tx, kind, message };
            self.outputs.push(Output::Reply { client, reply });
        }
    }

    /// A dry run: the envelope, if it can be read and its contracts have checkers here, goes
    /// to the checkers for `client` alone. Nothing is recorded or ordered.
    pub(super) fn dry_check(&mut self, client: ClientId, json: &str) {
        let envelope = match Envelope::from_json(json.as_bytes(), &self.limits) {
            Ok(envelope) => envelope,
            Err(error) => {
                let message = format!("{error} ({})", error.hint());
                return self.reject(Some(client), None, RejectKind::Invalid(error.kind()), message);
            }
        };
        let tx = envelope.transaction.tx_id();
        let contracts = &self.contracts;
        if let Some(contract) = envelope.transaction.first_contract_not(|contract| contracts.contains(contract)) {
            // Answered as a dry run's "no verdict", not as a refusal: a client asking on a link
            // it shares with submissions routes a dry run's answers by `Checked` alone.
            let kind = RejectKind::UnknownContract;
            let reason = format!("{kind}: no checker for contract {contract:?} in the cluster file ({tx})");
            let reply = ClientReply::Checked { tx, valid: None, reason: Some(reason) };
            return self.outputs.push(Output::Reply { client, reply });
        }
        self.outputs.push(Output::DryCheck { client, tx, envelope });
    }

    /// An attempt's envelope, from a client or passed on by a peer: answered from the
    /// record if this shard voted on it, else checked (and refused here if it cannot be).
    pub(super) fn on_envelope(&mut self, json: String, attempt: Attempt, client: Option<ClientId>) {
        let envelope = match Envelope::from_json(json.as_bytes(), &self.limits) {
            Ok(envelope) => envelope,
            Err(error) => {
                return self.reject(
                    client,
                    None,
                    RejectKind::Invalid(error.kind()),
                    format!("{error} ({})", error.hint()),
                );
            }
        };
        let tx = envelope.transaction.tx_id();
        let app = self.replica.app();
        let latest = app.state().transactions.get(&tx).and_then(|record| record.latest()).map_or(0, |latest| latest.0);
        if self.stop_if_unreadable() {
            return;
        }
        // A client is told; an envelope passed on by a shard that prepared it is voted on
        // even when far ahead here (it is voted down), so that that shard hears an abort.
        let far_ahead = attempt.0 > latest.saturating_add(ATTEMPTS_AHEAD_MAX);
        if attempt.0 == 0 || (far_ahead && client.is_some()) {
            let message = format!(
                "attempt {} of {tx}: attempts count from 1, at most {ATTEMPTS_AHEAD_MAX} ahead of the latest here ({latest})",
                attempt.0
            );
            return self.reject(client, Some(tx), RejectKind::BadAttempt, message);
        }
        if !self.map.concerned_shards(&envelope.transaction).contains(&self.own.shard) {
            let message = format!("{tx} has no object on {}: send it to its shards", self.own.shard);
            return self.reject(client, Some(tx), RejectKind::WrongShard, message);
        }
        let app = self.replica.app();
        let decided = app.attempt_view(&tx, attempt).is_some_and(|view| view.decision.is_some());
        if decided {
            // Answered from the record; the vote goes again too: the shard passing this on
            // may have lost the votes that would decide it there.
            self.counters.answered_from_record += 1;
            let body = app.answer_attempt(tx, attempt);
            let recorded = app.recorded_vote(tx, attempt);
            if self.stop_if_unreadable() {
                return;
            }
            if let Some(client) = client {
                self.unsealed.push(Unsealed::Answer { clients: vec![client], body, read: false });
            }
            if let Some((body, concerned)) = recorded {
                self.unsealed.push(Unsealed::Vote { body, concerned, gather: false });
            }
            return;
        }
        if app.recorded_vote(tx, attempt).is_some() {
            // Voted already (the votes may have been lost): say it again, and wait for the decision.
            self.accepted(tx, attempt, client);
            return self.vote_again(tx, attempt);
        }
        let contracts = &self.contracts;
        if let Some(contract) = envelope.transaction.first_contract_not(|contract| contracts.contains(contract)) {
            let message = format!("no checker for contract {contract:?} in the cluster file ({tx})");
            return self.reject(client, Some(tx), RejectKind::UnknownContract, message);
        }
        let key = (tx, envelope.digest());
        match self.envelopes.get_mut(&key) {
            None => {
                if self.envelopes.len() >= ENVELOPES_MAX {
                    let message = format!("{ENVELOPES_MAX} transactions are being checked: try again soon");
                    return self.reject(client, Some(tx), RejectKind::Busy, message);
                }
                self.envelopes.insert(key, Pending { json, attempt, since: self.now, submitted: false });
                self.outputs.push(Output::Check { tx, envelope });
            }
            // A later attempt of an envelope still waiting for its certificate: the later one
            // is prepared instead (the earlier one was decided elsewhere, or the client would
            // not have moved on), and it is checked again, since "no verdict" is per attempt.
            Some(pending) if !pending.submitted && attempt > pending.attempt => {
                self.counters.attempts_taken_over += 1;
                pending.attempt = attempt;
                self.outputs.push(Output::Check { tx, envelope });
            }
            Some(_) => {}
        }
        self.accepted(tx, attempt, client);
        if let Some(certificate) = self.early.remove(&key) {
            self.counters.early_certificates_used += 1;
            self.prepare(certificate);
        }
    }

    /// Tells the client its envelope was taken, and remembers that it waits for the outcome.
    fn accepted(&mut self, tx: TxId, attempt: Attempt, client: Option<ClientId>) {
        if let Some(client) = client {
            self.outputs.push(Output::Reply { client, reply: ClientReply::Accepted { tx, attempt } });
            self.waiters.wait_for_outcome(client, tx, attempt, self.now);
        }
    }

    /// The checkers answered: the verdict is sealed with the rest of the call, then shared.
    pub(super) fn on_checked(&mut self, checked: super::Checked) {
        let key = (checked.tx, checked.envelope);
        let Some(pending) = self.envelopes.get(&key) else { return };
        let answer = match checked.verdict {
            Ok((valid, _reason)) => CheckerAnswer::from(valid),
            // No verdict within the bound is never a false: it is a verdict of its own, and
            // f+1 of them abort this attempt (`CheckerError`); a later one is checked afresh.
            Err(_) => {
                self.counters.checker_unavailable += 1;
                CheckerAnswer::Unavailable(pending.attempt)
            }
        };
        self.unsealed.push(Unsealed::Verdict { tx: checked.tx, envelope: checked.envelope, answer });
    }

    /// This replica's sealed verdict goes to its shard and into its own gathering.
    pub(super) fn share_verdict(&mut self, verdict: Verdict) {
        self.outputs.push(Output::Multicast { shards: vec![self.own.shard], frame: Frame::Verdict(verdict.clone()) });
        match self.verdicts.add(verdict) {
            Ok(Some(certificate)) => self.prepare(certificate),
            Ok(None) => {}
            // Its own key is not the one its committee lists (a misconfigured replica).
            Err(error) => self.outputs.push(Output::Dropped { from: self.own, error }),
        }
    }

    /// f+1 matching verdicts: order the `Prepare` (if this replica holds the envelope).
    pub(super) fn prepare(&mut self, verdict: VerdictCertificate) {
        let key = (verdict.tx, verdict.envelope);
        let Some(pending) = self.envelopes.get_mut(&key) else {
            // A second certificate from late verdicts, once this envelope was prepared here
            // (its envelope then leaves `envelopes`), is not kept.
            let transactions = &self.replica.app().state().transactions;
            let prepared =
                transactions.get(&key.0).is_some_and(|record| record.attempts.values().any(|a| a.digest == key.1));
            if prepared {
                return;
            }
            if self.early.len() >= ENVELOPES_MAX {
                self.early.pop_first();
            }
            self.early.insert(key, verdict);
            return;
        };
        if let CheckerAnswer::Unavailable(certified) = verdict.answer
            && certified != pending.attempt
        {
            return; // no verdict for another attempt: this one waits for its own certificate
        }
        if std::mem::replace(&mut pending.submitted, true) {
            return;
        }
        let (tx, attempt) = (verdict.tx, pending.attempt);
        let request = ShardRequest::Prepare { envelope: pending.json.clone(), attempt, verdict };
        self.submit_or_stand_by(tx, attempt, request);
    }
}
