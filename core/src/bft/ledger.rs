//! The decided log and the replicated state: known blocks, the commit of a
//! certified chain, execution with request de-duplication, snapshots for
//! checkpoints and state transfer.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use super::app::Application;
use super::leaders::{Activity, REPUTATION_WINDOW};
use super::messages::{Block, CheckpointCertificate, CheckpointPoint};
use super::types::{Digest, DigestSet, Height, Request, Round, SnapshotBytes};

/// The last decided block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tip {
    pub block: Digest,
    pub round: Round,
    pub height: Height,
}

impl Tip {
    pub fn genesis() -> Self {
        Self { block: Digest::default(), round: Round(0), height: Height(0) }
    }
}

/// A stable checkpoint: its certificate and the state it certifies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StableCheckpoint {
    pub certificate: CheckpointCertificate,
    pub state: SnapshotBytes,
}

/// Why a chain could not be committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommitError {
    /// A block of the chain is unknown here: fetch it, then try again.
    Missing(Digest),
    /// The chain does not extend the decided tip: more than f replicas are faulty.
    Fork { block: Digest, tip: Tip },
}

/// Executed request digests of the last `window` heights: part of the
/// replicated state, so that a replica restored from a snapshot skips exactly
/// the duplicates its peers skip.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Executed {
    window: u64,
    by_height: BTreeMap<Height, Vec<Digest>>,
    /// Every digest of `by_height`, for lookups; rebuilt after decoding (not in snapshots,
    /// whose bytes must not depend on a hash map's order).
    #[serde(skip)]
    all: DigestSet,
}

impl Executed {
    fn record(&mut self, height: Height, digests: Vec<Digest>) {
        self.all.extend(digests.iter().copied());
        self.by_height.insert(height, digests);
        while let Some((&oldest, _)) = self.by_height.first_key_value() {
            if oldest.0.saturating_add(self.window) > height.0 {
                break;
            }
            for digest in self.by_height.remove(&oldest).unwrap_or_default() {
                self.all.remove(&digest);
            }
        }
    }
}

/// The activity of the last decided blocks, newest last: enough for a leader's window
/// (`leaders.rs`) to reach below the tip and below a checkpoint whose blocks are gone.
/// Part of the replicated state, like `Executed`.
const RECENT_MAX: usize = 2 * REPUTATION_WINDOW;

/// What a checkpoint signs: the head of the application's state, the de-duplication
/// window, and the activity of the last decided blocks.
#[derive(Serialize, Deserialize)]
struct SnapshotHead {
    #[serde(with = "super::types::serde_bytes_vec")]
    app: Vec<u8>,
    executed: Executed,
    recent: VecDeque<Activity>,
}

impl SnapshotHead {
    fn decode(checkpoint: &StableCheckpoint) -> Result<Self, String> {
        let (head, _) = snapshot_parts(&checkpoint.state)?;
        postcard::from_bytes(head).map_err(|error| error.to_string())
    }
}

/// A snapshot as sent and stored: the encoded head, whose digest the checkpoint signs,
/// and the application's body, which the head vouches for. A replica whose store keeps
/// the body holds its checkpoints without it; a snapshot sent to a peer always has it.
#[derive(Serialize, Deserialize)]
struct SnapshotParts<'a> {
    #[serde(borrow)]
    head: &'a [u8],
    #[serde(borrow)]
    body: Option<&'a [u8]>,
}

/// A snapshot of these parts.
pub fn snapshot_of(head: &[u8], body: Option<&[u8]>) -> SnapshotBytes {
    let parts = SnapshotParts { head, body };
    SnapshotBytes::from(postcard::to_stdvec(&parts).expect("encoding into memory cannot fail"))
}

/// The parts of a snapshot: its head and, if it has one, its body.
pub fn snapshot_parts(snapshot: &[u8]) -> Result<(&[u8], Option<&[u8]>), String> {
    let parts: SnapshotParts = postcard::from_bytes(snapshot).map_err(|error| error.to_string())?;
    Ok((parts.head, parts.body))
}

/// What a replica whose store keeps the application's body saved at its last decided
/// height, to take up after a restart without replaying the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resume {
    pub tip: Tip,
    /// The application's head at the tip (`Application::state_head`).
    pub app: Vec<u8>,
    /// The requests executed at each height of the de-duplication window.
    pub executed: Vec<(Height, Vec<Digest>)>,
}

