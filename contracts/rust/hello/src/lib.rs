//! `hello`: the greetings of the docs and of the process tests. `greet(name)` creates
//! `"hello, {name}"`; `greet_counted(name)` creates `"hello, {name}: visitor {n}"`, where `n`
//! is counted by its one dependency, a call of the `addition` contract's `increment` that
//! consumes `n - 1` and creates `n` (a cross-contract call).

use shardspace_checker::{
    BuildError, CheckerRequest, Contract, Envelope, Rejection, Shape, TransactionBuilder, Verdict, ensure,
};

pub const NAME: &str = "hello";
/// The longest name `greet` and `greet_counted` take, in characters.
pub const NAME_CHARS_MAX: usize = 100;
/// The call that counts a visitor, named here rather than imported: this crate does not
/// depend on the addition crate, whose client builds the call.
pub const COUNTER_CALL: (&str, &str) = ("addition", "increment");

/// Client side: a call of `greet`.
pub fn greet(name: &str) -> Result<Envelope, BuildError> {
    Ok(TransactionBuilder::new(NAME, "greet").parameter(name).output(format!("hello, {name}")).build()?)
}

/// Client side: a call of `greet_counted`, counting with `increment` (a call of
/// `addition.increment`, built by that contract's client), whose one output is the count.
pub fn greet_counted(name: &str, increment: Envelope) -> Result<Envelope, BuildError> {
    let counted = &increment.transaction;
    let call = (counted.contract_id.as_str(), counted.method_id.as_str());
    let count = match counted.outputs.as_slice() {
        [count] if call == COUNTER_CALL => count.clone(),
        outputs => {
            let ((contract, method), (counter_contract, counter_method)) = (call, COUNTER_CALL);
            let expected = format!("a call of {counter_contract}.{counter_method} creating 1 counter");
            let got = format!("{contract}.{method} creating {}", outputs.len());
            return Err(BuildError::Input(format!("greet_counted counts with {expected}, not {got}")));
        }
    };
    let builder = TransactionBuilder::new(NAME, "greet_counted").parameter(name);
    Ok(builder.output(greeting(name, &count)).dependency(increment).build()?)
}

/// The output of `greet_counted`: `count` is the new counter's value, as text.
pub fn greeting(name: &str, count: &str) -> String {
    format!("hello, {name}: visitor {count}")
}

/// Server side: the checkers.
pub fn contract() -> Contract {
    Contract::new(NAME).method("greet", check_greet).method("greet_counted", check_greet_counted)
}

fn check_greet(request: &CheckerRequest) -> Verdict {
    Shape { parameters: 1, outputs: 1, ..Shape::default() }.check(request)?;
    let name = checked_name(request)?;
    ensure!(request.outputs[0] == format!("hello, {name}"), "the output is not \"hello, {name}\"");
    Ok(())
}

fn check_greet_counted(request: &CheckerRequest) -> Verdict {
    Shape { parameters: 1, outputs: 1, ..Shape::default() }.check(request)?;
    let name = checked_name(request)?;
    let count = checked_count(&request.dependencies)?;
    // The count is read, not recomputed: that it is the consumed counter plus one is for the
    // dependency's own checker (addition.increment), which the node asks first; its rejection
    // fails this whole transaction.
    let expected = greeting(name, &count.to_string());
    ensure!(request.outputs[0] == expected, "the output is not {expected:?}");
    Ok(())
}

/// The name parameter: a string of 1 to `NAME_CHARS_MAX` characters.
fn checked_name(request: &CheckerRequest) -> Result<&str, Rejection> {
    let Some(name) = request.parameters[0].as_str() else {
        return Err(Rejection::new("the name is not a string"));
    };
    let length = name.chars().count();
    ensure!((1..=NAME_CHARS_MAX).contains(&length), "the name has {length} characters, not 1 to {NAME_CHARS_MAX}");
    Ok(name)
}

/// The count: the one output of the one dependency, a call of `addition.increment`.
fn checked_count(dependencies: &[CheckerRequest]) -> Result<i64, Rejection> {
    let [counter] = dependencies else {
        return Err(Rejection::new(format!("expected 1 dependencies, got {}", dependencies.len())));
    };
    let (contract, method) = (counter.contract_id.as_str(), counter.method_id.as_str());
    let (counter_contract, counter_method) = COUNTER_CALL;
    ensure!(
        (contract, method) == COUNTER_CALL,
        "the dependency is {contract}.{method}, not a call of {counter_contract}.{counter_method}"
    );
    let [count] = counter.outputs.as_slice() else {
        return Err(Rejection::new(format!("the dependency creates {} counters, not 1", counter.outputs.len())));
    };
    parse_integer(count)
}

