//! `addition`: `init` creates `"0"`; `increment` consumes an integer and creates it plus one.

use shardspace_checker::{
    BuildError, CheckerRequest, Contract, Envelope, Object, Rejection, Shape, TransactionBuilder, Verdict, ensure,
};

pub const NAME: &str = "addition";

/// Client side: a call of `init`.
pub fn init() -> Result<Envelope, BuildError> {
    Ok(TransactionBuilder::new(NAME, "init").output("0").build()?)
}

/// Client side: a call of `increment` on `counter`.
pub fn increment(counter: &Object) -> Result<Envelope, BuildError> {
    let next =
        parse_integer(&counter.value)?.checked_add(1).ok_or_else(|| Rejection::new("the counter would overflow"))?;
    Ok(TransactionBuilder::new(NAME, "increment").input(counter).output(next.to_string()).build()?)
}

/// Server side: the checkers.
pub fn contract() -> Contract {
    Contract::new(NAME).method("init", check_init).method("increment", check_increment)
}

fn check_init(request: &CheckerRequest) -> Verdict {
    Shape { outputs: 1, ..Shape::default() }.check(request)?;
    ensure!(request.outputs[0] == "0", "init creates \"0\"");
    Ok(())
}

fn check_increment(request: &CheckerRequest) -> Verdict {
    Shape { inputs: 1, outputs: 1, ..Shape::default() }.check(request)?;
    let counter = parse_integer(&request.inputs[0])?;
    let next = counter.checked_add(1).ok_or_else(|| Rejection::new("the counter would overflow"))?;
    ensure!(request.outputs[0] == next.to_string(), "the output is not {next}");
    Ok(())
}

/// Decimal text of a signed 64-bit integer, one spelling per number (`^(0|-?[1-9][0-9]*)$`).
fn parse_integer(text: &str) -> Result<i64, Rejection> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let canonical =
        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) && (text == "0" || !digits.starts_with('0'));
    let number = text.parse::<i64>().ok().filter(|_| canonical);
    number.ok_or_else(|| Rejection::new(format!("{text:?} is not a canonical 64-bit integer")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(envelope: &Envelope) -> Verdict {
        contract().check(&CheckerRequest::from_envelope(envelope).unwrap()).unwrap()
    }

    fn counter(value: &str) -> Object {
        Object { id: "0a".repeat(32).parse().unwrap(), value: value.into() }
    }

    #[test]
    fn init_and_increment_are_accepted() {
        assert_eq!(verdict(&init().unwrap()), Ok(()));
        let created = init().unwrap().transaction.own_outputs().remove(0);
        assert_eq!(verdict(&increment(&created).unwrap()), Ok(()));
        assert_eq!(verdict(&increment(&counter("-5")).unwrap()), Ok(()));
    }

    #[test]
    fn the_client_refuses_a_counter_it_cannot_increment() {
        assert!(matches!(increment(&counter("x")), Err(BuildError::Input(_))));
        assert!(matches!(increment(&counter(&i64::MAX.to_string())), Err(BuildError::Input(_))));
    }

    #[test]
    fn a_wrong_sum_a_non_integer_or_an_overflow_is_rejected() {
        let mut wrong = increment(&counter("41")).unwrap();
        wrong.transaction.outputs[0] = "43".into();
        assert!(verdict(&wrong).is_err());
        for bad in ["x", "01", "-0", "+1", "", "1.0", &i64::MAX.to_string()] {
            let mut envelope = increment(&counter("1")).unwrap();
            envelope.store.values_mut().for_each(|value| *value = bad.to_string());
            assert!(verdict(&envelope).is_err(), "{bad:?} accepted");
        }
    }
}
