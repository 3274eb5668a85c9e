//! `bank`: accounts owned by ed25519 keys. `create_account` opens one (a demo
//! faucet of at most `OPENING_BALANCE_MAX`); `transfer` moves an amount between
//! two accounts, signed by the sender. See `docs/checkers.md` §3.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde_json::json;
use shardspace_checker::{
    BuildError, CheckerRequest, Contract, Envelope, Object, Rejection, Shape, TransactionBuilder, Verdict, canonical,
    ensure, integer, is_lower_hex, parse_canonical, require_keys,
};

pub const NAME: &str = "bank";
/// The most a new account may start with.
pub const OPENING_BALANCE_MAX: i64 = 1000;

/// An account's state, as stored in its value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub balance: i64,
    /// The owner's ed25519 public key, as 64 lowercase hex digits.
    pub owner: String,
    /// How many transfers this account has sent: no two states share a value.
    pub seq: i64,
}

impl Account {
    pub fn to_value(&self) -> String {
        canonical::to_string(&json!({"balance": self.balance, "owner": self.owner, "seq": self.seq}))
    }

    pub fn parse(value: &str) -> Result<Self, Rejection> {
        let fields = parse_canonical(value, "an account")?;
        require_keys(&fields, &["balance", "owner", "seq"], "an account")?;
        let balance = integer(&fields["balance"], "the balance")?;
        let seq = integer(&fields["seq"], "seq")?;
        let owner = fields["owner"].as_str().filter(|owner| is_key_hex(owner));
        let owner = owner.ok_or_else(|| Rejection::new("the owner is not a public key as 64 lowercase hex digits"))?;
        ensure!(balance >= 0 && seq >= 0, "an account's balance and seq are not negative");
        Ok(Self { balance, owner: owner.to_string(), seq })
    }
}

fn is_key_hex(text: &str) -> bool {
    is_lower_hex(text, 64)
}

/// The owner's public key of `signing_key`, as an account names it.
pub fn owner_of(signing_key: &SigningKey) -> String {
    hex::encode(signing_key.verifying_key().as_bytes())
}

/// Client side: opens an account for `owner` with `balance`.
pub fn create_account(owner: &str, balance: i64) -> Result<Envelope, BuildError> {
    let account = Account { balance, owner: owner.to_string(), seq: 0 };
    let builder = TransactionBuilder::new(NAME, "create_account").parameter(owner).parameter(balance);
    Ok(builder.output(account.to_value()).build()?)
}

/// Client side: moves `amount` from `from` to `to`, signed with the sender's key.
pub fn transfer(from: &Object, to: &Object, amount: i64, signing_key: &SigningKey) -> Result<Envelope, BuildError> {
    let (sender, receiver) = (Account::parse(&from.value)?, Account::parse(&to.value)?);
    let outputs =
        after_transfer(&sender, &receiver, amount).ok_or_else(|| Rejection::new("a balance would overflow"))?;
    let message = transfer_message(amount, &from.value, &to.value);
    let signature = hex::encode(signing_key.sign(message.as_bytes()).to_bytes());
    let builder =
        TransactionBuilder::new(NAME, "transfer").input(from).input(to).parameter(amount).parameter(signature);
    Ok(builder.output(outputs.0).output(outputs.1).build()?)
}

/// What the sender signs: the amount and the exact input values.
pub fn transfer_message(amount: i64, from: &str, to: &str) -> String {
    canonical::to_string(&json!({"amount": amount, "inputs": [from, to], "method": "bank.transfer", "references": []}))
}

/// The two accounts' values after a transfer of `amount` (None on overflow).
fn after_transfer(from: &Account, to: &Account, amount: i64) -> Option<(String, String)> {
    let sender = Account {
        balance: from.balance.checked_sub(amount)?,
        owner: from.owner.clone(),
        seq: from.seq.checked_add(1)?,
    };
    let receiver = Account { balance: to.balance.checked_add(amount)?, owner: to.owner.clone(), seq: to.seq };
    Some((sender.to_value(), receiver.to_value()))
}

/// Server side: the checkers.
pub fn contract() -> Contract {
    Contract::new(NAME).method("create_account", check_create_account).method("transfer", check_transfer)
}

