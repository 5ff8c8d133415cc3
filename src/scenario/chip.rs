//! `[tile]`, `[io]` (with `[io.backward]`), `[update]` and `[cost]`: the tiles a network is built on,
//! their periphery, the learning rule's controller and pulse scheme, and the cost model of the ledger.

use aimsim_sim::io::IoConfig;
use aimsim_sim::ledger::CostModel;
use aimsim_sim::tile::{CellKind, TileConfig};
use aimsim_sim::update::{ControllerSpec, PulseScheme, Refresh};

use super::ScenarioError;
use super::locate::{Locator, split_key};
use super::sections::{
    CellName, ControllerName, CostSection, DirectionName, IoKeys, IoSection, ReferenceName,
    SchemeName, TileSection, UpdateSection,
};

/// One direction of the periphery: the keys written, over the settings they start from (`base`).
fn io_config(
    k: &IoKeys,
    base: &IoConfig,
    prefix: &str,
    loc: &Locator,
) -> Result<IoConfig, ScenarioError> {
    let bits = |b: Option<u32>, d: Option<u32>| match b {
        None => d,
        Some(0) => None,
        Some(b) => Some(b),
    };
    let io = IoConfig {
        dac_bits: bits(k.dac_bits, base.dac_bits),
        adc_bits: bits(k.adc_bits, base.adc_bits),
        inp_bound: k.inp_bound.unwrap_or(base.inp_bound),
        out_bound: k.out_bound.unwrap_or(base.out_bound),
        out_noise: k.out_noise.unwrap_or(base.out_noise),
        w_noise: k.w_noise.unwrap_or(base.w_noise),
        noise_management: k.noise_management.unwrap_or(base.noise_management),
        bound_management: k.bound_management.unwrap_or(base.bound_management),
        max_bm_iterations: k.max_bm_iterations.unwrap_or(base.max_bm_iterations),
        max_bm_res: k.max_bm_res.unwrap_or(base.max_bm_res),
        zero_grad_at_bound: base.zero_grad_at_bound,
    };
    io.validate()
        .map_err(|(key, m)| loc.error(&split_key(&format!("{prefix}.{key}")), m))?;
    Ok(io)
}

/// The tile configuration, `tile.w_scale`, the controller and the cost model.
pub type ChipParts = (TileConfig, f32, ControllerSpec, CostModel);

