//! `Table`: one kind of a shard's records (objects, or transaction records), in key
//! order, with its entry count and multiset digest (`LtHash`) kept up to date as records
//! change, so that a checkpoint signs the whole table without a pass over it.
//!
//! A table is held whole in memory (the simulator, the tests), or reads its records
//! from a `Source` (the replica's SQLite store) and holds only those changed since the
//! shell last took the changes: the shell saves them with the step's decided blocks, and
//! what a replica holds in memory no longer grows with the ledger (issue 6).

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Bound;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::lthash::LtHash;

/// Where a table reads the records it does not hold.
pub trait Source<K, V>: Send + Sync {
    /// The record saved under `key`. Execution cannot stop halfway, so a read that fails
    /// answers `None`, and the shell, which checks its source after each step, stops the
    /// replica before anything of that step is saved or said.
    fn get(&self, key: &K) -> Option<V>;

    /// Saved keys after `after`, in order, at most `limit`.
    fn keys_after(&self, after: Option<&K>, limit: usize) -> Vec<K>;

    /// Saved keys after `after`, in order, at most `limit`, among which every one whose
    /// saved record holds `columns` (name and value): an index narrows the scan, and the
    /// reader checks each key against the record as it is now. Without an index, or with
    /// no columns, every key (`keys_after`).
    fn keys_where(&self, columns: &[(&'static str, String)], after: Option<&K>, limit: usize) -> Vec<K> {
        let _ = columns;
        self.keys_after(after, limit)
    }

    /// What went wrong reading, if a read failed: the replica stops before it says
    /// anything that read may have made false.
    fn fault(&self) -> Option<String> {
        None
    }
}

/// What a checkpoint signs of a table.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableHead {
    pub len: u64,
    pub digest: LtHash,
}

/// Records saved lately that a table with a source keeps, to read them again without it:
/// a transaction's records are read again in the steps after the one that wrote them.
/// Two generations of at most half of this each: memory stays bounded.
pub const RECENT_RECORDS_MAX: usize = 8_192;

pub struct Table<K, V> {
    /// Every record (no source), or the records changed since the changes were last taken.
    held: BTreeMap<K, V>,
    /// Saved records kept since they were saved (`RECENT_RECORDS_MAX`), newest first.
    recent: BTreeMap<K, V>,
    older: BTreeMap<K, V>,
    /// Keys the source was found not to hold since the last step: a step asks for a new
    /// transaction's or output's record several times. Only this table adds records to
    /// its source, and it forgets a key here when it adds it.
    absent: RefCell<BTreeSet<K>>,
    source: Option<Arc<dyn Source<K, V>>>,
    len: u64,
    /// The digest of every entry, except those of `touched`, whose old entry is out and
    /// whose new one goes in when the table is sealed.
    digest: LtHash,
    touched: BTreeSet<K>,
    /// Changed since the changes were last taken (a table with a source only).
    unsaved: BTreeSet<K>,
}

/// The bytes a record's digest is taken over: the key and the record.
fn entry<K: Serialize, V: Serialize>(key: &K, value: &V) -> Vec<u8> {
    postcard::to_stdvec(&(key, value)).expect("encoding into memory cannot fail")
}

impl<K, V> Table<K, V>
where
    K: Ord + Clone + Serialize + DeserializeOwned,
    V: Clone + Serialize + DeserializeOwned,
{
    /// A table that reads what it does not hold from `source`, saved with `head`.
    pub fn with_source(source: Arc<dyn Source<K, V>>, head: TableHead) -> Self {
        Self { source: Some(source), len: head.len, digest: head.digest, ..Self::default() }
    }

    /// A table held whole, from its entries.
    pub fn from_entries(entries: impl IntoIterator<Item = (K, V)>) -> Self {
        let held: BTreeMap<K, V> = entries.into_iter().collect();
        let mut digest = LtHash::default();
        held.iter().for_each(|(key, value)| digest.add(&entry(key, value)));
        Self { len: held.len() as u64, held, digest, ..Self::default() }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, key: &K) -> Option<Cow<'_, V>> {
        let kept = self.held.get(key).or_else(|| self.recent.get(key)).or_else(|| self.older.get(key));
        match (kept, &self.source) {
            (Some(value), _) => Some(Cow::Borrowed(value)),
            (None, Some(source)) => self.read(source.as_ref(), key).map(Cow::Owned),
            (None, None) => None,
        }
    }

