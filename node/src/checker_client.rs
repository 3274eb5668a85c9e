//! `CheckerClient`: how a replica asks a contract's checker for a verdict
//! (DESIGN.md §4, docs/checkers.md §2). Checks waiting for the same checker go
//! together in one `POST /batch` call; a checker without `/batch` (a 404 or
//! 405 there) is asked once per request instead, from then on. Keep-alive
//! connections, a timeout per call, retries with backoff on whatever may pass
//! (no connection, a timeout, a 5xx) until the replica's bound (`checker_timeout_ms`,
//! 2 s): an unreachable checker is never a `false`, but "no verdict" once the bound has
//! passed, which the replica seals as such (f+1 of them abort the attempt). A 4xx with a checker's error body is the
//! checker refusing the request itself, reported as such; any other 4xx (a
//! proxy, a wrong URL, a 429) is tried again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use shardspace_core::CheckerRequest;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::time::Instant;

/// Requests in one batch call: a checker takes up to 256 (`CHECKER_BATCH_MAX` of both SDKs).
pub const BATCH_REQUESTS_MAX: usize = 64;

/// The bytes of one batch call's body, below the checkers' 2 MiB (`CHECKER_BODY_BYTES_MAX`).
pub const BATCH_BYTES_MAX: usize = 1024 * 1024;

/// Batch calls in flight to one checker: while they run, the next batch fills up.
pub const BATCHES_IN_FLIGHT_MAX: usize = 2;

/// Single calls in flight to one checker (one without `/batch`, or a request a batch could
/// not carry). A checker serves every replica of the cluster and both SDKs hold 256
/// connections by default: at 8 (+ 2 batches) each, one checker serves 25 replicas; a larger
/// cluster runs more checkers or raises their limit.
pub const CALLS_IN_FLIGHT_MAX: usize = 8;

/// Checks waiting for a batch, per checker; more wait for room (back-pressure).
pub const BATCH_QUEUE_MAX: usize = 1024;

/// Bounds on asking a checker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckerClientLimits {
    /// One HTTP call.
    pub call_timeout: Duration,
    /// How long tries may keep failing, from the first failure, before there is no verdict.
    pub deadline: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

impl Default for CheckerClientLimits {
    fn default() -> Self {
        Self::giving_up_after(Duration::from_millis(crate::config::CHECKER_TIMEOUT_MS))
    }
}

impl CheckerClientLimits {
    /// Gives up `deadline` after the first failed try; no call takes longer than that either.
    pub fn giving_up_after(deadline: Duration) -> Self {
        Self {
            call_timeout: deadline.min(Duration::from_secs(5)),
            deadline,
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
        }
    }
}

/// What a checker answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckOutcome {
    /// A verdict: the transaction is valid for the contract, or not (with its reason).
    Verdict { success: bool, reason: Option<String> },
    /// The checker refused the request (4xx): unknown contract or method, a malformed request.
    Refused { status: u16, kind: String, message: String },
}

/// No verdict: the checker could not be reached or kept failing until the deadline.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("no verdict from the checker at {url} after {tries} tries: {last_error}")]
pub struct CheckerUnavailable {
    pub url: String,
    pub tries: u32,
    pub last_error: String,
}

#[derive(Deserialize)]
struct VerdictBody {
    success: bool,
    reason: Option<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    kind: String,
    message: String,
}

#[derive(Clone, Debug)]
pub struct CheckerClient {
    http: reqwest::Client,
    limits: CheckerClientLimits,
    /// One per checker base URL, made on first use.
    checkers: Arc<Mutex<HashMap<String, Arc<Checker>>>>,
}

/// One checker, as this client calls it.
#[derive(Debug)]
struct Checker {
    /// Until it shows it has no `/batch` (see `send_batch`).
    takes_batches: AtomicBool,
    batch_queue: mpsc::Sender<Queued>,
    single_calls: Semaphore,
}

/// A check waiting for a batch: the request's JSON, and where its result goes.
#[derive(Debug)]
struct Queued {
    request: String,
    reply: oneshot::Sender<Result<CheckOutcome, TryError>>,
}

/// Why one try gave no outcome.
#[derive(Clone, Debug)]
enum TryError {
    /// It may pass: try again after a backoff.
    Failed(String),
    /// The batch was not taken (no `/batch` here, or refused as a whole): call alone, now.
    Alone,
}

impl CheckerClient {
    pub fn new(limits: CheckerClientLimits) -> Result<Self, reqwest::Error> {
        // Idle connections hold a checker's connection slots (256 by default in both SDKs):
        // keep no more than the checks this replica runs at once.
        let http = reqwest::Client::builder()
            .timeout(limits.call_timeout)
            .tcp_nodelay(true)
            .pool_max_idle_per_host(CALLS_IN_FLIGHT_MAX + BATCHES_IN_FLIGHT_MAX)
            .build()?;
        Ok(Self { http, limits, checkers: Arc::default() })
    }