/// Validates `[update]`: the keys each controller and scheme take, and what the cell can do.
fn controller_spec(
    u: UpdateSection,
    cell: CellKind,
    loc: &Locator,
) -> Result<ControllerSpec, ScenarioError> {
    let key = |k: &str| split_key(&format!("update.{k}"));
    let name = match u.controller {
        None | Some(ControllerName::SgdStochastic) => "sgd-stochastic",
        Some(ControllerName::SgdCount) => "sgd-count",
        Some(ControllerName::SignThreshold) => "sign-threshold",
        Some(ControllerName::Bidirectional) => "bidirectional",
        Some(ControllerName::Unidirectional) => "unidirectional",
        Some(ControllerName::RelativeCount) => "relative-count",
        Some(ControllerName::Adaptive) => {
            return Err(loc.error(
                &key("controller"),
                "`adaptive` is now called `relative-count`: its pulse quantization is aimsim's own, not \
                 the seed paper's (docs/controllers.md); write controller = \"relative-count\"",
            ));
        }
        Some(ControllerName::TikiTaka) => "tiki-taka",
        Some(ControllerName::MixedPrecision) => "mixed-precision",
    };
    // The scheme of rules that take one.
    let scheme_name = match name {
        "sgd-stochastic" => Some(SchemeName::Stochastic),
        "sgd-count" => Some(SchemeName::Count),
        "sign-threshold" => Some(SchemeName::Sign),
        "bidirectional" | "unidirectional" | "tiki-taka" => {
            Some(u.scheme.unwrap_or(SchemeName::Stochastic))
        }
        _ => None,
    };
    let uni = match name {
        "unidirectional" => true,
        "relative-count" => matches!(u.direction, Some(DirectionName::Unidirectional)),
        _ => false,
    };
    let mut allowed: Vec<&str> = match scheme_name {
        Some(SchemeName::Stochastic) => vec!["bl", "update_management", "bl_management"],
        Some(SchemeName::Count) => vec!["max_pulses"],
        Some(SchemeName::Sign) => vec!["threshold"],
        None => vec![],
    };
    match name {
        "bidirectional" | "unidirectional" | "tiki-taka" => allowed.push("scheme"),
        "relative-count" => allowed.extend(["max_pulses", "threshold", "direction"]),
        "mixed-precision" => allowed.push("max_pulses"),
        _ => {}
    }
    if uni {
        allowed.extend(["refresh_every", "refresh_hi", "refresh_lo"]);
    }
    if name == "tiki-taka" {
        allowed.extend(["transfer_every", "transfer_lr", "transfer_max_pulses"]);
    }
    for (k, present) in u.present() {
        if present && !allowed.contains(&k) {
            return Err(loc.error(
                &key(k),
                format!(
                    "does not apply to controller `{name}`{}; it takes: {}",
                    scheme_name.map_or(String::new(), |s| format!(
                        " with scheme `{}`",
                        match s {
                            SchemeName::Stochastic => "stochastic",
                            SchemeName::Count => "count",
                            SchemeName::Sign => "sign",
                        }
                    )),
                    if allowed.is_empty() {
                        "no other key".to_string()
                    } else {
                        allowed.join(", ")
                    }
                ),
            ));
        }
    }
    let scheme = match scheme_name {
        Some(SchemeName::Stochastic) => PulseScheme::Stochastic {
            bl: u.bl.unwrap_or(31),
            update_management: u.update_management.unwrap_or(true),
            bl_management: u.bl_management.unwrap_or(true),
        },
        Some(SchemeName::Count) => PulseScheme::Count {
            max_pulses: u.max_pulses.unwrap_or(31),
        },
        Some(SchemeName::Sign) => PulseScheme::SignThreshold {
            threshold: u.threshold.unwrap_or(1.0),
        },
        None => PulseScheme::RelativeCount {
            max_pulses: u
                .max_pulses
                .unwrap_or(if name == "relative-count" { 8 } else { 31 }),
            threshold: u.threshold.unwrap_or(0.1),
        },
    };
    scheme.validate().map_err(|(k, m)| loc.error(&key(k), m))?;
    let refresh = Refresh {
        every: u.refresh_every.unwrap_or(0),
        hi: u.refresh_hi.unwrap_or(0.75),
        lo: u.refresh_lo.unwrap_or(0.25),
    };
    if uni {
        for (k, v) in [("refresh_hi", refresh.hi), ("refresh_lo", refresh.lo)] {
            if !(0.0..=1.0).contains(&v) {
                return Err(loc.error(
                    &key(k),
                    format!("is a fraction of the device range in [0, 1], got {v}"),
                ));
            }
        }
        if refresh.lo > refresh.hi {
            return Err(loc.error(&key("refresh_lo"), "must not exceed refresh_hi"));
        }
        if cell == CellKind::Single {
            return Err(loc.error(
                &key("controller"),
                "unidirectional updates need a pair of devices: set tile.cell to \"pair\" or \"one-sided\"",
            ));
        }
    }
    if cell == CellKind::OneSided && (name == "bidirectional" || (name == "relative-count" && !uni))
    {
        return Err(loc.error(
            &key("controller"),
            format!(
                "`{name}` sends depression pulses, which a one-sided cell (potentiation only) does not \
                 take: use controller = \"unidirectional\" (or direction = \"unidirectional\"), or \
                 tile.cell = \"pair\""
            ),
        ));
    }
    if name == "tiki-taka" && !matches!(cell, CellKind::MultiArray { .. }) {
        return Err(loc.error(
            &key("controller"),
            "tiki-taka needs fast and slow arrays: set tile.cell = \"multi-array\"",
        ));
    }
    let transfer_lr = u.transfer_lr.unwrap_or(0.1);
    if !(transfer_lr.is_finite() && transfer_lr > 0.0) {
        return Err(loc.error(
            &key("transfer_lr"),
            format!("must be > 0, got {transfer_lr}"),
        ));
    }
    for (k, v) in [
        ("transfer_every", u.transfer_every),
        ("transfer_max_pulses", u.transfer_max_pulses),
        ("max_pulses", u.max_pulses),
    ] {
        if v == Some(0) {
            return Err(loc.error(&key(k), "must be at least 1"));
        }
    }
    let spec = match name {
        "sgd-stochastic" => ControllerSpec::SgdStochastic(scheme),
        "sgd-count" => ControllerSpec::SgdCount(scheme),
        "sign-threshold" => ControllerSpec::SignThreshold(scheme),
        "bidirectional" => ControllerSpec::Bidirectional(scheme),
        "unidirectional" => ControllerSpec::Unidirectional(scheme, refresh),
        "relative-count" => ControllerSpec::RelativeCount(scheme, uni.then_some(refresh)),
        "tiki-taka" => ControllerSpec::TikiTaka {
            scheme,
            transfer_every: u.transfer_every.unwrap_or(1).max(1),
            transfer_lr,
            max_pulses: u.transfer_max_pulses.unwrap_or(31).max(1),
        },
        _ => ControllerSpec::MixedPrecision {
            max_pulses: u.max_pulses.unwrap_or(31).max(1),
        },
    };
    Ok(spec)
}

