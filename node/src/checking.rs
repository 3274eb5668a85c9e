//! Asking the contracts' checkers about an envelope (DESIGN.md §4), off the
//! core task: the checker of every dependency, depth first, then the checker of
//! the transaction itself. The verdict comes back to the core on a channel; no
//! answer (a checker down until the deadline) comes back as `Unavailable`,
//! never as a `false`.

use std::collections::BTreeMap;
use std::sync::Arc;

use shardspace_core::{CheckerRequest, Envelope, Transaction, TxId};
use tokio::sync::mpsc;

use crate::checker_client::{CheckOutcome, CheckerClient};

/// What the checkers said about one envelope.
#[derive(Debug)]
pub struct Checked {
    pub tx: TxId,
    /// `Envelope::digest` of the envelope checked.
    pub envelope: [u8; 32],
    pub verdict: Result<(bool, Option<String>), String>,
}

/// The checker URL of each contract, and the client that calls them.
#[derive(Clone, Debug)]
pub struct Checkers {
    client: CheckerClient,
    urls: Arc<BTreeMap<String, String>>,
    tx_checked: mpsc::Sender<Checked>,
}

impl Checkers {
    pub fn new(client: CheckerClient, urls: BTreeMap<String, String>, tx_checked: mpsc::Sender<Checked>) -> Self {
        Self { client, urls: Arc::new(urls), tx_checked }
    }

    /// The first contract of the transaction (dependencies included) that has no checker here.
    pub fn unknown_contract(&self, transaction: &Transaction) -> Option<String> {
        transaction.first_contract_not(|contract| self.urls.contains_key(contract)).map(str::to_string)
    }

    /// Starts checking `envelope`; the verdict arrives on the core's channel.
    pub fn start(&self, envelope: &Envelope) {
        let (tx, digest) = (envelope.transaction.tx_id(), envelope.digest());
        let request = CheckerRequest::from_envelope(envelope);
        let checkers = self.clone();
        tokio::spawn(async move {
            let verdict = match request {
                Ok(request) => checkers.check_tree(&request).await,
                // Validation put every input and reference in the store; this cannot happen.
                Err(error) => Err(format!("no checker request can be built: {error}")),
            };
            let _ = checkers.tx_checked.send(Checked { tx, envelope: digest, verdict }).await;
        });
    }

    /// Depth first: a dependency that fails makes the whole transaction fail.
    async fn check_tree(&self, request: &CheckerRequest) -> Result<(bool, Option<String>), String> {
        let mut order = Vec::new();
        post_order(request, &mut order);
        for node in order {
            let url = self.urls.get(&node.contract_id).ok_or_else(|| format!("no checker for {}", node.contract_id))?;
            let call = format!("{}.{}", node.contract_id, node.method_id);
            match self.client.check(url, node).await.map_err(|error| error.to_string())? {
                CheckOutcome::Verdict { success: true, .. } => {}
                CheckOutcome::Verdict { success: false, reason } => {
                    let reason = reason.map_or_else(|| format!("{call} said no"), |reason| format!("{call}: {reason}"));
                    return Ok((false, Some(reason)));
                }
                // A checker is a pure function of its request: refusing it (an unknown
                // method, a request it cannot read) is a verdict against the transaction.
                CheckOutcome::Refused { status, kind, message } => {
                    return Ok((false, Some(format!("{call} refused the request ({status} {kind}): {message}"))));
                }
            }
        }
        Ok((true, None))
    }
}

fn post_order<'a>(request: &'a CheckerRequest, order: &mut Vec<&'a CheckerRequest>) {
    for dependency in &request.dependencies {
        post_order(dependency, order);
    }
    order.push(request);
}
