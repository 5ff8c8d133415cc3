//! The cycle and energy ledger: what every phase costs on the simulated chip.
//!
//! Units: time in clock cycles (latency in ns = cycles / clock_hz x 1e9), energy in picojoules.
//! The tiles of one phase work concurrently (the phase's latency is the largest tile latency, its energy
//! the sum); phases and layers follow each other (latencies add).

/// Technology costs of the periphery and the devices. The defaults are illustrative round numbers, not a
/// particular chip: set them from your technology.
#[derive(Debug, Clone, PartialEq)]
pub struct CostModel {
    /// Clock frequency in Hz.
    pub clock_hz: f64,
    /// Cycles the crossbar integrates during one read pass (sets the read time).
    pub read_cycles: u32,
    /// Cycles of one ADC conversion.
    pub adc_cycles: u32,
    /// Energy of one ADC conversion, pJ.
    pub adc_energy_pj: f64,
    /// Outputs that share one ADC (converted one after the other).
    pub outputs_per_adc: u32,
    /// Energy of one DAC conversion (one input line driven for one pass), pJ.
    pub dac_energy_pj: f64,
    /// Read voltage at full-scale input, V.
    pub read_voltage: f64,
    /// Cycles of one write-pulse slot.
    pub pulse_cycles: u32,
    /// Energy of one write pulse on one device, pJ.
    pub pulse_energy_pj: f64,
}

impl Default for CostModel {
    fn default() -> Self {
        CostModel {
            clock_hz: 1e9,
            read_cycles: 10,
            adc_cycles: 9,
            adc_energy_pj: 2.0,
            outputs_per_adc: 8,
            dac_energy_pj: 0.1,
            read_voltage: 0.2,
            pulse_cycles: 10,
            pulse_energy_pj: 1.0,
        }
    }
}

impl CostModel {
    /// Checks the settings; returns the offending field and what is allowed.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        // 1 Hz .. 1 THz: beyond these, times and energies leave any chip's range and overflow.
        if !(self.clock_hz.is_finite() && (1.0..=1e12).contains(&self.clock_hz)) {
            return Err((
                "clock_hz",
                format!("must be 1 to 1e12 Hz, got {}", self.clock_hz),
            ));
        }
        if self.outputs_per_adc == 0 {
            return Err(("outputs_per_adc", "must be at least 1".into()));
        }
        for (k, v) in [
            ("adc_energy_pj", self.adc_energy_pj),
            ("dac_energy_pj", self.dac_energy_pj),
            ("read_voltage", self.read_voltage),
            ("pulse_energy_pj", self.pulse_energy_pj),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err((k, format!("must be a finite number >= 0, got {v}")));
            }
        }
        Ok(())
    }

    /// Read time of one pass, seconds.
    pub fn read_time_s(&self) -> f64 {
        self.read_cycles as f64 / self.clock_hz
    }

    /// Cost of one converted MVM on one tile.
    pub fn read(&self, r: &crate::tile::ReadReport) -> Charge {
        let passes = r.mvm.passes as u64;
        let serial = (self.outputs_per_adc as usize).min(r.outputs.max(1)) as u64;
        let cycles = passes * (self.read_cycles as u64 + self.adc_cycles as u64 * serial);
        // G [uS] x V^2 x t [s] = 1e-6 J per unit; 1e12 pJ per J.
        let device = r.g_x2 * self.read_voltage * self.read_voltage * self.read_time_s() * 1e6;
        let energy = passes as f64
            * (r.inputs as f64 * self.dac_energy_pj + r.outputs as f64 * self.adc_energy_pj)
            + device;
        Charge {
            cycles,
            energy_pj: energy,
            conversions: passes * (r.inputs + r.outputs) as u64,
            ..Charge::default()
        }
    }

    /// Cost of a pulsed update: `slots` pulse slots in sequence, `up`/`down` pulses in all.
    pub fn update(&self, slots: u64, up: u64, down: u64) -> Charge {
        Charge {
            cycles: slots * self.pulse_cycles as u64,
            energy_pj: (up + down) as f64 * self.pulse_energy_pj,
            pulses_up: up,
            pulses_down: down,
            ..Charge::default()
        }
    }
}

/// What one tile spent in one phase.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Charge {
    /// Cycles (latency of this tile).
    pub cycles: u64,
    /// Energy, pJ.
    pub energy_pj: f64,
    /// DAC + ADC conversions.
    pub conversions: u64,
    /// Potentiation pulses.
    pub pulses_up: u64,
    /// Depression pulses.
    pub pulses_down: u64,
    /// Refresh operations (unidirectional cells).
    pub refreshes: u64,
}

/// The phases the ledger keeps apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Forward reads.
    Forward = 0,
    /// Backward reads.
    Backward = 1,
    /// Pulsed weight updates (including controller work such as refresh and transfer).
    Update = 2,
}

