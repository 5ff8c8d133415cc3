//! `[device]`: the device model, its parameters, noise, stuck devices and device-to-device variation,
//! converted into a [`DeviceSpec`] whose physical rules (`DeviceSpec::validate`) are checked here with
//! the key they concern located.

use std::path::Path;

use aimsim_devices::spec::Reference;
use aimsim_devices::{
    DeviceSpec, Dist, Model, NeuroSimParams, Param, Spread, StepKind, StepParams, Variation,
};

use super::ScenarioError;
use super::locate::{Locator, split_key};
use super::sections::{C2cModeName, DeviceSection, DistName, ModelName, VariationSection};
use super::table::load_table;

// Keys of `[device]` that belong to one family of models only (names of `DeviceSection`'s fields;
// a test checks each is one).
const STEP_ONLY: &[&str] = &["dw_min", "up_down", "w_min", "w_max"];
const GAMMA: &[&str] = &["gamma_up", "gamma_down"];
const EXP_ONLY: &[&str] = &["a", "b", "a_up", "a_down"];
const NEUROSIM_ONLY: &[&str] = &["nl_up", "nl_down", "levels_down"];
const TABLE_ONLY: &[&str] = &["table"];
const REFERENCE_ONLY: &[&str] = &["reference_mean", "reference_std", "subtract_symmetry_point"];
const STEP_NOISE: &[&str] = &["c2c_mode", "write_noise"];

