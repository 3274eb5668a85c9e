//! A contract: a name and a checker per method, called with a checker request.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use shardspace_core::CheckerRequest;

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
}

impl fmt::Debug for Contract {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Contract").field("name", &self.name).field("methods", &self.method_names()).finish()
    }
}

impl Contract {
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into(), methods: BTreeMap::new() }
    }

    /// Registers the checker of `method`; `"*"` checks every method without one of its own.
    pub fn method(mut self, method: impl Into<String>, checker: impl Checker) -> Self {
        self.methods.insert(method.into(), Arc::new(checker));
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn method_names(&self) -> Vec<&str> {
        self.methods.keys().map(String::as_str).collect()
    }

    /// The checker of `method`, if this contract has one.
    pub fn checker(&self, method: &str) -> Option<&dyn Checker> {
        self.methods.get(method).or_else(|| self.methods.get(ANY_METHOD)).map(|checker| checker.as_ref())
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
pub fn parse_canonical(value: &str, what: &str) -> Result<serde_json::Value, Rejection> {
    let not_canonical = || Rejection::new(format!("{what} is not canonical JSON"));
    let parsed: serde_json::Value = serde_json::from_str(value).map_err(|_| not_canonical())?;
    if shardspace_core::canonical::to_string(&parsed) != value {
        return Err(not_canonical());
    }
    Ok(parsed)
}

/// Whether `text` is exactly `digits` lowercase hex digits (keys, signatures).
pub fn is_lower_hex(text: &str, digits: usize) -> bool {
    text.len() == digits && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}
