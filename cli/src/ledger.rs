//! `shardspace events`, `transactions`, `objects` and `history`, on the API client crate
//! (`shardspace-api-client`): readable by default, one JSON document a line with `--json`.

use std::process::ExitCode;

use serde_json::{Value, json};
use shardspace_api_client::{Client, Error, EventFilter, ObjectFilter};

#[derive(Debug, clap::Args)]
pub struct Target {
    /// The API's base URL.
    #[arg(long, env = "SHARDSPACE_API", default_value = shardspace_api_client::DEFAULT_URL)]
    api: String,
    /// Print JSON (one document a line for events).
    #[arg(long)]
    json: bool,
}

/// Which decided attempts: `events` and `transactions` alike.
#[derive(Debug, clap::Args)]
pub struct FilterFlags {
    /// Only transactions of this contract.
    #[arg(long)]
    contract: Option<String>,
    /// Only transactions that concern this shard.
    #[arg(long)]
    shard: Option<u32>,
    /// Only `commit` or `abort`.
    #[arg(long, value_parser = ["commit", "abort"])]
    outcome: Option<String>,
}

impl FilterFlags {
    fn filter(&self) -> EventFilter {
        EventFilter { contract: self.contract.clone(), shard: self.shard, outcome: self.outcome.clone() }
    }
}

#[derive(Debug, clap::Args)]
pub struct EventsFlags {
    #[command(flatten)]
    filter: FilterFlags,
    /// Go on after this event id (as printed), instead of from now.
    #[arg(long)]
    after: Option<String>,
    /// Stop after this many events (else run until interrupted).
    #[arg(long)]
    count: Option<u64>,
    #[command(flatten)]
    target: Target,
}

/// Where a page of a listing starts, and how long it is: `transactions` and `objects` alike.
#[derive(Debug, clap::Args)]
pub struct PageFlags {
    /// Go on from the `next` a page before printed.
    #[arg(long)]
    after: Option<String>,
    /// At most this many (the API lists at most 500 a page).
    #[arg(long, default_value_t = 50)]
    limit: u32,
    #[command(flatten)]
    target: Target,
}

#[derive(Debug, clap::Args)]
pub struct TransactionsFlags {
    #[command(flatten)]
    filter: FilterFlags,
    #[command(flatten)]
    page: PageFlags,
}

#[derive(Debug, clap::Args)]
pub struct ObjectsFlags {
    /// Only objects of this contract.
    #[arg(long)]
    contract: Option<String>,
    /// Only `active`, `locked` or `inactive` objects.
    #[arg(long, value_parser = ["active", "locked", "inactive"])]
    status: Option<String>,
    /// Only objects whose value (JSON) has this top-level field equal to `--equals`.
    #[arg(long, requires = "equals")]
    field: Option<String>,
    #[arg(long, requires = "field")]
    equals: Option<String>,
    #[command(flatten)]
    page: PageFlags,
}

#[derive(Debug, clap::Args)]
pub struct HistoryFlags {
    /// The object's id: 64 lowercase hex digits.
    id: String,
    #[command(flatten)]
    target: Target,
}

/// A runtime and a client of the API at `target`, or the exit code that says why not.
fn connect(target: &Target) -> Result<(tokio::runtime::Runtime, Client), ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
    let runtime = runtime.map_err(|error| {
        eprintln!("shardspace: no async runtime: {error}");
        ExitCode::FAILURE
    })?;
    let client = Client::new(&target.api).map_err(|error| failed(&error))?;
    Ok((runtime, client))
}

/// An error's exit code: 1 when the API cannot be reached or failed, 2 for a 4xx.
fn failed(error: &Error) -> ExitCode {
    eprintln!("shardspace: {error}");
    match error {
        Error::Api { status: 400..=499, .. } => ExitCode::from(crate::EXIT_BAD_INPUT),
        _ => ExitCode::FAILURE,
    }
}

/// Prints each decided attempt as it comes: its event id first, to go on from with `--after`.
pub fn events(flags: &EventsFlags) -> ExitCode {
    let (runtime, client) = match connect(&flags.target) {
        Ok(connected) => connected,
        Err(code) => return code,
    };
    runtime.block_on(async {
        let filter = flags.filter.filter();
        let mut events = client.events(flags.after.clone(), filter);
        let mut printed = 0;
        while flags.count.is_none_or(|count| printed < count) {
            let event = match events.next().await {
                Ok(event) => event,
                Err(error) => return failed(&error),
            };
            if flags.target.json {
                println!("{}", json!({"id": event.id, "event": event.data}));
            } else {
                let data = &event.data;
                let text = |key: &str| data[key].as_str().unwrap_or("-").to_string();
                let reason = data["reason"].as_str().map(|reason| format!(" ({reason})")).unwrap_or_default();
                let call = format!("{}.{}", text("contract"), text("method"));
                println!(
                    "{:<12} {} {call:<24} attempt {} {}{reason}",
                    event.id, event.tx, event.attempt, event.outcome
                );
            }
            printed += 1;
        }
        ExitCode::SUCCESS
    })
}

