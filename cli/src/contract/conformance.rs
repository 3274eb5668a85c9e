//! `contract test`: a contract's own tests, then the checker protocol's conformance pass
//! against its checker.

use std::path::PathBuf;

use anyhow::Context;

use super::{Lang, checker_command, lang_of, python, runtime};

#[derive(Debug, clap::Args)]
pub struct TestFlags {
    /// The contract's folder (as `contract new` writes it).
    dir: PathBuf,
}

/// The shared fixtures' malformed requests (checker-sdk/fixtures): every checker answers them
/// alike, whatever its contract's rules.
const ERROR_CASES: &str = include_str!("../../../checker-sdk/fixtures/checker_errors.json");

/// `contract test`: the contract's own tests, then a conformance pass of the checker protocol
/// (docs/checkers.md) against its checker, served for the pass: the shared fixtures'
/// malformed requests, unknown contracts and methods, wrong paths and verbs, and `/batch`,
/// each answered with the status and error kind every checker gives.
pub fn test(flags: &TestFlags) -> anyhow::Result<()> {
    let dir = flags.dir.canonicalize().with_context(|| format!("no contract folder at {}", flags.dir.display()))?;
    let mut own = match lang_of(&dir) {
        Lang::Python => {
            let mut command = std::process::Command::new(python());
            command.args(["-m", "pytest", "-q"]).arg(&dir);
            command
        }
        Lang::Rust => {
            let mut command = std::process::Command::new("cargo");
            command.args(["test", "--manifest-path"]).arg(dir.join("Cargo.toml"));
            command
        }
    };
    eprintln!("== its own tests: {own:?}");
    let passed = own.status().with_context(|| format!("cannot run {own:?}"))?;
    anyhow::ensure!(passed.success(), "the contract's own tests failed (above)");

    let mut command = checker_command(&dir, std::net::IpAddr::from([127, 0, 0, 1]), 0)?;
    let mut checker = Served(command.stdout(std::process::Stdio::piped()).spawn().context("cannot start the checker")?);
    let stdout = checker.0.stdout.take().context("the checker's stdout")?;
    let mut url = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut url)?;
    let url = url.trim().to_string();
    anyhow::ensure!(url.starts_with("http://"), "the checker printed {url:?}, not its URL");
    eprintln!("== the checker protocol, against {url}");
    let failures = runtime()?.block_on(conformance(&url))?;
    anyhow::ensure!(failures == 0, "{failures} answers are not what the checker protocol says (above)");
    Ok(())
}

/// A checker process, stopped when dropped.
struct Served(std::process::Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs every case against the checker at `url`; how many answered otherwise.
async fn conformance(url: &str) -> anyhow::Result<usize> {
    let http = reqwest::Client::builder().timeout(std::time::Duration::from_secs(20)).build()?;
    let listing: serde_json::Value = http.get(format!("{url}/")).send().await?.json().await?;
    let contracts = listing["contracts"].as_object().with_context(|| format!("GET {url}/ lists no contracts"))?;
    let (contract, methods) = contracts.iter().next().context("the checker serves no contract")?;
    let method = methods.get(0).and_then(serde_json::Value::as_str).context("its contract has no method")?;
    let cases: Vec<serde_json::Value> = serde_json::from_str(ERROR_CASES)?;
    let mut checks: Vec<(String, reqwest::Method, String, String, u16, String)> = Vec::new();
    for case in &cases {
        let name = case["name"].as_str().unwrap_or_default().to_string();
        // Which contract and method a path names matters there; the others hold for any.
        if name.starts_with("path_mismatch") {
            continue;
        }
        let path = case["path"].as_str().unwrap_or_default();
        let path = if name == "unknown_method_percent_encoded" {
            let mut letters = method.chars();
            let first = letters.next().unwrap_or('m');
            format!("/{contract}/%{:02x}{}", u32::from(first), letters.as_str())
        } else {
            let mut path = path.to_string();
            for example in ["bank", "dump", "hello"] {
                path = path.replacen(&format!("/{example}"), &format!("/{contract}"), 1);
            }
            for example in ["transfer", "put", "greet"] {
                path = path.replacen(&format!("/{example}"), &format!("/{method}"), 1);
            }
            path
        };
        let mut body = case["body"].as_str().unwrap_or_default().to_string();
        for example in ["\"bank\"", "\"dump\"", "\"hello\""] {
            body = body.replace(example, &format!("\"{contract}\""));
        }
        for example in ["\"transfer\"", "\"put\"", "\"greet\""] {
            body = body.replace(example, &format!("\"{method}\""));
        }
        let verb = reqwest::Method::from_bytes(case["method"].as_str().unwrap_or("POST").as_bytes())?;
        let status = u16::try_from(case["status"].as_u64().unwrap_or_default()).unwrap_or_default();
        checks.push((name, verb, path, body, status, case["kind"].as_str().unwrap_or_default().to_string()));
    }
    let batch = |body: &str| ("/batch".to_string(), body.to_string());
    for (name, (path, body), status, kind) in [
        ("batch_not_an_object", batch("[1]"), 400, "malformed_json"),
        ("batch_without_requests", batch("{}"), 400, "missing_field"),
        ("batch_requests_not_a_list", batch(r#"{"requests": "x"}"#), 400, "wrong_type"),
    ] {
        checks.push((name.into(), reqwest::Method::POST, path, body, status, kind.into()));
    }
    let mut failures = 0;
    for (name, verb, path, body, status, kind) in &checks {
        // The length always said, as replicas say it (an empty body too: else 411).
        let request = http.request(verb.clone(), format!("{url}{path}")).header("content-length", body.len());
        let answer = request.body(body.clone()).send().await?;
        let got_status = answer.status().as_u16();
        let got: serde_json::Value = answer.json().await.unwrap_or(serde_json::Value::Null);
        let got_kind = got["error"]["kind"].as_str().unwrap_or("-");
        if (got_status, got_kind) == (*status, kind.as_str()) {
            println!("ok      {name}: {verb} {path} -> {status} {kind}");
        } else {
            failures += 1;
            println!("FAILED  {name}: {verb} {path} -> {got_status} {got_kind}, the protocol says {status} {kind}");
        }
    }
    // A batch answers each request as its own call would.
    let unknown = serde_json::json!({"requests": [{"contractID": contract, "methodID": "no_such_method", "inputs": [],
        "referenceInputs": [], "parameters": [], "outputs": [], "returns": [], "dependencies": []}]});
    let answer: serde_json::Value = http.post(format!("{url}/batch")).json(&unknown).send().await?.json().await?;
    let result = &answer["results"][0];
    if (result["status"].as_u64(), result["error"]["kind"].as_str()) == (Some(404), Some("unknown_method")) {
        println!("ok      batch_of_an_unknown_method: its result is 404 unknown_method");
    } else {
        failures += 1;
        println!("FAILED  batch_of_an_unknown_method: {answer}, the protocol says a result of 404 unknown_method");
    }
    println!("{} of {} answers as the checker protocol says", checks.len() + 1 - failures, checks.len() + 1);
    Ok(failures)
}
