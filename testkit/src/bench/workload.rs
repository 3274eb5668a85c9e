//! What the load generator sends: `dump` transactions (no inputs, the checker accepts
//! everything: the cost of the ledger itself) and `bank` transfers (two inputs, an
//! ed25519 signature the checker verifies), each placed on one shard or across two.

use anyhow::Context;
use ed25519_dalek::SigningKey;
use serde_json::{Value, json};
use shardspace_core::{Envelope, Object, ShardId, ShardMap, Transaction};

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    DumpSingle,
    DumpCross,
    BankSingle,
    BankCross,
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Self::DumpSingle => "dump-single",
            Self::DumpCross => "dump-cross",
            Self::BankSingle => "bank-single",
            Self::BankCross => "bank-cross",
        }
    }

    pub fn cross(self) -> bool {
        matches!(self, Self::DumpCross | Self::BankCross)
    }

    pub fn is_bank(self) -> bool {
        matches!(self, Self::BankSingle | Self::BankCross)
    }
}

/// One client's sequence of transactions: `next_body` gives the body to post, `settled`
/// says how the last one ended.
#[derive(Debug)]
pub enum Stream {
    Dump { prefix: u64, n: u64, map: ShardMap, cross: bool },
    Bank(Box<BankPair>),
}

/// Two accounts that send a few units back and forth; the sender signs each transfer.
/// The new account states (the outputs) land on shards their ids pick, so the amount is
/// chosen (1 to `AMOUNT_MAX`) for the transfer to concern one shard (`single`) or two.
#[derive(Debug)]
pub struct BankPair {
    accounts: [Object; 2],
    keys: [SigningKey; 2],
    map: ShardMap,
    single: bool,
    /// Which account sends next.
    sender: usize,
    /// The transfer in flight, sent again as is after an error (its outcome is unknown).
    pending: Option<Envelope>,
}

impl Stream {
    /// A `dump` stream whose transactions are unique by `prefix`.
    pub fn dump(prefix: u64, map: ShardMap, cross: bool) -> Self {
        Self::Dump { prefix, n: 0, map, cross }
    }

    pub fn next_body(&mut self) -> anyhow::Result<Value> {
        match self {
            Self::Dump { prefix, n, map, cross } => {
                *n += 1;
                Ok(dump(*prefix << 24 | *n, *map, *cross))
            }
            Self::Bank(pair) => {
                if pair.pending.is_none() {
                    pair.pending = Some(pair.transfer()?);
                }
                Ok(serde_json::to_value(&pair.pending)?)
            }
        }
    }

    /// The last transaction from `next_body` committed (`Some(true)`), aborted (`Some(false)`)
    /// or has no known outcome (`None`: it is sent again).
    pub fn settled(&mut self, committed: Option<bool>) {
        let Self::Bank(pair) = self else { return };
        match committed {
            None => {}
            Some(false) => pair.pending = None,
            Some(true) => {
                let Some(envelope) = pair.pending.take() else { return };
                let outputs = envelope.transaction.own_outputs();
                // Output 0 is the sender after the transfer, output 1 the receiver.
                let (from, to) = (pair.sender, 1 - pair.sender);
                if let [sender, receiver] = &outputs[..] {
                    pair.accounts[from] = sender.clone();
                    pair.accounts[to] = receiver.clone();
                }
                pair.sender = to;
            }
        }
    }
}

/// A `dump` transaction, unique by `nonce`, whose two outputs land on one shard or on two.
pub fn dump(nonce: u64, map: ShardMap, cross: bool) -> Value {
    // One shard cannot place anything across two: take what it gives.
    dump_where(nonce, |transaction| (map.concerned_shards(transaction).len() == 2) == cross)
}

/// A `dump` transaction, unique by `nonce`, that concerns `shard` only.
pub fn dump_on(nonce: u64, map: ShardMap, shard: u32) -> Value {
    dump_where(nonce, |transaction| map.concerned_shards(transaction).into_iter().eq([ShardId(shard)]))
}

/// The first of 256 salts whose transaction `placed` accepts (the last one tried if none).
fn dump_where(nonce: u64, placed: impl Fn(&Transaction) -> bool) -> Value {
    let mut transaction = Transaction {
        contract_id: "dump".into(),
        method_id: "put".into(),
        input_ids: vec![],
        reference_input_ids: vec![],
        parameters: vec![json!(nonce), json!(0)],
        returns: vec![],
        outputs: vec![format!("\"{nonce}\""), format!("\"{nonce}b\"")],
        dependencies: vec![],
    };
    for salt in 0u64..256 {
        transaction.parameters[1] = json!(salt);
        if placed(&transaction) {
            break;
        }
    }
    json!({"transaction": transaction, "store": {}})
}

/// The envelope opening an account with a fresh key, and the key. Accounts are placed
/// by trying keys until the new account lands on `shard`.
pub fn open_account(map: ShardMap, shard: u32) -> anyhow::Result<(Envelope, SigningKey)> {
    for _ in 0..10_000 {
        let key = SigningKey::from_bytes(&rand::random());
        let owner = shardspace_contract_bank::owner_of(&key);
        let envelope = shardspace_contract_bank::create_account(&owner, shardspace_contract_bank::OPENING_BALANCE_MAX)
            .context("cannot build an account")?;
        let account = envelope.transaction.own_outputs().remove(0);
        if map.shard_of(&account.id).0 == shard {
            return Ok((envelope, key));
        }
    }
    anyhow::bail!("no key placed an account on shard {shard} in 10,000 tries")
}

/// The largest amount a transfer moves (accounts open with 1,000).
const AMOUNT_MAX: i64 = 24;

impl BankPair {
    /// Two opened accounts (the opening transactions committed), the first one sending first.
    pub fn new(opened: [(Envelope, SigningKey); 2], map: ShardMap, single: bool) -> Self {
        let [(first, first_key), (second, second_key)] = opened;
        let account = |envelope: Envelope| envelope.transaction.own_outputs().remove(0);
        let (accounts, keys) = ([account(first), account(second)], [first_key, second_key]);
        Self { accounts, keys, map, single, sender: 0, pending: None }
    }

    /// The next transfer: the smallest amount that places it as asked (else 1).
    fn transfer(&self) -> anyhow::Result<Envelope> {
        let (from, to) = (self.sender, 1 - self.sender);
        let build = |amount| {
            shardspace_contract_bank::transfer(&self.accounts[from], &self.accounts[to], amount, &self.keys[from])
                .context("cannot build a transfer")
        };
        for amount in 1..=AMOUNT_MAX {
            let envelope = build(amount)?;
            if (self.map.concerned_shards(&envelope.transaction).len() == 1) == self.single {
                return Ok(envelope);
            }
        }
        build(1)
    }
}
