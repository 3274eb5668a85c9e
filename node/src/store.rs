//! The replica's SQLite store (DESIGN.md §8), owned by one thread. `Store` is a
//! cloneable handle: it sends a batch of writes and waits for the commit, one
//! SQLite transaction per batch. A failed write is returned, never ignored:
//! the replica stops rather than go on with an unknown state.
//!
//! It holds the safety state, the decided log, the stable checkpoint and the shard's
//! records: `objects` and `transactions`, one row per record with the record itself
//! (postcard) beside columns for operators (`sqlite3 replica.sqlite`). The replica reads
//! its records back through `Records` (the store's connection) and holds in memory only
//! those a step changed (issue 6). Each step's changes are written in the same
//! transaction as its decided blocks, with the head of the state they leave (`resume`)
//! and the requests executed at each height (`executed`): a restart takes the state up
//! where it was, without replaying the log.
//!
//! Records are versioned: a change is a row of the first checkpoint height whose state
//! holds it (`Write::Records`), so the body of any checkpoint from the stable one on is read from
//! the live tables (`snapshot_body`), at any time, after a restart too. Versions that a
//! version at or below the stable checkpoint supersedes are collected a few hundred
//! rows per commit (`Collector`), and SQLite checkpoints its WAL itself, every
//! `WAL_AUTOCHECKPOINT_PAGES`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};
use serde::de::DeserializeOwned;
use shardspace_core::bft::{Block, Digest, Height, Persisted, Resume, Round, SafetyState, Tip};
use shardspace_core::sbac::{
    DecidedEntry, ObjectRecord, ObjectStatus, Position, Source, StateChanges, StatusKind, TxRecord, VoteKind,
    encode_body,
};
use shardspace_core::{ObjectId, TxId};
use tokio::sync::{mpsc, oneshot};

use crate::config::Durability;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the database {path}: {source}")]
    Sqlite { path: PathBuf, source: rusqlite::Error },
    #[error("the database {path} holds a record that does not decode: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error(
        "the database {path} was written by an earlier Shardspace (schema {version}, this one reads {SCHEMA_VERSION}); \
         move it away and start the replica with an empty data directory: it catches up from its peers"
    )]
    OldSchema { path: PathBuf, version: i64 },
    #[error("cannot prepare {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("the store thread has stopped")]
    Stopped,
}

/// The layout this store writes: 2 keeps the records themselves (1 was a read model only);
/// 3 keeps the same tables, but the saved heads' LtHash lanes are BLAKE3 expansions; 4 the
/// same, but a block's digest binds its parent certificate's signers (leader reputation);
/// 5 the same, but the S-BAC requests in blocks carry seals, not lone signatures, and
/// transaction and object ids are encoded as their 32 bytes, not as hex text; 6 keeps
/// versions of the records, a row per record and height.
const SCHEMA_VERSION: i64 = 7;

pub use shardspace_core::sbac::replica::Write;

enum Command {
    Load(oneshot::Sender<Result<Persisted, StoreError>>),
    /// Store transactions, each committed before the next; one answer once all are.
    Write(Vec<Vec<Write>>, oneshot::Sender<Result<(), StoreError>>),
}

/// Batches waiting for the store thread.
const STORE_QUEUE_MAX: usize = 64;
/// WAL pages after which a commit copies the WAL into the database (SQLite's own
/// checkpoint, passive). At SQLite's default of 1,000 a replica copied its WAL every
/// half second under load and the latency of a soak at 275 tx/s rose from 37 to 70 ms
/// (p50) within two minutes as the database grew; at 10,000 (a WAL of up to 40 MB) the
/// pages written again and again between two copies are copied once, and p50 stayed at
/// 30-37 ms (docs/benchmarks.md item 16).
const WAL_AUTOCHECKPOINT_PAGES: u32 = 10_000;
/// Rows of each table the collector looks at per commit: more than a commit writes, so
/// that it keeps up, few enough that no commit stalls on it.
const COLLECT_ROWS_PER_COMMIT: i64 = 256;

#[derive(Clone)]
pub struct Store {
    tx_store: mpsc::Sender<Command>,
    records: Arc<Records>,
    /// One body is read at a time: a peer's small request must not buy many large reads.
    body_reads: Arc<tokio::sync::Semaphore>,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({})", self.path.display())
    }
}

