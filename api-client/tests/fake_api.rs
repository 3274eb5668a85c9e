//! The client against a fake API: a stream that drops is opened again from the last event
//! received, a 4xx is returned as the API's error, and `wait_for` waits through "not found"
//! and "pending".

#![allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed test

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;
use shardspace_api_client::{Client, EventFilter, ObjectFilter};

#[derive(Clone, Default)]
struct Fake {
    /// The Last-Event-ID of each stream opened.
    asked: Arc<Mutex<Vec<Option<String>>>>,
    /// Reads of the transaction so far.
    reads: Arc<Mutex<u32>>,
}

fn event(id: &str, tx: &str) -> String {
    format!("event: decided\nid: {id}\ndata: {}\n\n", json!({"txId": tx, "attempt": 1, "outcome": "commit"}))
}

/// First stream: only where it starts; second: two events; third: one more; then a bad id.
async fn events(State(fake): State<Fake>, headers: HeaderMap) -> impl IntoResponse {
    let last = headers.get("last-event-id").map(|id| id.to_str().unwrap().to_string());
    let opened = {
        let mut asked = fake.asked.lock().unwrap();
        asked.push(last);
        asked.len()
    };
    let start = |id: &str| format!("event: start\nid: {id}\ndata: {{}}\n\n");
    let body = match opened {
        // Dropped before its first event: the next stream goes on from where this one started.
        1 => start("0.0"),
        2 => format!(": hello\n\n{}{}{}", start("0.0"), event("1.0", "aa"), event("2.0", "bb")),
        3 => format!("{}{}", start("2.0"), event("2.1", "cc")),
        _ => {
            let error = json!({"error": {"kind": "bad_event_id", "message": "no such cursor", "hint": "start afresh"}});
            return (StatusCode::BAD_REQUEST, [("content-type", "application/json")], error.to_string());
        }
    };
    (StatusCode::OK, [("content-type", "text/event-stream")], body)
}

async fn transaction(State(fake): State<Fake>) -> impl IntoResponse {
    let reads = {
        let mut reads = fake.reads.lock().unwrap();
        *reads += 1;
        *reads
    };
    let body = match reads {
        1 => {
            return (
                StatusCode::NOT_FOUND,
                json!({"error": {"kind": "not_found", "message": "no record"}}).to_string(),
            );
        }
        2 => json!({"txId": "dd", "outcome": "pending", "attempt": 1}),
        _ => json!({"txId": "dd", "outcome": "commit", "attempt": 1, "outputs": ["ee"]}),
    };
    (StatusCode::OK, body.to_string())
}

/// The query an object listing was asked with, parsed, as the page's `next`.
async fn objects(axum::extract::Query(query): axum::extract::Query<Vec<(String, String)>>) -> impl IntoResponse {
    let next = serde_json::to_string(&query).unwrap();
    axum::Json(json!({"objects": [], "next": next, "more": true}))
}

async fn serve() -> (String, Fake) {
    let fake = Fake::default();
    let router = axum::Router::new()
        .route("/v1/events", get(events))
        .route("/v1/objects", get(objects))
        .route("/v1/transactions/{tx}", get(transaction))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (url, fake)
}

#[tokio::test]
async fn a_dropped_stream_goes_on_from_the_last_event_and_a_refusal_is_returned() {
    let (url, fake) = serve().await;
    let client = Client::new(&url).unwrap();
    let mut events = client.events(None, EventFilter::default());
    let mut heard = Vec::new();
    for _ in 0..3 {
        let event = tokio::time::timeout(Duration::from_secs(20), events.next()).await.unwrap().unwrap();
        heard.push((event.id, event.tx));
    }
    let expected = [("1.0", "aa"), ("2.0", "bb"), ("2.1", "cc")].map(|(id, tx)| (id.to_string(), tx.to_string()));
    assert_eq!(heard, expected);
    let error = tokio::time::timeout(Duration::from_secs(20), events.next()).await.unwrap().unwrap_err();
    assert_eq!(error.kind(), Some("bad_event_id"), "{error}");
    let asked = fake.asked.lock().unwrap().clone();
    let ids = ["0.0", "2.0", "2.1"].map(|id| Some(id.to_string()));
    assert_eq!(asked, [None, ids[0].clone(), ids[1].clone(), ids[2].clone()]);
}

#[tokio::test]
async fn wait_for_waits_through_not_found_and_pending() {
    let (url, fake) = serve().await;
    let client = Client::new(&url).unwrap();
    let outcome = client.wait_for("dd", Duration::from_secs(20), Duration::from_millis(10)).await.unwrap();
    assert_eq!((outcome.outcome.as_str(), outcome.outputs.as_slice()), ("commit", ["ee".to_string()].as_slice()));
    assert_eq!(*fake.reads.lock().unwrap(), 3);
}

#[tokio::test]
async fn an_object_query_goes_out_percent_encoded() {
    let (url, _) = serve().await;
    let client = Client::new(&url).unwrap();
    let field = Some(("owner".to_string(), "a&b=c é".to_string()));
    let filter = ObjectFilter { contract: Some("bank".into()), status: Some("active".into()), field };
    let page = client.objects(&filter, Some("ff"), Some(7)).await.unwrap();
    let asked: Vec<(String, String)> = serde_json::from_str(page["next"].as_str().unwrap()).unwrap();
    let pairs = [
        ("contract", "bank"),
        ("status", "active"),
        ("field", "owner"),
        ("equals", "a&b=c é"),
        ("after", "ff"),
        ("limit", "7"),
    ];
    assert_eq!(asked, pairs.map(|(name, value)| (name.to_string(), value.to_string())));
}
