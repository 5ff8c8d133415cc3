//! Experiments and (later) crossbar tiles on top of device populations.
//!
//! Today this crate runs the pulse-response protocol used to characterise a device model. Tiles,
//! peripherals, pulse schemes, controllers and the cycle/energy ledger join it next.
#![warn(missing_docs)]

pub mod protocol;
pub mod rng;
