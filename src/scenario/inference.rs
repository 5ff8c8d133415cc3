//! `[inference]`: how `aimsim infer` deploys a trained network and ages it (docs/inference.md).

use aimsim_devices::aging::{
    Aging, Drift, Failures, PCM_T_READ, PCM_T0, Programming, ReadNoise1f, Relaxation, Retention,
};
use aimsim_networks::deploy::{Compensation, DeployConfig, Mapping, Program};

use super::ScenarioError;
use super::locate::{Locator, split_key};
use super::sections::{
    CompensationName, DriftName, InferenceSection, MappingName, NoiseName, ProgramName,
    RetentionName,
};

/// The times (s after programming) accuracy is measured at when `times_s` is not written: 1 s,
/// 1 min, 1 h, 1 day, 1 week, 1 month (30 days), 1 year (365 days), 10 years.
pub const DEFAULT_TIMES_S: [f64; 8] = [
    1.0,
    60.0,
    3600.0,
    86_400.0,
    604_800.0,
    2_592_000.0,
    31_536_000.0,
    315_360_000.0,
];

/// Most times one inference may list.
pub const MAX_TIMES: usize = 64;

/// Most repeats of the noise draws.
pub const MAX_REPEATS: u32 = 1000;

/// The `[inference]` section, validated.
#[derive(Debug, Clone)]
pub struct InferenceSpec {
    /// Programming, mapping and aging.
    pub deploy: DeployConfig,
    /// Times after programming (s), increasing.
    pub times_s: Vec<f64>,
    /// Compensations to evaluate, in the order written.
    pub compensations: Vec<Compensation>,
    /// Repeats of the noise draws per seed.
    pub repeats: u32,
    /// Bins of the conductance histograms.
    pub histogram_bins: u32,
}

