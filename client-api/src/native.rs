//! The native `/v1` endpoints (DESIGN.md §7), and `/metrics`.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use shardspace_core::sbac::{FieldMatch, ObjectFilter, StatusKind};
use shardspace_core::{ObjectId, TxId};
use shardspace_node::client::Listing;

use crate::error::ApiError;
use crate::feed::{Cursor, Filter, Refusal};
use crate::outcome::{TxOutcome, object_json};
use crate::{Api, Shared};

/// How long `/v1/cluster` waits for each replica's status.
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Deserialize)]
pub struct SubmitQuery {
    #[serde(default = "yes")]
    wait: bool,
}

fn yes() -> bool {
    true
}

/// A query string that does not parse (`?wait=maybe`).
pub fn bad_query(rejection: QueryRejection) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_query", rejection.body_text(), "see docs/api.md for the parameters")
}

/// The body, or the error a client should see for it.
pub fn body_or_error(api: &Api, body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::body_too_large(api.config.body_bytes_max)
        } else {
            ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", rejection.body_text(), "send the envelope as JSON")
        }
    })
}

/// `POST /v1/transactions[?wait=false]`: 200 with the outcome (commit or abort), or 202
/// with `pending` when not waiting.
pub async fn submit(
    State(api): State<Shared>,
    query: Result<Query<SubmitQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(bad_query)?;
    let body = body_or_error(&api, body)?;
    let (outcome, waited) = api.submit(&body, query.wait).await?;
    let status = if waited { StatusCode::OK } else { StatusCode::ACCEPTED };
    Ok((status, Json(outcome)).into_response())
}

/// `POST /v1/transactions/check`: a dry run. Every replica of the envelope's shards asks its
/// checkers; nothing is ordered. `valid` is what f+1 replicas of every shard say (`null`
/// when no f+1 agree: checkers down), `reason` the checker's.
pub async fn check(State(api): State<Shared>, body: Result<Bytes, BytesRejection>) -> Result<Json<Value>, ApiError> {
    let body = body_or_error(&api, body)?;
    let dry = api.dry_run(&body).await?;
    let replicas: Vec<Value> = dry
        .replicas
        .iter()
        .flat_map(|(shard, answers)| {
            answers.iter().enumerate().map(move |(replica, answer)| match answer {
                Some((valid, reason)) => {
                    json!({"shard": shard.0, "replica": replica, "valid": valid, "reason": reason})
                }
                None => json!({"shard": shard.0, "replica": replica, "answered": false}),
            })
        })
        .collect();
    let (tx, valid, reason, agreed) = (dry.tx.to_hex(), dry.valid, dry.reason, dry.reason_agreed);
    Ok(Json(json!({"txId": tx, "valid": valid, "reason": reason, "reasonAgreed": agreed, "replicas": replicas})))
}

/// `GET /v1/transactions/{txId}`: every shard's record, each confirmed by f+1 replicas.
pub async fn transaction(State(api): State<Shared>, Path(tx): Path<String>) -> Result<Json<TxOutcome>, ApiError> {
    let tx: TxId = tx.parse().map_err(|error: shardspace_core::ids::BadId| ApiError::bad_id(error.to_string()))?;
    let records = api.client.records_everywhere(tx).await?;
    if records.is_empty() {
        return Err(ApiError::not_found(format!("no shard has a record of transaction {}", tx.to_hex())));
    }
    let envelope = envelope_of(&api, tx).await;
    let mut outcome = TxOutcome::from_records(tx, &records, envelope.as_ref());
    outcome.transaction = envelope.and_then(|envelope| serde_json::to_value(&envelope.transaction).ok());
    Ok(Json(outcome))
}

/// The envelope of `tx` as f+1 replicas of each shard list it: a page of one transaction
/// record from `tx` on carries its envelope. None if it cannot be had.
async fn envelope_of(api: &Api, tx: TxId) -> Option<shardspace_core::Envelope> {
    let mut before = tx.0;
    // The id just below `tx` (big-endian), for a page that starts at `tx`.
    let last = before.iter().rposition(|byte| *byte != 0)?;
    before[last] -= 1;
    before[last + 1..].fill(0xff);
    let page = api.client.list(Listing::Transactions, Some(before), 1).await.ok()?;
    let (_, json) = page.envelopes.iter().find(|(listed, _)| *listed == tx)?;
    serde_json::from_str(json).ok()
}

