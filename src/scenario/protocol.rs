//! `[protocol]`: the pulse-response protocol of `aimsim device`.

use aimsim_devices::DeviceSpec;

use super::ScenarioError;
use super::locate::{Locator, split_key};
use super::sections::ProtocolSection;

/// Settings of the pulse-response protocol (`aimsim device`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protocol {
    /// Pulses per direction.
    pub pulses: u32,
    /// Up/down cycles.
    pub cycles: u32,
    /// Devices sampled.
    pub devices: u32,
}

/// Validates `[protocol]`; without `pulses`, a full sweep of the device's range.
pub fn protocol(
    p: Option<ProtocolSection>,
    spec: &DeviceSpec,
    loc: &Locator,
) -> Result<Protocol, ScenarioError> {
    let p = p.unwrap_or(ProtocolSection {
        pulses: None,
        cycles: None,
        devices: None,
    });
    let protocol = Protocol {
        pulses: p.pulses.unwrap_or_else(|| spec.full_sweep_pulses()),
        cycles: p.cycles.unwrap_or(1),
        devices: p.devices.unwrap_or(8),
    };
    check_protocol(&protocol)
        .map_err(|(k, m)| loc.error(&split_key(&format!("protocol.{k}")), m))?;
    Ok(protocol)
}

/// Largest number of trace cells (rows x devices) the protocol may produce: keeps memory and files
/// bounded (4 bytes a cell).
pub const MAX_TRACE_CELLS: u64 = 200_000_000;

/// Checks protocol settings; returns the offending key and message.
pub fn check_protocol(p: &Protocol) -> Result<(), (&'static str, String)> {
    if p.pulses == 0 {
        return Err(("pulses", "must be at least 1".into()));
    }
    if p.cycles == 0 {
        return Err(("cycles", "must be at least 1".into()));
    }
    if p.devices == 0 {
        return Err(("devices", "must be at least 1".into()));
    }
    let cells = (1 + 2 * u64::from(p.pulses) * u64::from(p.cycles)) * u64::from(p.devices);
    if cells > MAX_TRACE_CELLS {
        // Blame the factor that makes the trace large: the devices (columns) or the rows.
        let rows = 1 + 2 * u64::from(p.pulses) * u64::from(p.cycles);
        let key = if u64::from(p.devices) >= rows {
            "devices"
        } else if p.cycles > p.pulses {
            "cycles"
        } else {
            "pulses"
        };
        return Err((
            key,
            format!(
                "the trace would hold {cells} values (rows x devices), above the limit of {MAX_TRACE_CELLS}; \
                 use fewer pulses, cycles or devices"
            ),
        ));
    }
    Ok(())
}