    /// The checker at `base_url`; its batch task starts on first use.
    fn checker(&self, base_url: &str) -> Arc<Checker> {
        let mut checkers = self.checkers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let checker = checkers.entry(base_url.to_string()).or_insert_with(|| {
            let (batch_queue, queued) = mpsc::channel(BATCH_QUEUE_MAX);
            let checker = Arc::new(Checker {
                takes_batches: AtomicBool::new(true),
                batch_queue,
                single_calls: Semaphore::new(CALLS_IN_FLIGHT_MAX),
            });
            let url = format!("{}/batch", base_url.trim_end_matches('/'));
            tokio::spawn(run_batches(self.http.clone(), url, Arc::downgrade(&checker), queued));
            checker
        });
        Arc::clone(checker)
    }

    /// Asks the checker at `base_url` about `request`, trying again until the deadline.
    pub async fn check(&self, base_url: &str, request: &CheckerRequest) -> Result<CheckOutcome, CheckerUnavailable> {
        let url = format!("{}/{}/{}", base_url.trim_end_matches('/'), request.contract_id, request.method_id);
        let body = serde_json::to_string(request).expect("a checker request encodes as JSON");
        let checker = self.checker(base_url);
        // The bound runs from the first failed try: time waiting for a batch under load is
        // not the checker failing.
        let mut deadline = None;
        let mut backoff = self.limits.backoff_min;
        let mut tries = 0;
        // Once a batch carrying this request failed, it goes alone: a request that makes
        // its checker hang or fail must not take the others of its batches down with it.
        let mut alone = false;
        loop {
            tries += 1;
            let batched = match !alone && checker.takes_batches.load(Ordering::Relaxed) {
                true => checker.batched(body.clone()).await,
                false => Err(TryError::Alone),
            };
            let answer = match batched {
                Ok(outcome) => Ok(outcome),
                Err(TryError::Failed(error)) if alone => Err(error),
                Err(TryError::Failed(_) | TryError::Alone) => {
                    alone = true;
                    // The semaphore is never closed; were it, the call would go ahead unbounded.
                    let _slot = checker.single_calls.acquire().await;
                    self.try_once(&url, body.clone()).await
                }
            };
            let last_error = match answer {
                Ok(outcome) => return Ok(outcome),
                Err(error) => error,
            };
            let now = Instant::now();
            let deadline = *deadline.get_or_insert(now + self.limits.deadline);
            if now >= deadline {
                return Err(CheckerUnavailable { url, tries, last_error });
            }
            tracing::debug!(%url, tries, last_error, "checker unavailable; trying again");
            // The last try is at the deadline: a checker back by then still gives its verdict.
            tokio::time::sleep(backoff.min(deadline - now)).await;
            backoff = (backoff * 2).min(self.limits.backoff_max);
        }
    }

    /// One call: `Err` for what may pass (no connection, a timeout, a 5xx, a garbled answer).
    async fn try_once(&self, url: &str, body: String) -> Result<CheckOutcome, String> {
        let (status, body) = post(&self.http, url, body).await?;
        outcome(status, &body)
    }
}

impl Checker {
    /// One try through the batch queue.
    async fn batched(&self, request: String) -> Result<CheckOutcome, TryError> {
        let (reply, answer) = oneshot::channel();
        if self.batch_queue.send(Queued { request, reply }).await.is_err() {
            return Err(TryError::Alone);
        }
        answer.await.unwrap_or(Err(TryError::Alone))
    }
}

async fn post(http: &reqwest::Client, url: &str, body: String) -> Result<(u16, Vec<u8>), String> {
    let request = http.post(url).header(reqwest::header::CONTENT_TYPE, "application/json").body(body);
    let response = request.send().await.map_err(|error| error.to_string())?;
    let status = response.status().as_u16();
    let body = response.bytes().await.map_err(|error| error.to_string())?;
    Ok((status, body.to_vec()))
}

/// What a single call's answer says.
fn outcome(status: u16, body: &[u8]) -> Result<CheckOutcome, String> {
    match serde_json::from_slice::<Value>(body) {
        Ok(answer) => read_answer(status, answer),
        Err(error) if status == 200 => Err(format!("a garbled verdict: {error}")),
        Err(_) => {
            let text: String = String::from_utf8_lossy(body).chars().take(200).collect();
            read_answer(status, Value::String(text))
        }
    }
}

