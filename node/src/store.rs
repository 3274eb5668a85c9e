//! The replica's SQLite store (DESIGN.md §8), owned by one thread. `Store` is a
//! cloneable handle: it sends a batch of writes and waits for the commit, one
//! SQLite transaction per batch. A failed write is returned, never ignored:
//! the replica stops rather than go on with an unknown state.
//!
//! The safety state, the decided log and the checkpoint are what a replica
//! restarts from. The `objects` and `transactions` tables are a read model of
//! the shard's state for operators (`sqlite3 replica.sqlite`): written with the
//! decided batches, rewritten whole at start and after a state transfer, and
//! never read back by the replica.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};
use shardspace_core::bft::{Block, Persisted, SafetyState, StableCheckpoint};
use shardspace_core::sbac::{ObjectStatus, ObjectView, TxView, VoteKind};
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
    #[error("cannot prepare {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("the store thread has stopped")]
    Stopped,
}

/// One thing to make durable.
#[derive(Clone, Debug)]
pub enum Write {
    Safety(SafetyState),
    Block(Block),
    Decided {
        height: u64,
        block: Block,
    },
    Checkpoint(StableCheckpoint),
    /// Empties the read model (before it is written whole).
    ClearReadModel,
    Object(ObjectRow),
    Transaction(TransactionRow),
}

/// One row of the `objects` read model.
#[derive(Clone, Debug)]
pub struct ObjectRow {
    pub id: ObjectId,
    pub view: ObjectView,
}

/// One row of the `transactions` read model: the latest attempt this shard recorded.
#[derive(Clone, Debug)]
pub struct TransactionRow {
    pub tx: TxId,
    pub envelope: String,
    pub view: TxView,
}

enum Command {
    Load(oneshot::Sender<Result<Persisted, StoreError>>),
    Write(Vec<Write>, oneshot::Sender<Result<(), StoreError>>),
}

/// Batches waiting for the store thread.
const STORE_QUEUE_MAX: usize = 64;

#[derive(Clone, Debug)]
pub struct Store {
    tx_store: mpsc::Sender<Command>,
}

impl Store {
    /// Opens (or creates) `dir/replica.sqlite` and starts the store thread.
    pub fn open(dir: &Path, durability: Durability) -> Result<Self, StoreError> {
        let path = dir.join("replica.sqlite");
        let sqlite = |source| StoreError::Sqlite { path: path.clone(), source };
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io { path: dir.into(), source })?;
        let connection = Connection::open(&path).map_err(sqlite)?;
        let synchronous = match durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        };
        connection
            .execute_batch(&format!(
                "PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = {synchronous};
                 CREATE TABLE IF NOT EXISTS safety (id INTEGER PRIMARY KEY CHECK (id = 0), state BLOB NOT NULL);
                 CREATE TABLE IF NOT EXISTS undecided_blocks (
                     round INTEGER NOT NULL, digest BLOB NOT NULL, block BLOB NOT NULL, PRIMARY KEY (round, digest));
                 CREATE TABLE IF NOT EXISTS decided_blocks (
                     height INTEGER PRIMARY KEY, round INTEGER NOT NULL, digest BLOB NOT NULL, block BLOB NOT NULL);
                 CREATE TABLE IF NOT EXISTS checkpoint (
                     id INTEGER PRIMARY KEY CHECK (id = 0), height INTEGER NOT NULL, record BLOB NOT NULL);
                 CREATE TABLE IF NOT EXISTS objects (
                     id TEXT PRIMARY KEY, value TEXT NOT NULL, contract TEXT NOT NULL, status TEXT NOT NULL,
                     lock_holder TEXT, created_by TEXT NOT NULL, consumed_by TEXT);
                 CREATE TABLE IF NOT EXISTS transactions (
                     tx TEXT PRIMARY KEY, envelope TEXT NOT NULL, attempt INTEGER NOT NULL, vote TEXT NOT NULL,
                     reason TEXT, decision TEXT, committed_attempt INTEGER);"
            ))
            .map_err(sqlite)?;
        let (tx_store, rx_commands) = mpsc::channel(STORE_QUEUE_MAX);
        let thread_path = path.clone();
        std::thread::Builder::new()
            .name("store".into())
            .spawn(move || run(connection, thread_path, rx_commands))
            .map_err(|source| StoreError::Io { path: path.clone(), source })?;
        Ok(Self { tx_store })
    }

    /// Everything the replica persisted, to restart from.
    pub async fn load(&self) -> Result<Persisted, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.tx_store.send(Command::Load(reply)).await.map_err(|_| StoreError::Stopped)?;
        answer.await.map_err(|_| StoreError::Stopped)?
    }

    /// Makes `writes` durable, in one transaction.
    pub async fn write(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        self.tx_store.send(Command::Write(writes, reply)).await.map_err(|_| StoreError::Stopped)?;
        answer.await.map_err(|_| StoreError::Stopped)?
    }
}