impl Store {
    /// Opens (or creates) `dir/replica.sqlite` and starts the store thread.
    pub fn open(dir: &Path, durability: Durability) -> Result<Self, StoreError> {
        let path = dir.join("replica.sqlite");
        let sqlite = |source| StoreError::Sqlite { path: path.clone(), source };
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io { path: dir.into(), source })?;
        let connection = Connection::open(&path).map_err(sqlite)?;
        let version: i64 = connection.query_row("PRAGMA user_version", [], |row| row.get(0)).map_err(sqlite)?;
        let tables: i64 =
            connection.query_row("SELECT count(*) FROM sqlite_master", [], |row| row.get(0)).map_err(sqlite)?;
        if version != SCHEMA_VERSION && tables > 0 {
            return Err(StoreError::OldSchema { path, version });
        }
        let synchronous = match durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        };
        connection
            .execute_batch(&format!(
                "PRAGMA journal_mode = WAL;
                 PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES};
                 PRAGMA synchronous = {synchronous};
                 PRAGMA user_version = {SCHEMA_VERSION};
                 CREATE TABLE IF NOT EXISTS safety (id INTEGER PRIMARY KEY CHECK (id = 0), state BLOB NOT NULL);
                 CREATE TABLE IF NOT EXISTS undecided_blocks (
                     round INTEGER NOT NULL, digest BLOB NOT NULL, block BLOB NOT NULL, PRIMARY KEY (round, digest));
                 CREATE TABLE IF NOT EXISTS decided_blocks (
                     height INTEGER PRIMARY KEY, round INTEGER NOT NULL, digest BLOB NOT NULL, block BLOB NOT NULL);
                 CREATE TABLE IF NOT EXISTS checkpoint (
                     id INTEGER PRIMARY KEY CHECK (id = 0), height INTEGER NOT NULL, record BLOB NOT NULL);
                 CREATE TABLE IF NOT EXISTS resume (
                     id INTEGER PRIMARY KEY CHECK (id = 0), height INTEGER NOT NULL, round INTEGER NOT NULL,
                     block BLOB NOT NULL, head BLOB NOT NULL);
                 CREATE TABLE IF NOT EXISTS executed (height INTEGER PRIMARY KEY, digests BLOB NOT NULL);
                 CREATE TABLE IF NOT EXISTS collected (
                     id INTEGER PRIMARY KEY CHECK (id = 0), objects INTEGER NOT NULL, transactions INTEGER NOT NULL);
                 CREATE TABLE IF NOT EXISTS objects (
                     id TEXT NOT NULL, height INTEGER NOT NULL, value TEXT NOT NULL, contract TEXT NOT NULL,
                     status TEXT NOT NULL, lock_holder TEXT, created_by TEXT NOT NULL, consumed_by TEXT,
                     record BLOB NOT NULL, UNIQUE (id, height));
                 CREATE TABLE IF NOT EXISTS transactions (
                     tx TEXT NOT NULL, height INTEGER NOT NULL, envelope TEXT NOT NULL, attempt INTEGER NOT NULL,
                     vote TEXT NOT NULL, reason TEXT, decision TEXT, committed_attempt INTEGER, record BLOB NOT NULL,
                     UNIQUE (tx, height));
                 CREATE TABLE IF NOT EXISTS decided (
                     position INTEGER PRIMARY KEY, height INTEGER NOT NULL, tx TEXT NOT NULL,
                     attempt INTEGER NOT NULL, contract TEXT NOT NULL, decision TEXT NOT NULL, record BLOB NOT NULL);
                 CREATE INDEX IF NOT EXISTS active_by_contract ON objects (contract, id) WHERE status = 'active';
                 CREATE INDEX IF NOT EXISTS decided_by_contract ON decided (contract, decision, position);
                 CREATE VIEW IF NOT EXISTS objects_now AS SELECT * FROM objects AS o
                     WHERE height = (SELECT max(height) FROM objects WHERE id = o.id);
                 CREATE VIEW IF NOT EXISTS transactions_now AS SELECT * FROM transactions AS t
                     WHERE height = (SELECT max(height) FROM transactions WHERE tx = t.tx);"
            ))
            .map_err(sqlite)?;
        let connection = Arc::new(Mutex::new(connection));
        let collector = {
            let connection = connection.lock().map_err(|_| StoreError::Stopped)?;
            Collector::load(&connection).map_err(sqlite)?
        };
        let records = Arc::new(Records { connection: connection.clone(), path: path.clone(), fault: Mutex::new(None) });
        let (tx_store, rx_commands) = mpsc::channel(STORE_QUEUE_MAX);
        let thread_path = path.clone();
        std::thread::Builder::new()
            .name("store".into())
            .spawn(move || run(&connection, thread_path, collector, rx_commands))
            .map_err(|source| StoreError::Io { path: path.clone(), source })?;
        Ok(Self { tx_store, records, body_reads: Arc::new(tokio::sync::Semaphore::new(1)), path })
    }

    /// Everything the replica persisted, to restart from.
    pub async fn load(&self) -> Result<Persisted, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.tx_store.send(Command::Load(reply)).await.map_err(|_| StoreError::Stopped)?;
        answer.await.map_err(|_| StoreError::Stopped)?
    }

    /// Makes `writes` durable, in one transaction.
    pub async fn write(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        self.commit(vec![writes]).await?.await.map_err(|_| StoreError::Stopped)?
    }

    /// Starts making `batches` durable, each in one transaction, in order (group commit:
    /// the caller goes on while the store works); the answer comes once all are.
    pub async fn commit(
        &self,
        batches: Vec<Vec<Write>>,
    ) -> Result<oneshot::Receiver<Result<(), StoreError>>, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.tx_store.send(Command::Write(batches, reply)).await.map_err(|_| StoreError::Stopped)?;
        Ok(answer)
    }

    /// The records as saved: the source the shard's state reads from.
    pub fn records(&self) -> Arc<Records> {
        self.records.clone()
    }

    /// What went wrong reading the records, if anything did.
    pub fn fault(&self) -> Option<String> {
        self.records.fault()
    }

    /// The body of the checkpoint at `height` (`Application::state_body`): each record's
    /// version of the highest height at or below it, read in one read transaction on a
    /// connection of its own, off the core task. `None` if `height` is below the stable
    /// checkpoint (versions below it are collected) or above what is saved, or if a body
    /// is being read already.
    pub async fn snapshot_body(&self, height: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let Ok(reading) = self.body_reads.clone().try_acquire_owned() else { return Ok(None) };
        let path = self.path.clone();
        let read = move || -> Result<Option<Vec<u8>>, StoreError> {
            let _reading = reading;
            let sqlite = |source| StoreError::Sqlite { path: path.clone(), source };
            let mut connection = open_reader(&path)?;
            let view = connection.transaction().map_err(sqlite)?;
            let stable: Option<i64> =
                view.query_row("SELECT height FROM checkpoint", [], |row| row.get(0)).optional().map_err(sqlite)?;
            let saved: Option<i64> =
                view.query_row("SELECT height FROM resume", [], |row| row.get(0)).optional().map_err(sqlite)?;
            let height = i64::try_from(height).unwrap_or(i64::MAX);
            if height < stable.unwrap_or(0) || height > saved.unwrap_or(0) {
                return Ok(None);
            }
            let sql = "SELECT id, record FROM objects WHERE height <= ?1 ORDER BY id, height";
            let objects = records_at(&view, &path, sql, height)?;
            let sql = "SELECT tx, record FROM transactions WHERE height <= ?1 ORDER BY tx, height";
            let transactions = records_at(&view, &path, sql, height)?;
            let decided = decided_at(&view, &path, height)?;
            Ok(Some(encode_body(objects, transactions, decided)))
        };
        tokio::task::spawn_blocking(read).await.map_err(|_| StoreError::Stopped)?
    }
}

/// A connection that only reads the records.
fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let connection = Connection::open(path).map_err(|source| StoreError::Sqlite { path: path.into(), source })?;
    connection
        .execute_batch("PRAGMA query_only = 1;")
        .map_err(|source| StoreError::Sqlite { path: path.into(), source })?;
    Ok(connection)
}

/// The decided log as it stood at `height` (its entries never change: one row each).
fn decided_at(connection: &Connection, path: &Path, height: i64) -> Result<Vec<(Position, DecidedEntry)>, StoreError> {
    let sqlite = |source| StoreError::Sqlite { path: path.into(), source };
    let corrupt = |message: String| StoreError::Corrupt { path: path.into(), message };
    let sql = "SELECT position, record FROM decided WHERE height <= ?1 ORDER BY position";
    let mut statement = connection.prepare(sql).map_err(sqlite)?;
    let rows =
        statement.query_map([height], |row| Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?))).map_err(sqlite)?;
    let mut entries = Vec::new();
    for row in rows {
        let (position, blob) = row.map_err(sqlite)?;
        let entry = postcard::from_bytes(&blob).map_err(|error| corrupt(error.to_string()))?;
        entries.push((Position(u64::try_from(position).unwrap_or_default()), entry));
    }
    Ok(entries)
}

