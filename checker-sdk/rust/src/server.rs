//! The checker server: serves contracts over HTTP/1.1 (keep-alive, TCP_NODELAY)
//! with the answers of `docs/checkers.md` §2. Every bad request gets a JSON
//! error and the server goes on serving; a checker that panics is a 500.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::serve::ListenerExt;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::contract::{Contract, Verdict};
use crate::error::CheckerError;
use crate::request::parse_request;

/// The largest request body a checker reads.
pub const CHECKER_BODY_BYTES_MAX: usize = 2 * 1024 * 1024;

/// The contracts one server serves, by name.
type Served = Arc<BTreeMap<String, Contract>>;

/// An axum router serving `contracts` (for tests in process, or to mount elsewhere).
pub fn router(contracts: Vec<Contract>) -> Result<Router, CheckerError> {
    let mut served = BTreeMap::new();
    for contract in contracts {
        let name = contract.name().to_string();
        if served.insert(name.clone(), contract).is_some() {
            return Err(CheckerError::DuplicateContract { contract: name });
        }
    }
    Ok(Router::new().fallback(handle).with_state(Arc::new(served)))
}

/// A bound checker server, not yet running.
#[derive(Debug)]
pub struct CheckerServer {
    listener: TcpListener,
    router: Router,
}

impl CheckerServer {
    /// Binds `address` (port 0 picks a free port) to serve `contracts`.
    pub async fn bind(address: SocketAddr, contracts: Vec<Contract>) -> Result<Self, std::io::Error> {
        let router = router(contracts).map_err(|error| std::io::Error::new(std::io::ErrorKind::InvalidInput, error))?;
        let listener = TcpListener::bind(address).await?;
        Ok(Self { listener, router })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The base URL, as a checker process prints it on its first line.
    pub fn url(&self) -> std::io::Result<String> {
        Ok(format!("http://{}", self.local_addr()?))
    }

    /// Serves until `shutdown` completes, then lets open requests finish.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let listener = self.listener.tap_io(|stream| {
            if let Err(error) = stream.set_nodelay(true) {
                tracing::warn!(%error, "cannot set TCP_NODELAY: keep-alive requests may stall");
            }
        });
        axum::serve(listener, self.router).with_graceful_shutdown(shutdown).await
    }
}

async fn handle(State(served): State<Served>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_string();
    let too_large = content_length(&parts.headers).is_some_and(|length| length > CHECKER_BODY_BYTES_MAX);
    let answer = match route(&served, &parts.method, &path) {
        Err(error) => Err(error),
        Ok(Route::List) => Ok(list(&served)),
        Ok(Route::Check(_)) if too_large => Err(CheckerError::BodyTooLarge { max: CHECKER_BODY_BYTES_MAX }),
        Ok(Route::Check(contract)) => check(contract, &path, body).await,
    };
    match answer {
        Ok(body) => (StatusCode::OK, axum::Json(body)).into_response(),
        Err(error) => error_response(&error),
    }
}

enum Route<'a> {
    List,
    Check(&'a Contract),
}

fn route<'a>(served: &'a Served, method: &Method, path: &str) -> Result<Route<'a>, CheckerError> {
    let not_allowed = || CheckerError::MethodNotAllowed { method: method.to_string(), path: path.to_string() };
    if path == "/" {
        return if method == Method::GET { Ok(Route::List) } else { Err(not_allowed()) };
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let [contract_name, method_name] = segments[..] else {
        return Err(CheckerError::NotFound { path: path.to_string() });
    };
    if contract_name.is_empty() || method_name.is_empty() {
        return Err(CheckerError::NotFound { path: path.to_string() });
    }
    if method != Method::POST {
        return Err(not_allowed());
    }
    let contract = served
        .get(contract_name)
        .ok_or_else(|| CheckerError::UnknownContract { contract: contract_name.to_string() })?;
    if contract.checker(method_name).is_none() {
        let (contract, method) = (contract_name.to_string(), method_name.to_string());
        return Err(CheckerError::UnknownMethod { contract, method });
    }
    Ok(Route::Check(contract))
}

fn list(served: &Served) -> Value {
    let contracts: BTreeMap<&str, Vec<&str>> =
        served.values().map(|contract| (contract.name(), contract.method_names())).collect();
    json!({ "contracts": contracts })
}

async fn check(contract: &Contract, path: &str, body: Body) -> Result<Value, CheckerError> {
    let body = to_bytes(body, CHECKER_BODY_BYTES_MAX)
        .await
        .map_err(|_| CheckerError::BodyTooLarge { max: CHECKER_BODY_BYTES_MAX })?;
    let request = parse_request(&body)?;
    let named = format!("/{}/{}", request.contract_id, request.method_id);
    if named != path {
        return Err(CheckerError::PathMismatch { body: named, path: path.to_string() });
    }
    let checker = contract.checker(&request.method_id).ok_or_else(|| CheckerError::UnknownMethod {
        contract: request.contract_id.clone(),
        method: request.method_id.clone(),
    })?;
    // A panicking checker is a contract bug: answer 500 and keep serving.
    let verdict: Verdict = catch_unwind(AssertUnwindSafe(|| checker.check(&request))).map_err(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|text| text.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panicked".into());
        CheckerError::CheckerFailed {
            contract: request.contract_id.clone(),
            method: request.method_id.clone(),
            message,
        }
    })?;
    Ok(match verdict {
        Ok(()) => json!({"success": true}),
        Err(rejection) => json!({"success": false, "reason": rejection.reason}),
    })
}

fn content_length(headers: &axum::http::HeaderMap) -> Option<usize> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

fn error_response(error: &CheckerError) -> Response {
    match error {
        CheckerError::CheckerFailed { .. } => tracing::error!(%error, "checker failed"),
        _ => tracing::debug!(%error, kind = error.kind(), "bad checker request"),
    }
    let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = json!({"error": {"kind": error.kind(), "message": error.to_string(), "hint": error.hint()}});
    let mut response = (status, axum::Json(body)).into_response();
    if matches!(error, CheckerError::BodyTooLarge { .. }) {
        // The body was not read: this connection cannot carry another request.
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}