fn run(mut connection: Connection, path: PathBuf, mut rx_commands: mpsc::Receiver<Command>) {
    while let Some(command) = rx_commands.blocking_recv() {
        match command {
            Command::Load(reply) => {
                let _ = reply.send(load(&connection, &path));
            }
            Command::Write(writes, reply) => {
                let _ = reply.send(write(&mut connection, &path, writes));
            }
        }
    }
}

fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    postcard::to_stdvec(value).expect("encoding into memory cannot fail")
}

fn write(connection: &mut Connection, path: &Path, writes: Vec<Write>) -> Result<(), StoreError> {
    let sqlite = |source| StoreError::Sqlite { path: path.into(), source };
    let transaction = connection.transaction().map_err(sqlite)?;
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
            }
            Write::ClearReadModel => {
                transaction.execute_batch("DELETE FROM objects; DELETE FROM transactions;").map_err(sqlite)?;
            }
            Write::Object(row) => {
                let (status, holder, consumed_by) = match &row.view.status {
                    ObjectStatus::Active => ("active", None, None),
                    ObjectStatus::Locked { tx, .. } => ("locked", Some(tx.to_hex()), None),
                    ObjectStatus::Inactive { consumed_by } => ("inactive", None, Some(consumed_by.to_hex())),
                };
                let sql =
                    "INSERT OR REPLACE INTO objects (id, value, contract, status, lock_holder, created_by, consumed_by)
                           VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
                let view = &row.view;
                let values = params![
                    row.id.to_hex(),
                    view.value,
                    view.contract,
                    status,
                    holder,
                    view.created_by.to_hex(),
                    consumed_by
                ];
                transaction.prepare_cached(sql).and_then(|mut s| s.execute(values)).map_err(sqlite)?;
            }
            Write::Transaction(row) => {
                let (vote, reason) = match row.view.vote {
                    VoteKind::Accept => ("accept", None),
                    VoteKind::Abort(reason) => ("abort", Some(reason.as_str())),
                };
                let decision = row.view.decision.map(|commit| if commit { "commit" } else { "abort" });
                let sql = "INSERT OR REPLACE INTO transactions
                           (tx, envelope, attempt, vote, reason, decision, committed_attempt)
                           VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
                let committed = row.view.committed.map(|attempt| i64::from(attempt.0));
                let values = params![
                    row.tx.to_hex(),
                    row.envelope,
                    i64::from(row.view.attempt.0),
                    vote,
                    reason,
                    decision,
                    committed
                ];
                transaction.prepare_cached(sql).and_then(|mut s| s.execute(values)).map_err(sqlite)?;
            }
        }
    }
    transaction.commit().map_err(sqlite)
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
    Ok(Persisted { safety, checkpoint, decided, undecided })
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardspace_core::bft::{
        CheckpointCertificate, CheckpointPoint, Digest, Height, QuorumCertificate, ReplicaId, Request, Round,
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

    #[tokio::test]
    async fn an_empty_store_loads_as_a_fresh_replica() {
        let dir = tempfile::tempdir().unwrap();
        let persisted = Store::open(dir.path(), Durability::Full).unwrap().load().await.unwrap();
        assert_eq!(persisted.safety, SafetyState::default());
        assert!(persisted.checkpoint.is_none() && persisted.decided.is_empty());
    }
}
