//! The cluster-wide feed of decided attempts, `GET /v1/events`. It is read from every
//! shard's decided log (`core/src/sbac/decided.rs`): an entry is believed once f+1 replicas
//! of its shard give it alike at its position, and an attempt is listed once, by the first
//! shard it concerns, in that shard's order. An event's id is the cursor after it (the next
//! position in each shard's log), so that a client reconnecting with `Last-Event-ID`, to
//! this API or to another one in front of the same cluster, misses nothing and hears
//! nothing twice, whoever submitted the transactions.
//!
//! One poller per shard follows the log's tail into a cache that every subscriber reads;
//! a subscriber behind the cache reads from the replicas (at most `CATCH_UPS_MAX` at once).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde_json::{Value, json};
use shardspace_core::ShardId;
use shardspace_core::sbac::{DecidedEntry, DecidedFilter, Position, SCAN_MAX, VoteKind};
use shardspace_node::cluster_client::{ClusterClient, ClusterError};
use tokio::sync::{OnceCell, OwnedSemaphorePermit, Semaphore, watch};

use crate::stats::Stats;

/// Streams at once; more get 503.
pub const SUBSCRIBERS_MAX: usize = 64;
/// Entries of each shard's log kept for the subscribers that follow its tail.
const CACHED_MAX: usize = 10_000;
/// Entries asked of the replicas at once.
const READ_MAX: u32 = 500;
/// How long one read waits for the replicas.
const READ_WAIT: Duration = Duration::from_secs(2);
/// How long a poller rests after a read that brought nothing new.
const IDLE_POLL: Duration = Duration::from_millis(50);
/// Subscribers reading from the replicas (behind the cache) at once.
const CATCH_UPS_MAX: usize = 4;
/// How long a subscriber waits for new entries before it looks again anyway.
const QUIET_MAX: Duration = Duration::from_secs(1);

/// Where a reader stands in every shard's log: the next position of each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor(pub Vec<u64>);

impl Cursor {
    /// `Last-Event-ID`'s form: each shard's next position, in shard order, joined by dots.
    pub fn parse(text: &str, shards: usize) -> Result<Self, String> {
        let positions: Result<Vec<u64>, _> = text.trim().split('.').map(str::parse).collect();
        match positions {
            Ok(positions) if positions.len() == shards => Ok(Self(positions)),
            Ok(positions) => Err(format!("{text:?} names {} shards; the cluster has {shards}", positions.len())),
            Err(_) => Err(format!("{text:?} is not an event id (positions joined by dots, such as 12.0.7)")),
        }
    }

    pub fn id(&self) -> String {
        self.0.iter().map(u64::to_string).collect::<Vec<_>>().join(".")
    }
}

/// Which events a subscriber wants.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub contract: Option<String>,
    /// Events of transactions that concern this shard.
    pub shard: Option<u32>,
    /// `commit` or `abort`.
    pub outcome: Option<String>,
}

impl Filter {
    fn matches(&self, entry: &DecidedEntry) -> bool {
        self.contract.as_ref().is_none_or(|contract| *contract == entry.contract)
            && self.shard.is_none_or(|shard| entry.concerned.contains(&ShardId(shard)))
            && self.outcome.as_deref().is_none_or(|outcome| outcome == outcome_of(entry))
    }
}

impl Filter {
    /// The search of the replicas' logs that narrows this filter by their index (a contract
    /// or an outcome), if it asks for one.
    fn searched(&self) -> Option<DecidedFilter> {
        let committed = self.outcome.as_deref().map(|outcome| outcome == "commit");
        (self.contract.is_some() || committed.is_some())
            .then(|| DecidedFilter { contract: self.contract.clone(), committed })
    }
}

fn outcome_of(entry: &DecidedEntry) -> &'static str {
    if entry.committed { "commit" } else { "abort" }
}

/// An event's data: the decided attempt, as the first shard it concerns logged it.
pub fn entry_json(shard: ShardId, position: u64, entry: &DecidedEntry) -> Value {
    let reason = match entry.vote {
        VoteKind::Abort(reason) if !entry.committed => Some(reason.as_str()),
        _ => None,
    };
    let hex = |ids: &[shardspace_core::ObjectId]| ids.iter().map(|id| id.to_hex()).collect::<Vec<_>>();
    json!({
        "txId": entry.tx.to_hex(),
        "attempt": entry.attempt.0,
        "outcome": outcome_of(entry),
        "reason": reason,
        "contract": entry.contract,
        "method": entry.method,
        "shards": entry.concerned.iter().map(|shard| shard.0).collect::<Vec<_>>(),
        "abortedBy": entry.aborted_by.iter().map(|shard| shard.0).collect::<Vec<_>>(),
        "inputs": hex(&entry.inputs),
        "outputs": hex(&entry.outputs),
        "shard": shard.0,
        "position": position,
    })
}

