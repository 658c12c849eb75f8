//! Errors of the model crate.

/// Everything the model crate can refuse, with a message that names what was wrong.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ModelError {
    /// A preset name that does not exist.
    #[error("unknown preset '{found}'; expected one of: {expected}")]
    UnknownPreset {
        /// What the user asked for.
        found: String,
        /// The known names, comma separated.
        expected: String,
    },
    /// A configuration whose numbers do not fit together.
    #[error("invalid {model} config: {message}")]
    InvalidConfig {
        /// Which model: "autoencoder" or "motion DiT".
        model: &'static str,
        /// What does not fit.
        message: String,
    },
    /// A tensor whose shape is not what the model was built for.
    #[error("{what}: expected shape {expected:?}, found {found:?}")]
    Shape {
        /// Which input.
        what: &'static str,
        /// The shape the model needs.
        expected: Vec<usize>,
        /// The shape it got.
        found: Vec<usize>,
    },
}
