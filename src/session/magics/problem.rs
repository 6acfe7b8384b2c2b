//! Shared arguments of the circuit magics (now in [`crate::args`]).

pub use crate::args::ProblemArgs;
pub use crate::circuit::metric_name;
