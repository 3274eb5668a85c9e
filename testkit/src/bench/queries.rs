//! What the API's queries cost (issue 19) on the ledger a bank workload left: a contract's
//! objects, an owner's accounts (a field the replicas read, not an index), a contract's
//! aborted attempts (the decided logs' index) and the plain listing, each asked
//! `ASKED` times in turn; their latency is reported beside the throughput figures, whose
//! write path pays for the indexes.

use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use super::load::{Target, median, percentile};

/// Times each query is asked.
pub const ASKED: usize = 15;
/// The most pages one answer is followed through.
const PAGES_MAX: usize = 1_000;

/// One query's latency: every page of it, along `next`, until `more` is false.
#[derive(Clone, Debug, Serialize)]
pub struct QueryCost {
    pub workload: String,
    pub shards: u32,
    pub query: &'static str,
    pub path: String,
    /// Pages a whole answer took, and what it listed.
    pub pages: usize,
    pub listed: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
}

/// Asks each query of the ledger behind `target`; nothing when the API cannot be read.
pub async fn measure(target: &Target, workload: &str, shards: u32) -> Vec<QueryCost> {
    let base = target.url.trim_end_matches("/v1/transactions").to_string();
    let Some(owner) = an_owner(target, &base).await else {
        eprintln!("    {workload}: no bank account listed: its queries are not measured");
        return Vec::new();
    };
    let queries = [
        ("a contract's active objects, one page of 100", "/v1/objects?contract=bank&status=active&limit=100", false),
        (
            "an owner's active accounts (field)",
            &format!("/v1/objects?contract=bank&status=active&field=owner&equals={owner}"),
            true,
        ),
        ("a contract's aborts, one page of 50 (index)", "/v1/transactions?contract=bank&outcome=abort&limit=50", false),
        ("decided attempts, one page of 50 (in order)", "/v1/transactions?limit=50", false),
    ];
    let mut costs = Vec::new();
    for (query, path, whole) in queries {
        let mut times = Vec::new();
        let mut shape = (0, 0);
        for _ in 0..ASKED {
            let started = Instant::now();
            match walk(target, &format!("{base}{path}"), whole).await {
                Some(found) => shape = found,
                None => {
                    eprintln!("    {workload}: {path} failed: its cost is not measured");
                    break;
                }
            }
            times.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        if times.len() == ASKED {
            times.sort_by(f64::total_cmp);
            let (p50_ms, p90_ms) = (median(times.iter().copied()), percentile(&times, 0.9));
            eprintln!("    {workload}: {query}: p50 {p50_ms:.1} ms, p90 {p90_ms:.1} ms ({} pages)", shape.0);
            let (pages, listed) = shape;
            let path = path.to_string();
            costs.push(QueryCost { workload: workload.into(), shards, query, path, pages, listed, p50_ms, p90_ms });
        }
    }
    costs
}

/// The owner of the first active bank account listed.
async fn an_owner(target: &Target, base: &str) -> Option<String> {
    let page = get(target, &format!("{base}/v1/objects?contract=bank&status=active&limit=1")).await?;
    let value: Value = serde_json::from_str(page["objects"][0]["value"].as_str()?).ok()?;
    value["owner"].as_str().map(str::to_string)
}

/// Pages read and items listed: the first page, or every page along `next` when `whole`.
async fn walk(target: &Target, url: &str, whole: bool) -> Option<(usize, usize)> {
    let (mut pages, mut listed, mut after) = (0, 0, String::new());
    while pages < PAGES_MAX {
        let page = get(target, &format!("{url}{after}")).await?;
        pages += 1;
        let items = page.get("objects").or_else(|| page.get("transactions"))?;
        listed += items.as_array()?.len();
        if !whole || page["more"] != true {
            return Some((pages, listed));
        }
        after = format!("&after={}", page["next"].as_str()?);
    }
    Some((pages, listed))
}

async fn get(target: &Target, url: &str) -> Option<Value> {
    let response = target.http.get(url).timeout(Duration::from_secs(60)).send().await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    response.json().await.ok()
}
