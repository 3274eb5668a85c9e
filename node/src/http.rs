//! Serving HTTP/1 (the API on :5000, a replica's `/metrics`) with bounds a client
//! cannot hold: request headers must arrive within `HEADER_READ_TIMEOUT` and fit in
//! `HEADER_BYTES_MAX` (431 beyond), and when `connections_max` connections are open, a
//! new one takes the place of the oldest that is idle (no request in progress), so that
//! idle or half-sent connections, hundreds of them, never keep a new client waiting
//! (`axum::serve` kept them until they closed: 520 idle connections held for 70 s left
//! the API serving no one).

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tower::ServiceExt;

/// How long a client has to send a request's headers once it starts one.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// The most bytes of request line and headers; more is answered 431.
pub const HEADER_BYTES_MAX: usize = 64 * 1024;

/// An open connection, as the accept loop sees it.
#[derive(Debug)]
struct Open {
    /// Requests in progress on it (a response's body counts until it is sent).
    busy: Arc<AtomicUsize>,
    /// Closes it when sent (or dropped).
    close: oneshot::Sender<()>,
}

/// Open connections by their arrival number: the lowest is the oldest.
type Table = Arc<Mutex<BTreeMap<u64, Open>>>;

/// Serves `router` on `listener` until `shutdown`, then lets requests in progress finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    connections_max: usize,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let table: Table = Arc::default();
    let refusals = Arc::new(tokio::sync::Semaphore::new(REFUSALS_MAX));
    // Every connection's task holds a sender: when all are gone, every connection is closed.
    let (running, mut all_closed) = tokio::sync::mpsc::channel::<()>(1);
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT).max_header_size(HEADER_BYTES_MAX);
    tokio::pin!(shutdown);
    let mut arrivals = 0u64;
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, say: the next accept may pass.
                    if let Some(held_back) = ACCEPT_WARNINGS.allow() {
                        tracing::warn!(%error, held_back, "cannot accept a connection");
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        if !make_room(&table, connections_max) {
            // Told why while there is room for that; past it, closed untold, so that a flood
            // of connections cannot hold sockets here for the length of their refusals.
            if let Ok(refusing) = Arc::clone(&refusals).try_acquire_owned() {
                tokio::spawn(async move {
                    refuse(stream, connections_max).await;
                    drop(refusing);
                });
            }
            continue;
        }
        arrivals += 1;
        let id = arrivals;
        let busy = Arc::new(AtomicUsize::new(0));
        let (close, closed) = oneshot::channel();
        lock(&table).insert(id, Open { busy: Arc::clone(&busy), close });
        let router = router.clone();
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let guard = Busy::start(&busy);
            let response = router.clone().oneshot(request.map(Body::new));
            async move {
                let response = response.await?;
                Ok::<_, std::convert::Infallible>(response.map(|body| Body::new(Guarded { body, _guard: guard })))
            }
        });
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let (table, running, mut stopping) = (Arc::clone(&table), running.clone(), stopping.clone());
        tokio::spawn(async move {
            tokio::pin!(connection);
            // Evicted or stopping: the response being written, if any, is finished first.
            let grace = tokio::select! {
                _ = connection.as_mut() => None,
                _ = closed => Some(EVICTION_GRACE),
                _ = stopping.changed() => Some(SHUTDOWN_GRACE),
            };
            if let Some(grace) = grace {
                connection.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(grace, connection).await;
            }
            lock(&table).remove(&id);
            drop(running);
        });
    }
    drop(listener);
    let _ = stop.send(true);
    drop(running);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, all_closed.recv()).await;
    Ok(())
}

/// How long an evicted connection may take to finish the response it is writing.
const EVICTION_GRACE: Duration = Duration::from_secs(5);
/// How long requests in progress may take to finish once the API is told to stop.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Closes the oldest idle connection if `connections_max` are open; false when every one
/// is busy (the new connection is then refused).
fn make_room(table: &Table, connections_max: usize) -> bool {
    let mut table = lock(table);
    if table.len() < connections_max.max(1) {
        return true;
    }
    let idle = table.iter().find(|(_, open)| open.busy.load(Ordering::Relaxed) == 0).map(|(id, _)| *id);
    match idle.and_then(|id| table.remove(&id)) {
        Some(oldest) => {
            let _ = oldest.close.send(());
            true
        }
        None => false,
    }
}

/// Every connection busy: told so at once rather than left in the backlog. The request's
/// head is read first (an answer before it confuses clients), and what follows is drained
/// for a moment after the answer (closing with bytes unread resets the connection, and a
/// reset may discard the answer).
async fn refuse(mut stream: TcpStream, connections_max: usize) {
    if let Some(held_back) = REFUSAL_WARNINGS.allow() {
        tracing::warn!(connections_max, held_back, "every connection is busy: a new one refused");
    }
    let mut head = Vec::new();
    let mut chunk = [0u8; 4096];
    let read_head = async {
        while !head.windows(4).any(|window| window == b"\r\n\r\n") && head.len() < HEADER_BYTES_MAX {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(read) => head.extend_from_slice(&chunk[..read]),
            }
        }
    };
    let _ = tokio::time::timeout(REFUSAL_TIMEOUT, read_head).await;
    let body =
        r#"{"error":{"kind":"busy","message":"every connection of this API is busy","hint":"retry in a moment"}}"#;
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let answered = async {
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await?;
        while stream.read(&mut chunk).await? > 0 {}
        Ok::<_, std::io::Error>(())
    };
    let _ = tokio::time::timeout(REFUSAL_TIMEOUT, answered).await;
}

/// Refused connections being told why at once.
const REFUSALS_MAX: usize = 64;

/// How long a refused connection is given to send its request and take its answer.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(1);

static ACCEPT_WARNINGS: crate::throttle::Throttle = crate::throttle::Throttle::new(Duration::from_secs(1));
static REFUSAL_WARNINGS: crate::throttle::Throttle = crate::throttle::Throttle::new(Duration::from_secs(1));

fn lock(table: &Table) -> std::sync::MutexGuard<'_, BTreeMap<u64, Open>> {
    table.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A request in progress on a connection, until its response body is sent.
#[derive(Debug)]
struct Busy(Arc<AtomicUsize>);

impl Busy {
    fn start(busy: &Arc<AtomicUsize>) -> Self {
        busy.fetch_add(1, Ordering::Relaxed);
        Self(Arc::clone(busy))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that keeps its connection busy while it is sent (an event stream, say).
struct Guarded {
    body: Body,
    _guard: Busy,
}

impl http_body::Body for Guarded {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(context)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
