//! The replica's checker client against real HTTP servers on port 0: verdicts,
//! refusals, a checker that is down (no verdict, never a `false`), one that
//! fails twice before it answers, checks gathered into batches, a checker
//! without `/batch`, a request that fails inside a batch, and the limits on calls in
//! flight and checks waiting, hit: past them checks wait their turn, and none is lost.

#![allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed test

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shardspace_checker::{CheckerServer, Contract, Rejection, Verdict};
use shardspace_core::CheckerRequest;
use shardspace_node::checker_client::{
    BATCH_BYTES_MAX, BATCH_QUEUE_MAX, BATCH_REQUESTS_MAX, BATCHES_IN_FLIGHT_MAX, CALLS_IN_FLIGHT_MAX, CheckOutcome,
    CheckerClient, CheckerClientLimits,
};
use tokio::sync::oneshot;

fn request(contract: &str, method: &str, parameter: i64) -> CheckerRequest {
    CheckerRequest {
        contract_id: contract.into(),
        method_id: method.into(),
        inputs: vec![],
        reference_inputs: vec![],
        parameters: vec![parameter.into()],
        returns: vec![],
        outputs: vec![],
        dependencies: vec![],
    }
}

fn limits() -> CheckerClientLimits {
    CheckerClientLimits {
        call_timeout: Duration::from_secs(2),
        deadline: Duration::from_millis(600),
        backoff_min: Duration::from_millis(20),
        backoff_max: Duration::from_millis(100),
    }
}

/// A checker of one contract, `even`, served until the returned sender is dropped.
async fn even_checker() -> (String, oneshot::Sender<()>) {
    let contract = Contract::new("toy").method("even", |request: &CheckerRequest| -> Verdict {
        match request.parameters[0].as_i64() {
            Some(n) if n % 2 == 0 => Ok(()),
            _ => Err(Rejection::new("odd")),
        }
    });
    let server = CheckerServer::bind("127.0.0.1:0".parse().unwrap(), vec![contract]).await.unwrap();
    let url = server.url().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    (url, stop)
}

#[tokio::test]
async fn verdicts_and_refusals_come_back_as_such() {
    let (url, _stop) = even_checker().await;
    let client = CheckerClient::new(limits()).unwrap();
    let yes = client.check(&url, &request("toy", "even", 2)).await.unwrap();
    assert_eq!(yes, CheckOutcome::Verdict { success: true, reason: None });
    let no = client.check(&url, &request("toy", "even", 3)).await.unwrap();
    assert_eq!(no, CheckOutcome::Verdict { success: false, reason: Some("odd".into()) });
    let unknown = client.check(&url, &request("bank", "transfer", 1)).await.unwrap();
    assert!(
        matches!(unknown, CheckOutcome::Refused { status: 404, ref kind, .. } if kind == "unknown_contract"),
        "{unknown:?}"
    );
}

#[tokio::test]
async fn a_checker_that_is_down_gives_no_verdict_after_trying_again() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let client = CheckerClient::new(limits()).unwrap();
    let error = client.check(&format!("http://127.0.0.1:{port}"), &request("toy", "even", 2)).await.unwrap_err();
    assert!(error.tries > 1, "{error}");
}