/// Decimal text of a signed 64-bit integer, one spelling per number (`^(0|-?[1-9][0-9]*)$`):
/// the addition contract's rule for its counters, repeated here (a contract does not link another).
fn parse_integer(text: &str) -> Result<i64, Rejection> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let canonical =
        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) && (text == "0" || !digits.starts_with('0'));
    let number = text.parse::<i64>().ok().filter(|_| canonical);
    number
        .ok_or_else(|| Rejection::new(format!("the dependency's output (the count) {text:?} is not a decimal integer")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardspace_checker::{CheckerRequest, Object};

    fn verdict(envelope: &Envelope) -> Verdict {
        contract().check(&CheckerRequest::from_envelope(envelope).unwrap()).unwrap()
    }

    /// A call of `addition.increment` from `before` to `after`, as addition's client builds it
    /// (this crate does not depend on addition's; its own tests check that client).
    fn increment(before: &str, after: &str) -> Envelope {
        let counter = Object { id: "0a".repeat(32).parse().unwrap(), value: before.into() };
        let (contract, method) = COUNTER_CALL;
        TransactionBuilder::new(contract, method).input(&counter).output(after).build().unwrap()
    }

    /// The checker request of a counted greeting of "ada", then changed by `change`.
    fn counted(change: impl FnOnce(&mut CheckerRequest)) -> Verdict {
        let envelope = greet_counted("ada", increment("0", "1")).unwrap();
        let mut request = CheckerRequest::from_envelope(&envelope).unwrap();
        change(&mut request);
        contract().check(&request).unwrap()
    }

    fn rejected_for(verdict: Verdict, reason: &str) {
        match verdict {
            Err(rejection) => assert!(rejection.reason.contains(reason), "{rejection:?} does not say {reason:?}"),
            Ok(()) => panic!("accepted; expected a rejection saying {reason:?}"),
        }
    }

    #[test]
    fn greet_is_accepted() {
        assert_eq!(verdict(&greet("world").unwrap()), Ok(()));
    }

    #[test]
    fn a_wrong_greeting_or_empty_name_is_rejected() {
        let mut wrong = greet("world").unwrap();
        wrong.transaction.outputs[0] = "hi, world".into();
        assert!(verdict(&wrong).is_err());
        assert!(verdict(&greet("").unwrap()).is_err());
        assert!(verdict(&greet(&"x".repeat(NAME_CHARS_MAX + 1)).unwrap()).is_err());
    }

    #[test]
    fn greet_counted_greets_the_visitor_the_increment_counts_and_is_accepted() {
        let counting = increment("41", "42");
        let envelope = greet_counted("Ada", counting.clone()).unwrap();
        assert_eq!(envelope.transaction.outputs, vec!["hello, Ada: visitor 42".to_string()]);
        assert_eq!(envelope.transaction.dependencies, vec![counting.transaction]);
        assert_eq!(envelope.store, counting.store);
        assert_eq!(verdict(&envelope), Ok(()));
        assert_eq!(counted(|_| {}), Ok(()));
    }

    #[test]
    fn greet_counted_leaves_the_arithmetic_to_the_increments_own_checker() {
        // The node runs addition.increment's checker first, and it rejects this; hello reads the count only.
        let envelope = greet_counted("ada", increment("0", "3")).unwrap();
        assert_eq!(envelope.transaction.outputs[0], "hello, ada: visitor 3");
        assert_eq!(verdict(&envelope), Ok(()));
    }

    #[test]
    fn the_greet_counted_client_takes_an_addition_increment_only() {
        let other = TransactionBuilder::new("addition", "init").output("0").build().unwrap();
        assert!(matches!(greet_counted("ada", other), Err(BuildError::Input(_))));
        assert!(matches!(greet_counted("ada", greet("x").unwrap()), Err(BuildError::Input(_))));
        let mut two = increment("0", "1");
        two.transaction.outputs.push("2".into());
        assert!(matches!(greet_counted("ada", two), Err(BuildError::Input(_))));
    }

    #[test]
    fn greet_counted_without_one_increment_is_rejected() {
        rejected_for(counted(|request| request.dependencies.clear()), "expected 1 dependencies, got 0");
        let twice = |request: &mut CheckerRequest| request.dependencies.push(request.dependencies[0].clone());
        rejected_for(counted(twice), "expected 1 dependencies, got 2");
        let dump = |request: &mut CheckerRequest| request.dependencies[0].contract_id = "dump".into();
        rejected_for(counted(dump), "dump.increment, not a call of addition.increment");
        let init = |request: &mut CheckerRequest| request.dependencies[0].method_id = "init".into();
        rejected_for(counted(init), "addition.init, not a call of addition.increment");
        rejected_for(counted(|request| request.dependencies[0].outputs.clear()), "creates 0 counters, not 1");
        let two = |request: &mut CheckerRequest| request.dependencies[0].outputs.push("1".into());
        rejected_for(counted(two), "creates 2 counters, not 1");
    }

    #[test]
    fn greet_counted_with_a_count_that_is_no_counter_is_rejected() {
        for count in ["one", "01", "-0", "+1", "1.0", "", "9223372036854775808"] {
            let change = |request: &mut CheckerRequest| {
                request.dependencies[0].outputs[0] = count.into();
                request.outputs[0] = greeting("ada", count);
            };
            rejected_for(counted(change), "is not a decimal integer");
        }
    }

    #[test]
    fn greet_counted_with_a_wrong_greeting_or_name_is_rejected() {
        for wrong in ["hello, ada: visitor 7", "hello, ada", "hello, bob: visitor 1"] {
            rejected_for(counted(|request| request.outputs[0] = wrong.into()), "the output is not");
        }
        let rename = |name: &str| {
            let name = name.to_string();
            move |request: &mut CheckerRequest| {
                request.outputs[0] = greeting(&name, "1");
                request.parameters[0] = name.into();
            }
        };
        rejected_for(counted(rename("")), "not 1 to 100");
        rejected_for(counted(rename(&"x".repeat(NAME_CHARS_MAX + 1))), "not 1 to 100");
        rejected_for(counted(|request| request.parameters[0] = 7.into()), "the name is not a string");
        rejected_for(counted(|request| request.inputs.push("0".into())), "expected 0 inputs");
        rejected_for(counted(|request| request.reference_inputs.push("0".into())), "expected 0 references");
        rejected_for(counted(|request| request.outputs.clear()), "expected 1 outputs");
        rejected_for(counted(|request| request.returns.push("1".into())), "expected 0 returns");
    }
}
