//! `TxError`: every way a transaction or an envelope can be refused before it is
//! ordered. Each variant has a stable `kind()` (the `kind` of an HTTP error body)
//! and a `hint()` that says what to do.

use crate::ids::ObjectId;

/// Why a transaction or an envelope was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    #[error("the body is not valid JSON: {message}")]
    MalformedJson { message: String },
    #[error("missing field `{field}` at {path}")]
    MissingField { path: String, field: String },
    #[error("unknown field `{field}` at {path}")]
    UnknownField { path: String, field: String },
    #[error("wrong type at {path}: {message}")]
    WrongType { path: String, message: String },
    #[error("bad id at {path}: {message}")]
    BadId { path: String, message: String },
    #[error(
        "bad {field} {value:?} at {path}: names are 1 to {max} characters of A-Z a-z 0-9 _ . -, the first a letter or digit"
    )]
    BadName { path: String, field: &'static str, value: String, max: usize },
    #[error("a float at {path}: numbers in a transaction must be integers")]
    FloatNumber { path: String },
    #[error("an integer out of range at {path}: integers must lie in [-2^63, 2^64-1]")]
    NumberOutOfRange { path: String },
    #[error("the envelope is {bytes} bytes; the limit is {max}")]
    EnvelopeTooLarge { bytes: usize, max: usize },
    #[error("{path} has {count} inputs; the limit is {max}")]
    TooManyInputs { path: String, count: usize, max: usize },
    #[error("{path} has {count} references; the limit is {max}")]
    TooManyReferences { path: String, count: usize, max: usize },
    #[error("{path} has {count} outputs; the limit is {max}")]
    TooManyOutputs { path: String, count: usize, max: usize },
    #[error("{path} has {count} dependencies; the limit is {max}")]
    TooManyDependencies { path: String, count: usize, max: usize },
    #[error("dependencies nest {depth} deep; the limit is {max}")]
    TooDeep { depth: usize, max: usize },
    #[error("a value at {path} is {bytes} bytes; the limit is {max}")]
    ValueTooLarge { path: String, bytes: usize, max: usize },
    #[error("object {id:?} is an input twice in one transaction")]
    DuplicateInput { id: ObjectId },
    #[error("object {id:?} is both an input and a reference")]
    InputAlsoReference { id: ObjectId },
    #[error("the store has no value for object {id:?}")]
    MissingFromStore { id: ObjectId },
    #[error("the store holds object {id:?}, which the transaction does not name")]
    UnexpectedInStore { id: ObjectId },
}

impl TxError {
    /// The stable name of this error, as in `{"error": {"kind": ...}}`.
    /// Every kind `kind` returns (clients check what they are told against it).
    pub const KINDS: [&'static str; 19] = [
        "malformed_json",
        "missing_field",
        "unknown_field",
        "wrong_type",
        "bad_id",
        "bad_name",
        "float_number",
        "number_out_of_range",
        "envelope_too_large",
        "too_many_inputs",
        "too_many_references",
        "too_many_outputs",
        "too_many_dependencies",
        "dependencies_too_deep",
        "value_too_large",
        "duplicate_input",
        "input_also_reference",
        "missing_from_store",
        "unexpected_in_store",
    ];

    pub fn kind(&self) -> &'static str {
        match self {
            Self::MalformedJson { .. } => "malformed_json",
            Self::MissingField { .. } => "missing_field",
            Self::UnknownField { .. } => "unknown_field",
            Self::WrongType { .. } => "wrong_type",
            Self::BadId { .. } => "bad_id",
            Self::BadName { .. } => "bad_name",
            Self::FloatNumber { .. } => "float_number",
            Self::NumberOutOfRange { .. } => "number_out_of_range",
            Self::EnvelopeTooLarge { .. } => "envelope_too_large",
            Self::TooManyInputs { .. } => "too_many_inputs",
            Self::TooManyReferences { .. } => "too_many_references",
            Self::TooManyOutputs { .. } => "too_many_outputs",
            Self::TooManyDependencies { .. } => "too_many_dependencies",
            Self::TooDeep { .. } => "dependencies_too_deep",
            Self::ValueTooLarge { .. } => "value_too_large",
            Self::DuplicateInput { .. } => "duplicate_input",
            Self::InputAlsoReference { .. } => "input_also_reference",
            Self::MissingFromStore { .. } => "missing_from_store",
            Self::UnexpectedInStore { .. } => "unexpected_in_store",
        }
    }

    /// What the sender should do about it.
    pub fn hint(&self) -> &'static str {
        match self {
            Self::MalformedJson { .. } => "send one JSON object: {\"transaction\": T, \"store\": {id: value}}",
            Self::MissingField { .. } | Self::UnknownField { .. } | Self::WrongType { .. } => {
                "a transaction has exactly contractID, methodID (strings), inputIDs, referenceInputIDs \
                 ([hex id]), parameters ([any]), returns, outputs ([string]) and dependencies ([transaction]); \
                 use [] for an empty list, never null"
            }
            Self::BadId { .. } => "ids are 64 lowercase hex digits, as the SDKs compute them",
            Self::BadName { .. } => "use a short contract or method name without spaces or slashes",
            Self::FloatNumber { .. } | Self::NumberOutOfRange { .. } => {
                "pass non-integer or huge numbers as strings: two languages cannot agree on how to print them"
            }
            Self::EnvelopeTooLarge { .. }
            | Self::TooManyInputs { .. }
            | Self::TooManyReferences { .. }
            | Self::TooManyOutputs { .. }
            | Self::TooManyDependencies { .. }
            | Self::TooDeep { .. }
            | Self::ValueTooLarge { .. } => "split the work into smaller transactions",
            Self::DuplicateInput { .. } | Self::InputAlsoReference { .. } => {
                "name each object once across a transaction and its dependencies"
            }
            Self::MissingFromStore { .. } | Self::UnexpectedInStore { .. } => {
                "the store must hold exactly the values of every input and reference, dependencies' included"
            }
        }
    }
}
