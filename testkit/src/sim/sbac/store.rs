//! The simulated store of one replica: it applies the same `Write`s as the node's
//! SQLite store, in the same batches, serves the replica's records back to it
//! (`Source`), keeps the versions of each record down to the stable checkpoint (the
//! body of any checkpoint from there on, as the node's store does), and gives back
//! what a restart takes up (`Persisted`). It outlives a crash; a replica that loses its
//! disk gets a new one.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use shardspace_core::bft::{Block, Digest, Persisted, Resume, Round, SafetyState, StableCheckpoint, Tip};
use shardspace_core::sbac::replica::Write;
use shardspace_core::sbac::{DecidedEntry, ObjectRecord, Position, Source, TxRecord, encode_body};
use shardspace_core::{ObjectId, TxId};

/// Each key's versions, by the height from which they hold.
type Versions<K, V> = BTreeMap<K, BTreeMap<u64, V>>;

/// The records as saved, read by the replica's tables.
#[derive(Debug, Default)]
pub struct SimRecords {
    objects: Mutex<Versions<ObjectId, ObjectRecord>>,
    transactions: Mutex<Versions<TxId, TxRecord>>,
    decided: Mutex<Versions<Position, DecidedEntry>>,
    /// Reads fail from now on (a disk that broke): each answers `None` and says so.
    failing: Mutex<bool>,
    fault: Mutex<Option<String>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // One thread runs a seed: a lock is never poisoned by another.
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl SimRecords {
    fn read<K: Ord, V: Clone>(&self, map: &Mutex<Versions<K, V>>, key: &K) -> Option<V> {
        if *lock(&self.failing) {
            lock(&self.fault).get_or_insert_with(|| "the simulated disk fails reads".into());
            return None;
        }
        lock(map).get(key).and_then(|versions| versions.values().next_back()).cloned()
    }

    pub fn fail_reads(&self) {
        *lock(&self.failing) = true;
    }
}

impl Source<ObjectId, ObjectRecord> for SimRecords {
    fn get(&self, key: &ObjectId) -> Option<ObjectRecord> {
        self.read(&self.objects, key)
    }

    fn keys_after(&self, after: Option<&ObjectId>, limit: usize) -> Vec<ObjectId> {
        let objects = lock(&self.objects);
        let keys = objects.keys().filter(|key| after.is_none_or(|after| *key > after));
        keys.take(limit).copied().collect()
    }

    fn fault(&self) -> Option<String> {
        lock(&self.fault).clone()
    }
}

impl Source<Position, DecidedEntry> for SimRecords {
    fn get(&self, key: &Position) -> Option<DecidedEntry> {
        self.read(&self.decided, key)
    }

    fn keys_after(&self, after: Option<&Position>, limit: usize) -> Vec<Position> {
        let decided = lock(&self.decided);
        let keys = decided.keys().filter(|key| after.is_none_or(|after| *key > after));
        keys.take(limit).copied().collect()
    }

    fn fault(&self) -> Option<String> {
        lock(&self.fault).clone()
    }
}

impl Source<TxId, TxRecord> for SimRecords {
    fn get(&self, key: &TxId) -> Option<TxRecord> {
        self.read(&self.transactions, key)
    }

    fn keys_after(&self, after: Option<&TxId>, limit: usize) -> Vec<TxId> {
        let transactions = lock(&self.transactions);
        let keys = transactions.keys().filter(|key| after.is_none_or(|after| *key > after));
        keys.take(limit).copied().collect()
    }