/// Each key's last row of `sql` (ordered by key, then height): its version at the height.
fn records_at<K: std::str::FromStr, V: DeserializeOwned>(
    connection: &Connection,
    path: &Path,
    sql: &str,
    height: i64,
) -> Result<Vec<(K, V)>, StoreError> {
    let sqlite = |source| StoreError::Sqlite { path: path.into(), source };
    let corrupt = |message: String| StoreError::Corrupt { path: path.into(), message };
    let mut statement = connection.prepare(sql).map_err(sqlite)?;
    let rows = statement
        .query_map([height], |row| Ok((row.get::<_, String>(0)?, row.get::<_, Vec<u8>>(1)?)))
        .map_err(sqlite)?;
    let mut last: Option<(String, Vec<u8>)> = None;
    let mut records = Vec::new();
    let mut decode = |(key, blob): (String, Vec<u8>)| -> Result<(), StoreError> {
        let id = key.parse().map_err(|_| corrupt(format!("the key {key} is not an id")))?;
        records.push((id, postcard::from_bytes(&blob).map_err(|error| corrupt(error.to_string()))?));
        Ok(())
    };
    for row in rows {
        let row = row.map_err(sqlite)?;
        if let Some(earlier) = last.take_if(|(key, _)| *key != row.0) {
            decode(earlier)?;
        }
        last = Some(row);
    }
    if let Some(earlier) = last {
        decode(earlier)?;
    }
    Ok(records)
}

/// The shard's records as saved, read on the replica's core task: `Source` of its state.
/// It reads on the store thread's own connection, between that thread's writes (the core
/// waits for each write before it executes more): a connection of its own lost its page
/// cache at every commit, as SQLite's WAL mode does for readers, and read every page again.
#[derive(Debug)]
pub struct Records {
    connection: Arc<Mutex<Connection>>,
    path: PathBuf,
    /// The first read that failed: the core stops the replica after the step.
    fault: Mutex<Option<String>>,
}

impl Records {
    /// What went wrong with a read, if anything did.
    pub fn fault(&self) -> Option<String> {
        self.fault.lock().map_or_else(|_| Some("the fault record was poisoned".into()), |fault| fault.clone())
    }

    fn failed(&self, what: String) {
        if let Ok(mut fault) = self.fault.lock() {
            fault.get_or_insert(format!("reading {}: {what}", self.path.display()));
        }
    }

    fn get<K: rusqlite::ToSql + std::fmt::Display, V: DeserializeOwned>(&self, sql: &str, key: K) -> Option<V> {
        let Ok(connection) = self.connection.lock() else {
            self.failed("the connection was poisoned".into());
            return None;
        };
        let blob: Option<Vec<u8>> =
            match connection.prepare_cached(sql).and_then(|mut s| s.query_row([&key], |row| row.get(0)).optional()) {
                Ok(blob) => blob,
                Err(error) => {
                    self.failed(error.to_string());
                    return None;
                }
            };
        match postcard::from_bytes(&blob?) {
            Ok(value) => Some(value),
            Err(error) => {
                self.failed(format!("the record of {key} does not decode: {error}"));
                None
            }
        }
    }

    fn keys_after<K: std::str::FromStr>(&self, sql: &str, after: Option<String>, limit: usize) -> Vec<K> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.keys(sql, params![after.unwrap_or_default(), limit])
    }

    /// The keys (text) a query gives, in its order.
    fn keys<K: std::str::FromStr>(&self, sql: &str, params: impl rusqlite::Params) -> Vec<K> {
        let Ok(connection) = self.connection.lock() else {
            self.failed("the connection was poisoned".into());
            return Vec::new();
        };
        let keys = connection.prepare_cached(sql).and_then(|mut statement| {
            let rows = statement.query_map(params, |row| row.get::<_, String>(0))?;
            rows.collect::<Result<Vec<String>, _>>()
        });
        match keys {
            Ok(keys) => keys.iter().filter_map(|key| key.parse().ok()).collect(),
            Err(error) => {
                self.failed(error.to_string());
                Vec::new()
            }
        }
    }
}

impl Source<ObjectId, ObjectRecord> for Records {
    fn get(&self, id: &ObjectId) -> Option<ObjectRecord> {
        Records::get(self, "SELECT record FROM objects WHERE id = ?1 ORDER BY height DESC LIMIT 1", id.to_hex())
    }

    fn keys_after(&self, after: Option<&ObjectId>, limit: usize) -> Vec<ObjectId> {
        let sql = "SELECT DISTINCT id FROM objects WHERE id > ?1 ORDER BY id LIMIT ?2";
        Records::keys_after(self, sql, after.map(ObjectId::to_hex), limit)
    }

