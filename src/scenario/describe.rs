//! The summary of a scenario that `aimsim validate` prints.

use aimsim_sim::io::IoConfig;

use super::Scenario;
use super::train::Algorithm;

/// A short human description of what a scenario defines (printed by `aimsim validate`).
pub fn describe(s: &Scenario) -> String {
    let mut out = format!("scenario `{}` (seed {})\n", s.name, s.seed());
    if let Some(d) = &s.description {
        out += &format!("  {d}\n");
    }
    out += "device: ";
    if let Some(l) = &s.label {
        out += &format!("{l}; ");
    }
    if let Some(p) = &s.preset {
        out += &format!("preset {p}; ");
    }
    out += &format!("{}\n", s.hardware.device);
    if let Some(c) = &s.citation {
        out += &format!("  source: {c}\n");
    }
    out += &format!(
        "protocol: {} pulses up then down, {} cycle(s), {} device(s)\n",
        s.protocol.pulses, s.protocol.cycles, s.protocol.devices
    );
    let io = |c: &IoConfig| {
        let bits = |b: Option<u32>| b.map_or("ideal".to_string(), |b| format!("{b}-bit"));
        format!(
            "DAC {}, ADC {}, out_bound {}, out_noise {}, w_noise {}, noise management {}, bound management {}",
            bits(c.dac_bits),
            bits(c.adc_bits),
            c.out_bound,
            c.out_noise,
            c.w_noise,
            if c.noise_management { "on" } else { "off" },
            if c.bound_management { "on" } else { "off" }
        )
    };
    out += &format!(
        "tile: {}x{} {} cells, w_scale {}\n  forward io: {}\n  backward io: {}\n",
        s.hardware.tile.rows,
        s.hardware.tile.cols,
        s.hardware.tile.cell.name(),
        s.hardware.w_scale,
        io(&s.hardware.tile.forward),
        io(&s.hardware.tile.backward)
    );
    let rule = format!(
        "{} {:?}",
        s.hardware.controller.name(),
        s.hardware.controller
    );
    out += &format!("update: {rule}\n");
    if let Some(t) = &s.train {
        let net = match t.algorithm {
            Algorithm::Bp => format!(
                "BP, {}, {:?} loss, {:?} bias",
                t.activation.name(),
                t.loss,
                t.bias
            ),
            Algorithm::Ep => {
                let e = &s.ep.config;
                format!(
                    "EP, {} activation, {}/{} free/nudged steps of eps {}, {} nudge beta {}, {} feedback, {} update",
                    e.activation.name(),
                    e.steps_free,
                    e.steps_nudged,
                    e.eps,
                    e.nudge.name(),
                    e.beta,
                    e.feedback.name(),
                    e.update.name()
                )
            }
        };
        out += &format!(
            "train: {:?}, {} train / {} test samples, hidden {:?}, {net}, {} epoch(s), lr {} (x{} per epoch){}\n",
            t.dataset,
            t.train_samples,
            t.test_samples,
            t.hidden,
            t.epochs,
            t.lr,
            t.lr_decay,
            if t.software {
                ", software baseline"
            } else {
                ""
            }
        );
    }
    if let Some(local) = &s.local {
        let l = &local.config;
        out += &format!(
            "local: {} rule, {} inputs, {} hidden, {} outputs, flipped fraction {}, lr {}, {} steps{}\n",
            l.rule.name(),
            l.inputs,
            l.hidden,
            l.outputs,
            l.flip_fraction,
            l.lr,
            l.steps,
            if local.software {
                ", float weights"
            } else {
                ""
            }
        );
    }
    if !s.variants.is_empty() {
        out += &format!("variants: {}\n", s.variants.join(", "));
    }
    let c = &s.hardware.cost;
    out += &format!(
        "cost: clock {} Hz, read {} cycles at {} V, ADC {} cycles {} pJ ({} outputs/ADC), DAC {} pJ, pulse {} cycles {} pJ\n",
        c.clock_hz,
        c.read_cycles,
        c.read_voltage,
        c.adc_cycles,
        c.adc_energy_pj,
        c.outputs_per_adc,
        c.dac_energy_pj,
        c.pulse_cycles,
        c.pulse_energy_pj
    );
    out
}
