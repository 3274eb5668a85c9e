//! The Chainspace-compatible endpoints (`/api/1.0`): Chainspace's outcome
//! strings, and `success` as the string `"True"` or `"False"`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use shardspace_core::sbac::ObjectStatus;
use shardspace_node::client::{Listing, PAGE_MAX, Page};

use crate::Shared;
use crate::error::ApiError;
use crate::native::body_or_error;

/// Chainspace's answer to an error: `{"success": "False", "message": ...}` (with our kind).
fn failure(error: ApiError) -> Response {
    let body = json!({"success": "False", "message": error.message, "kind": error.kind, "txId": error.tx});
    (error.status, Json(body)).into_response()
}

/// `POST /api/1.0/transaction/process`: waits; 200 `accepted_t_commit` or 502 `prepared_t_abort`.
pub async fn process(State(api): State<Shared>, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body_or_error(&api, body) {
        Ok(body) => body,
        Err(error) => return failure(error),
    };
    match api.submit(&body, true).await {
        Ok((outcome, _)) if outcome.committed() => {
            let body = json!({"success": "True", "outcome": "accepted_t_commit", "txId": outcome.tx,
                "outputs": outcome.outputs, "shards": outcome.shards});
            (StatusCode::OK, Json(body)).into_response()
        }
        Ok((outcome, _)) => {
            let body = json!({"success": "False", "outcome": "prepared_t_abort", "txId": outcome.tx,
                "reason": outcome.reason, "shards": outcome.shards});
            (StatusCode::BAD_GATEWAY, Json(body)).into_response()
        }
        Err(error) => failure(error),
    }
}

/// `POST /api/1.0/transaction/dump`: takes the transaction and returns at once.
pub async fn dump(State(api): State<Shared>, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body_or_error(&api, body) {
        Ok(body) => body,
        Err(error) => return failure(error),
    };
    match api.submit(&body, false).await {
        Ok((outcome, _)) => Json(json!({"success": "True", "txId": outcome.tx})).into_response(),
        Err(error) => failure(error),
    }
}

/// `GET /api/1.0/` (and `/api/1.0`): Chainspace's index, its endpoints as absolute URLs
/// on the host the client asked, and which implementation and cluster answer.
pub async fn index(State(api): State<Shared>, headers: HeaderMap) -> Json<Value> {
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|host| host.to_str().ok())
        .filter(|host| !host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c)))
        .map_or_else(|| api.config.listen.to_string(), String::from);
    let url = |path: &str| format!("http://{host}/api/1.0{path}");
    Json(json!({
        "service-name": "Chainspace Client API",
        "version": "1.0",
        "endpoints": {
            "index": url("/"),
            "transactions": url("/transactions"),
            "objects": url("/objects"),
            "hashchain": url("/hashchain"),
            "process-transaction": url("/transaction/process"),
            "dump-transaction": url("/transaction/dump"),
        },
        "implementation": format!("shardspace {}", env!("CARGO_PKG_VERSION")),
        "cluster": api.cluster,
        "shards": api.client.addresses().len(),
    }))
}

#[derive(Debug, Deserialize)]
pub struct PageQuery {
    /// The last id of the previous page.
    after: Option<String>,
    limit: Option<u32>,
}

fn after(query: &PageQuery) -> Result<Option<[u8; 32]>, ApiError> {
    let Some(after) = &query.after else { return Ok(None) };
    let id: shardspace_core::ObjectId =
        after.parse().map_err(|error: shardspace_core::ids::BadId| ApiError::bad_id(error.to_string()))?;
    Ok(Some(id.0))
}

/// The page a `PageQuery` asks for (each shard's confirmed by f+1 of its replicas), and its limit.
async fn page(
    api: &Shared,
    query: Result<Query<PageQuery>, QueryRejection>,
    what: Listing,
) -> Result<(Page, usize), ApiError> {
    let Query(query) = query.map_err(crate::native::bad_query)?;
    let limit = query.limit.unwrap_or(PAGE_MAX).clamp(1, PAGE_MAX);
    let page = api.client.list(what, after(&query)?, limit).await?;
    Ok((page, limit as usize))
}

/// Chainspace's lists are whole; these are pages of up to 1,000, in id order. The next
/// page's address goes in a `Link` header (`rel="next"`), its cursor in `X-Next-After`.
fn list_response(items: Vec<Value>, path: &str, limit: usize, next: Option<String>) -> Response {
    let mut response = Json(Value::Array(items)).into_response();
    if let Some(next) = next {
        let link = format!("</api/1.0/{path}?after={next}&limit={limit}>; rel=\"next\"");
        for (name, value) in [("link", link), ("x-next-after", next)] {
            if let Ok(value) = axum::http::HeaderValue::from_str(&value) {
                response.headers_mut().insert(name, value);
            }
        }
    }
    response
}

