//! Scenario files: TOML in, validated domain types out.
//!
//! Loading runs in fixed stages: parse the file, apply `--set` overrides, expand a named preset,
//! deserialize into the serde types of `sections` (unknown keys rejected), then convert and validate
//! into the format-free types of the physics crates. Every error is reported as a [`ScenarioError`]
//! naming where the offending key was written (file, line, column; a `--set` argument; or a built-in
//! preset) and its dotted key path.
//!
//! One file per concern: `load` (the stages up to deserialization: overrides, variants' and sweep
//! points' values, presets), `locate` (where a key was written), `sections` (the serde types of the
//! file format), one conversion per section (`device`, `protocol`, `chip` for `[tile]`, `[io]`,
//! `[update]` and `[cost]`, `trace`, `train`, `ep`, `local`, `variant`, `sweep`), `table` (measured
//! curves) and `describe` (the summary `aimsim validate` prints).

use std::fmt;
use std::path::{Path, PathBuf};

use aimsim_networks::mlp::Hardware;

use crate::trace::TraceSpec;

mod chip;
mod describe;
mod device;
mod ep;
mod inference;
mod load;
mod local;
mod locate;
mod protocol;
mod sections;
mod sweep;
mod table;
#[cfg(test)]
mod tests;
mod trace;
mod train;
mod variant;

pub use describe::describe;
pub use ep::EpSpec;
pub use inference::{DEFAULT_TIMES_S, InferenceSpec};
pub use load::{
    Parsed, PointSet, load, load_point_str, load_str, load_variant_str, parse_override,
    read_scenario_text,
};
pub use local::LocalSpec;
pub use locate::{key_origin, key_origins};
pub use protocol::{MAX_TRACE_CELLS, Protocol, check_protocol};
pub use sweep::{MAX_SWEEP_POINTS, SweepAxis, SweepSpec};
pub use table::parse_table_csv;
pub use train::{Algorithm, DatasetSpec, TrainSpec};

use aimsim_devices::Model;
use locate::{Locator, split_key};
use sections::ScenarioFile;

/// A scenario error: where it was written, which key, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioError {
    /// `file:line:column`, `--set key=value`, `preset `x``, or the file name alone.
    pub origin: String,
    /// Dotted key path, when the error is about a key.
    pub key: Option<String>,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let message = short_numbers(&self.message);
        match &self.key {
            Some(k) => write!(f, "{}: key `{}`: {message}", self.origin, k),
            None => write!(f, "{}: {message}", self.origin),
        }
    }
}

/// Rewrites numbers of more than 16 digits (as `{}` prints a float like 1e300) in scientific notation,
/// so a message reads `got 1e300` rather than three hundred digits.
fn short_numbers(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        let digits = run.chars().filter(char::is_ascii_digit).count();
        match run.parse::<f64>() {
            Ok(v) if digits > 16 => out.push_str(&format!("{v:e}")),
            _ => out.push_str(run),
        }
        run.clear();
    };
    for ch in message.chars() {
        if ch.is_ascii_digit() || (ch == '.' && !run.is_empty() && !run.contains('.')) {
            run.push(ch);
        } else {
            flush(&mut run, &mut out);
            out.push(ch);
        }
    }
    flush(&mut run, &mut out);
    out
}

impl std::error::Error for ScenarioError {}

/// A validated scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Scenario name.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// Preset the device section started from.
    pub preset: Option<String>,
    /// Plot title of the device.
    pub label: Option<String>,
    /// Where the device parameters come from.
    pub citation: Option<String>,
    /// What the tiles are made of: the device population (`[device]`), tile shape, unit cell and
    /// periphery (`[tile]`, `[io]`), the learning rule's controller (`[update]`), `tile.w_scale`, the
    /// ledger's costs (`[cost]`), and the master seed (`scenario.seed`).
    pub hardware: Hardware,
    /// Protocol settings (defaults filled in).
    pub protocol: Protocol,
    /// Training settings, when the scenario trains a network.
    pub train: Option<TrainSpec>,
    /// Equilibrium-propagation settings (`[ep]`; defaults when absent).
    pub ep: EpSpec,
    /// Local-rule experiment (`[local]`), when the scenario has one.
    pub local: Option<LocalSpec>,
    /// Deployment and aging (`[inference]`), when written (`aimsim infer` uses the defaults without).
    pub inference: Option<InferenceSpec>,
    /// Names of the `[[variant]]`s, in file order.
    pub variants: Vec<String>,
    /// The `group` of each variant (same order as `variants`): variants of one group are candidates of
    /// one method (e.g. its learning rates), one of which the validation split selects.
    pub variant_groups: Vec<Option<String>>,
    /// The `[sweep]` section, when the scenario defines one.
    pub sweep: Option<SweepSpec>,
    /// The `[trace]` section, when written (training falls back to `train.trace_*`).
    pub trace: Option<TraceSpec>,
}