/// One decided block and what executing it produced.
#[derive(Debug)]
pub struct Decided<O> {
    pub height: Height,
    pub block: Block,
    pub outputs: Vec<O>,
    /// At a checkpoint height: the point and the snapshot of the state right after this block.
    pub checkpoint: Option<(CheckpointPoint, SnapshotBytes)>,
}

#[derive(Debug)]
pub struct Ledger<A: Application> {
    app: A,
    executed: Executed,
    /// Blocks not yet decided, and decided ones above the stable checkpoint (to serve peers).
    blocks: BTreeMap<Digest, Block>,
    /// Decided heights above the stable checkpoint.
    decided: BTreeMap<Height, Digest>,
    /// The undecided blocks of `blocks`, by round: those at or below the tip's round are
    /// dropped at each commit without scanning every block kept.
    undecided: BTreeMap<Round, Vec<Digest>>,
    tip: Tip,
    /// The activity of the last `RECENT_MAX` decided blocks, oldest first.
    recent: VecDeque<Activity>,
    stable: Option<StableCheckpoint>,
    /// A checkpoint after every this many heights.
    checkpoint_interval: u64,
}

impl<A: Application> Ledger<A> {
    pub fn new(app: A, dedup_window_heights: u64, checkpoint_interval: u64) -> Self {
        let executed = Executed { window: dedup_window_heights, ..Executed::default() };
        let (blocks, decided, tip) = (BTreeMap::new(), BTreeMap::new(), Tip::genesis());
        Self {
            app,
            executed,
            blocks,
            decided,
            undecided: BTreeMap::new(),
            tip,
            recent: VecDeque::new(),
            stable: None,
            checkpoint_interval: checkpoint_interval.max(1),
        }
    }

    pub fn app(&self) -> &A {
        &self.app
    }

    pub fn app_mut(&mut self) -> &mut A {
        &mut self.app
    }

    pub fn tip(&self) -> Tip {
        self.tip
    }

    pub fn stable(&self) -> Option<&StableCheckpoint> {
        self.stable.as_ref()
    }

    pub fn block(&self, digest: &Digest) -> Option<&Block> {
        self.blocks.get(digest)
    }

    /// Whether the block is known, or is the decided tip or genesis (whose body may be gone).
    pub fn knows(&self, digest: &Digest) -> bool {
        self.blocks.contains_key(digest) || *digest == self.tip.block || *digest == Digest::default()
    }

    pub fn was_executed(&self, digest: &Digest) -> bool {
        self.executed.all.contains(digest)
    }

    /// The round of a known block (the tip's and genesis's included).
    pub fn round_of(&self, digest: &Digest) -> Option<Round> {
        if *digest == self.tip.block {
            return Some(self.tip.round);
        }
        self.blocks.get(digest).map(|block| block.round).or((*digest == Digest::default()).then_some(Round(0)))
    }

    pub fn insert(&mut self, block: Block) {
        if block.round > self.tip.round {
            let digest = block.digest();
            if !self.blocks.contains_key(&digest) {
                self.undecided.entry(block.round).or_default().push(digest);
            }
            self.blocks.insert(digest, block);
        }
    }

    /// Requests in the undecided blocks from `from` back to the tip: not to be proposed again.
    pub fn pending_requests(&self, from: &Digest) -> BTreeSet<Digest> {
        let mut pending = BTreeSet::new();
        let mut cursor = *from;
        while let Some(block) = self.blocks.get(&cursor).filter(|block| block.round > self.tip.round) {
            pending.extend(block.requests.iter().map(Request::digest));
            cursor = block.parent.block;
        }
        pending
    }

    /// Whether undecided blocks from `from` back to the tip carry any request
    /// (runs after every event: it stops at the first such block).
    pub fn has_undecided_requests(&self, from: &Digest) -> bool {
        let mut cursor = *from;
        while let Some(block) = self.blocks.get(&cursor).filter(|block| block.round > self.tip.round) {
            if !block.requests.is_empty() {
                return true;
            }
            cursor = block.parent.block;
        }
        false
    }

