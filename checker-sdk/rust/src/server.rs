//! The checker server: serves contracts over HTTP/1.1 (keep-alive, TCP_NODELAY)
//! with the answers of `docs/checkers.md` §2. Every bad request gets a JSON
//! error and the server goes on serving; a checker that panics or overruns its
//! time is a 500. Connections are capped; checkers run off the async threads.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use shardspace_core::CheckerRequest;
use tokio::net::TcpListener;
use tokio::time::Instant;

use crate::bounded::BoundedListener;
use crate::contract::{Checker, Contract, Verdict};
use crate::error::CheckerError;
use crate::request::{parse_object, parse_request, request_from_value};

/// The largest request body a checker reads (a batch's too).
pub const CHECKER_BODY_BYTES_MAX: usize = 2 * 1024 * 1024;

/// The most checker requests one `POST /batch` may carry.
pub const CHECKER_BATCH_MAX: usize = 256;

/// Bounds on one checker server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckerLimits {
    /// Open connections; more wait in the listen backlog until one closes.
    pub connections_max: usize,
    /// How long one checker call may run before the answer is a 500.
    pub check_timeout: Duration,
    /// How long reading one request body may take.
    pub body_read_timeout: Duration,
}

impl Default for CheckerLimits {
    fn default() -> Self {
        Self {
            connections_max: 256,
            check_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
        }
    }
}

/// What the handler shares: the contracts by name, and the limits.
struct Served {
    contracts: BTreeMap<String, Contract>,
    limits: CheckerLimits,
}

/// An axum router serving `contracts` (for tests in process, or to mount elsewhere).
pub fn router(contracts: Vec<Contract>, limits: CheckerLimits) -> Result<Router, CheckerError> {
    let mut served = BTreeMap::new();
    for contract in contracts {
        let name = contract.name().to_string();
        let problems = contract.problems();
        if !problems.is_empty() {
            return Err(CheckerError::BadContract { contract: name, problems });
        }
        if served.insert(name.clone(), contract).is_some() {
            return Err(CheckerError::DuplicateContract { contract: name });
        }
    }
    Ok(Router::new().fallback(handle).with_state(Arc::new(Served { contracts: served, limits })))
}

/// A bound checker server, not yet running.
#[derive(Debug)]
pub struct CheckerServer {
    listener: TcpListener,
    router: Router,
    connections_max: usize,
}

impl CheckerServer {
    /// Binds `address` (port 0 picks a free port) to serve `contracts` with the default limits.
    pub async fn bind(address: SocketAddr, contracts: Vec<Contract>) -> std::io::Result<Self> {
        Self::bind_with_limits(address, contracts, CheckerLimits::default()).await
    }

    pub async fn bind_with_limits(
        address: SocketAddr,
        contracts: Vec<Contract>,
        limits: CheckerLimits,
    ) -> std::io::Result<Self> {
        let connections_max = limits.connections_max;
        let router =
            router(contracts, limits).map_err(|error| std::io::Error::new(std::io::ErrorKind::InvalidInput, error))?;
        let listener = TcpListener::bind(address).await?;
        Ok(Self { listener, router, connections_max })
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
        let listener = BoundedListener::new(self.listener, self.connections_max);
        axum::serve(listener, self.router).with_graceful_shutdown(shutdown).await
    }
}

async fn handle(State(served): State<Arc<Served>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path();
    // The order matches the Python SDK: size, then path, method, contract, body.
    let too_large = content_length(&parts.headers).is_some_and(|length| length > CHECKER_BODY_BYTES_MAX);
    let answer = if too_large {
        Err(CheckerError::BodyTooLarge { max: CHECKER_BODY_BYTES_MAX })
    } else {
        match route(&served.contracts, &parts.method, path) {
            Err(error) => Err(error),
            Ok(Route::List) => Ok(list(&served.contracts)),
            Ok(Route::Batch) => batch(&served, body).await,
            Ok(Route::Check(checker)) => check(checker.clone(), path, body, &served.limits).await,
        }
    };
    match answer {
        Ok(body) => (StatusCode::OK, axum::Json(body)).into_response(),
        Err(error) => error_response(&error),
    }
}

enum Route<'a> {
    List,
    Batch,
    Check(&'a Arc<dyn Checker>),
}

