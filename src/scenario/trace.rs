//! `[trace]`: the devices traced during training and the cadence of the records (docs/traces.md).

use super::ScenarioError;
use super::locate::{Locator, split_key};
use super::sections::{TraceSection, TraceUnitName};
use crate::trace::{DeviceAddress, TraceSpec, TraceUnit};

/// Validates `[trace]`.
pub fn trace_spec(t: TraceSection, loc: &Locator) -> Result<TraceSpec, ScenarioError> {
    let devices: Vec<DeviceAddress> = t
        .devices
        .unwrap_or_default()
        .into_iter()
        .map(|d| DeviceAddress {
            layer: d.layer.unwrap_or(0),
            tile: d.tile.unwrap_or(0),
            row: d.row.unwrap_or(0),
            col: d.col,
            array: d.array,
        })
        .collect();
    let sample = t.sample.unwrap_or(0);
    for (k, n) in [("devices", devices.len()), ("sample", sample as usize)] {
        if n > 100_000 {
            return Err(loc.error(
                &split_key(&format!("trace.{k}")),
                format!("at most 100000 traced devices, got {n}"),
            ));
        }
    }
    Ok(TraceSpec {
        devices,
        sample,
        every: t.every.unwrap_or(1),
        unit: match t.unit {
            None | Some(TraceUnitName::Updates) => TraceUnit::Updates,
            Some(TraceUnitName::Pulses) => TraceUnit::Pulses,
        },
    })
}
