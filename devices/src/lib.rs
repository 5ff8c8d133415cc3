//! Device physics of aimsim: populations of synaptic devices whose conductance responds to pulses.
//!
//! A [`Population`] holds many devices of one [`Model`] as flat per-device arrays. Its parameters come
//! from a validated [`DeviceSpec`]; device-to-device variation is drawn once per device at construction,
//! cycle-to-cycle noise on every write. The models and their equations are documented in
//! `docs/devices.md`.
//!
//! This crate does no I/O, has no serde types and spawns no threads: the caller owns the random streams.
#![warn(missing_docs)]

pub mod aging;
pub mod curves;
pub mod lanes;
pub mod normal;
pub mod population;
pub mod spec;
pub mod step;

pub use aging::{
    Aging, AgingDraw, AgingError, Drift, Failures, Programming, ReadNoise1f, Relaxation, Retention,
};
pub use population::{Population, StateError};
pub use spec::{
    DeviceSpec, Dist, Model, NeuroSimParams, Param, SpecError, Spread, StepKind, StepParams,
    TableCurve, Variation,
};
pub use step::{ConstantStepView, StepColumns};
