//! The API's errors: `{"error": {"kind", "message", "hint"}}` with a status.
//! A 4xx is the caller's fault and never retried; a 5xx is ours.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use shardspace_core::TxError;
use shardspace_node::client::RejectKind;
use shardspace_node::cluster_client::ClusterError;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: String,
    pub message: String,
    pub hint: String,
    /// The transaction it is about, when known (a timeout names it, so it can be polled).
    pub tx: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &str, message: impl Into<String>, hint: &str) -> Self {
        Self { status, kind: kind.into(), message: message.into(), hint: hint.into(), tx: None }
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", what, "check the id: 64 lowercase hex digits")
    }

    pub fn no_such_path() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such path", "the endpoints are listed in docs/api.md")
    }

    pub fn bad_id(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_id", message, "an id is 64 lowercase hex digits")
    }

    pub fn too_many_pending(pending_max: usize) -> Self {
        let message = format!("{pending_max} transactions are in flight at this API");
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "too_many_pending", message, "retry in a moment")
    }

    pub fn body_too_large(limit: usize) -> Self {
        let message = format!("the request body is over {limit} bytes");
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", message, "send a smaller envelope")
    }
}

impl From<TxError> for ApiError {
    fn from(error: TxError) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error.kind(), error.to_string(), error.hint())
    }
}

impl From<ClusterError> for ApiError {
    fn from(error: ClusterError) -> Self {
        match error {
            ClusterError::Rejected { kind, message, tx, .. } => {
                let (status, hint) = match kind {
                    RejectKind::UnknownContract => {
                        (StatusCode::BAD_REQUEST, "the cluster file names no checker for it")
                    }
                    RejectKind::Busy => (StatusCode::SERVICE_UNAVAILABLE, "the replicas are busy: retry in a moment"),
                    RejectKind::BadAttempt => (StatusCode::CONFLICT, "submit the transaction again"),
                    RejectKind::WrongShard => (StatusCode::INTERNAL_SERVER_ERROR, "the API routed it wrongly: a bug"),
                    RejectKind::Invalid(_) => (StatusCode::BAD_REQUEST, "fix the transaction"),
                };
                let mut error = Self::new(status, kind.as_str(), message, hint);
                error.tx = tx.map(|tx| tx.to_hex());
                error
            }
            ClusterError::Timeout { what, .. } => Self::new(
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                format!("no answer from f+1 replicas within the deadline: {what}"),
                "a transaction may still be decided: ask again",
            ),
            ClusterError::Invalid(message) => {
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message, "a bug: please report it")
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"error": {"kind": self.kind, "message": self.message, "hint": self.hint}});
        if let Some(tx) = &self.tx {
            body["txId"] = json!(tx);
        }
        (self.status, Json(body)).into_response()
    }
}