/// One shard's log as far as this API has read it.
#[derive(Debug)]
struct ShardLog {
    cache: Mutex<Cache>,
    /// The position after the last cached entry: each subscriber waits on it.
    tail: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct Cache {
    start: u64,
    entries: VecDeque<DecidedEntry>,
}

#[derive(Debug)]
pub struct Feed {
    client: ClusterClient,
    stats: Arc<Stats>,
    /// Made at the first subscription: the tails then, and a poller per shard.
    logs: OnceCell<Arc<Vec<ShardLog>>>,
    subscribers: Arc<Semaphore>,
    catch_ups: Arc<Semaphore>,
    /// Turns true at shutdown: every stream and poller ends.
    closed: watch::Sender<bool>,
}

/// Why a stream cannot be opened.
#[derive(Debug)]
pub enum Refusal {
    Busy,
    Unreachable(ClusterError),
}

impl Feed {
    pub fn new(client: ClusterClient, stats: Arc<Stats>) -> Self {
        let (subscribers, catch_ups) = (Semaphore::new(SUBSCRIBERS_MAX), Semaphore::new(CATCH_UPS_MAX));
        let closed = watch::channel(false).0;
        Self {
            client,
            stats,
            logs: OnceCell::new(),
            subscribers: Arc::new(subscribers),
            catch_ups: Arc::new(catch_ups),
            closed,
        }
    }

    pub fn shards(&self) -> usize {
        self.client.committees().len()
    }

    /// Ends every stream and poller (at shutdown).
    pub fn close(&self) {
        self.closed.send_replace(true);
    }

    /// The logs, started at their tails the first time (one read of every shard).
    async fn logs(&self) -> Result<Arc<Vec<ShardLog>>, ClusterError> {
        let logs = self
            .logs
            .get_or_try_init(|| async {
                let shards = (0..self.shards() as u32).map(ShardId);
                let tails = shards.map(|shard| self.client.decided_log(shard, Position(0), 0, READ_WAIT));
                let mut logs = Vec::new();
                for tail in futures::future::join_all(tails).await {
                    let length = tail?.length;
                    let cache = Mutex::new(Cache { start: length, entries: VecDeque::new() });
                    logs.push(ShardLog { cache, tail: watch::channel(length).0 });
                }
                let logs = Arc::new(logs);
                for shard in 0..logs.len() {
                    let (client, logs, closed) = (self.client.clone(), Arc::clone(&logs), self.closed.subscribe());
                    let stats = Arc::clone(&self.stats);
                    tokio::spawn(poll(client, ShardId(shard as u32), logs, stats, closed));
                }
                Ok::<_, ClusterError>(logs)
            })
            .await?;
        Ok(Arc::clone(logs))
    }

    /// The cursor at every shard's tail now: where a subscriber without an id starts.
    pub async fn tails(&self) -> Result<Cursor, Refusal> {
        let logs = self.logs().await.map_err(Refusal::Unreachable)?;
        Ok(Cursor(logs.iter().map(|log| *log.tail.borrow()).collect()))
    }

    /// A stream of the events after `cursor` (the tails when none) that `filter` keeps.
    pub async fn subscribe(
        self: &Arc<Self>,
        cursor: Option<Cursor>,
        filter: Filter,
    ) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>> + use<>>, Refusal> {
        let permit = Arc::clone(&self.subscribers).try_acquire_owned().map_err(|_| Refusal::Busy)?;
        let cursor = match cursor {
            Some(cursor) => {
                self.logs().await.map_err(Refusal::Unreachable)?;
                cursor
            }
            None => self.tails().await?,
        };
        // The stream says where it starts, so that a client dropped before its first event
        // goes on from here, not from a later "now".
        let start = Event::default().event("start").id(cursor.id()).data(json!({"cursor": cursor.id()}).to_string());
        let pending = VecDeque::from([start]);
        let reader = Reader { feed: Arc::clone(self), cursor, filter, pending, _permit: permit };
        let events = futures::stream::unfold(reader, |mut reader| async move {
            let event = reader.next().await?;
            Some((Ok(event), reader))
        });
        Ok(Sse::new(events).keep_alive(KeepAlive::default()))
    }

