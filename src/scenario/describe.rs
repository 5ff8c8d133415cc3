//! The summary of a scenario that `aimsim validate` prints.

use aimsim_networks::mlp::{BiasMode, Loss};
use aimsim_sim::io::IoConfig;
use aimsim_sim::update::{ControllerSpec, PulseScheme, Refresh};

use super::Scenario;
use super::train::{Algorithm, DatasetSpec};

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
    let rule = controller_text(&s.hardware.controller);
    out += &format!("update: {rule}\n");
    if let Some(t) = &s.train {
        let net = match t.algorithm {
            Algorithm::Bp => format!(
                "BP, {}, {} loss, {} bias",
                t.activation.name(),
                match t.loss {
                    Loss::CrossEntropy => "cross-entropy",
                    Loss::Mse => "mean-squared-error",
                },
                match t.bias {
                    BiasMode::Digital => "digital",
                    BiasMode::Tile => "on-tile",
                }
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
        let layers = match &t.conv {
            None => format!("hidden {:?}", t.hidden),
            Some(front) => {
                let (c, h, w) = front.image;
                let mut parts = vec![format!("{c}x{h}x{w} images")];
                for l in &front.layers {
                    let mut p = format!("conv {0}x{0} -> {1}", l.kernel, l.channels);
                    if l.stride != 1 {
                        p += &format!(" stride {}", l.stride);
                    }
                    if l.padding != 0 {
                        p += &format!(" padding {}", l.padding);
                    }
                    if let Some((kind, size, stride)) = l.pool {
                        p += &format!(", {} {size}", kind.name());
                        if stride != size {
                            p += &format!(" stride {stride}");
                        }
                    }
                    parts.push(p);
                }
                parts.extend(t.hidden.iter().map(|u| format!("dense {u}")));
                format!("layers [{}]", parts.join("; "))
            }
        };
        let batch = if t.batch > 1 {
            format!(
                ", batch {} ({} updates)",
                t.batch,
                match t.batch_update {
                    aimsim_sim::update::BatchUpdate::Sequential => "sequential",
                    aimsim_sim::update::BatchUpdate::Accumulated => "accumulated",
                }
            )
        } else {
            String::new()
        };
        out += &format!(
            "train: {}, {} train / {} test samples, {layers}, {net}, {} epoch(s), lr {} (x{} per epoch){batch}{}\n",
            dataset_text(&t.dataset),
            t.train_samples,
            t.test_samples,
            t.epochs,
            t.lr,
            t.lr_decay,
            if t.software {
                ", software baseline"
            } else {
                ""
            }
        );
        if t.weight_noise > 0.0 {
            out += &format!(
                "  hardware-aware training: weight noise {} of each layer's largest |w| in every training forward pass\n",
                t.weight_noise
            );
        }
        if let Some(w) = &t.init_weights {
            out += &format!("  starting weights: {}\n", w.path.display());
        }
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
    if let Some(i) = &s.inference {
        out += &format!("inference: {}\n", describe_inference(i));
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

/// The dataset as a person names it.
fn dataset_text(d: &DatasetSpec) -> String {
    match d {
        DatasetSpec::Glyphs { side } => format!("built-in glyphs ({side}x{side} pixels)"),
        DatasetSpec::TeacherStudent => "built-in teacher-student task".into(),
        DatasetSpec::Idx { name, dir: None } => format!("{name} (IDX files, searched)"),
        DatasetSpec::Idx {
            name,
            dir: Some(dir),
        } => format!("{name} (IDX files in {})", dir.display()),
    }
}

/// A pulse scheme in words, with its settings.
fn scheme_text(p: &PulseScheme) -> String {
    let on = |b: bool| if b { "on" } else { "off" };
    match p {
        PulseScheme::Stochastic {
            bl,
            update_management,
            bl_management,
        } => format!(
            "stochastic pulses, BL {bl}, update management {}, BL management {}",
            on(*update_management),
            on(*bl_management)
        ),
        PulseScheme::Count { max_pulses } => format!("counted pulses, at most {max_pulses}"),
        PulseScheme::SignThreshold { threshold } => {
            format!("one sign pulse above {threshold} steps")
        }
        PulseScheme::RelativeCount {
            max_pulses,
            threshold,
        } => format!("relative counts, threshold {threshold}, at most {max_pulses} pulses"),
    }
}

/// A controller in words: its name, scheme and the settings of its own.
fn controller_text(c: &ControllerSpec) -> String {
    let refresh = |r: &Refresh| {
        let when = if r.every == 0 {
            "each cell checked right after its pulses".to_string()
        } else {
            format!("all cells checked every {} update(s)", r.every)
        };
        format!(
            "refresh a pair when its larger device passes {} and its smaller {} of the range, {when}",
            r.hi, r.lo
        )
    };
    let detail = match c {
        ControllerSpec::SgdStochastic(p)
        | ControllerSpec::SgdCount(p)
        | ControllerSpec::SignThreshold(p)
        | ControllerSpec::Bidirectional(p)
        | ControllerSpec::RelativeCount(p, None) => scheme_text(p),
        ControllerSpec::Unidirectional(p, r) | ControllerSpec::RelativeCount(p, Some(r)) => {
            format!("{}; {}", scheme_text(p), refresh(r))
        }
        ControllerSpec::TikiTaka {
            scheme,
            transfer_every,
            transfer_lr,
            max_pulses,
        } => format!(
            "{}; transfer every {transfer_every} update(s) at rate {transfer_lr}, at most {max_pulses} pulses",
            scheme_text(scheme)
        ),
        ControllerSpec::MixedPrecision { max_pulses } => {
            format!("digital accumulator, at most {max_pulses} pulses per update")
        }
    };
    format!("{} ({detail})", c.name())
}

/// `[inference]` in words: programming, aging, times, compensations, repeats.
fn describe_inference(i: &super::InferenceSpec) -> String {
    use aimsim_devices::aging::{Drift, Programming, ReadNoise1f, Retention};
    use aimsim_networks::deploy::{Mapping, Program};
    let d = &i.deploy;
    let program = match d.program {
        Program::Exact => "exact programming".to_string(),
        Program::WriteVerify {
            tolerance,
            max_pulses,
        } => format!(
            "write-verify to {tolerance} of a device's range (at most {max_pulses} pulses a device)"
        ),
    };
    let noise = match d.noise {
        Programming::Exact => "no programming noise".to_string(),
        Programming::Pcm => "PCM programming noise".to_string(),
        Programming::Constant { sigma_us } => format!("programming noise {sigma_us} uS"),
    };
    let mapping = match d.mapping {
        Mapping::Layer => "per-layer mapping",
        Mapping::Column => "per-column mapping",
    };
    let retention = match &d.aging.retention {
        Retention::None => "no drift".to_string(),
        Retention::Drift { nu, t0 } => match nu {
            Drift::None => "no drift".to_string(),
            Drift::Pcm => format!("PCM drift from {t0} s"),
            Drift::Constant { nu_mean, nu_sd } => {
                format!("drift nu {nu_mean} +- {nu_sd} from {t0} s")
            }
        },
        Retention::Relaxation(r) => format!(
            "relaxation towards {} of g_max, rate {} (log-normal sigma {}), after {} s",
            r.g_relaxed, r.rate_median, r.rate_sigma, r.tau
        ),
    };
    let read = match d.aging.read_noise {
        ReadNoise1f::None => "no 1/f read noise".to_string(),
        ReadNoise1f::Pcm => "PCM 1/f read noise".to_string(),
        ReadNoise1f::Constant { q_s } => format!("1/f read noise q_s {q_s}"),
    };
    let failures = d.aging.failures.as_ref().map_or(String::new(), |f| {
        format!(
            ", failures (Weibull scale {} s, shape {}, stuck high {})",
            f.tau, f.shape, f.p_high
        )
    });
    let times: Vec<String> = i.times_s.iter().map(|t| format!("{t}")).collect();
    let comps: Vec<&str> = i.compensations.iter().map(|c| c.name()).collect();
    format!(
        "{program}, {noise}, {mapping}, g_max {} uS; {retention}, {read}{failures}; read at {} s; \
         compensation {}; {} repeats",
        d.g_max_us,
        times.join(", "),
        comps.join(", "),
        i.repeats
    )
}
