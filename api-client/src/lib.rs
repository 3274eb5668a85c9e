//! A client of the Shardspace API (`:5000`, docs/api.md), for Rust programs and the
//! `shardspace` CLI: submit envelopes (or dry-run them), read transactions and objects,
//! an object's history, wait for a transaction's outcome, and follow every transaction
//! the cluster decides (`events`), resuming after a dropped stream where it stopped.
//!
//! An API error (`{"error": {"kind", "message", "hint"}}`) comes back as `Error::Api`,
//! with its kind; no answer at all as `Error::Unreachable`.

mod events;

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use events::query_string;
pub use events::{Event, EventFilter, Events};

/// Where a local cluster's API listens.
pub const DEFAULT_URL: &str = "http://127.0.0.1:5000";
/// Longer than the API's own wait deadline, so that a slow commit is reported by the API.
const TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{status} {kind}: {message}{}", if hint.is_empty() { String::new() } else { format!(" (hint: {hint})") })]
    Api { status: u16, kind: String, message: String, hint: String, body: Value },
    #[error("cannot reach the API at {url}: {reason} (is the cluster running? `make start-all` starts one)")]
    Unreachable { url: String, reason: String },
    #[error("the API at {url} answered what this client cannot read: {reason}")]
    Unreadable { url: String, reason: String },
    #[error("{what} within {waited:?}: ask again later")]
    TimedOut { what: String, waited: Duration },
}

impl Error {
    /// The API's kind of error (`not_found`, `unknown_contract`, ...), if the API answered one.
    pub fn kind(&self) -> Option<&str> {
        match self {
            Self::Api { kind, .. } => Some(kind),
            _ => None,
        }
    }
}

/// A transaction's outcome as the API gives it.
#[derive(Clone, Debug, Deserialize)]
pub struct Outcome {
    #[serde(rename = "txId")]
    pub tx: String,
    /// `commit`, `abort` or `pending`.
    pub outcome: String,
    pub reason: Option<String>,
    pub attempt: u32,
    #[serde(default)]
    pub outputs: Vec<String>,
    #[serde(rename = "checkerReason")]
    pub checker_reason: Option<String>,
    /// The transaction itself, when read back (`transaction`).
    pub transaction: Option<Value>,
    /// The whole answer, each shard's part included.
    #[serde(skip)]
    pub json: Value,
}

impl Outcome {
    pub fn is_decided(&self) -> bool {
        self.outcome == "commit" || self.outcome == "abort"
    }
}

/// Which objects `Client::objects` lists: all of those given must hold.
#[derive(Clone, Debug, Default)]
pub struct ObjectFilter {
    pub contract: Option<String>,
    /// `active`, `locked` or `inactive`.
    pub status: Option<String>,
    /// A top-level field of the values (JSON) and the value it must have: bank's
    /// accounts of one owner are `("owner", key)`.
    pub field: Option<(String, String)>,
}

impl ObjectFilter {
    fn query(&self) -> Vec<(&'static str, String)> {
        let mut query = Vec::new();
        query.extend(self.contract.clone().map(|contract| ("contract", contract)));
        query.extend(self.status.clone().map(|status| ("status", status)));
        if let Some((name, equals)) = &self.field {
            query.extend([("field", name.clone()), ("equals", equals.clone())]);
        }
        query
    }
}

