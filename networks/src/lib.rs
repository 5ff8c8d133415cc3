//! Neural networks mapped onto aimsim tiles: layers, learning algorithms, datasets and training loops.
//!
//! [`mlp`] builds multi-layer perceptrons whose weights live on tiles (or in float matrices for the
//! software baseline) and trains them with every phase on the simulated hardware; [`train`] runs epochs,
//! evaluation and metrics.
#![warn(missing_docs)]

pub use aimsim_devices as devices;
pub use aimsim_sim as sim;

pub mod conv;
pub mod data;
pub mod deploy;
pub mod ep;
pub mod glyphs;
pub mod local;
pub mod mlp;
pub mod train;
