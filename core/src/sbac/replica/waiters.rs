//! The clients a replica owes an answer: those waiting to hear that raw requests
//! were decided (by request digest), and those waiting for an attempt's outcome.
//! Bounded in number and in time; a client whose connection closed is forgotten.

use std::collections::BTreeMap;

use super::{ClientId, ClientReply, Output, WAITING_MAX, WAITING_MS_MAX};
use crate::bft::{Digest, DigestMap, Height, Request, TimeMs};
use crate::ids::TxId;
use crate::sbac::Attempt;

#[derive(Debug, Default)]
pub(super) struct Waiters {
    /// Which client waits for which raw request, since when.
    requests: DigestMap<(ClientId, TimeMs)>,
    /// Which clients wait for which attempt's outcome, since when.
    outcomes: BTreeMap<(TxId, Attempt), Vec<(ClientId, TimeMs)>>,
}

impl Waiters {
    /// Waiting clients, counted once per request or attempt they wait for.
    pub(super) fn len(&self) -> usize {
        self.requests.len() + self.outcomes.values().map(Vec::len).sum::<usize>()
    }

    /// Takes the requests a client waits for, up to `WAITING_MAX` waiting in all; returns
    /// those taken and the digests of those refused.
    pub(super) fn wait_for_requests(
        &mut self,
        client: ClientId,
        requests: Vec<Request>,
        now: TimeMs,
    ) -> (Vec<Request>, Vec<Digest>) {
        let mut accepted = Vec::with_capacity(requests.len());
        let mut refused = Vec::new();
        for request in requests {
            let digest = request.digest();
            if self.requests.len() < WAITING_MAX {
                self.requests.insert(digest, (client, now));
                accepted.push(request);
            } else {
                refused.push(digest);
            }
        }
        (accepted, refused)
    }

    /// The mempool refused a request: its client hears it.
    pub(super) fn refused(&mut self, digest: Digest, outputs: &mut Vec<Output>) {
        if let Some((client, _)) = self.requests.remove(&digest) {
            outputs.push(Output::Reply { client, reply: ClientReply::Refused(vec![digest]) });
        }
    }

    /// Tells each waiting client which of its raw requests were decided, one reply per client.
    pub(super) fn reply_decided(&mut self, decided: Vec<(Digest, Height)>, outputs: &mut Vec<Output>) {
        if self.requests.is_empty() {
            return;
        }
        let mut by_client: BTreeMap<ClientId, Vec<(Digest, Height)>> = BTreeMap::new();
        for (digest, height) in decided {
            if let Some((client, _)) = self.requests.remove(&digest) {
                by_client.entry(client).or_default().push((digest, height));
            }
        }
        for (client, batch) in by_client {
            outputs.push(Output::Reply { client, reply: ClientReply::Decided(batch) });
        }
    }

    /// A client waits for an attempt's outcome (once, however often it asks).
    pub(super) fn wait_for_outcome(&mut self, client: ClientId, tx: TxId, attempt: Attempt, now: TimeMs) {
        let waiters = self.outcomes.entry((tx, attempt)).or_default();
        if !waiters.iter().any(|(waiting, _)| *waiting == client) {
            waiters.push((client, now));
        }
    }

    /// The clients waiting for an attempt, taken out; with `committed`, those waiting for
    /// any later attempt too (committed for good: every later attempt has this outcome).
    pub(super) fn take_outcome(&mut self, tx: TxId, attempt: Attempt, committed: bool) -> Vec<ClientId> {
        let mut clients: Vec<ClientId> =
            self.outcomes.remove(&(tx, attempt)).unwrap_or_default().into_iter().map(|(c, _)| c).collect();
        if committed {
            let later: Vec<_> =
                self.outcomes.range((tx, attempt)..).take_while(|(key, _)| key.0 == tx).map(|(key, _)| *key).collect();
            for key in later {
                clients.extend(self.outcomes.remove(&key).unwrap_or_default().into_iter().map(|(c, _)| c));
            }
        }
        clients
    }

    /// Forgets clients whose connection closed.
    pub(super) fn forget_clients(&mut self, gone: &[ClientId]) {
        self.requests.retain(|_, (client, _)| !gone.contains(client));
        self.outcomes.retain(|_, waiters| {
            waiters.retain(|(client, _)| !gone.contains(client));
            !waiters.is_empty()
        });
    }

    /// Forgets clients that waited longer than `WAITING_MS_MAX`.
    pub(super) fn sweep(&mut self, now: TimeMs) {
        let fresh = |since: TimeMs| now.0 < since.0.saturating_add(WAITING_MS_MAX);
        self.requests.retain(|_, (_, since)| fresh(*since));
        self.outcomes.retain(|_, waiters| {
            waiters.retain(|(_, since)| fresh(*since));
            !waiters.is_empty()
        });
    }
}