/// Validates `[device]` into a device description. `base_dir` resolves a table's data file;
/// `preset_files` are the data files built into the preset the section started from.
pub fn device_spec(
    d: &DeviceSection,
    loc: &Locator,
    base_dir: &Path,
    preset_files: &[(&str, &str)],
) -> Result<DeviceSpec, ScenarioError> {
    let key = |k: &str| split_key(&format!("device.{k}"));
    let Some(model_name) = &d.model else {
        return Err(loc.error(
            &split_key("device.model"),
            "missing: set `model` (constant-step, linear-step, soft-bounds, exp-step, pow-step, neurosim, table) \
             or start from a `preset`",
        ));
    };

    let reference = matches!(model_name, ModelName::SoftBoundsReference);
    let model_str = match model_name {
        ModelName::ConstantStep => "constant-step",
        ModelName::LinearStep => "linear-step",
        ModelName::SoftBounds => "soft-bounds",
        ModelName::SoftBoundsReference => "soft-bounds-reference",
        ModelName::ExpStep => "exp-step",
        ModelName::PowStep => "pow-step",
        ModelName::Neurosim => "neurosim",
        ModelName::Table => "table",
    };
    let mut not_allowed: Vec<&[&str]> = Vec::new();
    if !reference {
        not_allowed.push(REFERENCE_ONLY);
    }
    let step_kind = match model_name {
        ModelName::ConstantStep => Some(StepKind::Constant),
        ModelName::LinearStep => Some(StepKind::Linear),
        ModelName::SoftBounds | ModelName::SoftBoundsReference => Some(StepKind::SoftBounds),
        ModelName::ExpStep => Some(StepKind::Exp),
        ModelName::PowStep => Some(StepKind::Pow),
        _ => None,
    };
    match step_kind {
        Some(k) => {
            not_allowed.push(NEUROSIM_ONLY);
            not_allowed.push(TABLE_ONLY);
            if k != StepKind::Exp {
                not_allowed.push(EXP_ONLY);
            }
            if matches!(k, StepKind::Constant | StepKind::SoftBounds) {
                not_allowed.push(GAMMA);
            }
        }
        None => {
            not_allowed.extend([STEP_ONLY, GAMMA, EXP_ONLY, STEP_NOISE]);
            if matches!(model_name, ModelName::Neurosim) {
                not_allowed.push(TABLE_ONLY);
            } else {
                not_allowed.push(NEUROSIM_ONLY);
            }
        }
    }
    for group in not_allowed {
        for k in group {
            if d.is_set(k).expect("a key of [device]") {
                return Err(loc.error(
                    &key(k),
                    format!("does not apply to model `{model_str}`; see docs/scenarios.md for the keys of each model"),
                ));
            }
        }
    }
    if matches!(model_name, ModelName::Table)
        && let Some(_) = d.levels
    {
        return Err(loc.error(
            &key("levels"),
            "does not apply to model `table`: the number of levels is the number of points in the up sweep",
        ));
    }

    let required = |v: Option<f64>, k: &str, what: &str| {
        v.ok_or_else(|| {
            loc.error(
                &key(k),
                format!("missing: model `{model_str}` needs {what}"),
            )
        })
    };
    let model = match model_name {
        ModelName::Neurosim => {
            let levels = d.levels.ok_or_else(|| {
                loc.error(
                    &key("levels"),
                    "missing: model `neurosim` needs the number of levels (>= 2)",
                )
            })?;
            Model::NeuroSim(NeuroSimParams {
                levels_up: levels,
                levels_down: d.levels_down.unwrap_or(levels),
                nl_up: required(
                    d.nl_up,
                    "nl_up",
                    "the potentiation nonlinearity label (0 = linear)",
                )?,
                nl_down: required(
                    d.nl_down,
                    "nl_down",
                    "the depression nonlinearity label (0 = linear)",
                )?,
            })
        }
        ModelName::Table => {
            let Some(t) = d.table.as_ref() else {
                return Err(loc.error(
                    &key("table"),
                    "missing: model `table` needs a [device.table] section with `file` or `up` and `down`",
                ));
            };
            Model::Table(load_table(t, loc, base_dir, preset_files)?)
        }
        _ => {
            let kind = step_kind.expect("step model");
            let w_min = d.w_min.unwrap_or(-1.0);
            let w_max = d.w_max.unwrap_or(1.0);
            let dw_min = match (d.dw_min, d.levels) {
                (Some(dw), _) => dw,
                (None, Some(l)) if l >= 2 => (w_max - w_min) / f64::from(l - 1),
                (None, _) => {
                    return Err(loc.error(
                        &key("dw_min"),
                        format!("missing: model `{model_str}` needs the step size `dw_min` (or `levels`)"),
                    ));
                }
            };
            let mut s = StepParams::new(kind, dw_min);
            s.up_down = d.up_down.unwrap_or(0.0);
            s.w_min = w_min;
            s.w_max = w_max;
            s.gamma_up = d.gamma_up.unwrap_or(0.0);
            s.gamma_down = d.gamma_down.unwrap_or(0.0);
            s.a = d.a.unwrap_or(0.0);
            s.b = d.b.unwrap_or(0.0);
            s.a_up = d.a_up.unwrap_or(0.0);
            s.a_down = d.a_down.unwrap_or(0.0);
            s.levels = d.levels;
            if reference {
                s.reference = Some(Reference {
                    mean: d.reference_mean.unwrap_or(0.0),
                    std: d.reference_std.unwrap_or(0.0),
                    subtract_symmetry_point: d.subtract_symmetry_point.unwrap_or(false),
                });
            }
            s.g_range = match (d.g_min, d.g_max) {
                (None, None) => None,
                (Some(g0), Some(g1)) => Some((g0, g1)),
                (Some(_), None) => {
                    return Err(loc.error(
                        &key("g_max"),
                        "missing: a step model's conductance range needs both g_min and g_max",
                    ));
                }
                (None, Some(_)) => {
                    return Err(loc.error(
                        &key("g_min"),
                        "missing: a step model's conductance range needs both g_min and g_max",
                    ));
                }
            };
            Model::Step(s)
        }
    };
    let mut spec = DeviceSpec::new(model);
    match &spec.model {
        Model::NeuroSim(_) => {
            spec.g_min = required(
                d.g_min,
                "g_min",
                "the conductance of its lowest level in uS",
            )?;
            spec.g_max = required(
                d.g_max,
                "g_max",
                "the conductance of its highest level in uS",
            )?;
        }
        Model::Table(_) => {
            spec.g_min = d.g_min.unwrap_or(spec.g_min);
            spec.g_max = d.g_max.unwrap_or(spec.g_max);
        }
        Model::Step(_) => {}
    }
    spec.c2c = d.c2c.unwrap_or(0.0);
    // aihwkit's SoftBoundsReference device adds its c2c noise (mult_noise = false) unless told otherwise.
    spec.c2c_additive = match d.c2c_mode {
        Some(C2cModeName::Additive) => true,
        Some(C2cModeName::Multiplicative) => false,
        None => reference,
    };
    spec.write_noise = d.write_noise.unwrap_or(0.0);
    spec.read_noise = d.read_noise.unwrap_or(0.0);
    spec.stuck_min = d.stuck_min.unwrap_or(0.0);
    spec.stuck_max = d.stuck_max.unwrap_or(0.0);
    spec.stuck_random = d.stuck_random.unwrap_or(0.0);
    if let Some(v) = &d.d2d {
        for p in Param::ALL {
            if let Some(s) = v.get(p) {
                let var = variation(s, &format!("device.d2d.{}", p.key()), loc)?;
                spec.d2d.push((p, var));
            }
        }
    }
    spec.validate()
        .map_err(|e| loc.error(&split_key(&format!("device.{}", e.key)), e.message))?;
    Ok(spec)
}

