//! Neural networks mapped onto aimsim tiles: layers, learning algorithms, datasets and training loops.
//!
//! The crate is a placeholder in the workspace's dependency chain (devices -> sim -> networks -> aimsim)
//! until the tile engine lands; it re-exports the layers below it so the chain is exercised.
#![warn(missing_docs)]

pub use aimsim_devices as devices;
pub use aimsim_sim as sim;
