//! `CheckerClient`: how a replica asks a contract's checker for a verdict
//! (DESIGN.md §4). Keep-alive connections, a timeout per call, retries with
//! backoff on whatever may pass (no connection, a timeout, a 5xx): an unreachable
//! checker delays the verdict and never becomes a `false`. A 4xx with a
//! checker's error body is the checker refusing the request itself, reported
//! as such; any other 4xx (a proxy, a wrong URL, a 429) is tried again.

use std::time::Duration;

use serde::Deserialize;
use shardspace_core::CheckerRequest;
use tokio::time::Instant;

/// Bounds on asking a checker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckerClientLimits {
    /// One HTTP call.
    pub call_timeout: Duration,
    /// All the tries for one verdict together.
    pub deadline: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

impl Default for CheckerClientLimits {
    fn default() -> Self {
        Self {
            call_timeout: Duration::from_secs(5),
            deadline: Duration::from_secs(30),
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
}

impl CheckerClient {
    pub fn new(limits: CheckerClientLimits) -> Result<Self, reqwest::Error> {
        // Idle connections hold a checker's connection slots (256 by default in both SDKs):
        // keep no more than the checks this replica runs at once.
        let http = reqwest::Client::builder()
            .timeout(limits.call_timeout)
            .tcp_nodelay(true)
            .pool_max_idle_per_host(crate::checking::CHECKS_IN_FLIGHT_MAX)
            .build()?;
        Ok(Self { http, limits })
    }

    /// Asks the checker at `base_url` about `request`, trying again until the deadline.
    pub async fn check(&self, base_url: &str, request: &CheckerRequest) -> Result<CheckOutcome, CheckerUnavailable> {
        let url = format!("{}/{}/{}", base_url.trim_end_matches('/'), request.contract_id, request.method_id);
        let deadline = Instant::now() + self.limits.deadline;
        let mut backoff = self.limits.backoff_min;
        let mut tries = 0;
        loop {
            tries += 1;
            let last_error = match self.try_once(&url, request).await {
                Ok(outcome) => return Ok(outcome),
                Err(error) => error,
            };
            if Instant::now() + backoff >= deadline {
                return Err(CheckerUnavailable { url, tries, last_error });
            }
            tracing::debug!(%url, tries, last_error, "checker unavailable; trying again");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(self.limits.backoff_max);
        }
    }

    /// One call: `Err` for what may pass (no connection, a timeout, a 5xx, a garbled answer).
    async fn try_once(&self, url: &str, request: &CheckerRequest) -> Result<CheckOutcome, String> {
        let response = self.http.post(url).json(request).send().await.map_err(|error| error.to_string())?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(|error| error.to_string())?;
        match status {
            200 => {
                let verdict: VerdictBody =
                    serde_json::from_slice(&body).map_err(|error| format!("a garbled verdict: {error}"))?;
                Ok(CheckOutcome::Verdict { success: verdict.success, reason: verdict.reason })
            }
            // A checker's own refusal names its kind; a 4xx without one (a proxy, a wrong
            // URL) or a 429 is not a verdict on the transaction: it may pass.
            429 => Err("status 429 (too many requests)".into()),
            400..=499 => match serde_json::from_slice::<ErrorBody>(&body) {
                Ok(ErrorBody { error }) => {
                    Ok(CheckOutcome::Refused { status, kind: error.kind, message: error.message })
                }
                Err(_) => {
                    let text: String = String::from_utf8_lossy(&body).chars().take(200).collect();
                    Err(format!("status {status} without a checker's error body (is the URL right?): {text}"))
                }
            },
            _ => Err(format!("status {status}")),
        }
    }
}
