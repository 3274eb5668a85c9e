"""Every bound the SDK enforces, named once (DESIGN.md §9; `core/src/limits.rs` is the Rust twin).

`validate` checks envelopes against the transaction limits, `jsonvalue` and
`encoding` use the number bounds and the JSON nesting limit, `checker` the
body size. Change a value here and in `core/src/limits.rs` together.
"""

# Integers that may appear anywhere in a transaction: [INT64_MIN, UINT64_MAX], the union of i64 and
# u64, which both SDKs print alike. Contracts that keep signed 64-bit counters use [INT64_MIN, INT64_MAX].
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
UINT64_MAX = 2**64 - 1

# The JSON text of a whole envelope, as `json.dumps(envelope, separators=(",", ":"), ensure_ascii=False)`
# encodes it in UTF-8 (what serde_json::to_vec writes).
ENVELOPE_BYTES_MAX = 1024 * 1024
# Inputs of one transaction (each dependency counted on its own).
INPUTS_MAX = 64
# References of one transaction.
REFERENCES_MAX = 64
# Outputs of one transaction.
OUTPUTS_MAX = 128
# Direct dependencies of one transaction.
DEPENDENCIES_MAX = 16
# How deep dependencies nest: 0 for a transaction without any, else 1 + the deepest dependency's.
DEPENDENCY_DEPTH_MAX = 4
# One object value (an output, or a value in the store), in UTF-8 bytes.
VALUE_BYTES_MAX = 64 * 1024
# Contract and method names: they become a checker's URL path.
NAME_CHARS_MAX = 64

# Arrays and objects nested in one JSON text, the outermost counted as 1: serde_json's recursion
# limit (it reads 127 levels and refuses 128), so both SDKs refuse the same bodies.
JSON_NESTING_MAX = 127

# A checker request body.
CHECKER_BODY_BYTES_MAX = 2 * 1024 * 1024
# The most checker requests one POST /batch may carry (the Rust SDK's CHECKER_BATCH_MAX).
CHECKER_BATCH_MAX = 256
