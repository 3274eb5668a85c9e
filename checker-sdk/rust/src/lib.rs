//! The Rust checker SDK. A contract registers one checker per method (a closure
//! or a type implementing [`Checker`]); [`CheckerServer`] serves any number of
//! contracts over the checker protocol of `docs/checkers.md`, with the same
//! answers as the Python SDK; [`TransactionBuilder`] builds envelopes on the
//! client side, output ids included.

mod bounded;
mod builder;
mod contract;
mod error;
mod request;
mod server;

pub use bounded::{BoundedListener, BoundedStream};
pub use builder::TransactionBuilder;
pub use contract::{
    ANY_METHOD, BuildError, Checker, Contract, Rejection, Shape, Verdict, integer, is_lower_hex, parse_canonical,
    require_keys,
};
pub use error::CheckerError;
pub use request::{parse_request, request_from_value};
pub use server::{CHECKER_BATCH_MAX, CHECKER_BODY_BYTES_MAX, CheckerLimits, CheckerServer, router, serve_main};
pub use shardspace_core::{CheckerRequest, Envelope, Object, ObjectId, TxError, canonical};

/// Rejects with `reason` (formatted) unless `condition` holds.
///
/// ```
/// # use shardspace_checker::{ensure, Verdict};
/// fn positive(amount: i64) -> Verdict {
///     ensure!(amount > 0, "amount {amount} is not positive");
///     Ok(())
/// }
/// assert!(positive(0).is_err());
/// ```
#[macro_export]
macro_rules! ensure {
    ($condition:expr, $($reason:tt)+) => {
        if !$condition {
            return Err($crate::Rejection::new(format!($($reason)+)));
        }
    };
}