    /// A read of the source, remembering a key it does not hold.
    fn read(&self, source: &dyn Source<K, V>, key: &K) -> Option<V> {
        if self.absent.borrow().contains(key) {
            return None;
        }
        let found = source.get(key);
        if found.is_none() {
            self.absent.borrow_mut().insert(key.clone());
        }
        found
    }

    pub fn contains_key(&self, key: &K) -> bool {
        self.get(key).is_some()
    }

    /// The record under `key`, to change.
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        if !self.held.contains_key(key) {
            let (recent, older) = (self.recent.remove(key), self.older.remove(key));
            let loaded = match recent.or(older) {
                Some(kept) => kept,
                None => self.read(self.source.as_deref()?, key)?,
            };
            self.held.insert(key.clone(), loaded);
        }
        self.touch(key);
        self.held.get_mut(key)
    }

    /// Adds or replaces the record under `key`.
    pub fn insert(&mut self, key: K, value: V) {
        match self.get_mut(&key) {
            Some(held) => *held = value,
            None => self.insert_new(key, value),
        }
    }

    /// Adds a record under a key the table is known not to hold (one past the last of an
    /// append-only table): the source is not asked first, as `insert` asks it.
    pub fn insert_new(&mut self, key: K, value: V) {
        debug_assert!(!self.held.contains_key(&key), "insert_new of a key held already");
        self.absent.get_mut().remove(&key);
        self.len += 1;
        self.touched.insert(key.clone());
        if self.source.is_some() {
            self.unsaved.insert(key.clone());
        }
        self.held.insert(key, value);
    }

    /// Takes a held record's entry out of the digest until the next seal.
    fn touch(&mut self, key: &K) {
        if !self.touched.contains(key) {
            if let Some(value) = self.held.get(key) {
                self.digest.remove(&entry(key, value));
            }
            self.touched.insert(key.clone());
        }
        if self.source.is_some() {
            self.unsaved.insert(key.clone());
        }
    }

    /// Puts the entries of the records changed since the last seal into the digest.
    fn seal(&mut self) {
        for key in std::mem::take(&mut self.touched) {
            if let Some(value) = self.held.get(&key) {
                self.digest.add(&entry(&key, value));
            }
        }
    }

    /// What a checkpoint signs of this table.
    pub fn head(&mut self) -> TableHead {
        self.seal();
        TableHead { len: self.len, digest: self.digest.clone() }
    }

    /// The records changed since the last call, as they are now, for the shell to save
    /// (nothing for a table held whole). They stay held until `forget_saved`.
    pub fn take_unsaved(&mut self) -> Vec<(K, V)> {
        self.seal();
        std::mem::take(&mut self.unsaved)
            .into_iter()
            .filter_map(|key| self.held.get(&key).cloned().map(|value| (key, value)))
            .collect()
    }

    /// Lets go of the records held by a table with a source, once the shell saved them:
    /// the latest are kept a while (`RECENT_RECORDS_MAX`), the others read back when needed.
    pub fn forget_saved(&mut self) {
        if self.source.is_some() && self.unsaved.is_empty() {
            self.seal();
            self.absent.get_mut().clear();
            let saved = std::mem::take(&mut self.held);
            let generation = RECENT_RECORDS_MAX / 2;
            if saved.len() > generation {
                return; // more than it may keep (a state transfer): read back when needed
            }
            if self.recent.len() + saved.len() > generation {
                self.older = std::mem::take(&mut self.recent);
            }
            // One by one: `BTreeMap::append` rebuilds the whole map, a cost per step that
            // grows with what is kept (3 % of a replica, measured).
            for (key, value) in saved {
                self.recent.insert(key, value);
            }
        }
    }

    /// This table, held whole, as a table with a source whose every record is unsaved
    /// (a state transfer: the shell replaces what its store holds with these records).
    pub fn saved_to(mut self, source: Arc<dyn Source<K, V>>) -> Self {
        self.unsaved = self.held.keys().cloned().collect();
        self.source = Some(source);
        self
    }

    /// Takes up the head saved with the records of a table with a source (a restart).
    pub fn resume(&mut self, head: TableHead) -> Result<(), String> {
        if self.source.is_none() || !self.held.is_empty() || !self.recent.is_empty() {
            return Err("only a table read from a store can take up its saved head".into());
        }
        (self.len, self.digest) = (head.len, head.digest);
        Ok(())
    }

    pub fn source(&self) -> Option<&Arc<dyn Source<K, V>>> {
        self.source.as_ref()
    }

    /// Keys after `after` in order, at most `limit`: saved and held alike. Records given
    /// up lately (`recent`, `older`) count too: with group commit the shell may not have
    /// made them durable in the source yet (a listing missed an object whose group was
    /// still being committed; the S-BAC simulator's conservation check found it).
    pub fn keys_after(&self, after: Option<&K>, limit: usize) -> Vec<K> {
        self.keys_where(&[], |_| true, after, limit)
    }

    /// Keys after `after` in order, at most `limit`, among which every one whose record
    /// `keep` holds: the records in memory that it holds, and the saved ones the source
    /// finds by `columns` (`Source::keys_where`). Some may not hold it any more: the
    /// caller checks each against its record.
    pub fn keys_where(
        &self,
        columns: &[(&'static str, String)],
        keep: impl Fn(&V) -> bool,
        after: Option<&K>,
        limit: usize,
    ) -> Vec<K> {
        let kept = |map: &BTreeMap<K, V>| -> Vec<K> {
            let range = match after {
                Some(after) => map.range((Bound::Excluded(after.clone()), Bound::Unbounded)),
                None => map.range::<K, _>(..),
            };
            range.filter(|(_, value)| keep(value)).take(limit).map(|(key, _)| key.clone()).collect()
        };
        let mut keys: BTreeSet<K> = [&self.held, &self.recent, &self.older].into_iter().flat_map(kept).collect();
        if let Some(source) = &self.source {
            keys.extend(source.keys_where(columns, after, limit));
        }
        keys.into_iter().take(limit).collect()
    }

    /// The records held: every record of a table without a source.
    pub fn held(&self) -> impl Iterator<Item = (&K, &V)> {
        self.held.iter()
    }
}

impl<K, V> Default for Table<K, V> {
    fn default() -> Self {
        Self {
            held: BTreeMap::new(),
            recent: BTreeMap::new(),
            older: BTreeMap::new(),
            absent: RefCell::default(),
            source: None,
            len: 0,
            digest: LtHash::default(),
            touched: BTreeSet::new(),
            unsaved: BTreeSet::new(),
        }
    }
}

impl<K: Clone, V: Clone> Clone for Table<K, V> {
    fn clone(&self) -> Self {
        Self {
            held: self.held.clone(),
            recent: self.recent.clone(),
            older: self.older.clone(),
            absent: self.absent.clone(),
            source: self.source.clone(),
            len: self.len,
            digest: self.digest.clone(),
            touched: self.touched.clone(),
            unsaved: self.unsaved.clone(),
        }
    }
}

/// Tables held whole are equal when their records are.
impl<K: PartialEq, V: PartialEq> PartialEq for Table<K, V> {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.held == other.held
    }
}

