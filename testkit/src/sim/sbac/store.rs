//! The simulated store of one replica: it applies the same `Write`s as the node's
//! SQLite store, in the same batches, serves the replica's records back to it
//! (`Source`), keeps one pinned view of them for the body of a checkpoint, and
//! gives back what a restart takes up (`Persisted`). It outlives a crash; a replica
//! that loses its disk gets a new one.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use shardspace_core::bft::{Block, Digest, Persisted, Resume, Round, SafetyState, StableCheckpoint, Tip};
use shardspace_core::sbac::replica::Write;
use shardspace_core::sbac::{ObjectRecord, Source, TxRecord, encode_body};
use shardspace_core::{ObjectId, TxId};

/// The records as saved, read by the replica's tables.
#[derive(Debug, Default)]
pub struct SimRecords {
    objects: Mutex<BTreeMap<ObjectId, ObjectRecord>>,
    transactions: Mutex<BTreeMap<TxId, TxRecord>>,
    /// Reads fail from now on (a disk that broke): each answers `None` and says so.
    failing: Mutex<bool>,
    fault: Mutex<Option<String>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // One thread runs a seed: a lock is never poisoned by another.
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl SimRecords {
    fn read<K: Ord, V: Clone>(&self, map: &Mutex<BTreeMap<K, V>>, key: &K) -> Option<V> {
        if *lock(&self.failing) {
            lock(&self.fault).get_or_insert_with(|| "the simulated disk fails reads".into());
            return None;
        }
        lock(map).get(key).cloned()
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
    /// The body of the checkpoint at this height, as the records were when it was pinned.
    pinned: Option<(u64, Vec<u8>)>,
}

impl SimStore {
    /// Applies one batch, as one store transaction.
    pub fn apply(&mut self, writes: Vec<Write>) {
        let mut pin = None;
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
                    if self.pinned.as_ref().is_some_and(|(pinned, _)| *pinned < height) {
                        self.pinned = None; // a transferred state moved past it
                    }
                    self.checkpoint = Some(checkpoint);
                }
                Write::Records(changes) => {
                    let mut objects = lock(&self.records.objects);
                    let mut transactions = lock(&self.records.transactions);
                    if changes.replace {
                        objects.clear();
                        transactions.clear();
                    }
                    objects.extend(changes.objects);
                    transactions.extend(changes.transactions);
                }
                Write::Resume { tip, head } => self.resume = Some((tip, head)),
                Write::Executed { height, digests, forget_below } => {
                    self.executed.insert(height, digests);
                    self.executed.retain(|kept, _| *kept >= forget_below);
                }
                Write::ExecutedWindow(window) => self.executed = window.into_iter().collect(),
                Write::Pin(height) => pin = Some(height),
            }
        }
        if let Some(height) = pin {
            let objects = lock(&self.records.objects).iter().map(|(k, v)| (*k, v.clone())).collect();
            let transactions = lock(&self.records.transactions).iter().map(|(k, v)| (*k, v.clone())).collect();
            self.pinned = Some((height, encode_body(objects, transactions)));
        }
    }

    /// The body of the checkpoint at `height`, if this store keeps a view of it.
    pub fn snapshot_body(&self, height: u64) -> Option<Vec<u8>> {
        self.pinned.as_ref().filter(|(pinned, _)| *pinned == height).map(|(_, body)| body.clone())
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