/// `GET /v1/objects/{id}`: the value and status f+1 replicas of its shard sign.
pub async fn object(State(api): State<Shared>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let id: ObjectId = id.parse().map_err(|error: shardspace_core::ids::BadId| ApiError::bad_id(error.to_string()))?;
    let shard = api.client.map().shard_of(&id);
    match api.client.object(id).await? {
        Some(view) => Ok(Json(object_json(id, shard, &view))),
        None => Err(ApiError::not_found(format!("no object {} on shard {}", id.to_hex(), shard.0))),
    }
}

/// `GET /v1/cluster`: every replica's status; a shard is healthy when a quorum answers.
pub async fn cluster(State(api): State<Shared>) -> Json<Value> {
    let mut shards = Vec::new();
    let mut healthy = true;
    for (index, addresses) in api.client.addresses().iter().enumerate() {
        let client = &api.client;
        let asked = addresses.iter().enumerate().map(|(replica, address)| async move {
            let status = async { client.replica_client(index, replica).await?.status().await };
            (address, tokio::time::timeout(STATUS_TIMEOUT, status).await.ok().and_then(Result::ok))
        });
        let answers = futures::future::join_all(asked).await;
        let up = answers.iter().filter(|(_, status)| status.is_some()).count();
        let quorum = api.client.committees()[index].quorum();
        healthy &= up >= quorum;
        let replicas: Vec<Value> = answers
            .iter()
            .enumerate()
            .map(|(replica, (address, status))| match status {
                Some(status) => json!({
                    "id": replica, "address": address, "up": true, "height": status.height.0,
                    "round": status.round.0, "executed": status.executed, "pending": status.pending,
                    "leader": status.leader.map(|leader| leader.0),
                }),
                None => json!({"id": replica, "address": address, "up": false}),
            })
            .collect();
        let validity = api.client.committees()[index].validity();
        let leader = leader_named(answers.iter().filter_map(|(_, status)| status.as_ref()), validity);
        shards.push(json!({
            "id": index, "healthy": up >= quorum, "up": up, "quorum": quorum, "leader": leader, "replicas": replicas,
        }));
    }
    let known = api.known();
    Json(
        json!({"cluster": api.cluster, "healthy": healthy, "shards": shards, "checkers": known.checkers, "contracts": known.contracts}),
    )
}

/// The leader of a shard's latest round that f+1 of its replicas (`validity`) in that round
/// name alike: one of them honest. A replica alone that says it is further on is passed over.
fn leader_named<'a>(
    statuses: impl Iterator<Item = &'a shardspace_node::client::Status>,
    validity: usize,
) -> Option<u32> {
    let mut named: BTreeMap<(u64, u32), usize> = BTreeMap::new();
    for status in statuses {
        if let Some(leader) = status.leader {
            *named.entry((status.round.0, leader.0)).or_default() += 1;
        }
    }
    named.into_iter().rev().find(|(_, count)| *count >= validity).map(|((_, leader), _)| leader)
}

/// What `GET /v1/transactions` and `GET /v1/events` may be asked.
#[derive(Debug, Default, Deserialize)]
pub struct FeedQuery {
    contract: Option<String>,
    shard: Option<u32>,
    outcome: Option<String>,
    /// A cursor: the `next` of the page before, or an event's id (for clients that cannot
    /// set `Last-Event-ID`).
    after: Option<String>,
    /// Listings only: the most a page lists (50 when left out, at most `LIST_LIMIT_MAX`).
    limit: Option<usize>,
}

impl FeedQuery {
    /// The filter asked for; an outcome other than `commit` or `abort` is refused.
    fn filter(&self) -> Result<Filter, ApiError> {
        if let Some(outcome) = self.outcome.as_deref().filter(|outcome| !["commit", "abort"].contains(outcome)) {
            let message = format!("outcome={outcome:?}: decided attempts are `commit` or `abort`");
            return Err(ApiError::new(StatusCode::BAD_REQUEST, "bad_query", message, "see docs/api.md"));
        }
        let (contract, shard, outcome) = (self.contract.clone(), self.shard, self.outcome.clone());
        Ok(Filter { contract, shard, outcome })
    }
}

/// `id` read as a cursor of this cluster (none when there is no id), or a 400 of `kind`.
fn cursor_of(api: &Api, id: Option<&str>, kind: &str, hint: &str) -> Result<Option<Cursor>, ApiError> {
    let Some(id) = id else { return Ok(None) };
    Cursor::parse(id, api.feed.shards())
        .map(Some)
        .map_err(|message| ApiError::new(StatusCode::BAD_REQUEST, kind, message, hint))
}

/// The most a page of `GET /v1/transactions` or `GET /v1/objects` lists.
const LIST_LIMIT_MAX: usize = 500;