    /// Whether the block `from` or its parent carries requests. A leader holding the
    /// certificate of such a block proposes even with nothing new: under the 2-chain rule
    /// the other replicas decide a block only when a proposal carries the certificate of
    /// its child, so without one an idle shard would decide its last requests at one
    /// replica only, until a timeout.
    pub fn has_requests_near(&self, from: &Digest) -> bool {
        let Some(block) = self.blocks.get(from) else { return false };
        let parent = self.blocks.get(&block.parent.block);
        !block.requests.is_empty() || parent.is_some_and(|parent| !parent.requests.is_empty())
    }

    /// Decides `target` and its undecided ancestors, oldest first, executing them.
    pub fn commit(&mut self, target: &Digest) -> Result<Vec<Decided<A::Output>>, CommitError> {
        let mut chain = Vec::new();
        let mut cursor = *target;
        while cursor != self.tip.block {
            let block = self.blocks.get(&cursor).ok_or(CommitError::Missing(cursor))?;
            if block.round <= self.tip.round {
                return Err(CommitError::Fork { block: cursor, tip: self.tip });
            }
            chain.push(cursor);
            cursor = block.parent.block;
        }
        let mut decided = Vec::with_capacity(chain.len());
        for digest in chain.into_iter().rev() {
            let block = self.blocks.get(&digest).cloned().ok_or(CommitError::Missing(digest))?;
            decided.push(self.execute(digest, block));
        }
        self.forget_stale_forks();
        Ok(decided)
    }

    fn execute(&mut self, digest: Digest, block: Block) -> Decided<A::Output> {
        let height = self.tip.height.next();
        let mut outputs = Vec::new();
        let mut digests = Vec::with_capacity(block.requests.len());
        let mut in_block = DigestSet::with_capacity_and_hasher(block.requests.len(), Default::default());
        for request in &block.requests {
            let request_digest = request.digest();
            // A request proposed twice (two leaders had it, or twice in one block) executes once.
            if self.executed.all.contains(&request_digest) || !in_block.insert(request_digest) {
                continue;
            }
            outputs.extend(self.app.execute(height, request));
            digests.push(request_digest);
        }
        self.executed.record(height, digests);
        self.remember(Activity::of(digest, &block));
        self.tip = Tip { block: digest, round: block.round, height };
        self.decided.insert(height, digest);
        if let Some(undecided) = self.undecided.get_mut(&block.round) {
            undecided.retain(|kept| *kept != digest);
        }
        // Snapshot now, between this block and the next: the checkpoint is of this height.
        let checkpoint = height.0.is_multiple_of(self.checkpoint_interval).then(|| self.checkpoint_point());
        Decided { height, block, outputs, checkpoint }
    }

    fn remember(&mut self, activity: Activity) {
        if self.recent.len() >= RECENT_MAX {
            self.recent.pop_front();
        }
        self.recent.push_back(activity);
    }

    /// The activity of the chain ending at `from`, newest first, `REPUTATION_WINDOW` blocks
    /// long or down to the genesis; `Err` names a block of it unknown here.
    pub fn window(&self, from: &Digest) -> Result<Vec<Activity>, Digest> {
        let mut window = Vec::with_capacity(REPUTATION_WINDOW);
        let mut cursor = *from;
        while window.len() < REPUTATION_WINDOW && cursor != Digest::default() {
            let activity = match self.blocks.get(&cursor) {
                Some(block) => Activity::of(cursor, block),
                None => self.recent.iter().rev().find(|activity| activity.block == cursor).ok_or(cursor)?.clone(),
            };
            cursor = activity.parent;
            window.push(activity);
        }
        Ok(window)
    }

    /// Undecided blocks at or below the tip's round can never be decided.
    fn forget_stale_forks(&mut self) {
        let above = self.undecided.split_off(&self.tip.round.next());
        for digest in std::mem::replace(&mut self.undecided, above).into_values().flatten() {
            self.blocks.remove(&digest);
        }
    }

    /// The decided block at `height`, if still kept.
    pub fn decided_at(&self, height: Height) -> Option<&Block> {
        self.decided.get(&height).and_then(|digest| self.blocks.get(digest))
    }