/// Prints a page of decided attempts, then where the next page starts.
pub fn transactions(flags: &TransactionsFlags) -> ExitCode {
    let filter = flags.filter.filter();
    let ask = |client: Client| async move {
        client.transactions(&filter, flags.page.after.as_deref(), Some(flags.page.limit)).await
    };
    print_page(&flags.page, "transactions", ask, |entry| {
        let text = |key: &str| entry[key].as_str().unwrap_or("-").to_string();
        let call = format!("{}.{}", text("contract"), text("method"));
        println!("{} {call:<24} attempt {} {}", text("txId"), entry["attempt"], text("outcome"));
    })
}

/// Prints a page of objects, then where the next page starts.
pub fn objects(flags: &ObjectsFlags) -> ExitCode {
    let field = flags.field.clone().zip(flags.equals.clone());
    let filter = ObjectFilter { contract: flags.contract.clone(), status: flags.status.clone(), field };
    let page = &flags.page;
    let ask = |client: Client| async move { client.objects(&filter, page.after.as_deref(), Some(page.limit)).await };
    print_page(page, "objects", ask, |object| {
        let text = |key: &str| object[key].as_str().unwrap_or("-").to_string();
        println!("{} {:<8} {:<10} {}", text("id"), text("status"), text("contract"), text("value"));
    })
}

/// Asks for a page of a listing and prints it: its `items` a line each with `row`, then
/// the `next` to go on from (the page as it is with `--json`).
fn print_page<F>(flags: &PageFlags, items: &str, ask: impl FnOnce(Client) -> F, row: impl Fn(&Value)) -> ExitCode
where
    F: std::future::Future<Output = Result<Value, Error>>,
{
    let (runtime, client) = match connect(&flags.target) {
        Ok(connected) => connected,
        Err(code) => return code,
    };
    let page = match runtime.block_on(ask(client)) {
        Ok(page) => page,
        Err(error) => return failed(&error),
    };
    if flags.target.json {
        println!("{}", serde_json::to_string_pretty(&page).unwrap_or_default());
        return ExitCode::SUCCESS;
    }
    page[items].as_array().into_iter().flatten().for_each(row);
    print_next(&page);
    ExitCode::SUCCESS
}

/// The last line of a page: where the next one starts, and whether there is one.
fn print_next(page: &Value) {
    let more = if page["more"] == true { " (more: --after it)" } else { "" };
    println!("next {}{more}", page["next"].as_str().unwrap_or("-"));
}

/// Prints an object, the transactions that created and consumed it, and the objects
/// before and after it.
pub fn history(flags: &HistoryFlags) -> ExitCode {
    let (runtime, client) = match connect(&flags.target) {
        Ok(connected) => connected,
        Err(code) => return code,
    };
    runtime.block_on(async {
        let history = match client.history(&flags.id).await {
            Ok(history) => history,
            Err(error) => return failed(&error),
        };
        let tx = |outcome: &Option<shardspace_api_client::Outcome>| outcome.as_ref().map(|tx| tx.json.clone());
        if flags.target.json {
            let json = json!({
                "object": history.object, "createdBy": tx(&history.created_by), "consumedBy": tx(&history.consumed_by),
                "before": history.before, "after": history.after,
            });
            println!("{}", serde_json::to_string_pretty(&json).unwrap_or_default());
            return ExitCode::SUCCESS;
        }
        let object = &history.object;
        let text = |value: &Value| value.as_str().map(str::to_string).unwrap_or_else(|| "-".into());
        println!("object      {}", text(&object["id"]));
        println!(
            "status      {} (shard {}, contract {})",
            text(&object["status"]),
            object["shard"],
            text(&object["contract"])
        );
        println!("value       {}", text(&object["value"]));
        let call = |outcome: &Option<shardspace_api_client::Outcome>| match outcome {
            Some(tx) => {
                let body = tx.transaction.as_ref();
                let name = |key: &str| body.and_then(|body| body[key].as_str()).unwrap_or("?").to_string();
                format!("{} {}.{} ({})", tx.tx, name("contractID"), name("methodID"), tx.outcome)
            }
            None => "-".into(),
        };
        for id in &history.before {
            println!("before      {id}");
        }
        println!("created by  {}", call(&history.created_by));
        println!("consumed by {}", call(&history.consumed_by));
        for id in &history.after {
            println!("after       {id}");
        }
        ExitCode::SUCCESS
    })
}