/// Validates `[inference]` (defaults for everything left out: write-verify programming with PCM
/// programming noise, per-layer mapping, PCM drift and read noise, the eight default times, all three
/// compensations, 5 repeats).
pub fn inference_spec(s: InferenceSection, loc: &Locator) -> Result<InferenceSpec, ScenarioError> {
    let key = |k: &str| split_key(&format!("inference.{k}"));
    // Keys that belong to one choice only.
    let refuse = |k: &str, present: bool, when: &str| -> Result<(), ScenarioError> {
        if present {
            Err(loc.error(&key(k), format!("applies only {when}")))
        } else {
            Ok(())
        }
    };
    let program_name = s.program.unwrap_or(ProgramName::WriteVerify);
    let wv = program_name == ProgramName::WriteVerify;
    refuse(
        "tolerance",
        !wv && s.tolerance.is_some(),
        "with program = \"write-verify\"",
    )?;
    refuse(
        "max_pulses",
        !wv && s.max_pulses.is_some(),
        "with program = \"write-verify\"",
    )?;
    let program = match program_name {
        ProgramName::Exact => Program::Exact,
        ProgramName::WriteVerify => {
            let tolerance = s.tolerance.unwrap_or(0.02);
            if !(tolerance.is_finite() && tolerance > 0.0 && tolerance <= 1.0) {
                return Err(loc.error(
                    &key("tolerance"),
                    format!("is a fraction of a device's range in (0, 1], got {tolerance}"),
                ));
            }
            let max_pulses = s.max_pulses.unwrap_or(1000);
            if !(1..=10_000_000).contains(&max_pulses) {
                return Err(loc.error(
                    &key("max_pulses"),
                    format!("must lie in [1, 1e7] pulses per device, got {max_pulses}"),
                ));
            }
            Program::WriteVerify {
                tolerance,
                max_pulses,
            }
        }
    };
    let noise_name = s.noise.unwrap_or(NoiseName::Pcm);
    refuse(
        "noise_sigma_us",
        noise_name != NoiseName::Constant && s.noise_sigma_us.is_some(),
        "with noise = \"constant\"",
    )?;
    let noise = match noise_name {
        NoiseName::None => Programming::Exact,
        NoiseName::Pcm => Programming::Pcm,
        NoiseName::Constant => Programming::Constant {
            sigma_us: s.noise_sigma_us.ok_or_else(|| {
                loc.error(
                    &key("noise_sigma_us"),
                    "missing: noise = \"constant\" needs its standard deviation in uS",
                )
            })?,
        },
    };
    let mapping = match s.mapping.unwrap_or(MappingName::Layer) {
        MappingName::Layer => Mapping::Layer,
        MappingName::Column => Mapping::Column,
    };
    let g_max_us = s.g_max_us.unwrap_or(25.0);
    if !(g_max_us.is_finite() && g_max_us > 0.0 && g_max_us <= 1e6) {
        return Err(loc.error(
            &key("g_max_us"),
            format!("is a conductance in uS in (0, 1e6], got {g_max_us}"),
        ));
    }

    let retention_name = s.retention.unwrap_or(RetentionName::Drift);
    let is_drift = retention_name == RetentionName::Drift;
    let is_relax = retention_name == RetentionName::Relaxation;
    let drift_name = s.drift.unwrap_or(DriftName::Pcm);
    let constant = is_drift && drift_name == DriftName::Constant;
    refuse(
        "drift",
        !is_drift && s.drift.is_some(),
        "with retention = \"drift\"",
    )?;
    refuse(
        "t0_s",
        !is_drift && s.t0_s.is_some(),
        "with retention = \"drift\"",
    )?;
    for (k, present) in [
        ("nu_mean", s.nu_mean.is_some()),
        ("nu_sd", s.nu_sd.is_some()),
    ] {
        refuse(k, !constant && present, "with drift = \"constant\"")?;
    }
    for (k, present) in [
        ("relaxed", s.relaxed.is_some()),
        ("rate_median", s.rate_median.is_some()),
        ("rate_sigma", s.rate_sigma.is_some()),
        ("tau_s", s.tau_s.is_some()),
    ] {
        refuse(k, !is_relax && present, "with retention = \"relaxation\"")?;
    }
    let retention = match retention_name {
        RetentionName::None => Retention::None,
        RetentionName::Drift => Retention::Drift {
            nu: match drift_name {
                DriftName::Pcm => Drift::Pcm,
                DriftName::Constant => Drift::Constant {
                    nu_mean: s.nu_mean.ok_or_else(|| {
                        loc.error(
                            &key("nu_mean"),
                            "missing: drift = \"constant\" needs the mean drift exponent",
                        )
                    })?,
                    nu_sd: s.nu_sd.unwrap_or(0.0),
                },
            },
            t0: s.t0_s.unwrap_or(PCM_T0),
        },
        RetentionName::Relaxation => {
            let d = Relaxation::default();
            Retention::Relaxation(Relaxation {
                g_relaxed: s.relaxed.unwrap_or(d.g_relaxed),
                rate_median: s.rate_median.unwrap_or(d.rate_median),
                rate_sigma: s.rate_sigma.unwrap_or(d.rate_sigma),
                tau: s.tau_s.unwrap_or(d.tau),
            })
        }
    };
    let read_name = s.read_noise.unwrap_or(NoiseName::Pcm);
    refuse(
        "q_s",
        read_name != NoiseName::Constant && s.q_s.is_some(),
        "with read_noise = \"constant\"",
    )?;
    let read_noise = match read_name {
        NoiseName::None => ReadNoise1f::None,
        NoiseName::Pcm => ReadNoise1f::Pcm,
        NoiseName::Constant => ReadNoise1f::Constant {
            q_s: s.q_s.ok_or_else(|| {
                loc.error(
                    &key("q_s"),
                    "missing: read_noise = \"constant\" needs its amplitude q_s",
                )
            })?,
        },
    };
    refuse(
        "t_read_s",
        read_name == NoiseName::None && s.t_read_s.is_some(),
        "with 1/f read noise (read_noise = \"pcm\" or \"constant\")",
    )?;
    let failures = match s.fail_tau_s {
        None => {
            refuse(
                "fail_shape",
                s.fail_shape.is_some(),
                "with failures (fail_tau_s)",
            )?;
            refuse(
                "fail_p_high",
                s.fail_p_high.is_some(),
                "with failures (fail_tau_s)",
            )?;
            None
        }
        Some(tau) => Some(Failures {
            tau,
            shape: s.fail_shape.unwrap_or(1.0),
            p_high: s.fail_p_high.unwrap_or(0.5),
        }),
    };
    let aging = Aging {
        retention,
        read_noise,
        t_read: s.t_read_s.unwrap_or(PCM_T_READ),
        failures,
    };
    // The models' own checks, reported at the key of this section that holds the value.
    let toml_key = |k: &str| -> &'static str {
        match k {
            "programming.sigma_us" => "noise_sigma_us",
            "drift.nu_mean" => "nu_mean",
            "drift.nu_sd" => "nu_sd",
            "drift.t0" => "t0_s",
            "relaxation.g_relaxed" => "relaxed",
            "relaxation.rate_median" => "rate_median",
            "relaxation.rate_sigma" => "rate_sigma",
            "relaxation.tau" => "tau_s",
            "read_noise.q_s" => "q_s",
            "t_read" => "t_read_s",
            "failures.tau" => "fail_tau_s",
            "failures.shape" => "fail_shape",
            "failures.p_high" => "fail_p_high",
            _ => "retention",
        }
    };
    noise
        .validate()
        .and_then(|_| aging.validate())
        .map_err(|e| loc.error(&key(toml_key(&e.key)), e.message))?;

    let times_s = s.times_s.unwrap_or_else(|| DEFAULT_TIMES_S.to_vec());
    if times_s.is_empty() || times_s.len() > MAX_TIMES {
        return Err(loc.error(
            &key("times_s"),
            format!("lists 1 to {MAX_TIMES} times, got {}", times_s.len()),
        ));
    }
    for (i, t) in times_s.iter().enumerate() {
        if !(t.is_finite() && *t > 0.0 && *t <= 1e12) {
            return Err(loc.error(
                &key("times_s"),
                format!("times are seconds after programming in (0, 1e12], got {t}"),
            ));
        }
        if i > 0 && *t <= times_s[i - 1] {
            return Err(loc.error(
                &key("times_s"),
                format!("times must increase, got {} then {t}", times_s[i - 1]),
            ));
        }
    }
    let names = s.compensation.unwrap_or_else(|| {
        vec![
            CompensationName::None,
            CompensationName::Global,
            CompensationName::Column,
        ]
    });
    if names.is_empty() {
        return Err(loc.error(&key("compensation"), "lists at least one compensation"));
    }
    let mut compensations = Vec::new();
    for n in names {
        let c = match n {
            CompensationName::None => Compensation::None,
            CompensationName::Global => Compensation::Global,
            CompensationName::Column => Compensation::Column,
        };
        if compensations.contains(&c) {
            return Err(loc.error(
                &key("compensation"),
                format!("lists \"{}\" twice", c.name()),
            ));
        }
        compensations.push(c);
    }
    let repeats = s.repeats.unwrap_or(5);
    if !(1..=MAX_REPEATS).contains(&repeats) {
        return Err(loc.error(
            &key("repeats"),
            format!("must lie in [1, {MAX_REPEATS}], got {repeats}"),
        ));
    }
    let histogram_bins = s.histogram_bins.unwrap_or(50);
    if !(2..=10_000).contains(&histogram_bins) {
        return Err(loc.error(
            &key("histogram_bins"),
            format!("must lie in [2, 10000], got {histogram_bins}"),
        ));
    }
    Ok(InferenceSpec {
        deploy: DeployConfig {
            program,
            noise,
            mapping,
            g_max_us,
            aging,
        },
        times_s,
        compensations,
        repeats,
        histogram_bins,
    })
}