    /// Entries of `shard`'s log from `from` on: from the cache, or from the replicas when
    /// `from` is behind it; none while `from` is at or past the tail read so far.
    async fn read(&self, logs: &[ShardLog], shard: usize, from: u64) -> Result<Vec<DecidedEntry>, ClusterError> {
        {
            let cache = logs[shard].cache.lock().unwrap_or_else(PoisonError::into_inner);
            if from >= cache.start {
                let skip = usize::try_from(from - cache.start).unwrap_or(usize::MAX);
                return Ok(cache.entries.iter().skip(skip).take(READ_MAX as usize).cloned().collect());
            }
        }
        let _turn = self.catch_ups.acquire().await;
        let run = self.client.decided_log(ShardId(shard as u32), Position(from), READ_MAX, READ_WAIT).await?;
        Ok(run.entries)
    }
}

/// The most log entries one listing reads, across shards, before it answers with what it
/// found and where to go on from (a search counts as the `SCAN_MAX` it may read).
pub const LISTING_SCAN_MAX: usize = 5_000;

/// A page of decided attempts: what a listing found, and where the next page starts.
#[derive(Debug)]
pub struct Listed {
    pub entries: Vec<Value>,
    pub next: Cursor,
    /// Whether a shard's log may hold more after `next`.
    pub more: bool,
}

impl Feed {
    /// Decided attempts after `cursor` (from the start of every log when none) that `filter`
    /// keeps, at most `limit`: shard by shard, each in its log's order, each attempt once
    /// (by its first shard). Reads the replicas (entries f+1 give alike): a search of their
    /// logs by their index when a contract or an outcome is asked, else the logs in order;
    /// at most `LISTING_SCAN_MAX` entries a call.
    pub async fn list(&self, cursor: Option<Cursor>, filter: &Filter, limit: usize) -> Result<Listed, ClusterError> {
        let mut cursor = cursor.unwrap_or_else(|| Cursor(vec![0; self.shards()]));
        let (mut entries, mut scanned, mut more) = (Vec::new(), 0, false);
        let searched = filter.searched();
        for shard in 0..self.shards() {
            loop {
                if entries.len() >= limit || scanned >= LISTING_SCAN_MAX {
                    more = true;
                    break;
                }
                let from = Position(cursor.0[shard]);
                if let Some(searched) = &searched {
                    let shard_id = ShardId(shard as u32);
                    // Twice what the page lacks: a shard's log holds entries listed by another.
                    let wanted = u32::try_from(2 * (limit - entries.len())).unwrap_or(READ_MAX).min(READ_MAX);
                    let found = self.client.search(shard_id, from, searched.clone(), wanted, READ_WAIT).await?;
                    if found.searched_to <= from {
                        // The end of the log, or replicas not there yet (f+1 say it is longer).
                        more |= found.length > from.0;
                        break;
                    }
                    scanned += SCAN_MAX; // one search reads up to this many
                    cursor.0[shard] = found.searched_to.0;
                    for (position, entry) in found.entries {
                        if entries.len() >= limit {
                            cursor.0[shard] = position.0;
                            break;
                        }
                        if entry.home() == Some(shard_id) && filter.matches(&entry) {
                            entries.push(entry_json(shard_id, position.0, &entry));
                        }
                    }
                    continue;
                }
                let run = self.client.decided_log(ShardId(shard as u32), from, READ_MAX, READ_WAIT).await?;
                if run.entries.is_empty() {
                    more |= run.length > from.0; // f+1 say there is more, not yet agreed
                    break;
                }
                for entry in run.entries {
                    if entries.len() >= limit {
                        break;
                    }
                    let position = cursor.0[shard];
                    cursor.0[shard] += 1;
                    scanned += 1;
                    if entry.home() == Some(ShardId(shard as u32)) && filter.matches(&entry) {
                        entries.push(entry_json(ShardId(shard as u32), position, &entry));
                    }
                }
            }
        }
        Ok(Listed { entries, next: cursor, more })
    }
}

/// Follows the tail of one shard's log into its cache, until shutdown.
async fn poll(
    client: ClusterClient,
    shard: ShardId,
    logs: Arc<Vec<ShardLog>>,
    stats: Arc<Stats>,
    mut closed: watch::Receiver<bool>,
) {
    let log = &logs[shard.0 as usize];
    loop {
        let next = *log.tail.borrow();
        let read = tokio::select! {
            _ = closed.wait_for(|closed| *closed) => return,
            read = client.decided_log(shard, Position(next), READ_MAX, READ_WAIT) => read,
        };
        match read {
            Ok(run) if !run.entries.is_empty() => {
                let count = run.entries.len() as u64;
                stats.decided(run.entries.iter().filter(|entry| entry.home() == Some(shard)).count() as u64);
                {
                    let mut cache = log.cache.lock().unwrap_or_else(PoisonError::into_inner);
                    cache.entries.extend(run.entries);
                    while cache.entries.len() > CACHED_MAX {
                        cache.entries.pop_front();
                        cache.start += 1;
                    }
                }
                log.tail.send_replace(next + count);
            }
            Ok(_) => tokio::time::sleep(IDLE_POLL).await,
            Err(error) => {
                tracing::debug!(%shard, %error, "the decided log could not be read: trying again");
                tokio::time::sleep(IDLE_POLL).await;
            }
        }
    }
}

/// One subscriber's place in the feed.
struct Reader {
    feed: Arc<Feed>,
    cursor: Cursor,
    filter: Filter,
    /// Events read and not sent yet, in order.
    pending: VecDeque<Event>,
    _permit: OwnedSemaphorePermit,
}

impl Reader {
    /// The next event, waiting for one; `None` at shutdown.
    async fn next(&mut self) -> Option<Event> {
        let mut closed = self.feed.closed.subscribe();
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(event);
            }
            if *closed.borrow() {
                return None;
            }
            let logs = self.feed.logs().await.ok()?;
            let mut read_any = false;
            for shard in 0..logs.len() {
                let Ok(entries) = self.feed.read(&logs, shard, self.cursor.0[shard]).await else { continue };
                read_any |= !entries.is_empty();
                for entry in entries {
                    let position = self.cursor.0[shard];
                    self.cursor.0[shard] += 1;
                    if entry.home() == Some(ShardId(shard as u32)) && self.filter.matches(&entry) {
                        let data = entry_json(ShardId(shard as u32), position, &entry).to_string();
                        self.pending.push_back(Event::default().event("decided").id(self.cursor.id()).data(data));
                    }
                }
            }
            let behind = logs.iter().zip(&self.cursor.0).any(|(log, at)| *log.tail.borrow() > *at);
            if !read_any && behind {
                // Behind the tail, and the replicas gave nothing f+1 agree on yet: ask again
                // in a while rather than at once.
                tokio::select! {
                    _ = closed.wait_for(|closed| *closed) => return None,
                    _ = tokio::time::sleep(IDLE_POLL) => {}
                }
            } else if !read_any {
                // Wait for any shard's tail to pass this reader's place, or a while.
                let mut tails: Vec<_> = logs.iter().map(|log| log.tail.subscribe()).collect();
                let cursor = self.cursor.0.clone();
                let moved = tails.iter_mut().zip(cursor).map(|(tail, at)| {
                    Box::pin(async move {
                        let _ = tail.wait_for(|tail| *tail > at).await;
                    })
                });
                tokio::select! {
                    _ = futures::future::select_all(moved) => {}
                    _ = closed.wait_for(|closed| *closed) => return None,
                    _ = tokio::time::sleep(QUIET_MAX) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_reads_back_and_a_bad_one_says_why() {
        let cursor = Cursor(vec![12, 0, 7]);
        assert_eq!(cursor.id(), "12.0.7");
        assert_eq!(Cursor::parse("12.0.7", 3).unwrap(), cursor);
        assert!(Cursor::parse("12.0", 3).unwrap_err().contains("names 2 shards; the cluster has 3"));
        assert!(Cursor::parse("twelve", 1).unwrap_err().contains("not an event id"));
    }

    #[test]
    fn a_filter_keeps_the_contract_shard_and_outcome_asked() {
        let entry = DecidedEntry {
            tx: shardspace_core::TxId([1; 32]),
            attempt: shardspace_core::sbac::Attempt(1),
            committed: false,
            concerned: vec![ShardId(0), ShardId(2)],
            contract: "bank".into(),
            method: "transfer".into(),
            vote: VoteKind::Abort(shardspace_core::sbac::AbortReason::InputLocked),
            aborted_by: vec![ShardId(0)],
            inputs: Vec::new(),
            outputs: Vec::new(),
        };
        assert!(Filter::default().matches(&entry));
        let filter = |contract: Option<&str>, shard: Option<u32>, outcome: Option<&str>| Filter {
            contract: contract.map(str::to_string),
            shard,
            outcome: outcome.map(str::to_string),
        };
        assert!(filter(Some("bank"), Some(2), Some("abort")).matches(&entry));
        assert!(!filter(Some("dump"), None, None).matches(&entry));
        assert!(!filter(None, Some(1), None).matches(&entry));
        assert!(!filter(None, None, Some("commit")).matches(&entry));
        let data = entry_json(ShardId(0), 41, &entry);
        assert_eq!((data["outcome"].as_str(), data["reason"].as_str()), (Some("abort"), Some("input_locked")));
        assert_eq!((data["position"].as_u64(), &data["shards"]), (Some(41), &json!([0, 2])));
    }
}
