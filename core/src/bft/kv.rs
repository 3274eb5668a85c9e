//! A tiny replicated key-value store: the application the BFT tests, the
//! replica process (until the S-BAC shard replaces it) and the BFT benchmark
//! order requests for. Requests are `key=value`.

use std::collections::BTreeMap;

use super::{Application, Digest, Height, Request};
use serde::{Deserialize, Serialize};

/// What executing one request reports: its place in the execution sequence and
/// the state after it, so that observers can compare replicas step by step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Executed {
    pub height: Height,
    pub request: Digest,
    /// How many requests this state has executed, this one included.
    pub index: u64,
    /// A running digest of every request executed so far.
    pub state: Digest,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvApp {
    entries: BTreeMap<String, String>,
    executed: u64,
    state: Digest,
}

impl KvApp {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.get(key).map(String::as_str)
    }

    pub fn executed(&self) -> u64 {
        self.executed
    }

    pub fn state(&self) -> Digest {
        self.state
    }
}

impl Application for KvApp {
    type Output = Executed;

    fn execute(&mut self, height: Height, request: &Request) -> Vec<Executed> {
        let text = String::from_utf8_lossy(request.payload());
        if let Some((key, value)) = text.split_once('=') {
            self.entries.insert(key.to_string(), value.to_string());
        }
        let digest = request.digest();
        let mut chained = self.state.0.to_vec();
        chained.extend_from_slice(&digest.0);
        self.state = Digest::of(&chained);
        self.executed += 1;
        vec![Executed { height, request: digest, index: self.executed, state: self.state }]
    }

    fn state_head(&mut self, _height: Height) -> Vec<u8> {
        postcard::to_stdvec(self).expect("encoding a map into memory cannot fail")
    }

    fn state_body(&self) -> Option<Vec<u8>> {
        Some(Vec::new()) // small: all of it is in the head
    }

    fn restore(&mut self, head: &[u8], _body: &[u8]) -> Result<(), String> {
        *self = postcard::from_bytes(head).map_err(|error| error.to_string())?;
        Ok(())
    }
}