    /// By the `active_by_contract` index for a contract's active objects; else every key
    /// (the reader checks what it reads, `SCAN_MAX` at a time).
    fn keys_where(&self, columns: &[(&'static str, String)], after: Option<&ObjectId>, limit: usize) -> Vec<ObjectId> {
        let column = |name: &str| columns.iter().find(|(column, _)| *column == name).map(|(_, value)| value.as_str());
        let active = StatusKind::Active.as_str();
        let (Some(contract), Some(status)) = (column("contract"), column("status")) else {
            return Source::keys_after(self, after, limit);
        };
        if status != active {
            return Source::keys_after(self, after, limit);
        }
        // `status = 'active'` in the text, so that SQLite knows the partial index applies.
        let sql = "SELECT DISTINCT id FROM objects WHERE contract = ?1 AND status = 'active' AND id > ?2
                   ORDER BY id LIMIT ?3";
        let (after, limit) =
            (after.map(ObjectId::to_hex).unwrap_or_default(), i64::try_from(limit).unwrap_or(i64::MAX));
        self.keys(sql, params![contract, after, limit])
    }

    fn fault(&self) -> Option<String> {
        Records::fault(self)
    }
}

impl Source<Position, DecidedEntry> for Records {
    fn get(&self, position: &Position) -> Option<DecidedEntry> {
        let position = i64::try_from(position.0).unwrap_or(i64::MAX);
        Records::get(self, "SELECT record FROM decided WHERE position = ?1", position)
    }

    fn keys_after(&self, after: Option<&Position>, limit: usize) -> Vec<Position> {
        let Ok(connection) = self.connection.lock() else {
            self.failed("the connection was poisoned".into());
            return Vec::new();
        };
        let first = after.map_or(0, |after| i64::try_from(after.0).unwrap_or(i64::MAX).saturating_add(1));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let sql = "SELECT position FROM decided WHERE position >= ?1 ORDER BY position LIMIT ?2";
        let positions = connection.prepare_cached(sql).and_then(|mut statement| {
            let rows = statement.query_map(params![first, limit], |row| row.get::<_, i64>(0))?;
            rows.collect::<Result<Vec<i64>, _>>()
        });
        drop(connection);
        self.positions(positions)
    }

    /// By the `decided_by_contract` index when a contract is asked, one range of it per
    /// decision asked; without a contract, every position (the reader checks each entry).
    fn keys_where(&self, columns: &[(&'static str, String)], after: Option<&Position>, limit: usize) -> Vec<Position> {
        let column = |name: &str| columns.iter().find(|(column, _)| *column == name).map(|(_, value)| value.as_str());
        let Some(contract) = column("contract") else { return Source::keys_after(self, after, limit) };
        let decisions = column("decision").map_or_else(|| vec!["commit", "abort"], |decision| vec![decision]);
        let Ok(connection) = self.connection.lock() else {
            self.failed("the connection was poisoned".into());
            return Vec::new();
        };
        let first = after.map_or(0, |after| i64::try_from(after.0).unwrap_or(i64::MAX).saturating_add(1));
        let sql = "SELECT position FROM decided WHERE contract = ?1 AND decision = ?2 AND position >= ?3
                   ORDER BY position LIMIT ?4";
        let mut positions = Vec::new();
        for decision in decisions {
            let found = connection.prepare_cached(sql).and_then(|mut statement| {
                let limit = i64::try_from(limit).unwrap_or(i64::MAX);
                let rows =
                    statement.query_map(params![contract, decision, first, limit], |row| row.get::<_, i64>(0))?;
                rows.collect::<Result<Vec<i64>, _>>()
            });
            match found {
                Ok(found) => positions.extend(found),
                Err(error) => {
                    self.failed(error.to_string());
                    return Vec::new();
                }
            }
        }
        drop(connection);
        positions.sort_unstable();
        positions.truncate(limit);
        self.positions(Ok(positions))
    }

    fn fault(&self) -> Option<String> {
        Records::fault(self)
    }
}

impl Records {
    /// Positions read from the `decided` table, or none if the read failed.
    fn positions(&self, positions: rusqlite::Result<Vec<i64>>) -> Vec<Position> {
        match positions {
            Ok(positions) => positions.into_iter().map(|p| Position(u64::try_from(p).unwrap_or_default())).collect(),
            Err(error) => {
                self.failed(error.to_string());
                Vec::new()
            }
        }
    }
}

impl Source<TxId, TxRecord> for Records {
    fn get(&self, tx: &TxId) -> Option<TxRecord> {
        Records::get(self, "SELECT record FROM transactions WHERE tx = ?1 ORDER BY height DESC LIMIT 1", tx.to_hex())
    }

    fn keys_after(&self, after: Option<&TxId>, limit: usize) -> Vec<TxId> {
        let sql = "SELECT DISTINCT tx FROM transactions WHERE tx > ?1 ORDER BY tx LIMIT ?2";
        Records::keys_after(self, sql, after.map(TxId::to_hex), limit)
    }

    fn fault(&self) -> Option<String> {
        Records::fault(self)
    }
}

fn run(
    connection: &Mutex<Connection>,
    path: PathBuf,
    mut collector: Collector,
    mut rx_commands: mpsc::Receiver<Command>,
) {
    while let Some(command) = rx_commands.blocking_recv() {
        let Ok(mut connection) = connection.lock() else {
            tracing::error!(path = %path.display(), "the store's connection was poisoned: the store stops");
            return;
        };
        match command {
            Command::Load(reply) => {
                let _ = reply.send(load(&connection, &path));
            }
            Command::Write(batches, reply) => {
                let written =
                    batches.into_iter().try_for_each(|writes| write(&mut connection, &path, &mut collector, writes));
                let _ = reply.send(written);
            }
        }
    }
}

fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    postcard::to_stdvec(value).expect("encoding into memory cannot fail")
}

fn write(
    connection: &mut Connection,
    path: &Path,
    collector: &mut Collector,
    writes: Vec<Write>,
) -> Result<(), StoreError> {
    let sqlite = |source| StoreError::Sqlite { path: path.into(), source };
    let transaction = connection.transaction().map_err(sqlite)?;
    let mut collecting = collector.clone();
    for write in writes {
        match write {
            Write::Safety(state) => {
                let sql = "INSERT INTO safety (id, state) VALUES (0, ?1) ON CONFLICT (id) DO UPDATE SET state = ?1";
                transaction.prepare_cached(sql).and_then(|mut s| s.execute(params![encode(&state)])).map_err(sqlite)?;
            }
            Write::Block(block) => {
                let sql = "INSERT OR IGNORE INTO undecided_blocks (round, digest, block) VALUES (?1, ?2, ?3)";
                let row = params![block.round.0 as i64, block.digest().0.to_vec(), encode(&block)];
                transaction.prepare_cached(sql).and_then(|mut s| s.execute(row)).map_err(sqlite)?;
            }
            Write::Decided { height, block } => {
                let round = block.round.0 as i64;
                let sql =
                    "INSERT OR REPLACE INTO decided_blocks (height, round, digest, block) VALUES (?1, ?2, ?3, ?4)";
                let row = params![height as i64, round, block.digest().0.to_vec(), encode(&block)];
                transaction.prepare_cached(sql).and_then(|mut s| s.execute(row)).map_err(sqlite)?;
                let sql = "DELETE FROM undecided_blocks WHERE round <= ?1";
                transaction.prepare_cached(sql).and_then(|mut s| s.execute(params![round])).map_err(sqlite)?;
            }
            Write::Checkpoint(checkpoint) => {
                let height = checkpoint.certificate.point.height.0 as i64;
                let sql = "INSERT INTO checkpoint (id, height, record) VALUES (0, ?1, ?2)
                           ON CONFLICT (id) DO UPDATE SET height = ?1, record = ?2";
                transaction
                    .prepare_cached(sql)
                    .and_then(|mut s| s.execute(params![height, encode(&checkpoint)]))
                    .map_err(sqlite)?;
                let sql = "DELETE FROM decided_blocks WHERE height <= ?1";
                transaction.prepare_cached(sql).and_then(|mut s| s.execute(params![height])).map_err(sqlite)?;
                collecting.stable = collecting.stable.max(height);
            }
            Write::Records { height, changes } => {
                if changes.replace {
                    collecting.start_over();
                }
                write_records(&transaction, height, changes).map_err(sqlite)?
            }
            Write::Resume { tip, head } => {
                let sql = "INSERT INTO resume (id, height, round, block, head) VALUES (0, ?1, ?2, ?3, ?4)
                           ON CONFLICT (id) DO UPDATE SET height = ?1, round = ?2, block = ?3, head = ?4";
                let row = params![tip.height.0 as i64, tip.round.0 as i64, tip.block.0.to_vec(), head];
                transaction.prepare_cached(sql).and_then(|mut s| s.execute(row)).map_err(sqlite)?;
            }
            Write::Executed { height, digests, forget_below } => {
                let sql = "INSERT OR REPLACE INTO executed (height, digests) VALUES (?1, ?2)";
                let row = params![height as i64, encode(&digests)];
                transaction.prepare_cached(sql).and_then(|mut s| s.execute(row)).map_err(sqlite)?;
                let sql = "DELETE FROM executed WHERE height < ?1";
                transaction
                    .prepare_cached(sql)
                    .and_then(|mut s| s.execute(params![forget_below as i64]))
                    .map_err(sqlite)?;
            }
            Write::ExecutedWindow(window) => {
                transaction.execute("DELETE FROM executed", []).map_err(sqlite)?;
                for (height, digests) in window {
                    let sql = "INSERT INTO executed (height, digests) VALUES (?1, ?2)";
                    let row = params![height as i64, encode(&digests)];
                    transaction.prepare_cached(sql).and_then(|mut s| s.execute(row)).map_err(sqlite)?;
                }
            }
        }
    }
    collecting.collect(&transaction).map_err(sqlite)?;
    transaction.commit().map_err(sqlite)?;
    *collector = collecting;
    Ok(())
}

/// Collects the versions that a version at or below the stable checkpoint supersedes:
/// the body of no checkpoint from the stable one on needs them. Rows are appended in the
/// order of their heights (a step's versions are of the checkpoint it cut, then of the
/// next one), so it walks each table by rowid, `COLLECT_ROWS_PER_COMMIT` rows per commit,
/// from where it stopped to the first row above the stable height, and deletes the
/// versions of each row's key older than that row. Rows are small next to a table's
/// pages in the cache: each commit appends to the end of the table, and only the
/// `(key, height)` index takes random keys. Where each walk is, is saved (`collected`)
/// once per stable checkpoint, where a restart takes it up.
#[derive(Clone, Debug)]
struct Collector {
    stable: i64,
    /// The stable height the walks' positions were last saved for.
    saved_for: i64,
    /// The rowid each table's walk reached.
    objects: i64,
    transactions: i64,
}

impl Collector {
    fn load(connection: &Connection) -> rusqlite::Result<Self> {
        let stable = connection.query_row("SELECT height FROM checkpoint", [], |row| row.get(0)).optional()?;
        let stable: i64 = stable.unwrap_or(0);
        let walked = connection
            .query_row("SELECT objects, transactions FROM collected", [], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()?;
        let (objects, transactions) = walked.unwrap_or((0, 0));
        Ok(Self { stable, saved_for: 0, objects, transactions })
    }

    /// After a state transfer replaced every record: the tables start over.
    fn start_over(&mut self) {
        (self.objects, self.transactions, self.saved_for) = (0, 0, 0);
    }

    fn collect(&mut self, transaction: &rusqlite::Transaction) -> rusqlite::Result<()> {
        let objects_done = walk(transaction, "objects", "id", &mut self.objects, self.stable)?;
        let transactions_done = walk(transaction, "transactions", "tx", &mut self.transactions, self.stable)?;
        if objects_done && transactions_done && self.saved_for < self.stable {
            let sql = "INSERT INTO collected (id, objects, transactions) VALUES (0, ?1, ?2)
                       ON CONFLICT (id) DO UPDATE SET objects = ?1, transactions = ?2";
            transaction.prepare_cached(sql)?.execute([self.objects, self.transactions])?;
            self.saved_for = self.stable;
        }
        Ok(())
    }
}

/// One table's share of a commit's collection; whether it reached the rows above `stable`.
fn walk(
    transaction: &rusqlite::Transaction,
    table: &str,
    key: &str,
    at: &mut i64,
    stable: i64,
) -> rusqlite::Result<bool> {
    let sql = format!("SELECT rowid, {key}, height FROM {table} WHERE rowid > ?1 ORDER BY rowid LIMIT ?2");
    let rows: Vec<(i64, String, i64)> = transaction
        .prepare_cached(&sql)?
        .query_map(params![*at, COLLECT_ROWS_PER_COMMIT], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
        .collect::<Result<_, _>>()?;
    let delete = format!("DELETE FROM {table} WHERE {key} = ?1 AND height < ?2");
    let mut delete = transaction.prepare_cached(&delete)?;
    let done = (rows.len() as i64) < COLLECT_ROWS_PER_COMMIT;
    for (rowid, id, height) in rows {
        if height > stable {
            return Ok(true);
        }
        delete.execute(params![id, height])?;
        *at = rowid;
    }
    Ok(done)
}

/// The records' rows: the record itself, and the columns operators read.
fn write_records(transaction: &rusqlite::Transaction, height: u64, changes: StateChanges) -> rusqlite::Result<()> {
    let height = i64::try_from(height).unwrap_or(i64::MAX);
    if changes.replace {
        transaction.execute_batch("DELETE FROM objects; DELETE FROM transactions; DELETE FROM decided;")?;
    }
    for (id, record) in &changes.objects {
        let (holder, consumed_by) = match &record.status {
            ObjectStatus::Active => (None, None),
            ObjectStatus::Locked { tx, .. } => (Some(tx.to_hex()), None),
            ObjectStatus::Inactive { consumed_by } => (None, Some(consumed_by.to_hex())),
        };
        let status = StatusKind::of(&record.status).as_str();
        let sql = "INSERT OR REPLACE INTO objects
                   (id, height, value, contract, status, lock_holder, created_by, consumed_by, record)
                   VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";
        let values = params![
            id.to_hex(),
            height,
            record.value,
            record.contract,
            status,
            holder,
            record.created_by.to_hex(),
            consumed_by,
            encode(record)
        ];
        transaction.prepare_cached(sql)?.execute(values)?;
    }
    for (tx, record) in &changes.transactions {
        let (Some(view), Some(latest)) = (record.view(), record.attempts.values().next_back()) else { continue };
        let (vote, reason) = match view.vote {
            VoteKind::Accept => ("accept", None),
            VoteKind::Abort(reason) => ("abort", Some(reason.as_str())),
        };
        let decision = view.decision.map(|commit| if commit { "commit" } else { "abort" });
        let sql = "INSERT OR REPLACE INTO transactions
                   (tx, height, envelope, attempt, vote, reason, decision, committed_attempt, record)
                   VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";
        let committed = view.committed.map(|attempt| i64::from(attempt.0));
        let values = params![
            tx.to_hex(),
            height,
            latest.envelope,
            i64::from(view.attempt.0),
            vote,
            reason,
            decision,
            committed,
            encode(record)
        ];
        transaction.prepare_cached(sql)?.execute(values)?;
    }
    for (position, entry) in &changes.decided {
        let decision = if entry.committed { "commit" } else { "abort" };
        let sql = "INSERT OR REPLACE INTO decided (position, height, tx, attempt, contract, decision, record)
                   VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
        let position = i64::try_from(position.0).unwrap_or(i64::MAX);
        let (tx, attempt) = (entry.tx.to_hex(), i64::from(entry.attempt.0));
        let values = params![position, height, tx, attempt, entry.contract, decision, encode(entry)];
        transaction.prepare_cached(sql)?.execute(values)?;
    }
    Ok(())
}

fn load(connection: &Connection, path: &Path) -> Result<Persisted, StoreError> {
    let sqlite = |source| StoreError::Sqlite { path: path.into(), source };
    let corrupt = |error: postcard::Error| StoreError::Corrupt { path: path.into(), message: error.to_string() };
    let blobs = |sql: &str| -> Result<Vec<Vec<u8>>, StoreError> {
        let mut statement = connection.prepare(sql).map_err(sqlite)?;
        let rows = statement.query_map([], |row| row.get::<_, Vec<u8>>(0)).map_err(sqlite)?;
        rows.collect::<Result<_, _>>().map_err(sqlite)
    };
    let safety_blob: Option<Vec<u8>> = connection
        .query_row("SELECT state FROM safety WHERE id = 0", [], |row| row.get(0))
        .optional()
        .map_err(sqlite)?;
    let safety = match safety_blob {
        Some(blob) => postcard::from_bytes(&blob).map_err(corrupt)?,
        None => SafetyState::default(),
    };
    let checkpoint_blob: Option<Vec<u8>> = connection
        .query_row("SELECT record FROM checkpoint WHERE id = 0", [], |row| row.get(0))
        .optional()
        .map_err(sqlite)?;
    let checkpoint = checkpoint_blob.map(|blob| postcard::from_bytes(&blob)).transpose().map_err(corrupt)?;
    let decode = |blob: Vec<u8>| postcard::from_bytes::<Block>(&blob).map_err(corrupt);
    let decided =
        blobs("SELECT block FROM decided_blocks ORDER BY height")?.into_iter().map(decode).collect::<Result<_, _>>()?;
    let undecided = blobs("SELECT block FROM undecided_blocks ORDER BY round")?
        .into_iter()
        .map(decode)
        .collect::<Result<_, _>>()?;
    let resume = load_resume(connection, path)?;
    Ok(Persisted { safety, checkpoint, decided, undecided, resume })
}

/// The state saved at the last decided height, if any was.
fn load_resume(connection: &Connection, path: &Path) -> Result<Option<Resume>, StoreError> {
    let sqlite = |source| StoreError::Sqlite { path: path.into(), source };
    let corrupt = |message: String| StoreError::Corrupt { path: path.into(), message };
    let row = connection
        .query_row("SELECT height, round, block, head FROM resume WHERE id = 0", [], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?, row.get::<_, Vec<u8>>(2)?, row.get::<_, Vec<u8>>(3)?))
        })
        .optional()
        .map_err(sqlite)?;
    let Some((height, round, block, app)) = row else { return Ok(None) };
    let block: [u8; 32] = block.try_into().map_err(|_| corrupt("the resume block is not a digest".into()))?;
    let tip = Tip { block: Digest(block), round: Round(round as u64), height: Height(height as u64) };
    let mut statement = connection.prepare("SELECT height, digests FROM executed ORDER BY height").map_err(sqlite)?;
    let rows = statement.query_map([], |row| Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?))).map_err(sqlite)?;
    let mut executed = Vec::new();
    for row in rows {
        let (height, digests) = row.map_err(sqlite)?;
        let digests = postcard::from_bytes(&digests).map_err(|error| corrupt(error.to_string()))?;
        executed.push((Height(height as u64), digests));
    }
    Ok(Some(Resume { tip, app, executed }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardspace_core::bft::{
        CheckpointCertificate, CheckpointPoint, QuorumCertificate, ReplicaId, Request, StableCheckpoint,
    };

    fn block(round: u64) -> Block {
        Block {
            round: Round(round),
            author: ReplicaId(0),
            parent: QuorumCertificate::genesis(),
            requests: vec![Request::new(vec![round as u8])],
        }
    }

    #[tokio::test]
    async fn what_is_written_reads_back_after_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), Durability::Normal).unwrap();
            let safety = SafetyState { last_voted_round: Round(7), high_qc: QuorumCertificate::genesis() };
            store.write(vec![Write::Safety(safety), Write::Block(block(5)), Write::Block(block(6))]).await.unwrap();
            store.write(vec![Write::Decided { height: 1, block: block(5) }]).await.unwrap();
        }
        let store = Store::open(dir.path(), Durability::Normal).unwrap();
        let persisted = store.load().await.unwrap();
        assert_eq!(persisted.safety.last_voted_round, Round(7));
        assert_eq!(persisted.decided, vec![block(5)]);
        assert_eq!(persisted.undecided, vec![block(6)], "a decided round drops the undecided blocks at or below it");
    }

    #[tokio::test]
    async fn a_stable_checkpoint_drops_the_decided_log_below_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Durability::Normal).unwrap();
        let decided = (1..=5).map(|height| Write::Decided { height, block: block(height + 10) }).collect();
        store.write(decided).await.unwrap();
        let point = CheckpointPoint {
            height: Height(3),
            block: block(13).digest(),
            round: Round(13),
            state: Digest::of(b"state"),
        };
        let certificate = CheckpointCertificate { point, signatures: vec![] };
        let checkpoint = StableCheckpoint { certificate, state: b"state".to_vec().into() };
        store.write(vec![Write::Checkpoint(checkpoint.clone())]).await.unwrap();
        let persisted = store.load().await.unwrap();
        assert_eq!(persisted.decided, vec![block(14), block(15)], "the log at or below the checkpoint is gone");
        assert_eq!(persisted.checkpoint, Some(checkpoint));
    }

    fn object(value: &str) -> ObjectRecord {
        ObjectRecord {
            value: value.into(),
            contract: "dump".into(),
            created_by: TxId([1; 32]),
            status: ObjectStatus::Active,
            readers: Default::default(),
        }
    }

    fn transaction(vote: VoteKind) -> TxRecord {
        let mut attempts = shardspace_core::sbac::Attempts::default();
        let record =
            shardspace_core::sbac::AttemptRecord { envelope: "{}".into(), digest: [2; 32], vote, decision: None };
        attempts.insert(shardspace_core::sbac::Attempt(1), record);
        TxRecord { concerned: vec![shardspace_core::ShardId(0)], attempts, committed: None }
    }

    fn changes(objects: &[(u8, &str)], replace: bool) -> Write {
        changes_at(1, objects, replace)
    }

    fn changes_at(height: u64, objects: &[(u8, &str)], replace: bool) -> Write {
        let changes = StateChanges {
            replace,
            objects: objects.iter().map(|(id, value)| (ObjectId([*id; 32]), object(value))).collect(),
            transactions: vec![(TxId([9; 32]), transaction(VoteKind::Accept))],
            ..StateChanges::default()
        };
        Write::Records { height, changes }
    }

    fn stable_at(height: u64) -> Write {
        let certificate = CheckpointCertificate {
            point: CheckpointPoint {
                height: Height(height),
                block: Digest([8; 32]),
                round: Round(height),
                state: Digest([0; 32]),
            },
            signatures: vec![],
        };
        Write::Checkpoint(StableCheckpoint { certificate, state: b"head".to_vec().into() })
    }

    fn saved_to(height: u64) -> Write {
        Write::Resume {
            tip: Tip { block: Digest([7; 32]), round: Round(height), height: Height(height) },
            head: vec![],
        }
    }

    type Body = (Vec<(ObjectId, ObjectRecord)>, Vec<(TxId, TxRecord)>);

    async fn body(store: &Store, height: u64) -> Option<Body> {
        let bytes = store.snapshot_body(height).await.unwrap()?;
        Some(postcard::from_bytes(&bytes).unwrap())
    }

    fn versions(dir: &Path, id: u8) -> Vec<i64> {
        let sqlite = Connection::open(dir.join("replica.sqlite")).unwrap();
        let mut statement = sqlite.prepare("SELECT height FROM objects WHERE id = ?1 ORDER BY height").unwrap();
        let rows = statement.query_map([ObjectId([id; 32]).to_hex()], |row| row.get(0)).unwrap();
        rows.collect::<Result<_, _>>().unwrap()
    }

    #[tokio::test]
    async fn records_saved_with_a_step_read_back_and_a_transfer_replaces_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Durability::Normal).unwrap();
        let records = store.records();
        store.write(vec![changes(&[(1, "one"), (2, "two"), (3, "three")], false)]).await.unwrap();
        let read = |id: u8| Source::<ObjectId, ObjectRecord>::get(&*records, &ObjectId([id; 32]));
        assert_eq!(read(2), Some(object("two")));
        assert_eq!(Source::<TxId, TxRecord>::get(&*records, &TxId([9; 32])), Some(transaction(VoteKind::Accept)));
        let after_one = Source::<ObjectId, ObjectRecord>::keys_after(&*records, Some(&ObjectId([1; 32])), 5);
        assert_eq!(after_one, vec![ObjectId([2; 32]), ObjectId([3; 32])]);
        store.write(vec![changes(&[(4, "four")], true)]).await.unwrap();
        assert_eq!((read(2), read(4)), (None, Some(object("four"))), "a transfer's records replace the old ones");
        assert_eq!(records.fault(), None);
    }

    #[tokio::test]
    async fn a_contracts_active_objects_come_from_its_index_with_older_active_rows() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Durability::Normal).unwrap();
        let records = store.records();
        let of = |contract: &str, status| ObjectRecord { contract: contract.into(), status, ..object("v") };
        let consumed = ObjectStatus::Inactive { consumed_by: TxId([3; 32]) };
        let objects = vec![
            (ObjectId([1; 32]), of("bank", ObjectStatus::Active)),
            (ObjectId([2; 32]), of("dump", ObjectStatus::Active)),
            (ObjectId([3; 32]), of("bank", consumed.clone())),
            (ObjectId([4; 32]), of("bank", ObjectStatus::Active)),
        ];
        let changes = StateChanges { objects, ..StateChanges::default() };
        store.write(vec![Write::Records { height: 1, changes }]).await.unwrap();
        // Object 4 consumed at height 2: its active row of height 1 stays until collected.
        let changes = StateChanges { objects: vec![(ObjectId([4; 32]), of("bank", consumed))], ..Default::default() };
        store.write(vec![Write::Records { height: 2, changes }]).await.unwrap();
        let keys = |columns: &[(&'static str, String)], after: Option<u8>, limit| {
            let after = after.map(|id| ObjectId([id; 32]));
            let keys = Source::<ObjectId, ObjectRecord>::keys_where(&*records, columns, after.as_ref(), limit);
            keys.into_iter().map(|id| id.0[0]).collect::<Vec<u8>>()
        };
        let bank = ("contract", "bank".to_string());
        let active = ("status", "active".to_string());
        assert_eq!(keys(&[bank.clone(), active.clone()], None, 10), vec![1, 4], "4's older row is a candidate");
        assert_eq!(keys(&[bank.clone(), active.clone()], Some(1), 1), vec![4]);
        assert_eq!(keys(std::slice::from_ref(&bank), None, 10), vec![1, 2, 3, 4], "any status: every key");
        assert_eq!(keys(&[active], None, 10), vec![1, 2, 3, 4], "without a contract: every key");
        let sqlite = Connection::open(dir.path().join("replica.sqlite")).unwrap();
        let plan: String = sqlite
            .query_row(
                "EXPLAIN QUERY PLAN SELECT DISTINCT id FROM objects \
                 WHERE contract = ?1 AND status = 'active' AND id > ?2 ORDER BY id LIMIT 5",
                ["bank", ""],
                |row| row.get(3),
            )
            .unwrap();
        assert!(plan.contains("active_by_contract"), "the query reads the index: {plan}");
        assert_eq!(records.fault(), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_past_store_queue_max_wait_their_turn_and_every_one_is_saved() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Durability::Normal).unwrap();
        let records = store.records();
        // More writers at once than the store thread's queue holds: the rest wait for room.
        let writers: Vec<_> = (0..STORE_QUEUE_MAX as u8 * 3)
            .map(|id| {
                let store = store.clone();
                tokio::spawn(async move { store.write(vec![changes(&[(id, "v")], false)]).await })
            })
            .collect();
        for writer in writers {
            writer.await.unwrap().unwrap();
        }
        let saved = Source::<ObjectId, ObjectRecord>::keys_after(&*records, None, 1_000);
        assert_eq!(saved.len(), STORE_QUEUE_MAX * 3, "every write was saved");
    }

    #[tokio::test]
    async fn the_body_of_any_checkpoint_from_the_stable_one_on_is_read_from_the_versions() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Durability::Normal).unwrap();
        let records = store.records();
        store.write(vec![changes_at(4, &[(1, "at four")], false)]).await.unwrap();
        store.write(vec![changes_at(5, &[(1, "at five"), (2, "new at five")], false), saved_to(5)]).await.unwrap();
        let read = |id: u8| Source::<ObjectId, ObjectRecord>::get(&*records, &ObjectId([id; 32]));
        assert_eq!(read(1), Some(object("at five")), "a read takes the latest version");
        let keys = Source::<ObjectId, ObjectRecord>::keys_after(&*records, None, 10);
        assert_eq!(keys, vec![ObjectId([1; 32]), ObjectId([2; 32])], "each key listed once");
        let at_four = body(&store, 4).await.unwrap();
        assert_eq!(at_four.0, vec![(ObjectId([1; 32]), object("at four"))], "the records as they were at height 4");
        assert_eq!(at_four.1.len(), 1);
        assert_eq!(body(&store, 5).await.unwrap().0.len(), 2);
        assert_eq!(body(&store, 6).await, None, "nothing is saved at height 6 yet");
        // A restart serves them as well: nothing is held in memory.
        drop((store, records));
        let store = Store::open(dir.path(), Durability::Normal).unwrap();
        assert_eq!(body(&store, 4).await.unwrap(), at_four);
        store.write(vec![stable_at(5)]).await.unwrap();
        assert_eq!(body(&store, 4).await, None, "below the stable checkpoint, versions are collected");
        assert_eq!(body(&store, 5).await.unwrap().0[0], (ObjectId([1; 32]), object("at five")));
    }

    #[tokio::test]
    async fn versions_a_stable_checkpoint_supersedes_are_collected_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Durability::Normal).unwrap();
        for height in 1..=6 {
            store.write(vec![changes_at(height, &[(1, "busy")], false)]).await.unwrap();
        }
        store.write(vec![changes_at(2, &[(2, "quiet")], false), saved_to(6)]).await.unwrap();
        store.write(vec![stable_at(4)]).await.unwrap();
        assert_eq!(versions(dir.path(), 1), vec![4, 5, 6], "the version at 4 serves the stable checkpoint");
        assert_eq!(versions(dir.path(), 2), vec![2], "a record's only version stays");
        // More versions than one commit collects: the next commits go on where it stopped.
        let many: Vec<(u8, &str)> = (10..=200).map(|id| (id, "first")).collect();
        store.write(vec![changes_at(7, &many, false)]).await.unwrap();
        let again: Vec<(u8, &str)> = (10..=200).map(|id| (id, "second")).collect();
        store.write(vec![changes_at(8, &again, false), changes_at(8, &again, false)]).await.unwrap();
        let twice: Vec<(u8, &str)> = (10..=200).map(|id| (id, "third")).collect();
        store.write(vec![changes_at(9, &twice, false), saved_to(9)]).await.unwrap();
        store.write(vec![stable_at(9)]).await.unwrap();
        for _ in 0..4 {
            store.write(vec![saved_to(9)]).await.unwrap();
        }
        assert_eq!(versions(dir.path(), 10), vec![9]);
        assert_eq!(versions(dir.path(), 200), vec![9]);
        assert_eq!(versions(dir.path(), 1), vec![6]);
        let sqlite = Connection::open(dir.path().join("replica.sqlite")).unwrap();
        let walked: i64 = sqlite.query_row("SELECT objects FROM collected", [], |row| row.get(0)).unwrap();
        let last: i64 = sqlite.query_row("SELECT max(rowid) FROM objects", [], |row| row.get(0)).unwrap();
        assert_eq!(walked, last, "the walk reached the stable checkpoint and saved where it is");
        let now: i64 = sqlite.query_row("SELECT count(*) FROM objects_now", [], |row| row.get(0)).unwrap();
        assert_eq!(now, 193, "the operators' view holds each record once");
        assert_eq!(body(&store, 9).await.unwrap().0.len(), 193);
    }

    #[tokio::test]
    async fn the_state_saved_at_the_last_decided_height_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Durability::Normal).unwrap();
        let tip = Tip { block: Digest([7; 32]), round: Round(9), height: Height(3) };
        let executed = |height: u64, forget_below: u64| Write::Executed {
            height,
            digests: vec![Digest([height as u8; 32])],
            forget_below,
        };
        store.write(vec![executed(1, 1), executed(2, 1), executed(3, 2)]).await.unwrap();
        store.write(vec![Write::Resume { tip, head: b"head".to_vec() }]).await.unwrap();
        let resume = store.load().await.unwrap().resume.unwrap();
        assert_eq!((resume.tip, resume.app), (tip, b"head".to_vec()));
        let heights: Vec<u64> = resume.executed.iter().map(|(height, _)| height.0).collect();
        assert_eq!(heights, vec![2, 3], "heights below the window are forgotten");
        // A state transfer brings the window its checkpoint signed: it replaces the saved one
        // (else a restart after a transfer took up a stale window and certified another state).
        let window = vec![(40, vec![Digest([40; 32])]), (41, vec![])];
        store.write(vec![Write::ExecutedWindow(window)]).await.unwrap();
        let resume = store.load().await.unwrap().resume.unwrap();
        let expected = vec![(Height(40), vec![Digest([40; 32])]), (Height(41), vec![])];
        assert_eq!(resume.executed, expected, "the transferred window replaces the saved one");
    }

    #[test]
    fn a_database_of_the_earlier_layout_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let old = Connection::open(dir.path().join("replica.sqlite")).unwrap();
        old.execute_batch("CREATE TABLE safety (id INTEGER PRIMARY KEY, state BLOB NOT NULL);").unwrap();
        drop(old);
        let error = Store::open(dir.path(), Durability::Normal).unwrap_err();
        assert!(matches!(error, StoreError::OldSchema { version: 0, .. }), "{error}");
        assert!(error.to_string().contains("empty data directory"), "{error}");
    }

    #[tokio::test]
    async fn an_empty_store_loads_as_a_fresh_replica() {
        let dir = tempfile::tempdir().unwrap();
        let persisted = Store::open(dir.path(), Durability::Full).unwrap().load().await.unwrap();
        assert_eq!(persisted.safety, SafetyState::default());
        assert!(persisted.checkpoint.is_none() && persisted.decided.is_empty());
    }
}