impl Phase {
    /// All phases, in ledger order.
    pub const ALL: [Phase; 3] = [Phase::Forward, Phase::Backward, Phase::Update];

    /// Name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Forward => "forward",
            Phase::Backward => "backward",
            Phase::Update => "update",
        }
    }
}

/// Running totals of one phase.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PhaseTotals {
    /// Latency in cycles (sum over steps of the slowest tile of each step).
    pub cycles: u64,
    /// Energy, pJ (sum over tiles and steps).
    pub energy_pj: f64,
    /// Steps charged (one per layer operation).
    pub steps: u64,
    /// DAC + ADC conversions.
    pub conversions: u64,
    /// Potentiation pulses.
    pub pulses_up: u64,
    /// Depression pulses.
    pub pulses_down: u64,
    /// Refresh operations.
    pub refreshes: u64,
}

/// Totals per phase, with per-sample views.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ledger {
    phases: [PhaseTotals; 3],
    samples: u64,
}

impl Ledger {
    /// Charges one step of `phase` whose tiles ran concurrently: latency = max, energy = sum. The
    /// charges are combined in the order given, so the total is the same for any thread count.
    pub fn charge(&mut self, phase: Phase, tiles: &[Charge]) {
        let t = &mut self.phases[phase as usize];
        t.steps += 1;
        t.cycles += tiles.iter().map(|c| c.cycles).max().unwrap_or(0);
        for c in tiles {
            t.energy_pj += c.energy_pj;
            t.conversions += c.conversions;
            t.pulses_up += c.pulses_up;
            t.pulses_down += c.pulses_down;
            t.refreshes += c.refreshes;
        }
    }

    /// Adds another ledger's totals phase by phase (steps, cycles, energy, conversions, pulses,
    /// refreshes, samples): the record of operations that ran on other tiles at the same time, charged
    /// as if they had run one after the other. Totals do not depend on which thread produced `other`.
    pub fn absorb(&mut self, other: &Ledger) {
        for (t, o) in self.phases.iter_mut().zip(&other.phases) {
            t.cycles += o.cycles;
            t.energy_pj += o.energy_pj;
            t.steps += o.steps;
            t.conversions += o.conversions;
            t.pulses_up += o.pulses_up;
            t.pulses_down += o.pulses_down;
            t.refreshes += o.refreshes;
        }
        self.samples += other.samples;
    }

    /// Counts one processed sample (for per-sample figures).
    pub fn count_sample(&mut self) {
        self.samples += 1;
    }

    /// Samples counted.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// Totals of one phase.
    pub fn phase(&self, phase: Phase) -> PhaseTotals {
        self.phases[phase as usize]
    }

    /// Latency over all phases, cycles.
    pub fn total_cycles(&self) -> u64 {
        self.phases.iter().map(|p| p.cycles).sum()
    }

    /// Energy over all phases, pJ.
    pub fn total_energy_pj(&self) -> f64 {
        self.phases.iter().map(|p| p.energy_pj).sum()
    }

    /// Latency in ns for a clock.
    pub fn total_ns(&self, cost: &CostModel) -> f64 {
        self.total_cycles() as f64 / cost.clock_hz * 1e9
    }

    /// Energy per counted sample, pJ (0 before any sample).
    pub fn energy_per_sample_pj(&self) -> f64 {
        if self.samples == 0 {
            0.0
        } else {
            self.total_energy_pj() / self.samples as f64
        }
    }

    /// Latency per counted sample, cycles.
    pub fn cycles_per_sample(&self) -> f64 {
        if self.samples == 0 {
            0.0
        } else {
            self.total_cycles() as f64 / self.samples as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn charge(cycles: u64, energy_pj: f64, up: u64) -> Charge {
        Charge {
            cycles,
            energy_pj,
            conversions: 3,
            pulses_up: up,
            pulses_down: 1,
            refreshes: 2,
        }
    }

    #[test]
    fn absorbing_per_layer_ledgers_equals_charging_one_ledger() {
        let steps = [
            (Phase::Update, vec![charge(7, 1.5, 4), charge(9, 0.25, 1)]),
            (Phase::Update, vec![charge(2, 4.0, 0)]),
            (Phase::Forward, vec![charge(5, 2.0, 0), charge(1, 1.0, 0)]),
        ];
        let mut one = Ledger::default();
        let mut parts = vec![Ledger::default(); steps.len()];
        for ((phase, charges), part) in steps.iter().zip(&mut parts) {
            one.charge(*phase, charges);
            part.charge(*phase, charges);
        }
        one.count_sample();
        parts[0].count_sample();
        let mut merged = Ledger::default();
        for p in &parts {
            merged.absorb(p);
        }
        assert_eq!(merged, one);
        let u = merged.phase(Phase::Update);
        assert_eq!(
            (u.steps, u.cycles, u.pulses_up, u.refreshes),
            (2, 9 + 2, 5, 6)
        );
    }
}
