//! The checker server over real HTTP on port 0: verdicts, error answers, limits,
//! a panicking checker, keep-alive, and shutdown.

#![allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed test

use std::net::SocketAddr;

use serde_json::{Value, json};
use shardspace_checker::{
    CHECKER_BODY_BYTES_MAX, CheckerLimits, CheckerRequest, CheckerServer, Contract, Rejection, Verdict,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

/// A server running in this process; dropping it stops it.
struct Running {
    url: String,
    address: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Running {
    async fn start(contracts: Vec<Contract>) -> Self {
        Self::start_with(contracts, CheckerLimits::default()).await
    }

    async fn start_with(contracts: Vec<Contract>, limits: CheckerLimits) -> Self {
        let address = "127.0.0.1:0".parse().unwrap();
        let server = CheckerServer::bind_with_limits(address, contracts, limits).await.unwrap();
        let (url, address) = (server.url().unwrap(), server.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        Self { url, address, stop: Some(stop), task: Some(task) }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn toy() -> Contract {
    Contract::new("toy")
        .method("even", |request: &CheckerRequest| -> Verdict {
            match request.parameters.first().and_then(Value::as_i64) {
                Some(n) if n % 2 == 0 => Ok(()),
                _ => Err(Rejection::new("not even")),
            }
        })
        .method("explode", |_: &CheckerRequest| -> Verdict { panic!("boom") })
        .method("hang", |_: &CheckerRequest| -> Verdict {
            // Stands for a stuck checker; bounded so that the test's runtime can shut down.
            std::thread::park_timeout(std::time::Duration::from_secs(5));
            Ok(())
        })
}

fn request(method: &str, parameters: Value) -> Value {
    json!({"contractID": "toy", "methodID": method, "inputs": [], "referenceInputs": [], "parameters": parameters,
           "returns": [], "outputs": [], "dependencies": []})
}

async fn post(client: &reqwest::Client, url: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
    let response = client.post(url).body(body).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn verdicts_are_answered_with_success_and_a_reason() {
    let server = Running::start(vec![toy()]).await;
    let client = reqwest::Client::new();
    let url = format!("{}/toy/even", server.url);
    let (status, body) = post(&client, &url, request("even", json!([4])).to_string()).await;
    assert_eq!((status, body), (200, json!({"success": true})));
    let (status, body) = post(&client, &url, request("even", json!([3])).to_string()).await;
    assert_eq!((status, body), (200, json!({"success": false, "reason": "not even"})));
}

#[tokio::test]
async fn get_root_lists_the_contracts_served() {
    let server = Running::start(vec![toy()]).await;
    let body: Value = reqwest::get(format!("{}/", server.url)).await.unwrap().json().await.unwrap();
    assert_eq!(body, json!({"contracts": {"toy": ["even", "explode", "hang"]}}));
}

#[tokio::test]
async fn a_panicking_checker_is_a_500_and_the_server_goes_on() {
    let server = Running::start(vec![toy()]).await;
    let client = reqwest::Client::new();
    let (status, body) =
        post(&client, &format!("{}/toy/explode", server.url), request("explode", json!([])).to_string()).await;
    assert_eq!((status, body["error"]["kind"].as_str()), (500, Some("checker_failed")));
    assert!(body["error"]["message"].as_str().unwrap().contains("boom"));
    let (status, _) = post(&client, &format!("{}/toy/even", server.url), request("even", json!([2])).to_string()).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_413_and_the_server_goes_on() {
    let server = Running::start(vec![toy()]).await;
    let client = reqwest::Client::new();
    let url = format!("{}/toy/even", server.url);
    let (status, body) = post(&client, &url, vec![b' '; CHECKER_BODY_BYTES_MAX + 1]).await;
    assert_eq!((status, body["error"]["kind"].as_str()), (413, Some("body_too_large")));
    let (status, _) = post(&client, &url, request("even", json!([2])).to_string()).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn error_answers_carry_kind_message_and_hint() {
    let server = Running::start(vec![toy()]).await;
    let client = reqwest::Client::new();
    let cases = [
        ("/toy/even", "{".to_string(), 400, "malformed_json"),
        ("/toy/even", "[1]".to_string(), 400, "malformed_json"),
        ("/toy/even", json!({"contractID": "toy"}).to_string(), 400, "missing_field"),
        ("/toy/even", request("even", json!({})).to_string(), 400, "wrong_type"),
        ("/toy/even", request("explode", json!([])).to_string(), 400, "path_mismatch"),
        ("/nope/even", request("even", json!([])).to_string(), 404, "unknown_contract"),
        ("/toy/odd", request("odd", json!([])).to_string(), 404, "unknown_method"),
        ("/toy/even", request("even", serde_json::from_str("[1.5]").unwrap()).to_string(), 400, "float_number"),
        (
            "/toy/even",
            request("even", json!([]))
                .to_string()
                .replace("\"parameters\":[]", "\"parameters\":[18446744073709551616]"),
            400,
            "number_out_of_range",
        ),
        ("/toy/ev%65n", request("even", json!([])).to_string(), 404, "unknown_method"),
        ("//toy/even", request("even", json!([])).to_string(), 404, "not_found"),
        ("/toy", "{}".to_string(), 404, "not_found"),
        ("/toy/even/more", "{}".to_string(), 404, "not_found"),
    ];
    for (path, body, expected_status, expected_kind) in cases {
        let (status, answer) = post(&client, &format!("{}{path}", server.url), body.clone()).await;
        assert_eq!((status, answer["error"]["kind"].as_str()), (expected_status, Some(expected_kind)), "{path} {body}");
        assert!(answer["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert!(answer["error"]["hint"].as_str().is_some_and(|h| !h.is_empty()));
    }
    let response = client.get(format!("{}/toy/even", server.url)).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 405);
}

#[tokio::test]
async fn one_connection_carries_many_requests() {
    let server = Running::start(vec![toy()]).await;
    let mut stream = tokio::net::TcpStream::connect(server.address).await.unwrap();
    for _ in 0..3 {
        send_even(&mut stream).await;
        let answer = read_response(&mut stream).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("{\"success\":true}"), "{answer}");
    }
}

/// Writes one raw HTTP/1.1 request for `toy.even(2)` on `stream`.
async fn send_even(stream: &mut tokio::net::TcpStream) {
    let body = request("even", json!([2])).to_string();
    let head = format!("POST /toy/even HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n", body.len());
    stream.write_all(format!("{head}{body}").as_bytes()).await.unwrap();
}

/// Reads one response with a Content-Length body from a keep-alive connection.
async fn read_response(stream: &mut tokio::net::TcpStream) -> String {
    let mut received = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let text = String::from_utf8_lossy(&received).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|line| line.to_ascii_lowercase().strip_prefix("content-length: ").map(str::to_string))
                .and_then(|value| value.trim().parse::<usize>().ok());
            if length.is_some_and(|length| body.len() >= length) {
                return text;
            }
        }
        let mut buffer = [0u8; 4096];
        let read = tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await.expect("no answer in time");
        let count = read.unwrap();
        assert!(count > 0, "the server closed a keep-alive connection");
        received.extend_from_slice(&buffer[..count]);
    }
}

#[tokio::test]
async fn a_checker_that_overruns_its_time_is_a_500() {
    let limits = CheckerLimits { check_timeout: std::time::Duration::from_millis(100), ..CheckerLimits::default() };
    let server = Running::start_with(vec![toy()], limits).await;
    let client = reqwest::Client::new();
    let (status, body) =
        post(&client, &format!("{}/toy/hang", server.url), request("hang", json!([])).to_string()).await;
    assert_eq!((status, body["error"]["kind"].as_str()), (500, Some("checker_failed")));
}

#[tokio::test]
async fn connections_over_the_cap_wait_until_one_closes() {
    let limits = CheckerLimits { connections_max: 1, ..CheckerLimits::default() };
    let server = Running::start_with(vec![toy()], limits).await;
    let mut first = tokio::net::TcpStream::connect(server.address).await.unwrap();
    send_even(&mut first).await;
    assert!(read_response(&mut first).await.starts_with("HTTP/1.1 200"));
    // The first connection holds the only slot: the second is not served...
    let mut second = tokio::net::TcpStream::connect(server.address).await.unwrap();
    send_even(&mut second).await;
    let mut byte = [0u8; 1];
    let early = tokio::time::timeout(std::time::Duration::from_millis(300), second.read(&mut byte)).await;
    assert!(early.is_err(), "served beyond the cap");
    // ...until the first closes.
    drop(first);
    assert!(read_response(&mut second).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn bad_names_and_methods_registered_twice_are_refused() {
    let accept = |_: &CheckerRequest| -> Verdict { Ok(()) };
    let address = "127.0.0.1:0".parse().unwrap();
    for contract in
        [Contract::new("../x").method("m", accept), Contract::new("ok").method("m", accept).method("m", accept)]
    {
        let error = CheckerServer::bind(address, vec![contract]).await.unwrap_err();
        assert!(error.to_string().contains("cannot be served"), "{error}");
    }
}

#[tokio::test]
async fn two_contracts_of_one_name_are_refused() {
    let error = CheckerServer::bind("127.0.0.1:0".parse().unwrap(), vec![toy(), toy()]).await.unwrap_err();
    assert!(error.to_string().contains("two contracts are named"), "{error}");
}

#[tokio::test]
async fn shutdown_stops_the_server() {
    let mut server = Running::start(vec![toy()]).await;
    let task = server.task.take().unwrap();
    drop(server);
    let result = tokio::time::timeout(std::time::Duration::from_secs(10), task).await;
    assert!(matches!(result, Ok(Ok(Ok(())))), "{result:?}");
}

fn batch_of(requests: &[Value]) -> String {
    json!({ "requests": requests }).to_string()
}

#[tokio::test]
async fn a_batch_answers_each_request_as_its_own_call_would() {
    // Long enough for the panicking checker to finish even when its backtrace is printed
    // (RUST_BACKTRACE) on a loaded machine: at 300 ms it sometimes did not.
    let limits = CheckerLimits { check_timeout: std::time::Duration::from_secs(2), ..CheckerLimits::default() };
    let server = Running::start_with(vec![toy()], limits).await;
    let client = reqwest::Client::new();
    let mut unknown = request("even", json!([2]));
    unknown["contractID"] = json!("nope");
    let requests = [
        request("even", json!([2])),
        request("even", json!([3])),
        request("explode", json!([])),
        request("hang", json!([])),
        unknown,
        request("even", json!({})),
        json!([1]),
    ];
    let (status, body) = post(&client, &format!("{}/batch", server.url), batch_of(&requests)).await;
    assert_eq!(status, 200, "{body}");
    let results = body["results"].as_array().unwrap();
    assert_eq!(results[..2], [json!({"success": true}), json!({"success": false, "reason": "not even"})]);
    let errors: Vec<_> =
        results[2..].iter().map(|result| (result["status"].as_u64(), result["error"]["kind"].as_str())).collect();
    let expected = [
        (Some(500), Some("checker_failed")),
        (Some(500), Some("checker_failed")),
        (Some(404), Some("unknown_contract")),
        (Some(400), Some("wrong_type")),
        (Some(400), Some("malformed_json")),
    ];
    assert_eq!(errors, expected, "{body}");
    assert!(results[2]["error"]["message"].as_str().unwrap().contains("boom"));
}

#[tokio::test]
async fn a_bad_batch_is_refused_whole_and_the_server_goes_on() {
    let server = Running::start(vec![toy()]).await;
    let client = reqwest::Client::new();
    let url = format!("{}/batch", server.url);
    let cases = [
        ("{\"requests\": [".to_string(), 400, "malformed_json"),
        ("[]".to_string(), 400, "malformed_json"),
        ("{}".to_string(), 400, "missing_field"),
        ("{\"requests\": {}}".to_string(), 400, "wrong_type"),
        (batch_of(&vec![json!({}); shardspace_checker::CHECKER_BATCH_MAX + 1]), 413, "batch_too_large"),
    ];
    for (body, expected_status, expected_kind) in cases {
        let (status, answer) = post(&client, &url, body).await;
        assert_eq!((status, answer["error"]["kind"].as_str()), (expected_status, Some(expected_kind)));
        let (status, answer) = post(&client, &url, batch_of(&[request("even", json!([2]))])).await;
        assert_eq!((status, answer), (200, json!({"results": [{"success": true}]})));
    }
    let (status, answer) = post(&client, &url, batch_of(&[])).await;
    assert_eq!((status, answer), (200, json!({"results": []})));
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 405);
}
