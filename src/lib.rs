//! The `aimsim` package: scenario files, command-line front end, result files and plots.
//!
//! This layer parses, validates and orchestrates; the physics lives in `aimsim-devices` and
//! `aimsim-sim`. See docs/ARCHITECTURE.md for the map of the workspace.
#![warn(missing_docs)]

pub mod bench;
pub mod checkpoint;
pub mod commands;
pub mod data;
pub mod ep;
pub mod infer;
pub mod local;
pub mod metrics;
pub mod mvm;
pub mod output;
pub mod plot;
pub mod plotdir;
pub mod presets;
pub mod run;
pub mod scenario;
pub mod sweep;
pub mod trace;
pub mod variants;
pub mod weights;

pub use aimsim_devices as devices;
pub use aimsim_networks as networks;
pub use aimsim_sim as sim;