/// `GET /v1/transactions`: decided attempts, filtered, page by page (`feed.rs`, `Feed::list`).
pub async fn transactions(
    State(api): State<Shared>,
    query: Result<Query<FeedQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(bad_query)?;
    let filter = query.filter()?;
    let hint = "give the `next` of the page before, or nothing to start from the first";
    let cursor = cursor_of(&api, query.after.as_deref(), "bad_query", hint)?;
    let limit = query.limit.unwrap_or(50).clamp(1, LIST_LIMIT_MAX);
    let listed = api.feed.list(cursor, &filter, limit).await?;
    Ok(Json(json!({"transactions": listed.entries, "next": listed.next.id(), "more": listed.more})))
}

/// What `GET /v1/objects` may be asked (docs/api.md, "Listing objects").
#[derive(Debug, Default, Deserialize)]
pub struct ObjectQuery {
    contract: Option<String>,
    status: Option<String>,
    /// A top-level field of the objects' values (JSON), with `equals`: bank's `owner`.
    field: Option<String>,
    equals: Option<String>,
    /// The `next` of the page before.
    after: Option<String>,
    limit: Option<usize>,
}

impl ObjectQuery {
    fn filter(&self) -> Result<ObjectFilter, ApiError> {
        let bad = |message: String| ApiError::new(StatusCode::BAD_REQUEST, "bad_query", message, "see docs/api.md");
        let status = self.status.as_deref().map(str::parse::<StatusKind>).transpose().map_err(bad)?;
        let field = match (&self.field, &self.equals) {
            (Some(name), Some(equals)) => Some(FieldMatch { name: name.clone(), equals: equals.clone() }),
            (None, None) => None,
            _ => return Err(bad("`field` and `equals` go together: field=owner&equals=KEY".into())),
        };
        let filter = ObjectFilter { contract: self.contract.clone(), status, field };
        filter.verify().map_err(bad)?;
        Ok(filter)
    }
}

/// `GET /v1/objects`: the objects of a contract, of a status, or whose value has a field
/// equal to a value, every shard's merged in id order, a page at a time; each shard's page
/// is one that f+1 of its replicas give alike. `next` is where the next page starts: a
/// page may hold fewer than `limit` and still have `more` when a shard stopped its scan.
pub async fn objects(
    State(api): State<Shared>,
    query: Result<Query<ObjectQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(bad_query)?;
    let filter = query.filter()?;
    let after = match query.after.as_deref() {
        Some(after) => Some(after.parse::<ObjectId>().map_err(|error| {
            let hint = "give the `next` of the page before, or nothing to start from the first";
            ApiError::new(StatusCode::BAD_REQUEST, "bad_query", format!("after: {error}"), hint)
        })?),
        None => None,
    };
    let limit = query.limit.unwrap_or(50).clamp(1, LIST_LIMIT_MAX);
    let page = api.client.list(Listing::ObjectsWhere(filter), after.map(|id| id.0), limit as u32).await?;
    let map = api.client.map();
    let objects: Vec<Value> = page.objects.iter().map(|(id, view)| object_json(*id, map.shard_of(id), view)).collect();
    let last = page.objects.last().map(|(id, _)| *id).filter(|_| objects.len() == limit);
    let next = last.or(page.scanned_to).map(|id| id.to_hex());
    Ok(Json(json!({"objects": objects, "next": next, "more": next.is_some()})))
}

/// `GET /v1/events`: server-sent events, one `decided` event per decided attempt of the
/// whole cluster (`feed.rs`), from the cursor in `Last-Event-ID` (or `?after=`) on, else
/// from now.
pub async fn events(
    State(api): State<Shared>,
    headers: axum::http::HeaderMap,
    query: Result<Query<FeedQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(bad_query)?;
    let filter = query.filter()?;
    let last_id = headers.get("last-event-id").and_then(|id| id.to_str().ok());
    let hint = "send back the id of the last event received, or no id to start from now";
    let cursor = cursor_of(&api, last_id.or(query.after.as_deref()), "bad_event_id", hint)?;
    match api.feed.subscribe(cursor, filter).await {
        Ok(stream) => Ok(stream.into_response()),
        Err(Refusal::Busy) => {
            let message = format!("{} event streams are open", crate::feed::SUBSCRIBERS_MAX);
            Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "too_many_pending", message, "retry later"))
        }
        Err(Refusal::Unreachable(error)) => Err(ApiError::from(error)),
    }
}

/// `GET /v1/stats`: decided a second over the last minutes, and this API's latency.
pub async fn stats(State(api): State<Shared>) -> Json<Value> {
    Json(api.stats.json())
}

/// `GET /metrics`: Prometheus text.
pub async fn metrics(State(api): State<Shared>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], api.metrics.encode())
}