impl Scenario {
    /// The master seed (`scenario.seed`, 0 when not written): every random stream derives from it.
    pub fn seed(&self) -> u64 {
        self.hardware.seed
    }
}

/// A loaded scenario plus what the manifest records about its origin.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The validated scenario.
    pub scenario: Scenario,
    /// Path it was read from.
    pub path: PathBuf,
    /// The file's bytes, as read.
    pub source: String,
    /// The effective configuration after overrides and preset expansion, as TOML.
    pub effective: String,
    /// The `--set` arguments applied.
    pub overrides: Vec<String>,
}

/// The top-level sections whose conversions read one another, in groups: a rule of [`convert`] that
/// reads keys of two sections needs both in one group (today: `protocol` reads the device's full
/// sweep, `tile.reference` the device model, `[update]`'s controllers the `tile.cell`; `[train]` reads
/// `[trace]`, `[[variant]]` groups `train.validation`, `[sweep]` `[train]`, `[[variant]]` and
/// `scenario.seed`; `train.batch_update` reads `update.controller`, which links the two groups). A section in no group (`io`, `cost`, `ep`) is checked on its own. A sweep plan
/// relies on this: it validates every combination of the values of the swept keys of one group, and
/// each group's combinations separately from the others' (`sweep::plan`).
pub const LINKED_SECTIONS: &[&[&str]] = &[&[
    "device", "protocol", "tile", "update", "scenario", "train", "trace", "variant", "local",
    "sweep",
]];

/// Converts and validates every section, in a fixed order (the first error found is the one reported).
fn convert(
    file: ScenarioFile,
    loc: &Locator,
    base_dir: &Path,
    preset_files: &[(&str, &str)],
) -> Result<Scenario, ScenarioError> {
    let d = file.device;
    let spec = device::device_spec(&d, loc, base_dir, preset_files)?;
    let protocol = protocol::protocol(file.protocol, &spec, loc)?;
    let (tile, w_scale, controller, cost) =
        chip::chip(file.tile, file.io, file.update, file.cost, loc)?;
    if tile.zero_reference && !matches!(&spec.model, Model::Step(s) if s.g_range.is_none()) {
        return Err(loc.error(
            &split_key("tile.reference"),
            "\"device-zero\" needs a device in weight units (a step model without g_min/g_max): a \
             conductance has no weight 0 to read against",
        ));
    }
    let trace = file.trace.map(|t| trace::trace_spec(t, loc)).transpose()?;
    let train = match file.train {
        None => None,
        Some(t) => Some(train::train_spec(t, loc, base_dir, trace.as_ref())?),
    };
    let ep = ep::ep_spec(file.ep, loc)?;
    train::check_init_feedback(train.as_ref(), &ep, loc)?;
    train::check_batch_update(train.as_ref(), &controller, loc)?;
    let local = file.local.map(|l| local::local_spec(l, loc)).transpose()?;
    let inference = match file.inference {
        None => None,
        Some(i) => {
            match &train {
                None => {
                    return Err(loc.error(
                        &split_key("inference"),
                        "deploys a trained network: the scenario needs a [train] section",
                    ));
                }
                Some(t) if t.algorithm == Algorithm::Ep => {
                    return Err(loc.error(
                        &split_key("inference"),
                        "deploys backpropagation networks (train.algorithm = \"bp\"); equilibrium-\
                         propagation networks are not deployed yet",
                    ));
                }
                _ => {}
            }
            Some(inference::inference_spec(i, loc)?)
        }
    };
    let (variants, variant_groups) =
        variant::variants(file.variant, train.as_ref(), local.is_some(), loc)?;
    let seed = file.scenario.seed.unwrap_or(0);
    let sweep = match file.sweep {
        None => None,
        Some(sw) => Some(sweep::sweep_spec(
            sw,
            seed,
            !variants.is_empty(),
            train.as_ref(),
            loc,
        )?),
    };

    Ok(Scenario {
        name: file.scenario.name,
        description: file.scenario.description,
        preset: d.preset,
        label: d.label,
        citation: d.citation,
        hardware: Hardware {
            device: spec,
            tile,
            controller,
            w_scale,
            cost,
            seed,
        },
        protocol,
        train,
        ep,
        local,
        inference,
        variants,
        variant_groups,
        sweep,
        trace,
    })
}
