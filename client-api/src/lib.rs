//! The client API (DESIGN.md §7), run as `shardspace api --config CLUSTER.toml`:
//! HTTP on `127.0.0.1:5000` by default, in front of the replicas' request
//! interface (`shardspace_node::cluster_client::ClusterClient`). It validates an
//! envelope before anything is sent, routes it by object id to every replica of
//! every concerned shard, picks the attempt from the shards' records, and waits
//! for f+1 matching signed outcomes from every concerned shard. Reads are
//! confirmed by f+1 matching signed answers. `native` holds the `/v1` endpoints,
//! `chainspace` the Chainspace-compatible `/api/1.0` ones.

mod chainspace;
pub mod error;
mod explorer;
mod feed;
mod metrics;
mod native;
pub mod outcome;
mod stats;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};
use shardspace_core::sbac::AbortReason;
use shardspace_core::{Envelope, Limits};
use shardspace_node::cluster_client::ClusterClient;
use shardspace_node::config::ClusterFile;
use shardspace_node::secure::Credentials;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::error::ApiError;
use crate::feed::Feed;
use crate::metrics::Metrics;
use crate::outcome::TxOutcome;
use crate::stats::Stats;

/// How long the API asks the checkers again for their reason, after a submission aborted
/// with `checker_rejected` (the outcome is answered without it past this).
const CHECKER_REASON_WAIT: Duration = Duration::from_secs(2);

/// How the API runs; every bound is a setting with a default.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    pub listen: SocketAddr,
    /// How long a submitter waits for the outcome before it is told to ask again.
    pub wait: Duration,
    /// Transactions in flight at once; beyond, `too_many_pending` (503).
    pub pending_max: usize,
    /// Open connections; beyond, new ones wait in the kernel's backlog.
    pub connections_max: usize,
    /// The largest request body.
    pub body_bytes_max: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 5000)),
            wait: Duration::from_secs(30),
            pending_max: 1_000,
            connections_max: 512,
            body_bytes_max: shardspace_core::limits::ENVELOPE_BYTES_MAX,
        }
    }
}

/// What every handler shares.
#[derive(Debug)]
pub struct Api {
    client: ClusterClient,
    cluster: String,
    /// The contracts and checkers the cluster file names (new ones when it is reloaded).
    known: std::sync::RwLock<Arc<Known>>,
    limits: Limits,
    config: ApiConfig,
    pending: Arc<Semaphore>,
    feed: Arc<Feed>,
    stats: Arc<Stats>,
    metrics: Metrics,
}

type Shared = Arc<Api>;

/// What the cluster file says of contracts.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Known {
    /// The cluster-wide checker URLs.
    pub checkers: std::collections::BTreeMap<String, String>,
    /// Every contract some replica has a checker for.
    pub contracts: std::collections::BTreeSet<String>,
}

impl Known {
    fn of(file: &ClusterFile) -> Self {
        Self { checkers: file.checkers.clone(), contracts: file.contracts() }
    }
}

impl Api {
    /// The API of the cluster in `file`, which reaches the replicas as the client whose
    /// key `credentials` holds.
    pub fn new(file: &ClusterFile, credentials: Credentials, config: ApiConfig) -> Result<Self, ApiError> {
        let client = ClusterClient::new(file, credentials, config.wait)?;
        let stats = Arc::new(Stats::default());
        Ok(Self {
            feed: Arc::new(Feed::new(client.clone(), Arc::clone(&stats))),
            stats,
            client,
            cluster: file.cluster.clone(),
            known: std::sync::RwLock::new(Arc::new(Known::of(file))),
            limits: Limits::default(),
            pending: Arc::new(Semaphore::new(config.pending_max.max(1))),
            config,
            metrics: Metrics::default(),
        })
    }