    fn fault(&self) -> Option<String> {
        lock(&self.fault).clone()
    }
}

/// One replica's disk.
#[derive(Debug, Default)]
pub struct SimStore {
    safety: SafetyState,
    checkpoint: Option<StableCheckpoint>,
    decided: BTreeMap<u64, Block>,
    undecided: BTreeMap<(Round, Digest), Block>,
    resume: Option<(Tip, Vec<u8>)>,
    executed: BTreeMap<u64, Vec<Digest>>,
    pub records: Arc<SimRecords>,
}

/// Each key's version of the highest height ≤ `height`.
fn at<K: Ord + Copy, V: Clone>(map: &Mutex<Versions<K, V>>, height: u64) -> Vec<(K, V)> {
    let versions = lock(map);
    let held = versions.iter().filter_map(|(key, versions)| Some((*key, versions.range(..=height).next_back()?.1)));
    held.map(|(key, value)| (key, value.clone())).collect()
}

/// Drops the versions that the one of the highest height ≤ `stable` supersedes.
fn collect<K, V>(map: &Mutex<Versions<K, V>>, stable: u64) {
    for versions in lock(map).values_mut() {
        if let Some(&kept) = versions.range(..=stable).next_back().map(|(height, _)| height) {
            versions.retain(|height, _| *height >= kept);
        }
    }
}

fn save<K: Ord, V>(map: &Mutex<Versions<K, V>>, height: u64, records: Vec<(K, V)>) {
    let mut versions = lock(map);
    for (key, value) in records {
        versions.entry(key).or_default().insert(height, value);
    }
}

impl SimStore {
    /// Applies one batch, as one store transaction.
    pub fn apply(&mut self, writes: Vec<Write>) {
        for write in writes {
            match write {
                Write::Safety(state) => self.safety = state,
                Write::Block(block) => {
                    self.undecided.insert((block.round, block.digest()), block);
                }
                Write::Decided { height, block } => {
                    self.undecided.retain(|(round, _), _| *round > block.round);
                    self.decided.insert(height, block);
                }
                Write::Checkpoint(checkpoint) => {
                    let height = checkpoint.certificate.point.height.0;
                    self.decided.retain(|decided, _| *decided > height);
                    collect(&self.records.objects, height);
                    collect(&self.records.transactions, height);
                    self.checkpoint = Some(checkpoint);
                }
                Write::Records { height, changes } => {
                    if changes.replace {
                        lock(&self.records.objects).clear();
                        lock(&self.records.transactions).clear();
                        lock(&self.records.decided).clear();
                    }
                    save(&self.records.objects, height, changes.objects);
                    save(&self.records.transactions, height, changes.transactions);
                    save(&self.records.decided, height, changes.decided);
                }
                Write::Resume { tip, head } => self.resume = Some((tip, head)),
                Write::Executed { height, digests, forget_below } => {
                    self.executed.insert(height, digests);
                    self.executed.retain(|kept, _| *kept >= forget_below);
                }
                Write::ExecutedWindow(window) => self.executed = window.into_iter().collect(),
            }
        }
    }

    /// The body of the checkpoint at `height`, if this store can read it: from the stable
    /// checkpoint (below it, versions were dropped) to the last height saved.
    pub fn snapshot_body(&self, height: u64) -> Option<Vec<u8>> {
        let stable = self.checkpoint.as_ref().map_or(0, |checkpoint| checkpoint.certificate.point.height.0);
        let saved = self.resume.as_ref().map_or(0, |(tip, _)| tip.height.0);
        if height < stable || height > saved {
            return None;
        }
        let (objects, transactions) = (at(&self.records.objects, height), at(&self.records.transactions, height));
        Some(encode_body(objects, transactions, at(&self.records.decided, height)))
    }

    /// What a restart reads back.
    pub fn persisted(&self) -> Persisted {
        let resume = self.resume.as_ref().map(|(tip, head)| Resume {
            tip: *tip,
            app: head.clone(),
            executed: self
                .executed
                .iter()
                .map(|(height, digests)| (shardspace_core::bft::Height(*height), digests.clone()))
                .collect(),
        });
        Persisted {
            safety: self.safety.clone(),
            checkpoint: self.checkpoint.clone(),
            decided: self.decided.values().cloned().collect(),
            undecided: self.undecided.values().cloned().collect(),
            resume,
        }
    }
}
