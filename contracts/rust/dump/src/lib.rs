//! `dump`: accepts every call of every method, for tests and benchmarks.

use shardspace_checker::{ANY_METHOD, CheckerRequest, Contract, Verdict};

pub const NAME: &str = "dump";

pub fn contract() -> Contract {
    Contract::new(NAME).method(ANY_METHOD, |_: &CheckerRequest| -> Verdict { Ok(()) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardspace_checker::TransactionBuilder;

    #[test]
    fn any_method_is_accepted() {
        let envelope = TransactionBuilder::new(NAME, "anything").parameter(1).output("x").build().unwrap();
        let request = CheckerRequest::from_envelope(&envelope).unwrap();
        assert_eq!(contract().check(&request), Some(Ok(())));
    }
}
