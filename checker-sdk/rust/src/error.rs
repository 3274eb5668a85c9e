//! `CheckerError`: every error answer of the checker protocol (`docs/checkers.md` §2).

/// An error answer of a checker server: its HTTP status, kind and hint.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CheckerError {
    #[error("the body is not a JSON object: {message}")]
    MalformedJson { message: String },
    #[error("missing field `{path}`")]
    MissingField { path: String },
    #[error("field `{path}` should be {expected}")]
    WrongType { path: String, expected: &'static str },
    #[error("a float at {path}: numbers in a checker request are integers")]
    FloatNumber { path: String },
    #[error("an integer out of range at {path}: integers lie in [-2^63, 2^64-1]")]
    NumberOutOfRange { path: String },
    #[error("the body names {body:?} but the path names {path:?}")]
    PathMismatch { body: String, path: String },
    #[error("no contract {contract:?} here")]
    UnknownContract { contract: String },
    #[error("contract {contract:?} has no method {method:?}")]
    UnknownMethod { contract: String, method: String },
    #[error("no such path: {path}")]
    NotFound { path: String },
    #[error("{method} is not allowed on {path}")]
    MethodNotAllowed { method: String, path: String },
    #[error("the body is over {max} bytes")]
    BodyTooLarge { max: usize },
    #[error("the batch holds {count} requests; at most {max} are taken")]
    BatchTooLarge { count: usize, max: usize },
    #[error("the checker of {contract}.{method} failed: {message}")]
    CheckerFailed { contract: String, method: String, message: String },
    #[error("two contracts are named {contract:?}")]
    DuplicateContract { contract: String },
    #[error("contract {contract:?} cannot be served: {}", problems.join("; "))]
    BadContract { contract: String, problems: Vec<String> },
}

impl CheckerError {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::MalformedJson { .. } => "malformed_json",
            Self::MissingField { .. } => "missing_field",
            Self::WrongType { .. } => "wrong_type",
            Self::FloatNumber { .. } => "float_number",
            Self::NumberOutOfRange { .. } => "number_out_of_range",
            Self::PathMismatch { .. } => "path_mismatch",
            Self::UnknownContract { .. } => "unknown_contract",
            Self::UnknownMethod { .. } => "unknown_method",
            Self::NotFound { .. } => "not_found",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::BodyTooLarge { .. } => "body_too_large",
            Self::BatchTooLarge { .. } => "batch_too_large",
            Self::CheckerFailed { .. } => "checker_failed",
            Self::DuplicateContract { .. } => "duplicate_contract",
            Self::BadContract { .. } => "bad_contract",
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            Self::MalformedJson { .. }
            | Self::MissingField { .. }
            | Self::WrongType { .. }
            | Self::FloatNumber { .. }
            | Self::NumberOutOfRange { .. }
            | Self::PathMismatch { .. } => 400,
            Self::UnknownContract { .. } | Self::UnknownMethod { .. } | Self::NotFound { .. } => 404,
            Self::MethodNotAllowed { .. } => 405,
            Self::BodyTooLarge { .. } | Self::BatchTooLarge { .. } => 413,
            Self::CheckerFailed { .. } | Self::DuplicateContract { .. } | Self::BadContract { .. } => 500,
        }
    }

    pub fn hint(&self) -> &'static str {
        match self {
            Self::MalformedJson { .. } | Self::MissingField { .. } | Self::WrongType { .. } => {
                "send a checker request: {contractID, methodID, inputs, referenceInputs, parameters, returns, \
                 outputs, dependencies} (see docs/checkers.md)"
            }
            Self::FloatNumber { .. } | Self::NumberOutOfRange { .. } => {
                "the ledger refuses such numbers: send them as strings"
            }
            Self::PathMismatch { .. } => "POST to /{contractID}/{methodID} of the request itself",
            Self::UnknownContract { .. } | Self::UnknownMethod { .. } => {
                "GET / lists what this checker serves; check the cluster file's checker URL for this contract"
            }
            Self::NotFound { .. } | Self::MethodNotAllowed { .. } => {
                "POST /{contractID}/{methodID} or POST /batch, or GET /"
            }
            Self::BodyTooLarge { .. } => "split the transaction: its request is over the checker's limit",
            Self::BatchTooLarge { .. } => "send fewer requests per batch",
            Self::CheckerFailed { .. } => "a bug in the contract's checker: see the checker's log",
            Self::DuplicateContract { .. } => "serve each contract once per process",
            Self::BadContract { .. } => {
                "names are 1 to 64 characters of A-Z a-z 0-9 _ . -, the first a letter or digit; register each method once"
            }
        }
    }
}
