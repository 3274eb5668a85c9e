//! `hello`: the one-method contract of the docs. `greet(name)` creates `"hello, {name}"`.

use shardspace_checker::{BuildError, CheckerRequest, Contract, Envelope, Shape, TransactionBuilder, Verdict, ensure};

pub const NAME: &str = "hello";
/// The longest name `greet` takes, in characters.
pub const NAME_CHARS_MAX: usize = 100;

/// Client side: a call of `greet`.
pub fn greet(name: &str) -> Result<Envelope, BuildError> {
    Ok(TransactionBuilder::new(NAME, "greet").parameter(name).output(format!("hello, {name}")).build()?)
}

/// Server side: the checkers.
pub fn contract() -> Contract {
    Contract::new(NAME).method("greet", check_greet)
}

fn check_greet(request: &CheckerRequest) -> Verdict {
    Shape { parameters: 1, outputs: 1, ..Shape::default() }.check(request)?;
    let Some(name) = request.parameters[0].as_str() else {
        return Err(shardspace_checker::Rejection::new("the name is not a string"));
    };
    let length = name.chars().count();
    ensure!((1..=NAME_CHARS_MAX).contains(&length), "the name has {length} characters, not 1 to {NAME_CHARS_MAX}");
    ensure!(request.outputs[0] == format!("hello, {name}"), "the output is not \"hello, {name}\"");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardspace_checker::CheckerRequest;

    fn verdict(envelope: &Envelope) -> Verdict {
        contract().check(&CheckerRequest::from_envelope(envelope).unwrap()).unwrap()
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
}
