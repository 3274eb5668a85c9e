//! A contract: a name and a checker per method, called with a checker request;
//! and the small checks every contract needs (`Shape`, `parse_canonical`, `integer`, ...).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde_json::Value;
use shardspace_core::{CheckerRequest, canonical};

/// Why a checker said no. The reason is informative: verdicts compare on accept/reject only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub reason: String,
}

impl Rejection {
    pub fn new(reason: impl Into<String>) -> Self {
        Self { reason: reason.into() }
    }
}

/// A checker's answer: `Ok(())` accepts.
pub type Verdict = Result<(), Rejection>;

/// Checks one method's calls. Implemented for every `Fn(&CheckerRequest) -> Verdict`.
pub trait Checker: Send + Sync + 'static {
    fn check(&self, request: &CheckerRequest) -> Verdict;
}

impl<F: Fn(&CheckerRequest) -> Verdict + Send + Sync + 'static> Checker for F {
    fn check(&self, request: &CheckerRequest) -> Verdict {
        self(request)
    }
}

/// Method name that matches every method without a checker of its own.
pub const ANY_METHOD: &str = "*";

/// A contract's checkers, by method.
#[derive(Clone)]
pub struct Contract {
    name: String,
    methods: BTreeMap<String, Arc<dyn Checker>>,
    /// Methods registered twice: `CheckerServer::bind` refuses such a contract.
    duplicates: Vec<String>,
}

impl fmt::Debug for Contract {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Contract").field("name", &self.name).field("methods", &self.method_names()).finish()
    }
}

impl Contract {
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into(), methods: BTreeMap::new(), duplicates: Vec::new() }
    }

    /// Registers the checker of `method`; `"*"` checks every method without one of its own.
    pub fn method(mut self, method: impl Into<String>, checker: impl Checker) -> Self {
        match self.methods.entry(method.into()) {
            std::collections::btree_map::Entry::Occupied(entry) => self.duplicates.push(entry.key().clone()),
            std::collections::btree_map::Entry::Vacant(entry) => {
                entry.insert(Arc::new(checker));
            }
        }
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn method_names(&self) -> Vec<&str> {
        self.methods.keys().map(String::as_str).collect()
    }

    /// Names that are not names (see `shardspace_core::is_name`), and methods registered twice.
    pub fn problems(&self) -> Vec<String> {
        let mut problems: Vec<String> =
            self.duplicates.iter().map(|m| format!("method {m:?} is registered twice")).collect();
        if !shardspace_core::is_name(&self.name) {
            problems.push(format!("{:?} is not a contract name", self.name));
        }
        let bad_methods = self.methods.keys().filter(|m| *m != ANY_METHOD && !shardspace_core::is_name(m));
        problems.extend(bad_methods.map(|m| format!("{m:?} is not a method name")));
        problems
    }

    /// The checker of `method`, if this contract has one.
    pub fn checker(&self, method: &str) -> Option<&Arc<dyn Checker>> {
        self.methods.get(method).or_else(|| self.methods.get(ANY_METHOD))
    }

    /// Checks `request` with the checker of its method (`None`: no such method).
    pub fn check(&self, request: &CheckerRequest) -> Option<Verdict> {
        self.checker(&request.method_id).map(|checker| checker.check(request))
    }
}

/// How many of each part a method's calls have; anything else is rejected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Shape {
    pub inputs: usize,
    pub references: usize,
    pub parameters: usize,
    pub outputs: usize,
    pub returns: usize,
}

impl Shape {
    pub fn check(&self, request: &CheckerRequest) -> Verdict {
        let counts = [
            ("inputs", request.inputs.len(), self.inputs),
            ("references", request.reference_inputs.len(), self.references),
            ("parameters", request.parameters.len(), self.parameters),
            ("outputs", request.outputs.len(), self.outputs),
            ("returns", request.returns.len(), self.returns),
        ];
        for (part, count, expected) in counts {
            if count != expected {
                return Err(Rejection::new(format!("expected {expected} {part}, got {count}")));
            }
        }
        Ok(())
    }
}

/// Parses a stored value that must be canonical JSON (`what` names it in the
/// rejection). Requiring the canonical spelling rules out duplicate keys,
/// whitespace and floats at once, as the Python SDK's `load_canonical` does.
pub fn parse_canonical(value: &str, what: &str) -> Result<Value, Rejection> {
    let not_canonical = || Rejection::new(format!("{what} is not canonical JSON"));
    let parsed: Value = serde_json::from_str(value).map_err(|_| not_canonical())?;
    canonical::check_numbers(&parsed, what).map_err(|_| not_canonical())?;
    if canonical::to_string(&parsed) != value {
        return Err(not_canonical());
    }
    Ok(parsed)
}

/// `value` as a signed 64-bit integer (a boolean is not one, nor is 2^63).
pub fn integer(value: &Value, what: &str) -> Result<i64, Rejection> {
    value.as_i64().ok_or_else(|| Rejection::new(format!("{what} is not an integer from -2^63 to 2^63-1")))
}

/// Rejects unless `value` is an object with exactly `keys` (given in sorted order).
pub fn require_keys(value: &Value, keys: &[&str], what: &str) -> Verdict {
    let exact = value.as_object().is_some_and(|map| map.keys().map(String::as_str).eq(keys.iter().copied()));
    if exact { Ok(()) } else { Err(Rejection::new(format!("{what} is not an object of exactly {keys:?}"))) }
}

/// Whether `text` is exactly `digits` lowercase hex digits (keys, signatures).
pub fn is_lower_hex(text: &str, digits: usize) -> bool {
    text.len() == digits && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Why a contract's client could not build a call.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// An input object is not what the method takes (its value is `what`'s problem).
    #[error("cannot build the call: {0}")]
    Input(String),
    /// The built transaction breaks a rule of the ledger.
    #[error(transparent)]
    Transaction(#[from] shardspace_core::TxError),
}

impl From<Rejection> for BuildError {
    fn from(rejection: Rejection) -> Self {
        Self::Input(rejection.reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parse_canonical_refuses_other_spellings_and_floats() {
        assert_eq!(parse_canonical(r#"{"a":1,"b":"\u00e9"}"#, "v").unwrap(), json!({"a": 1, "b": "é"}));
        for other in [r#"{"b":1,"a":2}"#, r#"{"a": 1}"#, r#"{"a":1.5}"#, r#"{"a":-0}"#, r#"{"a":1,"a":1}"#, "x"] {
            assert!(parse_canonical(other, "v").is_err(), "{other} accepted");
        }
    }

    #[test]
    fn integer_and_keys_helpers_reject_what_they_should() {
        assert_eq!(integer(&json!(5), "n"), Ok(5));
        for bad in [json!(true), json!("5"), json!(u64::MAX), json!(1.0)] {
            assert!(integer(&bad, "n").is_err(), "{bad}");
        }
        assert!(require_keys(&json!({"a": 1, "b": 2}), &["a", "b"], "v").is_ok());
        assert!(require_keys(&json!({"a": 1}), &["a", "b"], "v").is_err());
        assert!(require_keys(&json!([1]), &["a"], "v").is_err());
    }

    #[test]
    fn bad_names_and_duplicate_methods_are_problems() {
        let accept = |_: &CheckerRequest| -> Verdict { Ok(()) };
        assert!(Contract::new("ok").method("m", accept).method(ANY_METHOD, accept).problems().is_empty());
        assert_eq!(Contract::new("ok").method("m", accept).method("m", accept).problems().len(), 1);
        assert_eq!(Contract::new("..").method("a/b", accept).problems().len(), 2);
    }
}