/// An object, the transactions that created and consumed it, and the objects before it
/// (its creator's inputs) and after it (its consumer's outputs).
#[derive(Clone, Debug)]
pub struct History {
    pub object: Value,
    pub created_by: Option<Outcome>,
    pub consumed_by: Option<Outcome>,
    pub before: Vec<String>,
    pub after: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    /// A client of the API at `base` (`http://host:port`).
    pub fn new(base: &str) -> Result<Self, Error> {
        let http = reqwest::Client::builder().timeout(TIMEOUT).build().map_err(|error| Error::Unreachable {
            url: base.to_string(),
            reason: format!("no HTTP client: {error}"),
        })?;
        Ok(Self { base: base.trim_end_matches('/').to_string(), http })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    async fn send(&self, request: reqwest::RequestBuilder, url: &str) -> Result<Value, Error> {
        let unreachable = |reason: String| Error::Unreachable { url: url.to_string(), reason };
        let response = request.send().await.map_err(|error| unreachable(error.to_string()))?;
        let status = response.status().as_u16();
        let text = response.text().await.map_err(|error| unreachable(error.to_string()))?;
        let body: Value = serde_json::from_str(&text).map_err(|error| Error::Unreadable {
            url: url.to_string(),
            reason: format!("{status} {error}: {}", text.chars().take(200).collect::<String>()),
        })?;
        if let Some(error) = body.get("error") {
            let text = |key: &str| error.get(key).and_then(Value::as_str).unwrap_or_default().to_string();
            let (kind, message, hint) = (text("kind"), text("message"), text("hint"));
            return Err(Error::Api { status, kind, message, hint, body });
        }
        if !(200..300).contains(&status) {
            let message = body.to_string();
            return Err(Error::Api { status, kind: format!("http_{status}"), message, hint: String::new(), body });
        }
        Ok(body)
    }

    async fn get(&self, path: &str) -> Result<Value, Error> {
        let url = format!("{}{path}", self.base);
        self.send(self.http.get(&url), &url).await
    }

    async fn post(&self, path: &str, body: Vec<u8>) -> Result<Value, Error> {
        let url = format!("{}{path}", self.base);
        self.send(self.http.post(&url).header("content-type", "application/json").body(body), &url).await
    }

    fn outcome(json: Value) -> Result<Outcome, Error> {
        let mut outcome: Outcome = serde_json::from_value(json.clone())
            .map_err(|error| Error::Unreadable { url: "an outcome".into(), reason: error.to_string() })?;
        outcome.json = json;
        Ok(outcome)
    }

    /// Submits an envelope (its JSON) and waits for its outcome, unless `wait` is false.
    pub async fn submit(&self, envelope: Vec<u8>, wait: bool) -> Result<Outcome, Error> {
        let path = if wait { "/v1/transactions" } else { "/v1/transactions?wait=false" };
        Self::outcome(self.post(path, envelope).await?)
    }

    /// Asks the contracts' checkers about an envelope without ordering it.
    pub async fn dry_run(&self, envelope: Vec<u8>) -> Result<Value, Error> {
        self.post("/v1/transactions/check", envelope).await
    }

    pub async fn transaction(&self, tx: &str) -> Result<Outcome, Error> {
        Self::outcome(self.get(&format!("/v1/transactions/{tx}")).await?)
    }

    pub async fn object(&self, id: &str) -> Result<Value, Error> {
        self.get(&format!("/v1/objects/{id}")).await
    }

    pub async fn cluster(&self) -> Result<Value, Error> {
        self.get("/v1/cluster").await
    }

    /// A page of decided attempts that `filter` keeps, after `after` (the `next` of the page
    /// before), at most `limit`: `{transactions, next, more}`.
    pub async fn transactions(
        &self,
        filter: &EventFilter,
        after: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Value, Error> {
        self.page("/v1/transactions", filter.query(), after, limit).await
    }

    /// A page of the objects that `filter` lists, after `after` (the `next` of the page
    /// before), at most `limit`: `{objects, next, more}`. A page may hold fewer than
    /// `limit` and still have `more`.
    pub async fn objects(
        &self,
        filter: &ObjectFilter,
        after: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Value, Error> {
        self.page("/v1/objects", filter.query(), after, limit).await
    }

    /// A page of a listing at `path`, filtered by `query`, after a cursor, at most `limit`.
    async fn page(
        &self,
        path: &str,
        mut query: Vec<(&'static str, String)>,
        after: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Value, Error> {
        query.extend(after.map(|after| ("after", after.to_string())));
        query.extend(limit.map(|limit| ("limit", limit.to_string())));
        self.get(&format!("{path}{}", query_string(&query))).await
    }

    pub async fn stats(&self) -> Result<Value, Error> {
        self.get("/v1/stats").await
    }

    /// The outcome of `tx` once it is decided, asking every `every`; a transaction no shard
    /// knows yet is waited for too.
    pub async fn wait_for(&self, tx: &str, timeout: Duration, every: Duration) -> Result<Outcome, Error> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match self.transaction(tx).await {
                Ok(outcome) if outcome.is_decided() => return Ok(outcome),
                Ok(_) => {}
                Err(error) if error.kind() == Some("not_found") => {}
                Err(error) => return Err(error),
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::TimedOut { what: format!("{tx} was not decided"), waited: timeout });
            }
            tokio::time::sleep(every).await;
        }
    }

    /// An object and what happened around it.
    pub async fn history(&self, id: &str) -> Result<History, Error> {
        let object = self.object(id).await?;
        let read = |field: &str| object.get(field).and_then(Value::as_str).map(str::to_string);
        let created_by = match read("createdBy") {
            Some(tx) => Some(self.transaction(&tx).await?),
            None => None,
        };
        let consumed_by = match read("consumedBy") {
            Some(tx) => Some(self.transaction(&tx).await?),
            None => None,
        };
        let ids = |value: Option<&Value>| -> Vec<String> {
            let listed = value.and_then(Value::as_array).into_iter().flatten();
            listed.filter_map(Value::as_str).map(str::to_string).collect()
        };
        let before = ids(created_by.as_ref().and_then(|tx| tx.transaction.as_ref()?.get("inputIDs")));
        let after = consumed_by.as_ref().map(|tx| tx.outputs.clone()).unwrap_or_default();
        Ok(History { object, created_by, consumed_by, before, after })
    }

    /// Every attempt the cluster decides from now on, or after `last_event_id`, that
    /// `filter` keeps (see `Events`).
    pub fn events(&self, last_event_id: Option<String>, filter: EventFilter) -> Events {
        Events::new(self.clone(), last_event_id, filter)
    }

    fn http(&self) -> &reqwest::Client {
        &self.http
    }
}
