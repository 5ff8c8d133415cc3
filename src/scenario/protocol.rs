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
    let written: Vec<&str> = [
        ("pulses", p.pulses.is_some()),
        ("cycles", p.cycles.is_some()),
        ("devices", p.devices.is_some()),
    ]
    .into_iter()
    .filter_map(|(k, w)| w.then_some(k))
    .collect();
    check_protocol(&protocol, &written)
        .map_err(|(k, m)| loc.error(&split_key(&format!("protocol.{k}")), m))?;
    Ok(protocol)
}

/// Largest number of trace cells (rows x devices) the protocol may produce: keeps memory and files
/// bounded (4 bytes a cell).
pub const MAX_TRACE_CELLS: u64 = 200_000_000;

/// Checks protocol settings; returns the offending key and message. `written` names the keys the
/// scenario sets (the others are defaults): a trace that is too large is blamed on the written key
/// that makes it large, never on a default the user did not choose (the pulse count defaults to the
/// device's full sweep).
pub fn check_protocol(p: &Protocol, written: &[&str]) -> Result<(), (&'static str, String)> {
    if p.pulses == 0 {
        return Err(("pulses", "must be at least 1".into()));
    }
    if p.cycles == 0 {
        return Err(("cycles", "must be at least 1".into()));
    }
    if p.devices == 0 {
        return Err(("devices", "must be at least 1".into()));
    }
    let rows = 1 + 2 * u64::from(p.pulses) * u64::from(p.cycles);
    let cells = rows * u64::from(p.devices);
    if cells > MAX_TRACE_CELLS {
        // Blame the factor that makes the trace large: the devices (columns) or the rows (pulses or
        // cycles, the larger first), among the keys the scenario writes.
        let by_rows = if p.cycles > p.pulses {
            ["cycles", "pulses"]
        } else {
            ["pulses", "cycles"]
        };
        let order = if u64::from(p.devices) >= rows {
            ["devices", by_rows[0], by_rows[1]]
        } else {
            [by_rows[0], by_rows[1], "devices"]
        };
        let key = order
            .into_iter()
            .find(|k| written.contains(k))
            .unwrap_or(order[0]);
        let default_pulses = if written.contains(&"pulses") {
            String::new()
        } else {
            format!(
                " (protocol.pulses is not set: it defaults to the device's full sweep, {} pulses)",
                p.pulses
            )
        };
        return Err((
            key,
            format!(
                "the trace would hold {cells} values ({rows} rows x {} devices), above the limit of \
                 {MAX_TRACE_CELLS}{default_pulses}; use fewer pulses, cycles or devices",
                p.devices
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blamed(pulses: u32, cycles: u32, devices: u32, written: &[&str]) -> &'static str {
        let p = Protocol {
            pulses,
            cycles,
            devices,
        };
        check_protocol(&p, written).unwrap_err().0
    }

    #[test]
    fn a_large_trace_is_blamed_on_a_key_the_scenario_writes() {
        let all = ["pulses", "cycles", "devices"];
        assert_eq!(blamed(100, 1, 10_000_000, &all), "devices");
        assert_eq!(blamed(10_000_000, 1, 100, &all), "pulses");
        assert_eq!(blamed(100, 10_000_000, 100, &all), "cycles");
        // Pulses from the device's full sweep (100000 levels): the devices the user asked for.
        assert_eq!(blamed(100_000, 1, 2000, &["devices"]), "devices");
        assert_eq!(blamed(100_000, 3, 1500, &["cycles", "devices"]), "cycles");
        let p = Protocol {
            pulses: 100_000,
            cycles: 1,
            devices: 2000,
        };
        let (_, m) = check_protocol(&p, &["devices"]).unwrap_err();
        assert!(
            m.contains("defaults to the device's full sweep, 100000 pulses"),
            "{m}"
        );
        assert!(m.contains("200001 rows x 2000 devices"), "{m}");
        // Nothing written: the largest factor.
        assert_eq!(blamed(100_000_000, 1, 8, &[]), "pulses");
    }
}
