//! The explorer page (`GET /explorer`) in a real browser: Debian's headless Chromium, driven
//! over WebDriver, against a real local cluster. A transaction submitted through the API
//! shows in the live feed, a search finds it, and the page of the object it consumed shows
//! that object consumed, with its history. Screenshots of each view go to a temporary
//! folder, or to `docs/images/` with `UPDATE_SCREENSHOTS=1`.
//!
//! Without Chromium (`make browser-deps` installs it as root) the test says SKIPPED and why.

#![allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use shardspace_checker::TransactionBuilder;
use shardspace_core::Envelope;
use shardspace_testkit::browser::{self, Browser};
use shardspace_testkit::cluster::{DEADLINE, LocalCluster, repo_root};
use shardspace_testkit::processes::wait_until;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_shardspace"))
}

async fn submit(api: &str, envelope: &Envelope) -> Value {
    let response = reqwest::Client::new().post(format!("{api}/v1/transactions")).json(envelope).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    response.json().await.unwrap()
}

/// Where the screenshots go: `docs/images/` when asked to update them, else a temporary folder.
fn screenshots() -> (PathBuf, Option<tempfile::TempDir>) {
    if std::env::var_os("UPDATE_SCREENSHOTS").is_some() {
        let folder = repo_root().join("docs/images");
        std::fs::create_dir_all(&folder).unwrap();
        return (folder, None);
    }
    let temporary = tempfile::tempdir().unwrap();
    (temporary.path().to_path_buf(), Some(temporary))
}