    /// The contracts and checkers as the cluster file last said.
    pub fn known(&self) -> Arc<Known> {
        Arc::clone(&self.known.read().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Takes the contracts of a reloaded cluster file (the same cluster: its shards and
    /// replicas need a restart to change, and each such change is logged); says whether
    /// the contracts changed.
    pub fn reload(&self, file: &ClusterFile) -> bool {
        let cluster_renamed = (file.cluster != self.cluster).then_some("the cluster's name");
        for what in [cluster_renamed, self.client.needs_restart_for(file)].into_iter().flatten() {
            tracing::warn!(what, "the cluster file changes {what}: not applied until this API restarts");
        }
        let known = Known::of(file);
        let mut held = self.known.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let changed = **held != known;
        *held = Arc::new(known);
        changed
    }

    /// An envelope read from `body`, whose contracts the cluster file names, and its place
    /// among the pending ones: what a submission and a dry run both start with. Refused
    /// before anything is sent, so that a caller who does not wait hears it too.
    fn admit(&self, body: &[u8]) -> Result<(Envelope, tokio::sync::OwnedSemaphorePermit), ApiError> {
        let envelope = Envelope::from_json(body, &self.limits).inspect_err(|error| self.count_error(error.kind()))?;
        let known = self.known();
        if let Some(contract) = envelope.transaction.first_contract_not(|contract| known.contracts.contains(contract)) {
            self.count_error("unknown_contract");
            let message = format!("no checker for contract {contract:?} in the cluster file");
            let hint = "check the contract's name";
            return Err(ApiError::new(StatusCode::BAD_REQUEST, "unknown_contract", message, hint));
        }
        let permit = Arc::clone(&self.pending).try_acquire_owned().map_err(|_| {
            self.count_error("too_many_pending");
            ApiError::too_many_pending(self.config.pending_max)
        })?;
        Ok((envelope, permit))
    }

    /// Validates and runs an envelope; waits for its outcome unless `wait` is false.
    async fn submit(self: &Arc<Self>, body: &[u8], wait: bool) -> Result<(TxOutcome, bool), ApiError> {
        let (envelope, permit) = self.admit(body)?;
        if !wait {
            let api = Arc::clone(self);
            let pending = TxOutcome::from_records(envelope.transaction.tx_id(), &Default::default(), Some(&envelope));
            tokio::spawn(async move {
                let _ = api.run(&envelope).await;
                drop(permit);
            });
            return Ok((pending, false));
        }
        let outcome = self.run(&envelope).await;
        drop(permit);
        outcome.map(|outcome| (outcome, true))
    }

    /// A dry run: the envelope validated as a submission is, then every replica of its
    /// shards asks its checkers; nothing is ordered.
    async fn dry_run(&self, body: &[u8]) -> Result<shardspace_node::cluster_client::DryRun, ApiError> {
        let (envelope, _permit) = self.admit(body)?;
        Ok(self.client.dry_run(&envelope).await?)
    }

    /// Says which concerned shards this API cannot reach (fewer than f+1 of their replicas
    /// connected), when a timeout is their doing.
    fn name_cut_off_shards(&self, error: &mut ApiError, envelope: &Envelope) {
        let shards: Vec<_> = self.client.map().concerned_shards(&envelope.transaction).into_iter().collect();
        let cut_off = self.client.cut_off(&shards);
        if cut_off.is_empty() {
            return;
        }
        let named: Vec<String> = cut_off
            .iter()
            .map(|(shard, down, refused)| {
                let replicas = self.client.addresses()[shard.0 as usize].len();
                let refused = match refused {
                    0 => String::new(),
                    refused => format!(" ({refused} refused this API's key)"),
                };
                format!("{down} of the {replicas} replicas of shard {}{refused}", shard.0)
            })
            .collect();
        let refused = cut_off.iter().any(|(_, _, refused)| *refused > 0);
        let tx = envelope.transaction.tx_id().to_hex();
        error.message = format!(
            "no outcome within {:?}: this API cannot connect to {}; txId {tx} (it may still be decided)",
            self.config.wait,
            named.join(", ")
        );
        error.hint = if refused {
            "list this API's key in the cluster file's [[clients]] (`shardspace keys`), restart the replicas with it, \
             then ask again"
        } else {
            "check the network between this API and those replicas, then ask again"
        }
        .into();
    }

    async fn run(&self, envelope: &Envelope) -> Result<TxOutcome, ApiError> {
        let tx = envelope.transaction.tx_id();
        let started = std::time::Instant::now();
        let result = {
            // Counted while in flight, even when the caller goes away and this is dropped.
            let _in_flight = InFlight::new(&self.metrics.in_flight);
            tokio::time::timeout(self.config.wait, self.client.process(envelope)).await
        };
        let mut outcome = match result {
            Ok(Ok(outcome)) => TxOutcome::from_outcome(&outcome, envelope),
            Ok(Err(error)) => {
                let mut error = ApiError::from(error);
                if error.kind == "timeout" {
                    self.name_cut_off_shards(&mut error, envelope);
                }
                error.tx.get_or_insert(tx.to_hex());
                self.count_error(&error.kind);
                return Err(error);
            }
            Err(_) => {
                let mut error = ApiError::from(shardspace_node::cluster_client::ClusterError::Timeout {
                    what: format!("txId {}", tx.to_hex()),
                    shards: Vec::new(),
                    waited: self.config.wait,
                });
                self.name_cut_off_shards(&mut error, envelope);
                error.tx = Some(tx.to_hex());
                self.count_error("timeout");
                return Err(error);
            }
        };
        self.metrics.latency_seconds.observe(started.elapsed().as_secs_f64());
        self.stats.latency(started.elapsed());
        if outcome.reason == Some(AbortReason::CheckerRejected.as_str()) {
            outcome.checker_reason = self.checker_reason(envelope).await;
        }
        let label = metrics::OutcomeLabel { outcome: outcome.outcome.into() };
        self.metrics.transactions.get_or_create(&label).inc();
        Ok(outcome)
    }

    /// Why the checkers rejected `envelope`, from a dry run of it: the reason f+1 replicas of
    /// a shard give alike (none if they do not within `CHECKER_REASON_WAIT`: one replica's
    /// word is not told as the checker's).
    async fn checker_reason(&self, envelope: &Envelope) -> Option<String> {
        let dry_run = self.client.dry_run_within(envelope, CHECKER_REASON_WAIT).await.ok()?;
        (dry_run.valid == Some(false) && dry_run.reason_agreed).then_some(dry_run.reason).flatten()
    }

    fn count_error(&self, kind: &str) {
        self.metrics.errors.get_or_create(&metrics::ErrorLabel { kind: kind.into() }).inc();
    }
}

/// Raises a gauge for as long as it lives.
struct InFlight<'a>(&'a prometheus_client::metrics::gauge::Gauge);

impl<'a> InFlight<'a> {
    fn new(gauge: &'a prometheus_client::metrics::gauge::Gauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Every endpoint; unknown paths and methods answer with a JSON error.
pub fn router(api: Shared) -> Router {
    let body_bytes_max = api.config.body_bytes_max;
    Router::new()
        .route("/v1/transactions", post(native::submit).get(native::transactions))
        .route("/v1/transactions/check", post(native::check))
        .route("/v1/transactions/{tx}", get(native::transaction))
        .route("/v1/objects", get(native::objects))
        .route("/v1/objects/{id}", get(native::object))
        .route("/v1/cluster", get(native::cluster))
        .route("/v1/events", get(native::events))
        .route("/v1/stats", get(native::stats))
        .route("/metrics", get(native::metrics))
        .route("/explorer", get(explorer::page))
        .route("/explorer/", get(explorer::page))
        .route("/explorer/explorer.js", get(explorer::script))
        .route("/explorer/explorer.css", get(explorer::style))
        .route("/api/1.0/", get(chainspace::index))
        .route("/api/1.0", get(chainspace::index))
        .route("/api/1.0/hashchain", get(chainspace::hashchain))
        .route("/api/1.0/transaction/process", post(chainspace::process))
        .route("/api/1.0/transaction/dump", post(chainspace::dump))
        .route("/api/1.0/objects", get(chainspace::objects))
        .route("/api/1.0/transactions", get(chainspace::transactions))
        .fallback(|| async { ApiError::no_such_path() })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "not allowed on this path",
                "see docs/api.md",
            )
        })
        .layer(DefaultBodyLimit::max(body_bytes_max))
        .with_state(api)
}

/// A bound API, ready to serve.
#[derive(Debug)]
pub struct ApiServer {
    listener: TcpListener,
    api: Shared,
}

impl ApiServer {
    pub async fn bind(file: &ClusterFile, credentials: Credentials, config: ApiConfig) -> Result<Self, ApiError> {
        let listen = config.listen;
        let listener = TcpListener::bind(listen).await.map_err(|error| {
            let message = format!("cannot listen on {listen}: {error}");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "unavailable", message, "is the port taken? try --listen")
        })?;
        Ok(Self { listener, api: Arc::new(Api::new(file, credentials, config)?) })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The API it serves, to reload its cluster file while it runs.
    pub fn api(&self) -> Shared {
        Arc::clone(&self.api)
    }

    pub async fn run(self, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let connections_max = self.api.config.connections_max;
        let feed = Arc::clone(&self.api.feed);
        let shutdown = async move {
            shutdown.await;
            feed.close(); // event streams never end by themselves: end them, or shutdown waits for ever
        };
        shardspace_node::http::serve(self.listener, router(self.api), connections_max, shutdown).await
    }
}
