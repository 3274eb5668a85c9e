//! The Rust checkers give the verdicts and error answers pinned by the shared
//! fixtures (which the Python checkers give too): directly, and over HTTP from
//! the real `shardspace-example-checkers` process.

#![allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed test

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use shardspace_checker::CheckerRequest;

#[derive(Deserialize)]
struct VerdictCase {
    name: String,
    contract: String,
    method: String,
    request: CheckerRequest,
    success: bool,
}

#[derive(Deserialize)]
struct ErrorCase {
    name: String,
    method: String,
    path: String,
    body: String,
    status: u16,
    kind: String,
    /// The path the error message must name, where one applies.
    field: Option<String>,
}

fn fixture<T: for<'de> Deserialize<'de>>(file: &str) -> T {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../checker-sdk/fixtures").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("{file}: {error}"))
}

/// The checker process, killed when the test ends, pass or fail.
struct CheckerProcess {
    child: Child,
    url: String,
}

impl CheckerProcess {
    fn start() -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_shardspace-example-checkers"))
            .args(["--port", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the example checkers start");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = sender.send(line);
        });
        let mut process = Self { child, url: String::new() };
        let line = receiver.recv_timeout(Duration::from_secs(30)).expect("the URL on stdout within 30 s");
        process.url = line.trim().to_string();
        assert!(process.url.starts_with("http://127.0.0.1:"), "first line: {line:?}");
        process
    }
}

impl Drop for CheckerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn rust_checkers_give_every_fixture_verdict() {
    let cases: Vec<VerdictCase> = fixture("checker_requests.json");
    let contracts = shardspace_example_checkers::contracts();
    for contract in ["hello", "addition", "bank", "petition", "dump"] {
        let accepted = cases.iter().filter(|case| case.contract == contract && case.success).count();
        let rejected = cases.iter().filter(|case| case.contract == contract && !case.success).count();
        assert!(
            accepted > 0 && (rejected > 0 || contract == "dump"),
            "{contract}: {accepted} accepted, {rejected} rejected"
        );
    }
    let mut disagreements = Vec::new();
    for case in &cases {
        let contract = contracts.iter().find(|contract| contract.name() == case.contract).expect("a known contract");
        assert_eq!(case.request.method_id, case.method, "{}", case.name);
        let verdict = contract.check(&case.request).unwrap_or_else(|| panic!("{}: no checker", case.name));
        if verdict.is_ok() != case.success {
            disagreements.push(format!("{}: expected success {}, got {verdict:?}", case.name, case.success));
        }
    }
    assert!(disagreements.is_empty(), "the Rust checkers disagree:\n{}", disagreements.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checker_process_answers_every_fixture_over_http() {
    let process = CheckerProcess::start();
    let client = reqwest::Client::new();
    let verdicts: Vec<VerdictCase> = fixture("checker_requests.json");
    for case in &verdicts {
        let url = format!("{}/{}/{}", process.url, case.contract, case.method);
        let response = client.post(&url).json(&case.request).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200, "{}", case.name);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["success"], Value::Bool(case.success), "{}: {body}", case.name);
    }
    let errors: Vec<ErrorCase> = fixture("checker_errors.json");
    for case in &errors {
        let method = reqwest::Method::from_bytes(case.method.as_bytes()).unwrap();
        let request = client.request(method, format!("{}{}", process.url, case.path)).body(case.body.clone());
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        assert_eq!((status, body["error"]["kind"].as_str()), (case.status, Some(case.kind.as_str())), "{}", case.name);
        if let Some(field) = &case.field {
            let message = body["error"]["message"].as_str().unwrap_or_default();
            assert!(
                message.contains(&format!("`{field}`")) || message.contains(field.as_str()),
                "{}: {message}",
                case.name
            );
        }
    }
}

/// An error about the request itself (not its path, method or size): a batch item gets it too.
fn stands_alone_in_a_batch(case: &ErrorCase) -> bool {
    let segments: Vec<&str> = case.path.split('/').collect();
    if case.method != "POST" || segments.len() != 3 || ["path_mismatch", "not_found"].contains(&case.kind.as_str()) {
        return false;
    }
    match serde_json::from_str::<Value>(&case.body) {
        Err(_) => false,
        Ok(Value::Object(fields)) => {
            let named =
                |field: &str, default: &str| fields.get(field).and_then(Value::as_str).unwrap_or(default).to_string();
            [named("contractID", segments[1]), named("methodID", segments[2])] == segments[1..]
        }
        Ok(_) => true,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checker_process_answers_the_fixtures_in_batches_as_alone() {
    let process = CheckerProcess::start();
    let client = reqwest::Client::new();
    let url = format!("{}/batch", process.url);
    let post = |bodies: Vec<String>| {
        let request = client.post(&url).body(format!("{{\"requests\":[{}]}}", bodies.join(",")));
        async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.json::<Value>().await.unwrap())
        }
    };
    let verdicts: Vec<VerdictCase> = fixture("checker_requests.json");
    let (status, body) =
        post(verdicts.iter().map(|case| serde_json::to_string(&case.request).unwrap()).collect()).await;
    assert_eq!(status, 200, "{body}");
    let successes: Vec<_> =
        body["results"].as_array().unwrap().iter().map(|result| result["success"].as_bool()).collect();
    assert_eq!(successes, verdicts.iter().map(|case| Some(case.success)).collect::<Vec<_>>());

    let errors: Vec<ErrorCase> = fixture("checker_errors.json");
    let alone: Vec<_> = errors.iter().filter(|case| stands_alone_in_a_batch(case)).collect();
    assert!(alone.len() >= 15, "the fixtures hold errors of every kind about a request");
    for case in alone {
        let (status, body) = post(vec![case.body.clone()]).await;
        if status == 400 && case.kind == "malformed_json" {
            // Nested to the limit alone, it is nested too deep inside a batch: refused as a whole.
            assert_eq!(body["error"]["kind"], "malformed_json", "{}", case.name);
            continue;
        }
        assert_eq!(status, 200, "{}: {body}", case.name);
        let result = &body["results"][0];
        let answer = (result["status"].as_u64(), result["error"]["kind"].as_str());
        assert_eq!(answer, (Some(u64::from(case.status)), Some(case.kind.as_str())), "{}", case.name);
    }
}
