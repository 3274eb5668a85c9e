//! The cluster's event feed (`GET /v1/events`, server-sent events): each decided attempt
//! once, with an id to resume from. A dropped stream is opened again from the last event
//! received, with a growing pause between tries (at most `RETRY_MAX`).

use std::collections::VecDeque;
use std::time::Duration;

use serde_json::Value;

use crate::{Client, Error};

const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// One decided attempt.
#[derive(Clone, Debug)]
pub struct Event {
    /// Give it back (`Client::events`) to go on after this event.
    pub id: String,
    pub tx: String,
    pub attempt: u64,
    /// `commit` or `abort`.
    pub outcome: String,
    /// The whole event: contract, method, shards, inputs, outputs, ...
    pub data: Value,
}

/// Which events to receive.
#[derive(Clone, Debug, Default)]
pub struct EventFilter {
    pub contract: Option<String>,
    pub shard: Option<u32>,
    pub outcome: Option<String>,
}

impl EventFilter {
    /// Its query parameters (`contract=bank`, ...).
    pub(crate) fn query(&self) -> Vec<(&'static str, String)> {
        let mut query = Vec::new();
        query.extend(self.contract.clone().map(|contract| ("contract", contract)));
        query.extend(self.shard.map(|shard| ("shard", shard.to_string())));
        query.extend(self.outcome.clone().map(|outcome| ("outcome", outcome)));
        query
    }
}

/// `?name=value&...`, each percent-encoded (nothing when there are none).
pub(crate) fn query_string(pairs: &[(&'static str, String)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let mut url = reqwest::Url::parse("http://query.invalid/").expect("a fixed URL parses");
    url.query_pairs_mut().extend_pairs(pairs);
    format!("?{}", url.query().unwrap_or_default())
}

/// A stream of events that opens the feed again after it drops (`next`).
#[derive(Debug)]
pub struct Events {
    client: Client,
    last_id: Option<String>,
    filter: EventFilter,
    response: Option<reqwest::Response>,
    /// Bytes received and not yet a whole event (a character may be split across chunks).
    buffer: Vec<u8>,
    ready: VecDeque<Event>,
    retry: Duration,
}

impl Events {
    pub(crate) fn new(client: Client, last_id: Option<String>, filter: EventFilter) -> Self {
        let (response, buffer, ready, retry) = (None, Vec::new(), VecDeque::new(), RETRY_MIN);
        Self { client, last_id, filter, response, buffer, ready, retry }
    }

    /// The id of the last event received: where a new stream would go on from.
    pub fn last_id(&self) -> Option<&str> {
        self.last_id.as_deref()
    }

    fn url(&self) -> String {
        format!("{}/v1/events{}", self.client.base(), query_string(&self.filter.query()))
    }

    async fn open(&mut self) -> Result<reqwest::Response, Error> {
        let url = self.url();
        // A stream is long: no overall timeout, as the client's other requests have.
        let mut request = self.client.http().get(&url).header("accept", "text/event-stream").timeout(Duration::MAX);
        if let Some(id) = &self.last_id {
            request = request.header("last-event-id", id);
        }
        let response =
            request.send().await.map_err(|error| Error::Unreachable { url: url.clone(), reason: error.to_string() })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let text = |key: &str| body["error"][key].as_str().unwrap_or_default().to_string();
        Err(Error::Api { status, kind: text("kind"), message: text("message"), hint: text("hint"), body })
    }

    /// The next event. A stream that drops, or an API that cannot be reached, is tried
    /// again from the last event; an error the API answers (a 4xx) is returned.
    pub async fn next(&mut self) -> Result<Event, Error> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                self.last_id = Some(event.id.clone());
                return Ok(event);
            }
            let Some(response) = self.response.as_mut() else {
                match self.open().await {
                    Ok(response) => {
                        self.response = Some(response);
                        self.retry = RETRY_MIN;
                    }
                    Err(error @ Error::Api { status: 400..=499, .. }) => return Err(error),
                    Err(_) => self.pause().await,
                }
                continue;
            };
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    self.buffer.extend_from_slice(&chunk);
                    self.parse();
                }
                Ok(None) | Err(_) => {
                    self.response = None;
                    self.buffer.clear();
                    self.pause().await;
                }
            }
        }
    }

    async fn pause(&mut self) {
        tokio::time::sleep(self.retry).await;
        self.retry = (self.retry * 2).min(RETRY_MAX);
    }

    /// Takes every whole event out of the buffer. A `start` event (the first of a stream)
    /// says where the stream starts: a stream that drops before its first decided event
    /// goes on from there.
    fn parse(&mut self) {
        while let Some(end) = self.buffer.windows(2).position(|pair| pair == b"\n\n") {
            let bytes: Vec<u8> = self.buffer.drain(..end + 2).collect();
            let block = String::from_utf8_lossy(&bytes);
            if let Some(event) = parse_event(&block) {
                self.ready.push_back(event);
            } else if let Some(start) = start_of(&block)
                && self.ready.is_empty()
            {
                self.last_id = Some(start);
            }
        }
    }
}

/// The cursor a `start` event gives.
fn start_of(block: &str) -> Option<String> {
    if !block.lines().any(|line| line == "event: start") {
        return None;
    }
    block.lines().find_map(|line| line.strip_prefix("id: ")).map(str::to_string)
}

/// A `decided` event from its lines; none for comments (keep-alives) and other events.
fn parse_event(block: &str) -> Option<Event> {
    let (mut kind, mut id, mut data) = (None, None, String::new());
    for line in block.lines() {
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match name {
            "event" => kind = Some(value),
            "id" => id = Some(value.to_string()),
            "data" => data.push_str(value),
            _ => {}
        }
    }
    if kind != Some("decided") {
        return None;
    }
    let data: Value = serde_json::from_str(&data).ok()?;
    let tx = data["txId"].as_str()?.to_string();
    let (attempt, outcome) = (data["attempt"].as_u64()?, data["outcome"].as_str()?.to_string());
    Some(Event { id: id?, tx, attempt, outcome, data })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_split_inside_a_character_reads_whole() {
        let client = Client::new("http://127.0.0.1:9").unwrap();
        let mut events = client.events(None, EventFilter::default());
        let text = "event: decided\nid: 1.0\ndata: {\"txId\":\"ab\",\"attempt\":1,\"outcome\":\"commit\",\"contract\":\"café\"}\n\n";
        let split = text.bytes().position(|byte| byte == 0xc3).unwrap() + 1; // between é's two bytes
        events.buffer.extend_from_slice(&text.as_bytes()[..split]);
        events.parse();
        assert!(events.ready.is_empty());
        events.buffer.extend_from_slice(&text.as_bytes()[split..]);
        events.parse();
        assert_eq!(events.ready.front().unwrap().data["contract"], "café");
    }

    #[test]
    fn decided_events_parse_and_comments_do_not() {
        let block = "event: decided\nid: 3.1\ndata: {\"txId\":\"ab\",\"attempt\":2,\"outcome\":\"abort\"}\n\n";
        let event = parse_event(block).unwrap();
        assert_eq!(
            (event.id.as_str(), event.tx.as_str(), event.attempt, event.outcome.as_str()),
            ("3.1", "ab", 2, "abort")
        );
        assert!(parse_event(": keep-alive\n\n").is_none());
        assert!(parse_event("event: decided\ndata: {}\n\n").is_none(), "no id, no txId");
        assert_eq!(start_of("event: start\nid: 4.2\ndata: {}\n\n").as_deref(), Some("4.2"));
        assert_eq!(start_of(block), None);
    }
}
