//! What a replica makes durable, as plain data (`Write`), and the pure planning of
//! one step's writes from the BFT replica's actions and the records the step
//! changed (`plan`). The node's store applies these to SQLite, the simulator's to
//! memory: both must give the same state back at a restart.

use crate::bft::{Action, Block, Digest, Halt, Height, SafetyState, StableCheckpoint, Tip};
use crate::sbac::{ShardOutput, StateChanges};

/// One thing to make durable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write {
    Safety(SafetyState),
    Block(Block),
    Decided {
        height: u64,
        block: Block,
    },
    Checkpoint(StableCheckpoint),
    /// The records a step changed (or all of them, after a state transfer), as versions
    /// of `height`: the first checkpoint height whose state holds them. The body of the
    /// checkpoint at c is, for each key, its version of the highest height ≤ c; a record
    /// changed twice between two checkpoints has one version, the second replacing the first.
    Records {
        height: u64,
        changes: StateChanges,
    },
    /// The state's head at the last decided block: what a restart takes up.
    Resume {
        tip: Tip,
        head: Vec<u8>,
    },
    /// The requests executed at `height`; those below `forget_below` leave the window.
    Executed {
        height: u64,
        digests: Vec<Digest>,
        forget_below: u64,
    },
    /// The whole de-duplication window, replacing the saved one: after a state transfer,
    /// whose window a restart must take up as the checkpoint signed it.
    ExecutedWindow(Vec<(u64, Vec<Digest>)>),
}

/// What the replica knows that planning needs.
pub struct PlanContext<'a> {
    /// The height of the last decided block written: a checkpoint above it is a state transfer.
    pub decided_height: Height,
    /// The tip after the step.
    pub tip: Tip,
    /// Heights of executed requests kept for de-duplication.
    pub window: u64,
    /// Heights between checkpoints: checkpoints are at its multiples.
    pub checkpoint_interval: u64,
    /// The requests executed at a height, if still known.
    pub executed_at: &'a dyn Fn(Height) -> Option<Vec<Digest>>,
    /// The whole de-duplication window (read only after a state transfer).
    pub executed_window: &'a dyn Fn() -> Vec<(Height, Vec<Digest>)>,
}

impl std::fmt::Debug for PlanContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PlanContext(decided {:?}, tip {:?}, window {})", self.decided_height, self.tip, self.window)
    }
}

/// One step's writes and what follows them.
#[derive(Debug, Default)]
pub struct Plan {
    /// Batches of writes, each durable (one store transaction) before the next and before
    /// anything of `effects` is carried out.
    pub batches: Vec<Vec<Write>>,
    /// The rest of the actions, in order.
    pub effects: Vec<Action<ShardOutput>>,
    /// Requests decided, each with its height.
    pub decided: Vec<(Digest, Height)>,
    pub decided_height: Height,
    /// A checkpoint above the decided height was taken: the state was transferred from peers.
    pub transferred: bool,
    /// The decided log cannot go on.
    pub fatal: Option<Halt>,
}

/// Plans the writes of one step. The changes up to a checkpoint are versions of its
/// height, later ones of the next checkpoint's, so that the store can serve the body of
/// any checkpoint from the stable one on and keeps one version a record per interval.
/// Each decided block, empty ones too, moves the height a restart takes up from.
pub fn plan(actions: Vec<Action<ShardOutput>>, changes: Vec<StateChanges>, context: &PlanContext<'_>) -> Plan {
    let mut plan = Plan { decided_height: context.decided_height, ..Plan::default() };
    let mut writes = Vec::new();
    let mut moved = false;
    let mut changes = changes.into_iter().peekable();
    for action in actions {
        match action {
            Action::PersistSafety(state) => writes.push(Write::Safety(state)),
            Action::PersistBlock(block) => writes.push(Write::Block(block)),
            Action::PersistDecided { height, block } => {
                plan.decided.extend(block.requests.iter().map(|request| (request.digest(), height)));
                (plan.decided_height, moved) = (height, true);
                let tip = Tip { block: block.digest(), round: block.round, height };
                writes.push(Write::Decided { height: height.0, block });
                if let Some(digests) = (context.executed_at)(height) {
                    let forget_below = height.0.saturating_sub(context.window).saturating_add(1);
                    writes.push(Write::Executed { height: height.0, digests, forget_below });
                }
                if let Some(cut) = changes.next_if(|cut| cut.until == Some(height)) {
                    writes.push(Write::Resume { tip, head: cut.head.clone() });
                    writes.push(Write::Records { height: height.0, changes: cut });
                }
            }
            Action::PersistCheckpoint(checkpoint) => {
                let transferred = checkpoint.certificate.point.height > plan.decided_height;
                if transferred {
                    plan.transferred = true;
                    plan.decided_height = checkpoint.certificate.point.height;
                }
                writes.push(Write::Checkpoint(checkpoint));
                if transferred {
                    let window = (context.executed_window)().into_iter().map(|(height, digests)| (height.0, digests));
                    writes.push(Write::ExecutedWindow(window.collect()));
                }
            }
            Action::Fatal(reason) => {
                plan.fatal = Some(reason);
                return plan;
            }
            effect => plan.effects.push(effect),
        }
    }
    for rest in changes {
        let changed = rest.replace || !rest.objects.is_empty() || !rest.transactions.is_empty();
        if changed || moved || plan.transferred {
            writes.push(Write::Resume { tip: context.tip, head: rest.head.clone() });
            let interval = context.checkpoint_interval.max(1);
            let height = context.tip.height.0.div_ceil(interval).saturating_mul(interval);
            writes.push(Write::Records { height, changes: rest });
        }
    }
    if !writes.is_empty() {
        plan.batches.push(writes);
    }
    plan
}