fn check_create_account(request: &CheckerRequest) -> Verdict {
    Shape { parameters: 2, outputs: 1, ..Shape::default() }.check(request)?;
    let owner = request.parameters[0].as_str().filter(|owner| is_key_hex(owner));
    let owner = owner.ok_or_else(|| Rejection::new("the owner is not a public key as 64 lowercase hex digits"))?;
    let balance = integer(&request.parameters[1], "the balance")?;
    ensure!((0..=OPENING_BALANCE_MAX).contains(&balance), "an opening balance is 0 to {OPENING_BALANCE_MAX}");
    let account = Account { balance, owner: owner.to_string(), seq: 0 };
    ensure!(request.outputs[0] == account.to_value(), "the output is not the new account");
    Ok(())
}

fn check_transfer(request: &CheckerRequest) -> Verdict {
    Shape { inputs: 2, parameters: 2, outputs: 2, ..Shape::default() }.check(request)?;
    let (from, to) = (Account::parse(&request.inputs[0])?, Account::parse(&request.inputs[1])?);
    let amount = integer(&request.parameters[0], "the amount")?;
    ensure!(amount > 0, "the amount {amount} is not positive");
    ensure!(amount <= from.balance, "the amount {amount} is over the balance {}", from.balance);
    let (sender, receiver) = after_transfer(&from, &to, amount).ok_or_else(|| Rejection::new("a balance overflows"))?;
    ensure!(request.outputs[0] == sender, "output 0 is not the sender's account after the transfer");
    ensure!(request.outputs[1] == receiver, "output 1 is not the receiver's account after the transfer");
    let signature = request.parameters[1].as_str().unwrap_or_default();
    let message = transfer_message(amount, &request.inputs[0], &request.inputs[1]);
    ensure!(verify(&from.owner, signature, &message), "the signature is not the sender's over this transfer");
    Ok(())
}

fn verify(owner_hex: &str, signature_hex: &str, message: &str) -> bool {
    let mut key = [0u8; 32];
    let mut signature = [0u8; 64];
    // Lowercase only, as the Python SDK: one signature, one spelling.
    if !is_lower_hex(signature_hex, 128)
        || hex::decode_to_slice(owner_hex, &mut key).is_err()
        || hex::decode_to_slice(signature_hex, &mut signature).is_err()
    {
        return false;
    }
    let Ok(key) = VerifyingKey::from_bytes(&key) else { return false };
    key.verify(message.as_bytes(), &Signature::from_bytes(&signature)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(envelope: &Envelope) -> Verdict {
        contract().check(&CheckerRequest::from_envelope(envelope).unwrap()).unwrap()
    }

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn account(seed: u8, balance: i64) -> Object {
        create_account(&owner_of(&key(seed)), balance).unwrap().transaction.own_outputs().remove(0)
    }

    #[test]
    fn opening_and_transferring_are_accepted() {
        assert_eq!(verdict(&create_account(&owner_of(&key(1)), OPENING_BALANCE_MAX).unwrap()), Ok(()));
        let sent = transfer(&account(1, 100), &account(2, 5), 30, &key(1)).unwrap();
        assert_eq!(verdict(&sent), Ok(()));
        let after: Vec<Account> = sent.transaction.outputs.iter().map(|v| Account::parse(v).unwrap()).collect();
        assert_eq!((after[0].balance, after[0].seq, after[1].balance, after[1].seq), (70, 1, 35, 0));
    }

    #[test]
    fn each_rule_of_transfer_rejects() {
        let (alice, bob) = (account(1, 100), account(2, 5));
        assert!(verdict(&create_account(&owner_of(&key(1)), OPENING_BALANCE_MAX + 1).unwrap()).is_err());
        assert!(verdict(&transfer(&alice, &bob, 0, &key(1)).unwrap()).is_err(), "zero");
        assert!(verdict(&transfer(&alice, &bob, 101, &key(1)).unwrap()).is_err(), "over the balance");
        assert!(verdict(&transfer(&alice, &bob, 10, &key(2)).unwrap()).is_err(), "signed by another key");

        let mut not_conserved = transfer(&alice, &bob, 10, &key(1)).unwrap();
        not_conserved.transaction.outputs[1] = Account { balance: 16, owner: owner_of(&key(2)), seq: 0 }.to_value();
        assert!(verdict(&not_conserved).is_err(), "total not conserved");

        let mut stolen = transfer(&alice, &bob, 10, &key(1)).unwrap();
        stolen.transaction.outputs[1] = Account { balance: 15, owner: owner_of(&key(3)), seq: 0 }.to_value();
        assert!(verdict(&stolen).is_err(), "owner changed");

        let mut as_bool = transfer(&alice, &bob, 1, &key(1)).unwrap();
        as_bool.transaction.parameters[0] = json!(true);
        assert!(verdict(&as_bool).is_err(), "a boolean amount");
    }
}