#[tokio::test]
async fn a_checker_failing_twice_is_asked_again_until_it_answers() {
    // A checker of its own making: no `/batch` (404 there), and busy twice.
    let calls = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&calls);
    let app = axum::Router::new().route(
        "/toy/even",
        axum::routing::post(move || {
            let counter = Arc::clone(&counter);
            async move {
                if counter.fetch_add(1, Ordering::SeqCst) < 2 {
                    (axum::http::StatusCode::SERVICE_UNAVAILABLE, "busy".to_string())
                } else {
                    (axum::http::StatusCode::OK, r#"{"success": true}"#.to_string())
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = CheckerClient::new(limits()).unwrap();
    let outcome = client.check(&url, &request("toy", "even", 2)).await.unwrap();
    assert_eq!(outcome, CheckOutcome::Verdict { success: true, reason: None });
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_4xx_without_a_checkers_error_body_is_no_verdict() {
    // A wrong URL behind a proxy, or a rate limit: not the checker judging the transaction.
    for (status, body) in [(404, "Not Found"), (429, r#"{"error": {"kind": "x", "message": "slow down"}}"#)] {
        let app = axum::Router::new()
            .fallback(move || async move { (axum::http::StatusCode::from_u16(status).unwrap(), body.to_string()) });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let client = CheckerClient::new(limits()).unwrap();
        let error = client.check(&url, &request("toy", "even", 2)).await.unwrap_err();
        assert!(error.tries > 1 && error.last_error.contains(&status.to_string()), "{status}: {error}");
    }
}

/// The SDK's checker behind a layer that records the path of every call, and answers
/// `/batch` with 404 when `batches` is false (a checker that predates batches).
async fn recorded_checker(contract: Contract, batches: bool) -> (String, Arc<Mutex<Vec<String>>>, oneshot::Sender<()>) {
    let (url, paths, _, stop) = counted_checker(contract, batches).await;
    (url, paths, stop)
}

/// `recorded_checker`, with a watch of how many calls have arrived.
async fn counted_checker(
    contract: Contract,
    batches: bool,
) -> (String, Arc<Mutex<Vec<String>>>, tokio::sync::watch::Receiver<usize>, oneshot::Sender<()>) {
    let paths = Arc::new(Mutex::new(Vec::new()));
    let recorded = Arc::clone(&paths);
    let (tx_calls, calls) = tokio::sync::watch::channel(0usize);
    let tx_calls = Arc::new(tx_calls);
    let sdk = shardspace_checker::router(vec![contract], Default::default()).unwrap();
    let app =
        sdk.layer(axum::middleware::from_fn(move |request: axum::extract::Request, next: axum::middleware::Next| {
            let (recorded, tx_calls) = (Arc::clone(&recorded), Arc::clone(&tx_calls));
            async move {
                let path = request.uri().path().to_string();
                recorded.lock().unwrap().push(path.clone());
                tx_calls.send_modify(|calls| *calls += 1);
                if path == "/batch" && !batches {
                    return axum::response::IntoResponse::into_response((
                        axum::http::StatusCode::NOT_FOUND,
                        "Not Found",
                    ));
                }
                next.run(request).await
            }
        }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await
    });
    (url, paths, calls, stop)
}

/// `even`, slow enough (20 ms a call) that checks arriving together queue behind the first
/// batches; `slow` takes 300 ms; `explode` panics; `hang` takes 2.5 s (bounded, so that
/// the runtime can end).
fn slow_toy() -> Contract {
    Contract::new("toy")
        .method("even", |request: &CheckerRequest| -> Verdict {
            std::thread::park_timeout(Duration::from_millis(20));
            match request.parameters[0].as_i64() {
                Some(n) if n % 2 == 0 => Ok(()),
                _ => Err(Rejection::new("odd")),
            }
        })
        .method("explode", |_: &CheckerRequest| -> Verdict { panic!("boom") })
        .method("slow", |_: &CheckerRequest| -> Verdict {
            std::thread::park_timeout(Duration::from_millis(300));
            Ok(())
        })
        .method("hang", |_: &CheckerRequest| -> Verdict {
            std::thread::park_timeout(Duration::from_millis(2_500));
            Ok(())
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_that_arrive_together_go_in_few_batch_calls() {
    let (url, paths, _stop) = recorded_checker(slow_toy(), true).await;
    let client = CheckerClient::new(limits()).unwrap();
    let checks = (0..60).map(|n| {
        let (client, url) = (client.clone(), url.clone());
        tokio::spawn(async move { (n, client.check(&url, &request("toy", "even", n)).await) })
    });
    for check in checks.collect::<Vec<_>>() {
        let (n, outcome) = check.await.unwrap();
        let CheckOutcome::Verdict { success, .. } = outcome.unwrap() else { panic!("check {n} was refused") };
        assert_eq!(success, n % 2 == 0, "the verdict on {n}");
    }
    let paths = paths.lock().unwrap().clone();
    assert!(paths.iter().all(|path| path == "/batch"), "{paths:?}");
    assert!(paths.len() <= 6, "60 checks took {} batch calls", paths.len());
}

#[tokio::test]
async fn a_checker_without_batches_is_asked_once_per_request_from_then_on() {
    let (url, paths, _stop) = recorded_checker(slow_toy(), false).await;
    let client = CheckerClient::new(limits()).unwrap();
    for n in 0..3 {
        let outcome = client.check(&url, &request("toy", "even", n)).await.unwrap();
        assert_eq!(outcome, CheckOutcome::Verdict { success: n % 2 == 0, reason: (n % 2 == 1).then(|| "odd".into()) });
    }
    assert_eq!(*paths.lock().unwrap(), ["/batch", "/toy/even", "/toy/even", "/toy/even"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_failing_inside_a_batch_gives_no_verdict_and_the_others_theirs() {
    let (url, paths, _stop) = recorded_checker(slow_toy(), true).await;
    let client = CheckerClient::new(limits()).unwrap();
    let exploding = {
        let (client, url) = (client.clone(), url.clone());
        tokio::spawn(async move { client.check(&url, &request("toy", "explode", 0)).await })
    };
    let evens: Vec<_> = (0..8)
        .map(|n| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move { client.check(&url, &request("toy", "even", n)).await })
        })
        .collect();
    let error = exploding.await.unwrap().unwrap_err();
    assert!(error.tries > 1 && error.last_error.contains("checker_failed"), "{error}");
    for (n, even) in evens.into_iter().enumerate() {
        let outcome = even.await.unwrap().unwrap();
        assert!(
            matches!(outcome, CheckOutcome::Verdict { success, .. } if success == (n % 2 == 0)),
            "{n}: {outcome:?}"
        );
    }
    let paths = paths.lock().unwrap();
    assert!(!paths.iter().any(|path| path == "/toy/even"), "the evens were answered in batches: {paths:?}");
    assert!(paths.iter().any(|path| path == "/toy/explode"), "the failing one went alone: {paths:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_that_hangs_inside_a_batch_holds_up_no_other() {
    let (url, paths, mut calls, _stop) = counted_checker(slow_toy(), true).await;
    let client = CheckerClient::new(CheckerClientLimits { call_timeout: Duration::from_secs(1), ..limits() }).unwrap();
    let check = |method: &'static str, n: i64| {
        let (client, url) = (client.clone(), url.clone());
        tokio::spawn(async move { client.check(&url, &request("toy", method, n)).await })
    };
    // Two slow checks hold both batch slots, so that what comes next waits for one batch.
    // The second is sent once the first is being checked: sent together, the two could
    // share one batch call and leave a slot free (a fresh clone's CI run once did).
    let first = check("slow", 0);
    tokio::time::timeout(Duration::from_secs(10), calls.wait_for(|calls| *calls >= 1)).await.unwrap().unwrap();
    let slow = [first, check("slow", 1)];
    tokio::time::timeout(Duration::from_secs(10), calls.wait_for(|calls| *calls >= 2)).await.unwrap().unwrap();
    let hanging = check("hang", 0);
    let evens: Vec<_> = (0..6).map(|n| check("even", n)).collect();
    for (n, even) in evens.into_iter().enumerate() {
        let outcome = even.await.unwrap().unwrap();
        assert!(
            matches!(outcome, CheckOutcome::Verdict { success, .. } if success == (n % 2 == 0)),
            "{n}: {outcome:?}"
        );
    }
    for slow in slow {
        assert!(slow.await.unwrap().is_ok());
    }
    let error = hanging.await.unwrap().unwrap_err();
    assert!(error.url.ends_with("/toy/hang"), "{error}");
    let paths = paths.lock().unwrap();
    assert!(paths.iter().any(|path| path == "/toy/even"), "the others went alone after their batch failed: {paths:?}");
}

#[tokio::test]
async fn a_checker_answering_every_path_with_a_verdict_is_asked_once_per_request() {
    // A hand-written checker with a catch-all route: its answer at `/batch` has no `results`.
    let paths = Arc::new(Mutex::new(Vec::new()));
    let recorded = Arc::clone(&paths);
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let recorded = Arc::clone(&recorded);
        async move {
            recorded.lock().unwrap().push(uri.path().to_string());
            (axum::http::StatusCode::OK, r#"{"success": true}"#)
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = CheckerClient::new(limits()).unwrap();
    for n in 0..2 {
        let outcome = client.check(&url, &request("toy", "even", n)).await.unwrap();
        assert_eq!(outcome, CheckOutcome::Verdict { success: true, reason: None });
    }
    assert_eq!(*paths.lock().unwrap(), ["/batch", "/toy/even", "/toy/even"]);
}

/// Serves `app` on a free port for the rest of the test; its base URL.
async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// One batch call as the checker received it: its body's bytes and request count.
#[derive(Clone, Copy, Debug)]
struct BatchSeen {
    bytes: usize,
    requests: usize,
}

/// The SDK's checker behind a layer that measures each `/batch` call, and counts the
/// batch calls running at once (the most seen is kept).
async fn measured_checker(contract: Contract) -> (String, Arc<Mutex<(Vec<BatchSeen>, usize, usize)>>) {
    let seen = Arc::new(Mutex::new((Vec::new(), 0usize, 0usize)));
    let recorded = Arc::clone(&seen);
    let sdk = shardspace_checker::router(vec![contract], Default::default()).unwrap();
    let app =
        sdk.layer(axum::middleware::from_fn(move |request: axum::extract::Request, next: axum::middleware::Next| {
            let recorded = Arc::clone(&recorded);
            async move {
                let (parts, body) = request.into_parts();
                let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
                let requests = serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()["requests"]
                    .as_array()
                    .map_or(0, Vec::len);
                {
                    let mut seen = recorded.lock().unwrap();
                    seen.0.push(BatchSeen { bytes: bytes.len(), requests });
                    seen.1 += 1;
                    seen.2 = seen.2.max(seen.1);
                }
                let response = next.run(axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes))).await;
                recorded.lock().unwrap().1 -= 1;
                response
            }
        }));
    (serve(app).await, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_stay_within_their_count_bytes_and_calls_in_flight() {
    let (url, seen) = measured_checker(slow_toy()).await;
    let client = CheckerClient::new(limits()).unwrap();
    // Requests of about 40 KiB each: more than fit in one batch's bytes, and more of them
    // than fit in one batch's count.
    let padding = "x".repeat(40 * 1024);
    let checks: Vec<_> = (0..BATCH_REQUESTS_MAX as i64 + 40)
        .map(|n| {
            let (client, url) = (client.clone(), url.clone());
            let mut request = request("toy", "even", n * 2);
            if n % 2 == 0 {
                request.parameters.push(padding.clone().into());
            }
            tokio::spawn(async move { client.check(&url, &request).await })
        })
        .collect();
    for check in checks {
        let outcome = check.await.unwrap().unwrap();
        assert_eq!(outcome, CheckOutcome::Verdict { success: true, reason: None });
    }
    let (batches, _, most_at_once) = seen.lock().unwrap().clone();
    assert_eq!(batches.iter().map(|batch| batch.requests).sum::<usize>(), BATCH_REQUESTS_MAX + 40, "{batches:?}");
    assert!(batches.iter().all(|batch| batch.requests <= BATCH_REQUESTS_MAX), "{batches:?}");
    assert!(batches.iter().all(|batch| batch.bytes <= BATCH_BYTES_MAX + 64), "{batches:?}");
    assert!(batches.iter().any(|batch| batch.requests > 1), "some checks went together: {batches:?}");
    assert!(most_at_once <= BATCHES_IN_FLIGHT_MAX, "{most_at_once} batch calls at once");
}

/// `count` checks of `toy.method` (parameter 0, 1, …) sent at once; each one's outcome.
async fn check_all(client: &CheckerClient, url: &str, method: &str, count: i64) -> Vec<(i64, CheckOutcome)> {
    let checks: Vec<_> = (0..count)
        .map(|n| {
            let (client, url, method) = (client.clone(), url.to_string(), method.to_string());
            tokio::spawn(async move { (n, client.check(&url, &request("toy", &method, n)).await) })
        })
        .collect();
    let mut outcomes = Vec::new();
    for check in checks {
        let (n, outcome) = check.await.unwrap();
        outcomes.push((n, outcome.unwrap_or_else(|error| panic!("check {n}: {error}"))));
    }
    outcomes
}

/// Bounds for the tests that queue many checks: a deadline none of them should reach.
fn patient() -> CheckerClientLimits {
    CheckerClientLimits { deadline: Duration::from_secs(30), ..limits() }
}

/// The SDK's checker without `/batch` (a 404, as a checker that predates batches), counting
/// the calls running at once (the most seen is kept).
async fn single_call_checker(contract: Contract) -> (String, Arc<Mutex<(usize, usize)>>) {
    let seen = Arc::new(Mutex::new((0usize, 0usize)));
    let recorded = Arc::clone(&seen);
    let sdk = shardspace_checker::router(vec![contract], Default::default()).unwrap();
    let app =
        sdk.layer(axum::middleware::from_fn(move |request: axum::extract::Request, next: axum::middleware::Next| {
            let recorded = Arc::clone(&recorded);
            async move {
                if request.uri().path() == "/batch" {
                    return axum::response::IntoResponse::into_response(axum::http::StatusCode::NOT_FOUND);
                }
                {
                    let mut seen = recorded.lock().unwrap();
                    seen.0 += 1;
                    seen.1 = seen.1.max(seen.0);
                }
                let response = next.run(request).await;
                recorded.lock().unwrap().0 -= 1;
                response
            }
        }));
    (serve(app).await, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_calls_past_calls_in_flight_max_wait_their_turn_and_each_gets_its_verdict() {
    let (url, seen) = single_call_checker(slow_toy()).await;
    let client = CheckerClient::new(patient()).unwrap();
    for (_, outcome) in check_all(&client, &url, "slow", 3 * CALLS_IN_FLIGHT_MAX as i64).await {
        assert_eq!(outcome, CheckOutcome::Verdict { success: true, reason: None });
    }
    let (running, most_at_once) = *seen.lock().unwrap();
    assert_eq!(running, 0);
    assert_eq!(most_at_once, CALLS_IN_FLIGHT_MAX, "calls of 300 ms, three times as many as may run at once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_past_batch_queue_max_wait_for_room_and_each_gets_its_verdict() {
    let (url, _stop) = even_checker().await;
    let client = CheckerClient::new(patient()).unwrap();
    for (n, outcome) in check_all(&client, &url, "even", BATCH_QUEUE_MAX as i64 + 200).await {
        let CheckOutcome::Verdict { success, .. } = outcome else { panic!("check {n} was refused") };
        assert_eq!(success, n % 2 == 0, "the verdict on {n}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envelopes_past_envelopes_in_check_max_and_the_verdict_queue_wait_and_none_is_lost() {
    use shardspace_node::checking::{Checked, Checkers, ENVELOPES_IN_CHECK_MAX};
    let (url, _stop) = even_checker().await;
    let client = CheckerClient::new(patient()).unwrap();
    // Verdicts are not read until every envelope is started: the checks past
    // ENVELOPES_IN_CHECK_MAX wait for a place, the verdicts past the queue for room.
    let (tx_checked, mut rx_checked) = tokio::sync::mpsc::channel::<Checked>(shardspace_node::CHECKED_QUEUE_MAX);
    let checkers = Checkers::new(client, [("toy".to_string(), url)].into(), tx_checked);
    let count = ENVELOPES_IN_CHECK_MAX + shardspace_node::CHECKED_QUEUE_MAX + 100;
    let mut expected = std::collections::BTreeMap::new();
    for n in 0..count as i64 {
        let envelope = shardspace_checker::TransactionBuilder::new("toy", "even").parameter(n).build().unwrap();
        expected.insert(envelope.transaction.tx_id(), n % 2 == 0);
        checkers.start(&envelope);
    }
    let mut heard = std::collections::BTreeMap::new();
    while heard.len() < count {
        let checked = tokio::time::timeout(Duration::from_secs(30), rx_checked.recv()).await.unwrap().unwrap();
        let (success, _) = checked.verdict.unwrap();
        assert!(heard.insert(checked.tx, success).is_none(), "two verdicts on one envelope");
    }
    assert_eq!(heard, expected);
}