/// What one answer says, parsed: a single call's body, or one result of a batch.
fn read_answer(status: u16, answer: Value) -> Result<CheckOutcome, String> {
    let text = || answer.to_string().chars().take(200).collect::<String>();
    match status {
        200 => {
            let verdict = VerdictBody::deserialize(&answer).map_err(|error| format!("a garbled verdict: {error}"))?;
            Ok(CheckOutcome::Verdict { success: verdict.success, reason: verdict.reason })
        }
        // A checker's own refusal names its kind; a 4xx without one (a proxy, a wrong
        // URL) or a 429 is not a verdict on the transaction: it may pass.
        429 => Err("status 429 (too many requests)".into()),
        400..=499 => match ErrorBody::deserialize(&answer) {
            Ok(ErrorBody { error }) => Ok(CheckOutcome::Refused { status, kind: error.kind, message: error.message }),
            Err(_) => Err(format!("status {status} without a checker's error body (is the URL right?): {}", text())),
        },
        _ => Err(format!("status {status}: {}", text())),
    }
}

/// Takes the checks queued for one checker, as many as wait (up to a batch), and sends
/// them in one call; at most `BATCHES_IN_FLIGHT_MAX` calls at once, so that checks
/// arriving meanwhile gather into the next. Ends when the client is gone.
async fn run_batches(
    http: reqwest::Client,
    url: String,
    checker: std::sync::Weak<Checker>,
    mut queued: mpsc::Receiver<Queued>,
) {
    let slots = Arc::new(Semaphore::new(BATCHES_IN_FLIGHT_MAX));
    let mut carried = None;
    loop {
        let first = match carried.take() {
            Some(first) => first,
            None => match queued.recv().await {
                Some(first) => first,
                None => return,
            },
        };
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else { return };
        let mut bytes = first.request.len();
        let mut batch = vec![first];
        while batch.len() < BATCH_REQUESTS_MAX {
            match queued.try_recv() {
                Ok(next) if bytes + next.request.len() < BATCH_BYTES_MAX => {
                    bytes += next.request.len() + 1;
                    batch.push(next);
                }
                Ok(next) => {
                    carried = Some(next);
                    break;
                }
                Err(_) => break,
            }
        }
        let (http, url, checker) = (http.clone(), url.clone(), checker.clone());
        tokio::spawn(async move {
            let _slot = slot;
            send_batch(&http, &url, &checker, batch).await;
        });
    }
}

async fn send_batch(http: &reqwest::Client, url: &str, checker: &std::sync::Weak<Checker>, batch: Vec<Queued>) {
    let mut body = String::from(r#"{"requests":["#);
    for (index, queued) in batch.iter().enumerate() {
        if index > 0 {
            body.push(',');
        }
        body.push_str(&queued.request);
    }
    body.push_str("]}");
    let no_batches = || {
        if let Some(checker) = checker.upgrade()
            && checker.takes_batches.swap(false, Ordering::Relaxed)
        {
            tracing::info!(%url, "this checker takes no batches: asking it once per request from now on");
        }
        Err(TryError::Alone)
    };
    let results = match post(http, url, body).await {
        // A checker written before batches, or by hand: nothing at `/batch` (404, 405, a
        // 4xx without a checker's error body), or a catch-all answer without `results`.
        Ok((200, body)) => match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(mut answer)) => match answer.remove("results") {
                None => no_batches(),
                Some(results) => read_results(results, batch.len()).map_err(TryError::Failed),
            },
            Ok(_) => no_batches(),
            Err(error) => Err(TryError::Failed(format!("a garbled batch answer: {error}"))),
        },
        Ok((404 | 405, _)) => no_batches(),
        Ok((status @ 400..=499, body)) if status != 429 && serde_json::from_slice::<ErrorBody>(&body).is_err() => {
            no_batches()
        }
        // Refused as a whole (too deep or too large together, say): each request alone.
        Ok((status @ 400..=499, _)) if status != 429 => {
            tracing::warn!(%url, status, "a checker refused a batch: asking once per request");
            Err(TryError::Alone)
        }
        Ok((status, body)) => Err(TryError::Failed(outcome(status, &body).err().unwrap_or_default())),
        Err(error) => Err(TryError::Failed(error)),
    };
    match results {
        Ok(results) => {
            for (queued, result) in batch.into_iter().zip(results) {
                let _ = queued.reply.send(result.map_err(TryError::Failed));
            }
        }
        Err(error) => {
            for queued in batch {
                let _ = queued.reply.send(Err(error.clone()));
            }
        }
    }
}

/// The results of a batch answer: one per request, each read as its own call's answer
/// (a result with `status` and `error` is that call's error answer).
fn read_results(results: Value, expected: usize) -> Result<Vec<Result<CheckOutcome, String>>, String> {
    let Value::Array(results) = results else { return Err("a batch answer whose results are not a list".into()) };
    if results.len() != expected {
        return Err(format!("a batch answer with {} results for {expected} requests", results.len()));
    }
    let read = |result: Value| {
        let status = match result.get("status") {
            None => 200,
            Some(status) => status.as_u64().and_then(|status| u16::try_from(status).ok()).unwrap_or(0),
        };
        read_answer(status, result)
    };
    Ok(results.into_iter().map(read).collect())
}
