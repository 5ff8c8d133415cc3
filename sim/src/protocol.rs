//! The pulse-response protocol: characterise a device model the way a probe station would.
//!
//! Every device starts at its lower bound; each cycle applies `pulses` single potentiation pulses, then
//! `pulses` single depression pulses, and the conductance is recorded after every pulse.

use aimsim_devices::Population;
use rand::Rng;

/// Direction of the pulse that produced a row of a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The initial state, before any pulse.
    Start,
    /// After a potentiation pulse.
    Up,
    /// After a depression pulse.
    Down,
}

impl Direction {
    /// Name used in exported files.
    pub fn name(self) -> &'static str {
        match self {
            Direction::Start => "start",
            Direction::Up => "up",
            Direction::Down => "down",
        }
    }
}

/// One row of a trace: which pulse it follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// Cycle index, from 0.
    pub cycle: u32,
    /// Pulse number counted over the whole protocol (0 = initial state).
    pub pulse: u32,
    /// Direction of that pulse.
    pub direction: Direction,
}

/// Conductances recorded by [`pulse_response`]: `steps.len()` rows by `devices` columns, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponseTrace {
    /// Number of devices (columns).
    pub devices: usize,
    /// What each row follows.
    pub steps: Vec<Step>,
    /// Conductance in uS, `data[row * devices + device]`.
    pub conductance: Vec<f32>,
}

impl ResponseTrace {
    /// Conductance of `device` at `row`.
    pub fn at(&self, row: usize, device: usize) -> f32 {
        self.conductance[row * self.devices + device]
    }
}

/// Runs the protocol on every device of `pop`: reset to the lower bound, then `cycles` times `pulses`
/// potentiation pulses followed by `pulses` depression pulses, recording the conductance after each.
/// Writes draw c2c noise from `rng` in a fixed order (pulse by pulse, device by device).
pub fn pulse_response<R: Rng + ?Sized>(
    pop: &mut Population,
    pulses: u32,
    cycles: u32,
    rng: &mut R,
) -> ResponseTrace {
    let devices = pop.len();
    let rows = 1 + 2 * pulses as usize * cycles as usize;
    let mut steps = Vec::with_capacity(rows);
    let mut conductance = Vec::with_capacity(rows * devices);
    pulse_response_each(pop, pulses, cycles, rng, |pop, step| {
        steps.push(step);
        conductance.extend((0..devices).map(|i| pop.conductance(i)));
    });
    ResponseTrace {
        devices,
        steps,
        conductance,
    }
}

/// The protocol of [`pulse_response`], handing the population to `each` after the reset and after
/// every pulse instead of storing the trace, so a caller can stream what it needs (memory does not grow
/// with the number of pulses). Same pulses, same random draws, same order.
pub fn pulse_response_each<R: Rng + ?Sized>(
    pop: &mut Population,
    pulses: u32,
    cycles: u32,
    rng: &mut R,
    mut each: impl FnMut(&Population, Step),
) {
    let devices = pop.len();
    for i in 0..devices {
        pop.reset_to_min(i);
    }
    each(
        pop,
        Step {
            cycle: 0,
            pulse: 0,
            direction: Direction::Start,
        },
    );
    let mut pulse = 0;
    for cycle in 0..cycles {
        for (direction, sign) in [(Direction::Up, 1), (Direction::Down, -1)] {
            for _ in 0..pulses {
                for i in 0..devices {
                    pop.pulse(i, sign, rng);
                }
                pulse += 1;
                each(
                    pop,
                    Step {
                        cycle,
                        pulse,
                        direction,
                    },
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aimsim_devices::{DeviceSpec, Model, NeuroSimParams};
    use rand::SeedableRng;
    use rand_pcg::Pcg64Mcg;

    #[test]
    fn neurosim_sweep_reaches_both_bounds_and_returns() {
        let mut spec = DeviceSpec::new(Model::NeuroSim(NeuroSimParams {
            levels_up: 65,
            levels_down: 65,
            nl_up: 2.4,
            nl_down: -4.88,
        }));
        spec.g_min = 1.0;
        spec.g_max = 10.0;
        let mut rng = Pcg64Mcg::seed_from_u64(3);
        let mut pop = Population::new(&spec, 3, &mut rng).unwrap();
        let t = pulse_response(&mut pop, 64, 2, &mut rng);
        assert_eq!(t.steps.len(), 1 + 4 * 64);
        assert_eq!(t.at(0, 0), 1.0);
        assert_eq!(t.at(64, 1), 10.0);
        assert_eq!(t.at(128, 2), 1.0);
        assert_eq!(t.steps[129].cycle, 1);
        assert_eq!(t.steps[129].direction, Direction::Up);
        assert_eq!(t.steps[256].pulse, 256);
        // Potentiation is concave for a positive label: the first step is the largest.
        let first = t.at(1, 0) - t.at(0, 0);
        let last = t.at(64, 0) - t.at(63, 0);
        assert!(first > 3.0 * last, "first {first} last {last}");
    }
}
