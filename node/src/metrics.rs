//! `/metrics` of a replica (Prometheus text): where its log stands, what it
//! holds in memory, what S-BAC decided, and what the network dropped. The core
//! updates the gauges and counters; the HTTP server only reads them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::freeze::Freezes;
use crate::network::NetworkCounters;

/// Open connections to `/metrics` at once; past it the oldest idle one makes room.
const SCRAPERS_MAX: usize = 32;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabel {
    pub decision: String,
}

/// What the core reports.
#[derive(Debug, Default)]
pub struct NodeMetrics {
    pub height: Gauge,
    pub round: Gauge,
    pub executed: Gauge,
    pub mempool: Gauge,
    pub undecided_attempts: Gauge,
    pub envelopes_checking: Gauge,
    pub objects: Gauge,
    pub transactions: Gauge,
    pub votes_sent: Counter,
    pub decisions: Family<DecisionLabel, Counter>,
    pub checker_unavailable: Counter,
    pub envelopes_rejected: Counter,
    /// `Prepare`s and `Decide`s submitted standing in for the designated replica, and
    /// attempts passed on for taking long: a shard that often waits on stand-ins shows here.
    pub stand_in_submissions: Counter,
    pub passed_on: Counter,
    /// Group commits, and the steps they carried (their ratio: steps per fsync).
    pub store_commits: Counter,
    pub committed_steps: Counter,
    /// Roots signed, and the messages (verdicts, votes, answers) they sealed: their ratio
    /// is how many messages one signature covers.
    pub seals: Counter,
    pub sealed_messages: Counter,
}

impl NodeMetrics {
    fn registry(self: &Arc<Self>, network: &NetworkCounters, freezes: &Freezes) -> Registry {
        let mut registry = Registry::with_prefix("shardspace_replica");
        registry.register("decided_height", "Height of the last decided block", self.height.clone());
        registry.register("round", "Current BFT round", self.round.clone());
        registry.register("executed_requests", "Requests executed", self.executed.clone());
        registry.register("mempool_requests", "Requests waiting to be proposed", self.mempool.clone());
        registry.register("undecided_attempts", "Attempts voted on and not decided", self.undecided_attempts.clone());
        registry.register(
            "envelopes_checking",
            "Envelopes checked or waiting for certificates",
            self.envelopes_checking.clone(),
        );
        registry.register("objects", "Objects of this shard (all states)", self.objects.clone());
        registry.register("transactions", "Transactions recorded by this shard", self.transactions.clone());
        registry.register("votes_sent", "S-BAC votes sent", self.votes_sent.clone());
        registry.register("decisions", "Attempts decided, by decision", self.decisions.clone());
        registry.register("checker_unavailable", "Envelopes with no checker verdict", self.checker_unavailable.clone());
        registry.register("envelopes_rejected", "Envelopes refused before ordering", self.envelopes_rejected.clone());
        registry.register(
            "stand_in_submissions",
            "Prepare and Decide requests submitted standing in for the designated replica",
            self.stand_in_submissions.clone(),
        );
        registry.register(
            "passed_on",
            "Undecided attempts passed on to every concerned replica",
            self.passed_on.clone(),
        );
        registry.register(
            "store_commits",
            "Groups of writes made durable (one store command each)",
            self.store_commits.clone(),
        );
        registry.register("committed_steps", "Steps whose writes those groups carried", self.committed_steps.clone());
        registry.register("seals", "Batch roots signed (one signature each)", self.seals.clone());
        registry.register(
            "sealed_messages",
            "Verdicts, votes and answers those roots sealed",
            self.sealed_messages.clone(),
        );
        let gauge_of = |value: u64| {
            let gauge = Gauge::<i64>::default();
            gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
            gauge
        };
        let copy = |value: &std::sync::atomic::AtomicU64| gauge_of(value.load(Ordering::Relaxed));
        registry.register("frames_rejected", "Peer frames refused (connection closed)", copy(&network.frames_rejected));
        registry.register("handshakes_rejected", "Peer handshakes refused", copy(&network.handshakes_rejected));
        registry.register("sends_dropped", "Messages dropped on a full peer queue", copy(&network.sends_dropped));
        registry.register(
            "freezes",
            "Times this replica found it had not run for a while",
            gauge_of(freezes.noticed()),
        );
        registry.register("freeze_resets", "Connections reset for reading across a freeze", gauge_of(freezes.resets()));
        registry
    }
}

#[derive(Clone, Debug)]
struct Scrape {
    metrics: Arc<NodeMetrics>,
    network: Arc<NetworkCounters>,
    freezes: Arc<Freezes>,
}

async fn scrape(State(scrape): State<Scrape>) -> impl IntoResponse {
    let mut text = String::new();
    if prometheus_client::encoding::text::encode(&mut text, &scrape.metrics.registry(&scrape.network, &scrape.freezes))
        .is_err()
    {
        tracing::error!("the metrics do not encode");
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text)
}

/// Serves `/metrics` on `listener` until shutdown.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<NodeMetrics>,
    network: Arc<NetworkCounters>,
    freezes: Arc<Freezes>,
    mut shutdown: watch::Receiver<bool>,
) {
    let address: Option<SocketAddr> = listener.local_addr().ok();
    let app = Router::new().route("/metrics", get(scrape)).with_state(Scrape { metrics, network, freezes });
    let stop = async move {
        let _ = shutdown.changed().await;
    };
    // With the API's bounds: a scraper's connections, however many or slow, cost little.
    if let Err(error) = crate::http::serve(listener, app, SCRAPERS_MAX, stop).await {
        tracing::warn!(?address, %error, "the metrics server stopped");
    }
}
