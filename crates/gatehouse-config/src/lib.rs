//! Gatehouse configuration: the YAML files users write (`raw`), the validated model the
//! proxy runs on (`model`), and the loader that turns one into the other (`load`).
//!
//! Owns every rule about what a configuration may say and every error message about it.
//! Must not bind sockets, start tasks or touch the network: `gatehouse check` runs this
//! crate alone.

mod error;
pub mod file;
mod load;
pub mod model;
mod raw;
mod suggest;
pub mod units;
mod yamlpath;

pub use error::{Error, Errors};
pub use load::{EnvOverrides, load, load_from_str_for_tests};
pub use model::*;