impl<K: Eq, V: Eq> Eq for Table<K, V> {}

impl<K, V> fmt::Debug for Table<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = if self.source.is_some() { "a source" } else { "none" };
        write!(f, "Table({} records, {} held, source: {source})", self.len, self.held.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A source that saves what the table gives up, as the shell would, and counts its reads.
    #[derive(Default)]
    struct Saved(Mutex<BTreeMap<u32, String>>, std::sync::atomic::AtomicUsize);

    impl Source<u32, String> for Saved {
        fn get(&self, key: &u32) -> Option<String> {
            self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.0.lock().unwrap().get(key).cloned()
        }
        fn keys_after(&self, after: Option<&u32>, limit: usize) -> Vec<u32> {
            let saved = self.0.lock().unwrap();
            saved.keys().filter(|key| after.is_none_or(|after| *key > after)).take(limit).copied().collect()
        }
    }

    fn change(table: &mut Table<u32, String>, step: u32) {
        table.insert(step, format!("created at {step}"));
        if let Some(value) = table.get_mut(&(step / 2)) {
            value.push_str(&format!(", changed at {step}"));
        }
    }

    /// Appending new keys with `insert_new` leaves the table as `insert` does: its head, its
    /// records, and what the shell saves; the source is not asked.
    #[test]
    fn insert_new_is_insert_without_asking_the_source() {
        let (saved, asked) = (Arc::new(Saved::default()), Arc::new(Saved::default()));
        let mut appended = Table::with_source(saved.clone(), TableHead::default());
        let mut inserted = Table::with_source(asked.clone(), TableHead::default());
        for step in 0..10u32 {
            for key in step * 5..(step + 1) * 5 {
                appended.insert_new(key, format!("entry {key}"));
                inserted.insert(key, format!("entry {key}"));
            }
            saved.0.lock().unwrap().extend(appended.take_unsaved());
            asked.0.lock().unwrap().extend(inserted.take_unsaved());
            appended.forget_saved();
            inserted.forget_saved();
            assert_eq!(appended.head(), inserted.head());
        }
        assert_eq!(appended.len(), 50);
        assert_eq!(*saved.0.lock().unwrap(), *asked.0.lock().unwrap());
        let reads = |source: &Saved| source.1.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!((reads(&saved), reads(&asked)), (0, 50), "insert reads each new key first; insert_new does not");
        assert_eq!(appended.get(&7).as_deref(), Some(&"entry 7".to_string()));
    }

    #[test]
    fn the_records_a_table_keeps_after_saving_them_are_bounded_and_never_stale() {
        let saved = Arc::new(Saved::default());
        let mut table = Table::with_source(saved.clone(), TableHead::default());
        for step in 0..100u32 {
            for key in step * 200..(step + 1) * 200 {
                table.insert(key, format!("{key} at {step}"));
            }
            if let Some(value) = table.get_mut(&(step * 100)) {
                *value = format!("changed at {step}"); // a record saved earlier, kept or not
            }
            saved.0.lock().unwrap().extend(table.take_unsaved());
            table.forget_saved();
            assert!(table.recent.len() + table.older.len() <= RECENT_RECORDS_MAX);
        }
        let latest = saved.0.lock().unwrap().clone();
        for key in (0..20_000).step_by(97).chain([9_900, 19_999]) {
            assert_eq!(table.get(&key).as_deref(), latest.get(&key), "record {key}");
        }
    }

    #[test]
    fn a_table_with_a_source_holds_only_unsaved_changes_and_agrees_with_one_held_whole() {
        let saved = Arc::new(Saved::default());
        let mut sourced = Table::with_source(saved.clone(), TableHead::default());
        let mut whole = Table::default();
        for step in 1..=50 {
            change(&mut sourced, step);
            change(&mut whole, step);
            let changes = sourced.take_unsaved();
            assert!(!changes.is_empty() && whole.take_unsaved().is_empty(), "changes go to the shell");
            saved.0.lock().unwrap().extend(changes);
            sourced.forget_saved();
            assert!(sourced.held().next().is_none());
            assert!(sourced.recent.len() + sourced.older.len() <= RECENT_RECORDS_MAX);
            if step % 7 == 0 {
                assert_eq!(sourced.head(), whole.head(), "the digest does not depend on where records are");
            }
        }
        assert_eq!(sourced.len(), 50);
        assert_eq!(sourced.get(&3).as_deref(), whole.get(&3).as_deref());
        assert_eq!(sourced.keys_after(Some(&40), 5), vec![41, 42, 43, 44, 45]);
        let rebuilt = Table::from_entries(whole.held().map(|(key, value)| (*key, value.clone())));
        assert_eq!(rebuilt.digest, whole.head().digest, "a table rebuilt from its entries has the same digest");
        let mut resumed = Table::with_source(saved.clone(), TableHead::default());
        resumed.resume(sourced.head()).unwrap();
        assert_eq!(resumed.head(), whole.head(), "a restarted table takes up its saved head");
        assert!(whole.clone().resume(sourced.head()).is_err(), "a table held whole has no saved records");
        let transferred = rebuilt.clone().saved_to(Arc::new(Saved::default()));
        assert_eq!(transferred.clone().take_unsaved().len(), 50, "every record of a transfer is to be saved");
        whole.insert(7, "replaced".into());
        assert_ne!(whole.head(), rebuilt.clone().head());
    }

    #[test]
    fn records_given_up_before_the_source_holds_them_are_listed() {
        // Group commit: the shell takes a step's records, and they reach the source only
        // when their group is durable; a listing meanwhile must still show them.
        let saved = Arc::new(Saved::default());
        let mut table = Table::with_source(saved.clone(), TableHead::default());
        for key in [1, 2, 3] {
            table.insert(key, format!("{key}"));
        }
        saved.0.lock().unwrap().extend(table.take_unsaved());
        table.forget_saved();
        table.insert(7, "not durable yet".into());
        let in_flight = table.take_unsaved();
        table.forget_saved();
        assert_eq!(table.keys_after(None, 10), vec![1, 2, 3, 7]);
        assert_eq!(table.keys_after(Some(&2), 10), vec![3, 7]);
        assert_eq!(table.keys_after(Some(&2), 1), vec![3], "the limit holds");
        saved.0.lock().unwrap().extend(in_flight);
        assert_eq!(table.keys_after(Some(&3), 10), vec![7], "listed once when the source has it too");
    }

    /// A source whose index finds saved values that start with the asked `prefix`.
    struct Indexed(Saved);

    impl Source<u32, String> for Indexed {
        fn get(&self, key: &u32) -> Option<String> {
            self.0.get(key)
        }
        fn keys_after(&self, after: Option<&u32>, limit: usize) -> Vec<u32> {
            self.0.keys_after(after, limit)
        }
        fn keys_where(&self, columns: &[(&'static str, String)], after: Option<&u32>, limit: usize) -> Vec<u32> {
            let saved = self.0.0.lock().unwrap();
            let wanted = |value: &String| columns.iter().all(|(_, prefix)| value.starts_with(prefix.as_str()));
            let after = |key: &u32| after.is_none_or(|after| key > after);
            saved.iter().filter(|(key, value)| after(key) && wanted(value)).take(limit).map(|(k, _)| *k).collect()
        }
    }

    #[test]
    fn filtered_keys_are_the_indexed_saved_ones_and_the_held_ones_that_match() {
        let source = Arc::new(Indexed(Saved::default()));
        let mut table = Table::with_source(source.clone(), TableHead::default());
        for key in 1..=6 {
            table.insert(key, if key % 2 == 0 { "even" } else { "odd" }.to_string());
        }
        source.0.0.lock().unwrap().extend(table.take_unsaved());
        table.forget_saved();
        *table.get_mut(&2).unwrap() = "odd now".into(); // changed, not saved yet
        *table.get_mut(&3).unwrap() = "even now".into();
        let columns = [("value", "odd".to_string())];
        let odd = |value: &String| value.starts_with("odd");
        // 3 is still odd in the index: a candidate the caller checks and passes over.
        assert_eq!(table.keys_where(&columns, odd, None, 10), vec![1, 2, 3, 5]);
        assert_eq!(table.keys_where(&columns, odd, Some(&2), 2), vec![3, 5], "after and limit hold");
        let matching: Vec<u32> =
            table.keys_where(&columns, odd, None, 10).into_iter().filter(|key| odd(&table.get(key).unwrap())).collect();
        assert_eq!(matching, vec![1, 2, 5]);
    }
}