/// Validates `[tile]`, `[io]`, `[update]` and `[cost]` (defaults for sections left out).
pub fn chip(
    tile: Option<TileSection>,
    io: Option<IoSection>,
    update: Option<UpdateSection>,
    cost: Option<CostSection>,
    loc: &Locator,
) -> Result<ChipParts, ScenarioError> {
    let t = tile.unwrap_or_default();
    let rows = t.rows.unwrap_or(256);
    let cols = t.cols.unwrap_or(256);
    for (k, v) in [("rows", rows), ("cols", cols)] {
        if !(1..=4096).contains(&v) {
            return Err(loc.error(
                &split_key(&format!("tile.{k}")),
                format!("a tile has 1 to 4096 {k}, got {v}"),
            ));
        }
    }
    let cell = match t.cell {
        None | Some(CellName::Pair) => CellKind::Pair,
        Some(CellName::Single) => CellKind::Single,
        Some(CellName::OneSided) => CellKind::OneSided,
        Some(CellName::MultiArray) => CellKind::MultiArray {
            gamma: t.gamma.unwrap_or(0.1),
        },
    };
    let zero_reference = matches!(t.reference, Some(ReferenceName::DeviceZero));
    if t.reference.is_some() && cell != CellKind::Single {
        return Err(loc.error(
            &split_key("tile.reference"),
            "only applies to cell = \"single\" (the reference a single device is read against)",
        ));
    }
    if t.gamma.is_some() && !matches!(cell, CellKind::MultiArray { .. }) {
        return Err(loc.error(
            &split_key("tile.gamma"),
            "only applies to cell = \"multi-array\" (weight of the fast array)",
        ));
    }
    if let CellKind::MultiArray { gamma } = cell
        && !(gamma.is_finite() && gamma > 0.0)
    {
        return Err(loc.error(
            &split_key("tile.gamma"),
            format!("must be > 0, got {gamma}"),
        ));
    }
    let w_scale = t.w_scale.unwrap_or(1.0);
    if !(w_scale.is_finite() && w_scale > 0.0) {
        return Err(loc.error(
            &split_key("tile.w_scale"),
            format!("must be > 0, got {w_scale}"),
        ));
    }

    let io = io.unwrap_or_default();
    let mut forward = io_config(&io.forward(), &IoConfig::default(), "io", loc)?;
    forward.zero_grad_at_bound = io.zero_grad_at_bound.unwrap_or(false);
    // The backward pass takes the forward settings except bound management, which aihwkit's backward
    // pass does not have unless asked for in `[io.backward]`.
    let backward_base = IoConfig {
        bound_management: false,
        zero_grad_at_bound: false,
        ..forward.clone()
    };
    let backward = io_config(
        &io.backward.unwrap_or_default(),
        &backward_base,
        "io.backward",
        loc,
    )?;

    let controller = controller_spec(update.unwrap_or_default(), cell, loc)?;

    let c = cost.unwrap_or_default();
    let d = CostModel::default();
    let cost = CostModel {
        clock_hz: c.clock_hz.unwrap_or(d.clock_hz),
        read_cycles: c.read_cycles.unwrap_or(d.read_cycles),
        adc_cycles: c.adc_cycles.unwrap_or(d.adc_cycles),
        adc_energy_pj: c.adc_energy_pj.unwrap_or(d.adc_energy_pj),
        outputs_per_adc: c.outputs_per_adc.unwrap_or(d.outputs_per_adc),
        dac_energy_pj: c.dac_energy_pj.unwrap_or(d.dac_energy_pj),
        read_voltage: c.read_voltage.unwrap_or(d.read_voltage),
        pulse_cycles: c.pulse_cycles.unwrap_or(d.pulse_cycles),
        pulse_energy_pj: c.pulse_energy_pj.unwrap_or(d.pulse_energy_pj),
    };
    cost.validate()
        .map_err(|(k, m)| loc.error(&split_key(&format!("cost.{k}")), m))?;
    let tile = TileConfig {
        rows: rows as usize,
        cols: cols as usize,
        cell,
        forward,
        backward,
        zero_reference,
    };
    Ok((tile, w_scale, controller, cost))
}
