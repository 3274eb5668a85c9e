//! The Chainspace-compatible endpoints (`/api/1.0`): Chainspace's outcome
//! strings, and `success` as the string `"True"` or `"False"`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use shardspace_node::client::{Listing, PAGE_MAX, Page};

use crate::Shared;
use crate::error::ApiError;
use crate::native::body_or_error;
use crate::outcome::{decision_of, object_json};

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

/// `GET /api/1.0/`.
pub async fn index(State(api): State<Shared>) -> Json<Value> {
    let shards = api.client.addresses().len();
    Json(json!({"success": "True", "name": "shardspace", "version": env!("CARGO_PKG_VERSION"),
        "cluster": api.cluster, "shards": shards}))
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

/// The page a `PageQuery` asks for, and its limit.
async fn page(
    api: &Shared,
    query: Result<Query<PageQuery>, QueryRejection>,
    what: Listing,
) -> Result<(Page, usize), ApiError> {
    let Query(query) = query.map_err(crate::native::bad_query)?;
    let limit = query.limit.unwrap_or(100).clamp(1, PAGE_MAX);
    let page = api.client.list(what, after(&query)?, limit).await?;
    Ok((page, limit as usize))
}

/// `GET /api/1.0/objects?after=ID&limit=N`: objects in id order, every shard's merged.
pub async fn objects(State(api): State<Shared>, query: Result<Query<PageQuery>, QueryRejection>) -> Response {
    let (page, limit) = match page(&api, query, Listing::Objects).await {
        Ok(found) => found,
        Err(error) => return failure(error),
    };
    let map = api.client.map();
    let objects: Vec<Value> = page.objects.iter().map(|(id, view)| object_json(*id, map.shard_of(id), view)).collect();
    let next = page.objects.last().filter(|_| objects.len() == limit).map(|(id, _)| id.to_hex());
    Json(json!({"success": "True", "objects": objects, "next": next})).into_response()
}

/// `GET /api/1.0/transactions?after=ID&limit=N`: transaction records in id order, per shard
/// (a page holds every record of its last transaction, so it may pass `limit`).
pub async fn transactions(State(api): State<Shared>, query: Result<Query<PageQuery>, QueryRejection>) -> Response {
    let (page, limit) = match page(&api, query, Listing::Transactions).await {
        Ok(found) => found,
        Err(error) => return failure(error),
    };
    let transactions: Vec<Value> = page
        .transactions
        .iter()
        .map(|(tx, view)| json!({"txId": tx.to_hex(), "attempt": view.attempt.0, "decision": decision_of(view)}))
        .collect();
    // A page may pass the limit by the other shards' records of its last transaction.
    let next = page.transactions.last().filter(|_| transactions.len() >= limit).map(|(tx, _)| tx.to_hex());
    Json(json!({"success": "True", "transactions": transactions, "next": next})).into_response()
}