/// Matches the raw path (no percent-decoding): `/`, `/batch` or `/{contract}/{method}`.
fn route<'a>(
    contracts: &'a BTreeMap<String, Contract>,
    method: &Method,
    path: &str,
) -> Result<Route<'a>, CheckerError> {
    let not_allowed = || CheckerError::MethodNotAllowed { method: method.to_string(), path: path.to_string() };
    if path == "/" {
        return if method == Method::GET { Ok(Route::List) } else { Err(not_allowed()) };
    }
    if path == "/batch" {
        return if method == Method::POST { Ok(Route::Batch) } else { Err(not_allowed()) };
    }
    let segments: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
    let [contract_name, method_name] = segments[..] else {
        return Err(CheckerError::NotFound { path: path.to_string() });
    };
    if contract_name.is_empty() || method_name.is_empty() {
        return Err(CheckerError::NotFound { path: path.to_string() });
    }
    if method != Method::POST {
        return Err(not_allowed());
    }
    checker_of(contracts, contract_name, method_name).map(Route::Check)
}

fn checker_of<'a>(
    contracts: &'a BTreeMap<String, Contract>,
    contract_name: &str,
    method_name: &str,
) -> Result<&'a Arc<dyn Checker>, CheckerError> {
    let contract = contracts
        .get(contract_name)
        .ok_or_else(|| CheckerError::UnknownContract { contract: contract_name.to_string() })?;
    contract.checker(method_name).ok_or_else(|| CheckerError::UnknownMethod {
        contract: contract_name.to_string(),
        method: method_name.to_string(),
    })
}

fn list(contracts: &BTreeMap<String, Contract>) -> Value {
    let contracts: BTreeMap<&str, Vec<&str>> =
        contracts.values().map(|contract| (contract.name(), contract.method_names())).collect();
    json!({ "contracts": contracts })
}

async fn read_body(body: Body, limits: &CheckerLimits) -> Result<axum::body::Bytes, CheckerError> {
    tokio::time::timeout(limits.body_read_timeout, to_bytes(body, CHECKER_BODY_BYTES_MAX))
        .await
        .map_err(|_| CheckerError::MalformedJson { message: "the body did not arrive in time".into() })?
        .map_err(|_| CheckerError::BodyTooLarge { max: CHECKER_BODY_BYTES_MAX })
}

async fn check(
    checker: Arc<dyn Checker>,
    path: &str,
    body: Body,
    limits: &CheckerLimits,
) -> Result<Value, CheckerError> {
    let request = parse_request(&read_body(body, limits).await?)?;
    let named = format!("/{}/{}", request.contract_id, request.method_id);
    if named != path {
        return Err(CheckerError::PathMismatch { body: named, path: path.to_string() });
    }
    Running::start(checker, request).finish(Instant::now() + limits.check_timeout).await
}

/// `POST /batch`: `{"requests": [...]}` answered `{"results": [...]}`, each result what its
/// own call would have answered (a verdict, or `{"status", "error"}`). The checks run at
/// once, off the async threads, under one deadline.
async fn batch(served: &Served, body: Body) -> Result<Value, CheckerError> {
    let fields = parse_object(&read_body(body, &served.limits).await?)?;
    let requests = match fields.get("requests") {
        None => return Err(CheckerError::MissingField { path: "requests".into() }),
        Some(Value::Array(requests)) => requests,
        Some(_) => return Err(CheckerError::WrongType { path: "requests".into(), expected: "a list" }),
    };
    if requests.len() > CHECKER_BATCH_MAX {
        return Err(CheckerError::BatchTooLarge { count: requests.len(), max: CHECKER_BATCH_MAX });
    }
    let start = |item: &Value| -> Result<Running, CheckerError> {
        let request = request_from_value(item)?;
        let checker = checker_of(&served.contracts, &request.contract_id, &request.method_id)?;
        Ok(Running::start(checker.clone(), request))
    };
    let running: Vec<_> = requests.iter().map(start).collect();
    let deadline = Instant::now() + served.limits.check_timeout;
    let mut results = Vec::with_capacity(running.len());
    for item in running {
        let answer = match item {
            Ok(running) => running.finish(deadline).await,
            Err(error) => Err(error),
        };
        results.push(answer.unwrap_or_else(|error| {
            log_error(&error);
            let mut body = error_body(&error);
            body["status"] = json!(error.status());
            body
        }));
    }
    Ok(json!({ "results": results }))
}