/// Waits until the page's `selector` shows `text`.
async fn shows(browser: &Browser, selector: &str, text: &str) {
    wait_until(&format!("{selector} shows {text:?}"), DEADLINE, || async {
        browser.text(selector).await.is_some_and(|shown| shown.contains(text))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_explorer_shows_a_transaction_live_finds_it_and_shows_its_input_consumed() {
    if let Err(why) = browser::installed() {
        eprintln!("SKIPPED: the explorer's browser test: {why}");
        return;
    }
    let cluster = LocalCluster::start(bin(), 2, 4, true);
    let api = cluster.api_url();
    let (folder, _temporary) = screenshots();
    let browser = Browser::start(1280, 900).await.unwrap();
    browser.goto(&format!("{api}/explorer")).await.unwrap();
    shows(&browser, "#health", "healthy").await;
    let leaders =
        "return [...document.querySelectorAll('#cluster td.leader')].filter(td => td.textContent === 'leads').length;";
    wait_until("the health table shows each shard's leader", DEADLINE, || async {
        browser.execute(leaders, vec![]).await.ok() == Some(json!(2))
    })
    .await;
    wait_until("the live feed is open", DEADLINE, || async {
        browser.execute("return document.body.dataset.feed;", vec![]).await.ok() == Some(json!("open"))
    })
    .await;

    let create = TransactionBuilder::new("dump", "put").output("\"shown in the explorer\"").build().unwrap();
    assert_eq!(submit(&api, &create).await["outcome"], "commit");
    let object = create.transaction.own_outputs().remove(0);
    let consume = TransactionBuilder::new("dump", "put").input(&object).output("\"after it\"").build().unwrap();
    assert_eq!(submit(&api, &consume).await["outcome"], "commit");
    let (created_tx, consumed_tx) = (create.transaction.tx_id().to_hex(), consume.transaction.tx_id().to_hex());
    let after = consume.transaction.own_outputs().remove(0).id.to_hex();

    // The live feed shows both, newest first.
    shows(&browser, &format!("#feed tr[data-tx='{consumed_tx}']"), "commit").await;
    shows(&browser, &format!("#feed tr[data-tx='{created_tx}']"), "dump.put").await;
    // The throughput bars count the two, and the latency row has this API's samples.
    shows(&browser, "#stats", "2 in the last").await;
    let counted = "return [...document.querySelectorAll('#stats .bars div')].some((bar) => bar.title !== '0/s');";
    wait_until("the throughput bars count the decided ones", DEADLINE, || async {
        browser.execute(counted, vec![]).await.ok() == Some(json!(true))
    })
    .await;
    browser.screenshot(&folder.join("explorer-home.png")).await.unwrap();

    // A search finds the transaction: its page, its input and output.
    let search = "document.getElementById('search-id').value = arguments[0]; \
                  document.getElementById('search').requestSubmit();";
    browser.execute(search, vec![json!(consumed_tx)]).await.unwrap();
    shows(&browser, "#tx-outcome", "commit").await;
    shows(&browser, "#view", &object.id.to_hex()).await;
    shows(&browser, "#view", &after).await;
    browser.screenshot(&folder.join("explorer-transaction.png")).await.unwrap();

    // The object's page: consumed by that transaction, and what came before and after it.
    browser.goto(&format!("{api}/explorer#/object/{}", object.id.to_hex())).await.unwrap();
    shows(&browser, "#object-status", "inactive").await;
    shows(&browser, "#view", &consumed_tx).await;
    shows(&browser, "#history", &after).await;
    browser.screenshot(&folder.join("explorer-object.png")).await.unwrap();

    // A contract's objects, found by its name: the active one, then the consumed one.
    browser.execute(search, vec![json!("dump")]).await.unwrap();
    shows(&browser, "#contract-name", "dump").await;
    shows(&browser, "#objects", &after).await;
    shows(&browser, "#objects-count", "1 listed, no more").await;
    browser.screenshot(&folder.join("explorer-contract.png")).await.unwrap();
    browser.goto(&format!("{api}/explorer#/contract/dump?status=inactive")).await.unwrap();
    shows(&browser, "#objects", &object.id.to_hex()).await;
    browser.goto(&format!("{api}/explorer#/contract/dump?status=active&field=x&equals=1")).await.unwrap();
    shows(&browser, "#objects-count", "0 listed, no more").await;

    // A search for what the cluster does not know says so.
    browser.execute(search, vec![json!("ab".repeat(32))]).await.unwrap();
    shows(&browser, "#view", "no transaction or object").await;
    browser.quit().await;

    // The same through the CLI (the API client crate): the feed from its start, and the history.
    let printed = cli(&api, &["events", "--after", "0.0", "--count", "2"]);
    let (first, second) = (printed.find(&created_tx).unwrap(), printed.find(&consumed_tx).unwrap());
    assert!(first < second && printed.matches("dump.put").count() == 2, "{printed}");
    let json = cli(&api, &["events", "--after", "0.0", "--count", "1", "--json", "--outcome", "commit"]);
    let event: Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(event["event"]["txId"].as_str(), Some(created_tx.as_str()), "{event}");
    // The cursor after the first entry of one of the two shards' logs.
    assert!(["1.0", "0.1"].contains(&event["id"].as_str().unwrap()), "{event}");
    let printed = cli(&api, &["transactions", "--contract", "dump", "--limit", "1"]);
    let next = printed.lines().last().unwrap().split_whitespace().nth(1).unwrap().to_string();
    assert!(printed.contains("dump.put") && printed.contains("(more: --after it)"), "{printed}");
    let rest = cli(&api, &["transactions", "--contract", "dump", "--after", &next]);
    for tx in [&created_tx, &consumed_tx] {
        assert_eq!(printed.matches(tx.as_str()).count() + rest.matches(tx.as_str()).count(), 1, "{printed}{rest}");
    }
    let printed = cli(&api, &["history", &object.id.to_hex()]);
    for expected in [
        "status      inactive",
        &format!("created by  {created_tx} dump.put (commit)"),
        &format!("after       {after}"),
    ] {
        assert!(printed.contains(expected), "history did not print {expected:?}:\n{printed}");
    }
    let printed = cli(&api, &["objects", "--contract", "dump", "--status", "active"]);
    assert!(printed.contains(&after) && !printed.contains(&object.id.to_hex()), "{printed}");
    let json = cli(&api, &["objects", "--contract", "dump", "--field", "x", "--equals", "1", "--json"]);
    let page: Value = serde_json::from_str(&json).unwrap();
    assert_eq!((&page["objects"], &page["more"]), (&json!([]), &json!(false)), "no value has the field: {page}");
    let json = cli(&api, &["objects", "--contract", "dump", "--status", "inactive", "--json"]);
    let page: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(page["objects"][0]["consumedBy"].as_str(), Some(consumed_tx.as_str()), "{page}");
}

/// Runs the `shardspace` CLI against the API at `api`; its stdout (it must succeed).
fn cli(api: &str, args: &[&str]) -> String {
    let output = std::process::Command::new(bin()).args(args).env("SHARDSPACE_API", api).output().unwrap();
    assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

/// How long the explorer takes to show a decided transaction: from the API's answer (the
/// transaction decided) to its row in the live feed, p50 and p99 over `EXPLORER_RUNS` (100)
/// transactions. A measurement, not a check: `cargo test --test explorer -- --ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, run by hand"]
async fn time_from_decision_to_the_live_feed() {
    browser::installed().unwrap();
    let runs: usize = std::env::var("EXPLORER_RUNS").ok().and_then(|runs| runs.parse().ok()).unwrap_or(100);
    let cluster = LocalCluster::start(bin(), 2, 4, true);
    let api = cluster.api_url();
    let browser = Browser::start(1280, 900).await.unwrap();
    browser.goto(&format!("{api}/explorer")).await.unwrap();
    wait_until("the live feed is open", DEADLINE, || async {
        browser.execute("return document.body.dataset.feed;", vec![]).await.ok() == Some(json!("open"))
    })
    .await;
    let now_ms = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
    let (mut after_answer, mut after_submission) = (Vec::new(), Vec::new());
    for n in 0..runs {
        let put = TransactionBuilder::new("dump", "put").parameter(n as i64).output("\"timed\"").build().unwrap();
        let submitted_ms = now_ms();
        assert_eq!(submit(&api, &put).await["outcome"], "commit");
        let answered_ms = now_ms();
        let selector = format!("#feed tr[data-tx='{}']", put.transaction.tx_id().to_hex());
        let script = "const row = document.querySelector(arguments[0]); return row ? row.dataset.seenMs : null;";
        let seen = std::sync::Mutex::new(None::<u128>);
        wait_until("the row shows", DEADLINE, || async {
            let shown = browser.execute(script, vec![json!(selector)]).await.ok();
            *seen.lock().unwrap() = shown.and_then(|shown| shown.as_str()?.parse().ok());
            seen.lock().unwrap().is_some()
        })
        .await;
        let seen = seen.lock().unwrap().unwrap();
        // Shown before the API answered counts as 0: the feed may be quicker than the answer.
        after_answer.push(Duration::from_millis(seen.saturating_sub(answered_ms) as u64));
        after_submission.push(Duration::from_millis(seen.saturating_sub(submitted_ms) as u64));
    }
    for (what, waits) in [("the API's answer", &mut after_answer), ("the submission", &mut after_submission)] {
        waits.sort();
        let (p50, p99) = (waits[waits.len() / 2], waits[(waits.len() * 99 / 100).min(waits.len() - 1)]);
        eprintln!("from {what} to the row in the explorer's live feed, over {runs}: p50 {p50:?}, p99 {p99:?}");
    }
    browser.quit().await;
}
