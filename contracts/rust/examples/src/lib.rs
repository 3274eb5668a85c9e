//! The example contracts' Rust checkers, together: what `shardspace-example-checkers` serves.

use shardspace_checker::Contract;

/// Every example contract's checkers.
pub fn contracts() -> Vec<Contract> {
    vec![
        shardspace_contract_hello::contract(),
        shardspace_contract_addition::contract(),
        shardspace_contract_bank::contract(),
        shardspace_contract_petition::contract(),
        shardspace_contract_dump::contract(),
    ]
}