/// A value as Chainspace lists it: a JSON object when the text is one, else the text.
fn chainspace_value(text: &str) -> Value {
    match serde_json::from_str::<Value>(text) {
        Ok(value @ Value::Object(_)) => value,
        _ => Value::String(text.to_string()),
    }
}

/// `GET /api/1.0/objects?after=ID&limit=N`: `[{id, value, status}]`, every shard's merged
/// in id order; `status` is `active` or `inactive` as in Chainspace (a locked object is
/// not consumed: `active`).
pub async fn objects(State(api): State<Shared>, query: Result<Query<PageQuery>, QueryRejection>) -> Response {
    let (page, limit) = match page(&api, query, Listing::Objects).await {
        Ok(found) => found,
        Err(error) => return failure(error),
    };
    let objects: Vec<Value> = page
        .objects
        .iter()
        .map(|(id, view)| {
            let status = if matches!(view.status, ObjectStatus::Inactive { .. }) { "inactive" } else { "active" };
            json!({"id": id.to_hex(), "value": chainspace_value(&view.value), "status": status})
        })
        .collect();
    let next = page.objects.last().filter(|_| objects.len() == limit || page.cut).map(|(id, _)| id.to_hex());
    list_response(objects, "objects", limit, next)
}

/// `GET /api/1.0/transactions?after=ID&limit=N`: Chainspace's transaction log, `[{timestamp,
/// transactionId, transactionJson}]`: the committed transactions, once each (a transaction
/// of several shards has a record in each), with the envelope that committed
/// (`{transaction, store}`). `timestamp` is null: the shards record no wall-clock time.
pub async fn transactions(State(api): State<Shared>, query: Result<Query<PageQuery>, QueryRejection>) -> Response {
    let (page, limit) = match page(&api, query, Listing::Transactions).await {
        Ok(found) => found,
        Err(error) => return failure(error),
    };
    let envelopes: std::collections::BTreeMap<_, _> = page.envelopes.iter().cloned().collect();
    // A page ends before the first record whose envelope did not fit in its replica's answer
    // (the next page starts there), and never between two records of one transaction.
    let mut records = page.transactions.as_slice();
    let mut cut = records.iter().position(|(tx, _)| !envelopes.contains_key(tx));
    if let Some(at) = cut {
        let start_of_its_transaction =
            records[..at].iter().rposition(|(tx, _)| *tx != records[at].0).map_or(0, |i| i + 1);
        cut = Some(start_of_its_transaction);
        records = &records[..start_of_its_transaction];
    }
    // One entry per transaction, committed if any of its shards' records says so (a shard
    // that has not executed the decision yet shows it undecided).
    let mut listed = Vec::new();
    for group in records.chunk_by(|(a, _), (b, _)| a == b) {
        let (tx, _) = group[0];
        if group.iter().all(|(_, view)| view.committed.is_none()) {
            continue;
        }
        let envelope = envelopes.get(&tx).map_or(Value::Null, |json| chainspace_value(json));
        listed.push(json!({"timestamp": null, "transactionId": tx.to_hex(), "transactionJson": envelope}));
    }
    let more = cut.is_some() || page.transactions.len() >= limit;
    let next = records.last().filter(|_| more).map(|(tx, _)| tx.to_hex());
    list_response(listed, "transactions", limit, next)
}

/// `GET /api/1.0/hashchain`: Chainspace's per-node hash chain heads, here one per shard:
/// `[{id, digest, shard}]`, `id` the requests its log executed and `digest` the state
/// digest after them, as f+1 of its replicas report alike (503 if they do not within 2 s).
pub async fn hashchain(State(api): State<Shared>) -> Response {
    let mut heads = Vec::new();
    for (shard, addresses) in api.client.addresses().iter().enumerate() {
        let validity = api.client.committees()[shard].validity();
        let until = tokio::time::Instant::now() + HASHCHAIN_WAIT;
        let agreed = loop {
            let client = &api.client;
            let asked = (0..addresses.len()).map(|replica| async move {
                let status = async { client.replica_client(shard, replica).await?.status().await };
                let status = tokio::time::timeout(STATUS_TIMEOUT, status).await.ok()?.ok()?;
                Some((status.executed, status.state))
            });
            let reported: Vec<_> = futures::future::join_all(asked).await.into_iter().flatten().collect();
            let agreed = reported.iter().find(|head| reported.iter().filter(|other| other == head).count() >= validity);
            if let Some(head) = agreed {
                break Some(*head);
            }
            if tokio::time::Instant::now() >= until {
                break None;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        };
        let Some((executed, digest)) = agreed else {
            let message = format!("f+1 replicas of shard {shard} did not report one state within {HASHCHAIN_WAIT:?}");
            return failure(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", message, "ask again"));
        };
        heads.push(json!({"id": executed, "digest": format!("{digest:?}"), "shard": shard}));
    }
    Json(Value::Array(heads)).into_response()
}

/// How long `hashchain` asks a shard's replicas for one state.
const HASHCHAIN_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
/// How long one replica's status may take.
const STATUS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);