/// One `[device.d2d.<param>]` table, validated.
fn variation(v: &VariationSection, key: &str, loc: &Locator) -> Result<Variation, ScenarioError> {
    let k = split_key(key);
    let (dist, allowed): (Dist, [(&str, Option<f64>); 2]) = match v.dist {
        DistName::Normal => (Dist::Normal, [("sigma", v.sigma), ("cv", v.cv)]),
        DistName::Lognormal => (Dist::LogNormal, [("sigma", v.sigma), ("cv", v.cv)]),
        DistName::LognormalMedian => {
            if v.cv.is_some() {
                let mut kk = k.clone();
                kk.push("cv".into());
                return Err(loc.error(
                    &kk,
                    "dist = \"lognormal-median\" takes `sigma`, the standard deviation of \
                     ln(value / nominal) (aihwkit's log-normal d2d), not `cv`",
                ));
            }
            (Dist::LogNormalMedian, [("sigma", v.sigma), ("cv", None)])
        }
        DistName::Uniform => (
            Dist::Uniform,
            [
                ("half_width", v.half_width),
                ("rel_half_width", v.rel_half_width),
            ],
        ),
    };
    for (name, val) in [
        ("sigma", v.sigma),
        ("cv", v.cv),
        ("half_width", v.half_width),
        ("rel_half_width", v.rel_half_width),
    ] {
        if val.is_some() && !allowed.iter().any(|(a, _)| *a == name) {
            let mut kk = k.clone();
            kk.push(name.into());
            return Err(loc.error(
                &kk,
                format!(
                    "`{name}` does not apply to dist = \"{}\"; use `{}` (absolute) or `{}` (relative to the nominal value)",
                    dist.name(),
                    allowed[0].0,
                    allowed[1].0
                ),
            ));
        }
    }
    let spread = match (allowed[0].1, allowed[1].1) {
        (Some(a), None) => Spread::Absolute(a),
        (None, Some(r)) => Spread::Relative(r),
        _ => {
            return Err(loc.error(
                &k,
                format!(
                    "give exactly one of `{}` (absolute) or `{}` (relative to the nominal value)",
                    allowed[0].0, allowed[1].0
                ),
            ));
        }
    };
    Ok(Variation { dist, spread })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_key_groups_name_device_keys() {
        let d = DeviceSection::default();
        for group in [
            STEP_ONLY,
            GAMMA,
            EXP_ONLY,
            NEUROSIM_ONLY,
            TABLE_ONLY,
            REFERENCE_ONLY,
            STEP_NOISE,
        ] {
            for k in group {
                assert_eq!(d.is_set(k), Some(false), "{k}");
            }
        }
        assert_eq!(d.is_set("no_such_key"), None);
        let set = DeviceSection {
            a_up: Some(1.0),
            ..Default::default()
        };
        assert_eq!(set.is_set("a_up"), Some(true));
    }
}
