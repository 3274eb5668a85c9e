//! Group commit: the outputs of consecutive steps carried out together. A driver
//! hands each step's outputs to an `Outbox` while an earlier group's writes are being
//! made durable, then takes the group whole: its writes as one store transaction, to
//! be made durable first, then everything else in
//! order. Every output of the group thus follows every write of the group and of the
//! groups before it: persist-before-send holds step by step, and a step's messages are
//! only later than they would have been alone. A crash before a group is durable loses
//! its steps whole, as if their inputs had never come.
//!
//! What bounds a group: a step reads the records earlier steps changed from the table's
//! memory (`Table::forget_saved` keeps the last `RECENT_RECORDS_MAX` of them), not from
//! a store that has not saved them yet. So the records of the groups not yet durable
//! stay under `GROUP_RECORDS_MAX`, and a step that changed more than a table keeps (a
//! state transfer, or a huge block) closes its group: nothing is handled after it until
//! it is durable.

use super::{Output, Write};
use crate::sbac::RECENT_RECORDS_MAX;

/// Records of the steps not yet durable, at most (well inside what a table keeps in memory).
pub const GROUP_RECORDS_MAX: usize = RECENT_RECORDS_MAX / 4;
/// Steps in one group, at most: a group's first messages wait for its last step.
pub const GROUP_STEPS_MAX: usize = 64;

/// The outputs of the steps handled since the last group was taken.
#[derive(Debug, Default)]
pub struct Outbox {
    /// Store transactions in order (one: every step's writes join it).
    batches: Vec<Vec<Write>>,
    /// Everything but the writes, in order.
    after: Vec<Output>,
    steps: usize,
    records: usize,
    /// A step's records may be read back from the store: nothing joins until durable.
    closed: bool,
}

/// A group taken from an `Outbox`: make `batches` durable, in order, then carry out
/// `outputs`, in order.
#[derive(Debug, Default)]
pub struct Group {
    pub batches: Vec<Vec<Write>>,
    pub outputs: Vec<Output>,
    /// Steps (calls of `handle`) whose outputs the group holds.
    pub steps: usize,
    /// Records the group writes (`GROUP_RECORDS_MAX`).
    pub records: usize,
    /// No step may be handled until this group is durable.
    pub closed: bool,
}

impl Outbox {
    /// Adds one step's outputs (one `ShardReplica::handle`).
    pub fn add(&mut self, outputs: Vec<Output>) {
        self.steps += 1;
        for output in outputs {
            match output {
                Output::Persist(writes) => self.persist(writes),
                other => self.after.push(other),
            }
        }
    }

    fn persist(&mut self, writes: Vec<Write>) {
        for write in writes {
            let open = match self.batches.last_mut() {
                Some(batch) => batch,
                None => {
                    self.batches.push(Vec::new());
                    self.batches.last_mut().expect("just pushed")
                }
            };
            match &write {
                // One row each: only the last of a transaction counts, and a head is kilobytes.
                Write::Safety(_) => open.retain(|earlier| !matches!(earlier, Write::Safety(_))),
                Write::Resume { .. } => open.retain(|earlier| !matches!(earlier, Write::Resume { .. })),
                Write::Records { changes, .. } => {
                    let count = changes.objects.len() + changes.transactions.len();
                    self.records = self.records.saturating_add(count);
                    // Past half of what a table keeps, this step's records were not kept.
                    self.closed |= changes.replace || count > RECENT_RECORDS_MAX / 2;
                }
                Write::ExecutedWindow(_) => self.closed = true,
                _ => {}
            }
            open.push(write);
        }
    }

    /// Whether another step may be handled into this group while `pending`, the group
    /// being made durable (if any), is not yet.
    pub fn takes_more(&self, pending: Option<&Group>) -> bool {
        let (pending_records, pending_closed) = pending.map_or((0, false), |group| (group.records, group.closed));
        !self.closed
            && !pending_closed
            && self.steps < GROUP_STEPS_MAX
            && self.records.saturating_add(pending_records) <= GROUP_RECORDS_MAX
    }

    pub fn is_empty(&self) -> bool {
        self.steps == 0
    }

    /// The group, and an empty outbox for the next.
    pub fn take(&mut self) -> Group {
        let taken = std::mem::take(self);
        let batches = taken.batches.into_iter().filter(|batch| !batch.is_empty()).collect();
        Group { batches, outputs: taken.after, steps: taken.steps, records: taken.records, closed: taken.closed }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bft::{Round, SafetyState};
    use crate::sbac::StateChanges;
    use crate::sbac::replica::{ClientId, ClientReply};

    fn reply(n: u64) -> Output {
        Output::Reply { client: ClientId(n), reply: ClientReply::Error(n.to_string()) }
    }

    fn records(count: usize) -> Write {
        let id = |n: usize| crate::ids::TxId(numbered(n));
        let record = crate::sbac::TxRecord { concerned: vec![], attempts: Default::default(), committed: None };
        let transactions = (0..count).map(|n| (id(n), record.clone())).collect();
        let changes =
            StateChanges { until: None, replace: false, objects: vec![], transactions, decided: vec![], head: vec![] };
        Write::Records { height: 1, changes }
    }

    fn numbered(n: usize) -> [u8; 32] {
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&(n as u64).to_be_bytes());
        bytes
    }

    #[test]
    fn a_group_writes_first_then_says_everything_in_order_and_keeps_only_the_last_safety() {
        let mut outbox = Outbox::default();
        let safety =
            |round: u64| Write::Safety(SafetyState { last_voted_round: Round(round), ..SafetyState::default() });
        outbox.add(vec![Output::Persist(vec![safety(1), records(1)]), reply(1)]);
        outbox.add(vec![reply(2), Output::Persist(vec![safety(2)]), reply(3)]);
        outbox.add(vec![Output::Persist(vec![safety(3)]), reply(4)]);
        let group = outbox.take();
        assert_eq!(group.batches, vec![vec![records(1), safety(3)]]);
        let said: Vec<u64> = group
            .outputs
            .iter()
            .map(|output| match output {
                Output::Reply { client, .. } => client.0,
                other => panic!("not a reply: {other:?}"),
            })
            .collect();
        assert_eq!(said, vec![1, 2, 3, 4]);
        assert!(outbox.is_empty() && outbox.take().batches.is_empty());
    }

    #[test]
    fn a_group_takes_no_step_past_its_records_its_steps_or_a_step_that_changed_more_than_a_table_keeps() {
        let mut outbox = Outbox::default();
        outbox.add(vec![Output::Persist(vec![records(GROUP_RECORDS_MAX / 2)])]);
        assert!(outbox.takes_more(None));
        let pending = Group { records: GROUP_RECORDS_MAX / 2, ..Group::default() };
        assert!(outbox.takes_more(Some(&pending)));
        let pending = Group { records: GROUP_RECORDS_MAX / 2 + 1, ..Group::default() };
        assert!(!outbox.takes_more(Some(&pending)), "the records not yet durable would pass the bound");
        assert!(!outbox.takes_more(Some(&Group { closed: true, ..Group::default() })));

        let mut outbox = Outbox::default();
        outbox.add(vec![Output::Persist(vec![records(RECENT_RECORDS_MAX / 2 + 1)])]);
        let group = outbox.take();
        assert!(group.closed, "a step whose records a table did not keep must be durable before the next");

        let mut outbox = Outbox::default();
        for n in 0..GROUP_STEPS_MAX {
            assert!(outbox.takes_more(None));
            outbox.add(vec![reply(n as u64)]);
        }
        assert!(!outbox.takes_more(None));
    }
}
