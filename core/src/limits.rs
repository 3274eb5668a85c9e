//! Limits on what a client may send (DESIGN.md §9). Every one is named here,
//! checked by `validate`, and hit by a test.

/// Bounds on one envelope. `Limits::default()` is what a cluster uses unless its
/// configuration says otherwise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The JSON text of a whole envelope.
    pub envelope_bytes_max: usize,
    /// Inputs of one transaction (each dependency counted on its own).
    pub inputs_max: usize,
    /// References of one transaction.
    pub references_max: usize,
    /// Outputs of one transaction.
    pub outputs_max: usize,
    /// Direct dependencies of one transaction.
    pub dependencies_max: usize,
    /// How deep dependencies nest: 0 for a transaction without any.
    pub dependency_depth_max: usize,
    /// One object value (an output, or a value in the store).
    pub value_bytes_max: usize,
}

pub const ENVELOPE_BYTES_MAX: usize = 1024 * 1024;
pub const INPUTS_MAX: usize = 64;
pub const REFERENCES_MAX: usize = 64;
pub const OUTPUTS_MAX: usize = 128;
pub const DEPENDENCIES_MAX: usize = 16;
pub const DEPENDENCY_DEPTH_MAX: usize = 4;
pub const VALUE_BYTES_MAX: usize = 64 * 1024;

/// Contract and method names: these become a checker's URL path.
pub const NAME_CHARS_MAX: usize = 64;

impl Default for Limits {
    fn default() -> Self {
        Self {
            envelope_bytes_max: ENVELOPE_BYTES_MAX,
            inputs_max: INPUTS_MAX,
            references_max: REFERENCES_MAX,
            outputs_max: OUTPUTS_MAX,
            dependencies_max: DEPENDENCIES_MAX,
            dependency_depth_max: DEPENDENCY_DEPTH_MAX,
            value_bytes_max: VALUE_BYTES_MAX,
        }
    }
}