/// One checker call running off the async threads: a checker may verify signatures or
/// loop, and a panic is a contract bug.
struct Running {
    contract: String,
    method: String,
    task: tokio::task::JoinHandle<Verdict>,
}

impl Running {
    fn start(checker: Arc<dyn Checker>, request: CheckerRequest) -> Self {
        let (contract, method) = (request.contract_id.clone(), request.method_id.clone());
        Self { contract, method, task: tokio::task::spawn_blocking(move || checker.check(&request)) }
    }

    async fn finish(self, deadline: Instant) -> Result<Value, CheckerError> {
        let Self { contract, method, task } = self;
        let failed = |message: String| CheckerError::CheckerFailed { contract, method, message };
        let verdict = match tokio::time::timeout_at(deadline, task).await {
            Err(_) => return Err(failed("no verdict in time (check_timeout)".into())),
            Ok(Err(join_error)) => return Err(failed(panic_message(join_error))),
            Ok(Ok(verdict)) => verdict,
        };
        Ok(match verdict {
            Ok(()) => json!({"success": true}),
            Err(rejection) => json!({"success": false, "reason": rejection.reason}),
        })
    }
}

fn panic_message(join_error: tokio::task::JoinError) -> String {
    if !join_error.is_panic() {
        return "cancelled".into();
    }
    let panic = join_error.into_panic();
    let text = panic.downcast_ref::<&str>().map(|text| text.to_string());
    text.or_else(|| panic.downcast_ref::<String>().cloned()).unwrap_or_else(|| "panicked".into())
}

fn content_length(headers: &axum::http::HeaderMap) -> Option<usize> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

fn log_error(error: &CheckerError) {
    match error {
        CheckerError::CheckerFailed { .. } => tracing::error!(%error, "checker failed"),
        _ => tracing::debug!(%error, kind = error.kind(), "bad checker request"),
    }
}

fn error_body(error: &CheckerError) -> Value {
    json!({"error": {"kind": error.kind(), "message": error.to_string(), "hint": error.hint()}})
}

fn error_response(error: &CheckerError) -> Response {
    log_error(error);
    let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, axum::Json(error_body(error))).into_response();
    if matches!(error, CheckerError::BodyTooLarge { .. }) {
        // The body was not read: this connection cannot carry another request.
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// The whole `main` of a contract's checker binary: `NAME [--host IP] [--port PORT]` serves
/// `contracts` (127.0.0.1 and a free port by default), prints the base URL as the first line
/// on stdout, and stops on Ctrl-C or SIGTERM. Bad arguments or a port taken exit with 2.
pub fn serve_main(contracts: Vec<Contract>) -> std::process::ExitCode {
    let program = std::env::args().next().unwrap_or_else(|| "checker".into());
    let address = match address_of(std::env::args().skip(1)) {
        Ok(address) => address,
        Err(message) => {
            eprintln!("{message}\nusage: {program} [--host IP] [--port PORT]");
            return std::process::ExitCode::from(2);
        }
    };
    let served = tokio::runtime::Runtime::new().and_then(|runtime| {
        runtime.block_on(async {
            let server = CheckerServer::bind(address, contracts).await?;
            println!("{}", server.url()?);
            server.run(stopped()).await
        })
    });
    match served {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{program}: cannot serve on {address}: {error}");
            std::process::ExitCode::from(2)
        }
    }
}

/// `--host IP` and `--port PORT`, each optional.
fn address_of(mut args: impl Iterator<Item = String>) -> Result<SocketAddr, String> {
    let mut address = SocketAddr::from(([127, 0, 0, 1], 0));
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--host" => address.set_ip(value.parse().map_err(|_| format!("{value:?} is not an IP address"))?),
            "--port" => address.set_port(value.parse().map_err(|_| format!("{value:?} is not a port"))?),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(address)
}

/// Completes on Ctrl-C or SIGTERM.
async fn stopped() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(terminate) => terminate,
            Err(_) => return std::mem::drop(interrupt.await),
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