    /// The checkpoint point of the tip, with the snapshot it signs.
    pub fn checkpoint_point(&mut self) -> (CheckpointPoint, SnapshotBytes) {
        let head = SnapshotHead {
            app: self.app.state_head(self.tip.height),
            executed: self.executed.clone(),
            recent: self.recent.clone(),
        };
        let head = postcard::to_stdvec(&head).expect("encoding a snapshot into memory cannot fail");
        let state = snapshot_of(&head, self.app.state_body().as_deref());
        let point = CheckpointPoint {
            height: self.tip.height,
            block: self.tip.block,
            round: self.tip.round,
            state: Digest::of(&head),
        };
        (point, state)
    }

    /// Makes `checkpoint` the stable one and drops what it replaces.
    pub fn set_stable(&mut self, checkpoint: StableCheckpoint) {
        let height = checkpoint.certificate.point.height;
        let kept = self.decided.split_off(&height.next());
        for digest in self.decided.values() {
            self.blocks.remove(digest);
        }
        self.decided = kept;
        self.stable = Some(checkpoint);
    }

    /// Replaces the state with a stable checkpoint from peers (state transfer), once its
    /// state is found to be the one its certificate signs; on an error nothing changes.
    pub fn restore(&mut self, checkpoint: StableCheckpoint) -> Result<(), String> {
        let (head, body) = snapshot_parts(&checkpoint.state)?;
        if Digest::of(head) != checkpoint.certificate.point.state {
            return Err("its head is not the one the certificate signs".into());
        }
        let body = body.ok_or("it has no body")?;
        let head: SnapshotHead = postcard::from_bytes(head).map_err(|error| error.to_string())?;
        self.app.restore(&head.app, body)?;
        self.executed = head.executed;
        self.recent = head.recent;
        self.executed.all = self.executed.by_height.values().flatten().copied().collect();
        let point = checkpoint.certificate.point;
        self.tip = Tip { block: point.block, round: point.round, height: point.height };
        for digest in std::mem::take(&mut self.decided).into_values() {
            self.blocks.remove(&digest);
        }
        self.forget_stale_forks();
        self.stable = Some(checkpoint);
        Ok(())
    }

    /// Takes up the state a replica saved at its last decided height (`Resume`), with its
    /// stable checkpoint and the decided blocks above that checkpoint (kept to serve peers).
    pub fn resume(
        &mut self,
        stable: Option<StableCheckpoint>,
        resume: Resume,
        decided: Vec<Block>,
    ) -> Result<(), String> {
        let stable_height = stable.as_ref().map_or(Height(0), |stable| stable.certificate.point.height);
        let tip = resume.tip;
        if decided.len() as u64 != tip.height.0.saturating_sub(stable_height.0) {
            return Err(format!(
                "{} decided blocks kept between heights {} and {}",
                decided.len(),
                stable_height.0,
                tip.height.0
            ));
        }
        if decided.last().is_some_and(|block| block.digest() != tip.block) {
            return Err("the last decided block kept is not the one the state was saved at".into());
        }
        self.app.resume(&resume.app)?;
        self.executed.by_height = resume.executed.into_iter().collect();
        self.executed.all = self.executed.by_height.values().flatten().copied().collect();
        if let Some(stable) = &stable {
            self.recent = SnapshotHead::decode(stable)
                .map_err(|error| format!("the stable checkpoint's head does not decode: {error}"))?
                .recent;
        }
        for (offset, block) in (1..).zip(decided) {
            let (height, digest) = (Height(stable_height.0 + offset), block.digest());
            self.remember(Activity::of(digest, &block));
            self.blocks.insert(digest, block);
            self.decided.insert(height, digest);
        }
        self.tip = tip;
        self.stable = stable;
        Ok(())
    }

    /// The whole de-duplication window: the requests executed at each height in it.
    pub fn executed_window(&self) -> Vec<(Height, Vec<Digest>)> {
        self.executed.by_height.iter().map(|(height, digests)| (*height, digests.clone())).collect()
    }

    /// The requests executed at `height`, while it is in the de-duplication window.
    pub fn executed_at(&self, height: Height) -> Option<&[Digest]> {
        self.executed.by_height.get(&height).map(Vec::as_slice)
    }

    /// Blocks from `from` back through its ancestors, at most `max`, as far as they are known.
    pub fn chain_from(&self, from: &Digest, max: usize) -> Vec<Block> {
        let mut chain = Vec::new();
        let mut cursor = *from;
        while chain.len() < max {
            let Some(block) = self.blocks.get(&cursor) else { break };
            chain.push(block.clone());
            cursor = block.parent.block;
        }
        chain
    }
}
