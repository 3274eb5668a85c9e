//! Asking the contracts' checkers about an envelope (DESIGN.md §4), off the
//! core task: the checker of every dependency, depth first, then the checker of
//! the transaction itself. The verdict comes back to the core on a channel; no
//! answer (a checker down until `checker_timeout_ms`) comes back as an error, which
//! the core seals as "no verdict" for the attempt, never as a `false`.

use std::collections::BTreeMap;
use std::sync::Arc;

use shardspace_core::sbac::replica::{ClientReply, RejectKind};
use shardspace_core::{CheckerRequest, Envelope, TxId};
use tokio::sync::mpsc;

use crate::checker_client::{CheckOutcome, CheckerClient};

pub use shardspace_core::sbac::replica::Checked;

/// Envelopes this replica checks at once; the others wait their turn. Their checks go to
/// each checker in batches over a few connections (`checker_client`): without such bounds,
/// 8 replicas under load opened more connections than the Python server takes, and 32
/// kept the Rust one's slots with idle connections until checks timed out.
pub const ENVELOPES_IN_CHECK_MAX: usize = 256;

/// Dry runs (`ClientRequest::Check`) checked at once, apart from the envelopes being
/// prepared: past it a dry run is refused `busy` at once, so that dry runs never hold up a
/// transaction's checks.
pub const DRY_RUNS_MAX: usize = 16;

/// A checker down under load fails every envelope: one warning a second, with a count.
static NO_VERDICT_WARNINGS: crate::throttle::Throttle =
    crate::throttle::Throttle::new(std::time::Duration::from_secs(1));

/// The checker URL of each contract, and the client that calls them.
#[derive(Clone, Debug)]
pub struct Checkers {
    client: CheckerClient,
    urls: Arc<BTreeMap<String, String>>,
    tx_checked: mpsc::Sender<Checked>,
    in_flight: Arc<tokio::sync::Semaphore>,
    dry_runs: Arc<tokio::sync::Semaphore>,
}

impl Checkers {
    pub fn new(client: CheckerClient, urls: BTreeMap<String, String>, tx_checked: mpsc::Sender<Checked>) -> Self {
        let in_flight = Arc::new(tokio::sync::Semaphore::new(ENVELOPES_IN_CHECK_MAX));
        let dry_runs = Arc::new(tokio::sync::Semaphore::new(DRY_RUNS_MAX));
        Self { client, urls: Arc::new(urls), tx_checked, in_flight, dry_runs }
    }

    /// The checkers from now on (the cluster file reloaded); checks under way keep theirs.
    pub fn set_urls(&mut self, urls: BTreeMap<String, String>) {
        self.urls = Arc::new(urls);
    }

    /// The contracts that have a checker here.
    pub fn contracts(&self) -> std::collections::BTreeSet<String> {
        self.urls.keys().cloned().collect()
    }

    /// Starts checking `envelope`; the verdict arrives on the core's channel.
    pub fn start(&self, envelope: &Envelope) {
        let (tx, digest) = (envelope.transaction.tx_id(), envelope.digest());
        let request = CheckerRequest::from_envelope(envelope);
        let checkers = self.clone();
        tokio::spawn(async move {
            // The semaphore is never closed; were it, the check would go ahead unbounded.
            let _permit = Arc::clone(&checkers.in_flight).acquire_owned().await;
            let verdict = match request {
                Ok(request) => checkers.check_tree(&request).await,
                // Validation put every input and reference in the store; this cannot happen.
                Err(error) => Err(format!("no checker request can be built: {error}")),
            };
            match &verdict {
                Ok((success, reason)) => tracing::debug!(%tx, success, reason, "checker verdict"),
                Err(error) => {
                    if let Some(held_back) = NO_VERDICT_WARNINGS.allow() {
                        tracing::warn!(%tx, %error, held_back, "no checker verdict within the bound: sealed as such");
                    }
                }
            }
            let _ = checkers.tx_checked.send(Checked { tx, envelope: digest, verdict }).await;
        });
    }

    /// A dry run: the checkers' verdict on `envelope`, sent on `reply` as
    /// `ClientReply::Checked`; `busy` at once past `DRY_RUNS_MAX`. The reply goes as any
    /// other (`try_send`: a client that does not read its replies loses it).
    pub fn dry_run(&self, tx: TxId, envelope: &Envelope, reply: mpsc::Sender<ClientReply>) {
        let Ok(permit) = Arc::clone(&self.dry_runs).try_acquire_owned() else {
            let reason =
                format!("{}: {DRY_RUNS_MAX} dry runs are being checked here: try again soon", RejectKind::Busy);
            let _ = reply.try_send(ClientReply::Checked { tx, valid: None, reason: Some(reason) });
            return;
        };
        let request = CheckerRequest::from_envelope(envelope);
        let checkers = self.clone();
        tokio::spawn(async move {
            let verdict = match request {
                Ok(request) => checkers.check_tree(&request).await,
                Err(error) => Err(format!("no checker request can be built: {error}")),
            };
            drop(permit);
            let (valid, reason) = match verdict {
                Ok((valid, reason)) => (Some(valid), reason),
                Err(error) => (None, Some(error)),
            };
            let _ = reply.try_send(ClientReply::Checked { tx, valid, reason });
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
