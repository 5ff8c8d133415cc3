//! The simulated chip: crossbar tiles of device populations, their periphery, pulsed updates, learning
//! rules' controllers, the cycle/energy ledger, and the device characterisation protocol.
//!
//! A [`tile::Tile`] owns `rows x cols` unit cells, its random stream and pulse counters;
//! [`matrix::AnalogMatrix`] maps a layer of any size onto a grid of tiles and runs the three phases
//! (forward read, backward read, pulsed update) on them in parallel, bit-identically for any thread
//! count; [`ledger::Ledger`] adds up cycles and energy per phase.
#![warn(missing_docs)]

pub mod float;
pub mod io;
mod kernels;
pub mod ledger;
pub mod matrix;
pub mod par;
pub mod protocol;
pub mod rng;
pub mod tile;
pub mod update;
