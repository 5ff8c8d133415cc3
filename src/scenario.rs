//! Scenario files: TOML in, validated domain types out.
//!
//! Loading runs in fixed stages: parse the file, apply `--set` overrides, expand a named preset,
//! deserialize into the serde types below (unknown keys rejected), then convert and validate into the
//! format-free types of the physics crates. Every error is reported as a [`ScenarioError`] naming where
//! the offending key was written (file, line, column; a `--set` argument; or a built-in preset) and its
//! dotted key path.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use aimsim_devices::spec::Reference;
use aimsim_devices::{
    DeviceSpec, Dist, Model, NeuroSimParams, Param, Spread, StepKind, StepParams, TableCurve,
    Variation,
};
use aimsim_networks::ep::{EpActivation, EpUpdate, Feedback, Nudge};
use aimsim_networks::local::LocalRule;
use aimsim_networks::mlp::{Activation, BiasMode, Loss};
use aimsim_sim::io::IoConfig;
use aimsim_sim::ledger::CostModel;
use aimsim_sim::tile::{CellKind, TileConfig};
use aimsim_sim::update::{ControllerSpec, PulseScheme, Refresh};
use serde::Deserialize;
use toml::{Table, Value};

use crate::presets;
use crate::trace::{DeviceAddress, TraceSpec, TraceUnit};

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
        match &self.key {
            Some(k) => write!(f, "{}: key `{}`: {}", self.origin, k, self.message),
            None => write!(f, "{}: {}", self.origin, self.message),
        }
    }
}

impl std::error::Error for ScenarioError {}

// ---------------------------------------------------------------------------------------------------
// File format (serde). Documented key by key in docs/scenarios.md.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    scenario: MetaSection,
    device: DeviceSection,
    protocol: Option<ProtocolSection>,
    tile: Option<TileSection>,
    io: Option<IoSection>,
    update: Option<UpdateSection>,
    cost: Option<CostSection>,
    train: Option<TrainSection>,
    ep: Option<EpSection>,
    local: Option<LocalSection>,
    trace: Option<TraceSection>,
    variant: Option<Vec<VariantSection>>,
    sweep: Option<SweepSection>,
}

/// `[sweep]`: the grid, zipped groups and repeats of `aimsim sweep` (docs/sweeps.md).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SweepSection {
    grid: Option<Table>,
    zip: Option<Vec<Table>>,
    repeats: Option<u32>,
    seed: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TraceSection {
    devices: Option<Vec<TraceDeviceSection>>,
    sample: Option<u32>,
    every: Option<u64>,
    unit: Option<TraceUnitName>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TraceDeviceSection {
    layer: Option<usize>,
    tile: Option<usize>,
    row: Option<usize>,
    col: usize,
    array: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
enum TraceUnitName {
    Updates,
    Pulses,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VariantSection {
    name: String,
    set: Option<Table>,
    group: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
enum DatasetName {
    Glyphs,
    TeacherStudent,
    FashionMnist,
    Mnist,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
enum ActivationName {
    Sigmoid,
    Tanh,
    Relu,
    HardSigmoid,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
enum LossName {
    CrossEntropy,
    Mse,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
enum BiasName {
    Digital,
    Tile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrainSection {
    dataset: Option<DatasetName>,
    data_dir: Option<String>,
    train_samples: Option<u32>,
    test_samples: Option<u32>,
    glyph_side: Option<u32>,
    crop: Option<u32>,
    binarize: Option<f32>,
    hidden: Option<Vec<u32>>,
    activation: Option<ActivationName>,
    loss: Option<LossName>,
    bias: Option<BiasName>,
    init_scale: Option<f32>,
    init_program: Option<InitProgramName>,
    epochs: Option<u32>,
    lr: Option<f32>,
    lr_scale: Option<Vec<f32>>,
    lr_decay: Option<f32>,
    shuffle: Option<bool>,
    software: Option<bool>,
    trace_devices: Option<u32>,
    trace_every: Option<u32>,
    histogram_bins: Option<u32>,
    seeds: Option<Vec<u64>>,
    algorithm: Option<AlgorithmName>,
    checkpoint_every: Option<u32>,
    validation: Option<u32>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
enum InitProgramName {
    Pulses,
    Exact,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
enum CellName {
    Single,
    Pair,
    OneSided,
    MultiArray,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
enum ReferenceName {
    MidRange,
    DeviceZero,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TileSection {
    rows: Option<u32>,
    cols: Option<u32>,
    cell: Option<CellName>,
    gamma: Option<f32>,
    w_scale: Option<f32>,
    reference: Option<ReferenceName>,
}

/// Keys of one direction of the periphery.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct IoKeys {
    dac_bits: Option<u32>,
    adc_bits: Option<u32>,
    inp_bound: Option<f32>,
    out_bound: Option<f32>,
    out_noise: Option<f32>,
    w_noise: Option<f32>,
    noise_management: Option<bool>,
    bound_management: Option<bool>,
    max_bm_iterations: Option<u32>,
    max_bm_res: Option<f32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct IoSection {
    dac_bits: Option<u32>,
    adc_bits: Option<u32>,
    inp_bound: Option<f32>,
    out_bound: Option<f32>,
    out_noise: Option<f32>,
    w_noise: Option<f32>,
    noise_management: Option<bool>,
    bound_management: Option<bool>,
    max_bm_iterations: Option<u32>,
    max_bm_res: Option<f32>,
    zero_grad_at_bound: Option<bool>,
    backward: Option<IoKeys>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
enum ControllerName {
    SgdStochastic,
    SgdCount,
    SignThreshold,
    Bidirectional,
    Unidirectional,
    /// The old name of `relative-count`, refused with a pointer to the new one.
    Adaptive,
    RelativeCount,
    TikiTaka,
    MixedPrecision,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
enum SchemeName {
    Stochastic,
    Count,
    Sign,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
enum DirectionName {
    Bidirectional,
    Unidirectional,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateSection {
    controller: Option<ControllerName>,
    bl: Option<u32>,
    update_management: Option<bool>,
    bl_management: Option<bool>,
    max_pulses: Option<u32>,
    threshold: Option<f32>,
    scheme: Option<SchemeName>,
    direction: Option<DirectionName>,
    refresh_every: Option<u32>,
    refresh_hi: Option<f32>,
    refresh_lo: Option<f32>,
    transfer_every: Option<u32>,
    transfer_lr: Option<f32>,
    transfer_max_pulses: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CostSection {
    clock_hz: Option<f64>,
    read_cycles: Option<u32>,
    adc_cycles: Option<u32>,
    adc_energy_pj: Option<f64>,
    outputs_per_adc: Option<u32>,
    dac_energy_pj: Option<f64>,
    read_voltage: Option<f64>,
    pulse_cycles: Option<u32>,
    pulse_energy_pj: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetaSection {
    name: String,
    seed: Option<u64>,
    description: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
enum ModelName {
    ConstantStep,
    LinearStep,
    SoftBounds,
    SoftBoundsReference,
    ExpStep,
    PowStep,
    Neurosim,
    Table,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceSection {
    preset: Option<String>,
    label: Option<String>,
    citation: Option<String>,
    model: Option<ModelName>,
    g_min: Option<f64>,
    g_max: Option<f64>,
    c2c: Option<f64>,
    c2c_mode: Option<C2cModeName>,
    write_noise: Option<f64>,
    read_noise: Option<f64>,
    reference_mean: Option<f64>,
    reference_std: Option<f64>,
    subtract_symmetry_point: Option<bool>,
    stuck_min: Option<f64>,
    stuck_max: Option<f64>,
    stuck_random: Option<f64>,
    levels: Option<u32>,
    levels_down: Option<u32>,
    nl_up: Option<f64>,
    nl_down: Option<f64>,
    dw_min: Option<f64>,
    up_down: Option<f64>,
    w_min: Option<f64>,
    w_max: Option<f64>,
    gamma_up: Option<f64>,
    gamma_down: Option<f64>,
    a: Option<f64>,
    b: Option<f64>,
    a_up: Option<f64>,
    a_down: Option<f64>,
    table: Option<TableSection>,
    d2d: Option<D2dSection>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
enum C2cModeName {
    Multiplicative,
    Additive,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct D2dSection {
    dw_min: Option<VariationSection>,
    up_down: Option<VariationSection>,
    w_min: Option<VariationSection>,
    w_max: Option<VariationSection>,
    gamma_up: Option<VariationSection>,
    gamma_down: Option<VariationSection>,
    a: Option<VariationSection>,
    b: Option<VariationSection>,
    a_up: Option<VariationSection>,
    a_down: Option<VariationSection>,
    nl_up: Option<VariationSection>,
    nl_down: Option<VariationSection>,
    g_min: Option<VariationSection>,
    g_max: Option<VariationSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
enum DistName {
    Normal,
    Lognormal,
    Uniform,
    #[serde(rename = "lognormal-median")]
    LognormalMedian,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VariationSection {
    dist: DistName,
    sigma: Option<f64>,
    cv: Option<f64>,
    half_width: Option<f64>,
    rel_half_width: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TableSection {
    file: Option<String>,
    up: Option<Vec<f64>>,
    down: Option<Vec<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProtocolSection {
    pulses: Option<u32>,
    cycles: Option<u32>,
    devices: Option<u32>,
}

// ---------------------------------------------------------------------------------------------------
// Domain types.

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

/// A validated scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Scenario name.
    pub name: String,
    /// Master seed.
    pub seed: u64,
    /// Free text.
    pub description: Option<String>,
    /// Preset the device section started from.
    pub preset: Option<String>,
    /// Plot title of the device.
    pub label: Option<String>,
    /// Where the device parameters come from.
    pub citation: Option<String>,
    /// The device population's description.
    pub device: DeviceSpec,
    /// Protocol settings (defaults filled in).
    pub protocol: Protocol,
    /// Tile shape, unit cell and periphery.
    pub tile: TileConfig,
    /// Layer weight of a normalized tile weight of 1.
    pub w_scale: f32,
    /// Learning rule's controller and pulse scheme.
    pub controller: ControllerSpec,
    /// Technology costs for the ledger.
    pub cost: CostModel,
    /// Training settings, when the scenario trains a network.
    pub train: Option<TrainSpec>,
    /// Equilibrium-propagation settings (`[ep]`; defaults when absent).
    pub ep: EpSpec,
    /// Local-rule experiment (`[local]`), when the scenario has one.
    pub local: Option<LocalSpec>,
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

/// One axis of a sweep: dotted keys that advance together (one key for a grid axis, all the keys of a
/// zipped group) and their values, step by step.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepAxis {
    /// Dotted key paths, in the order of the results columns.
    pub keys: Vec<String>,
    /// `values[step][k]` is the value of `keys[k]` at this step of the axis.
    pub values: Vec<Vec<Value>>,
    /// Where each key was written (`[sweep] grid` or `[sweep] zip[i]`), for error messages.
    pub section: String,
}

/// The `[sweep]` section, validated. Axes are in plan order: grid keys sorted by name, then zipped
/// groups in file order; the first axis varies slowest, repeats fastest.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepSpec {
    /// Axes of the cartesian product.
    pub axes: Vec<SweepAxis>,
    /// Runs per combination of values, each with its own seed.
    pub repeats: u32,
    /// Master seed of the sweep (`sweep.seed`, else `scenario.seed`).
    pub seed: u64,
}

/// Largest number of points a sweep may expand to.
pub const MAX_SWEEP_POINTS: u64 = 1_000_000;

/// Which dataset a run uses.
#[derive(Debug, Clone, PartialEq)]
pub enum DatasetSpec {
    /// Built-in procedurally drawn digit glyphs (`glyph_side` x `glyph_side` pixels).
    Glyphs {
        /// Image side in pixels.
        side: u32,
    },
    /// Built-in teacher-student task.
    TeacherStudent,
    /// IDX files of Fashion-MNIST (`name` = "fashion-mnist") or MNIST (`name` = "mnist").
    Idx {
        /// Dataset name (also the folder name searched).
        name: &'static str,
        /// Folder from the scenario, resolved against the scenario's folder.
        dir: Option<PathBuf>,
    },
}

/// The `[train]` section, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainSpec {
    /// Dataset.
    pub dataset: DatasetSpec,
    /// Training samples used (the first ones, or generated).
    pub train_samples: u32,
    /// Test samples used.
    pub test_samples: u32,
    /// Keep the central `crop x crop` pixels of every image (none: the whole image).
    pub crop: Option<u32>,
    /// Inputs `>= binarize` become 1, the others 0 (none: inputs as loaded).
    pub binarize: Option<f32>,
    /// Hidden layer sizes.
    pub hidden: Vec<u32>,
    /// Hidden activation.
    pub activation: Activation,
    /// Loss.
    pub loss: Loss,
    /// Bias placement.
    pub bias: BiasMode,
    /// Scale of the initial weights.
    pub init_scale: f32,
    /// Set the initial weights exactly instead of programming them with pulses (`init_program`).
    pub exact_init: bool,
    /// Epochs.
    pub epochs: u32,
    /// Learning rate.
    pub lr: f32,
    /// Factor on `lr` per weight layer (first layer first; empty: 1 for every layer).
    pub lr_scale: Vec<f32>,
    /// Learning-rate factor per epoch.
    pub lr_decay: f32,
    /// Shuffle every epoch.
    pub shuffle: bool,
    /// Train the float software baseline instead of the hardware.
    pub software: bool,
    /// Devices traced during training.
    pub trace_devices: u32,
    /// Training samples between two trace records (0 = no trace).
    pub trace_every: u32,
    /// Bins of the conductance histograms.
    pub histogram_bins: u32,
    /// Seeds to repeat every run with (empty: the scenario's seed once).
    pub seeds: Vec<u64>,
    /// Learning algorithm.
    pub algorithm: Algorithm,
    /// Epochs between two checkpoints (0: none; the last epoch always gets one when > 0).
    pub checkpoint_every: u32,
    /// Training samples held out as a validation split (the last ones of the training set, never
    /// trained on; 0: none). Below `train_samples`.
    pub validation: u32,
    /// What is traced during training: the `[trace]` section, else `trace_devices` random devices
    /// every `trace_every` updates.
    pub trace: TraceSpec,
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

// ---------------------------------------------------------------------------------------------------
// Locating keys in sources.

/// One text a key may have come from.
struct Source<'a> {
    origin: String,
    text: &'a str,
}

/// Where a dotted key path was written: the overrides win, then the user's file, then the preset.
struct Locator<'a> {
    overrides: Vec<(Vec<String>, String)>,
    sources: Vec<Source<'a>>,
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Span of the key (or of an array element) at `path`, or of the deepest ancestor written in `text`.
fn find_span(text: &str, path: &[String]) -> Option<(std::ops::Range<usize>, bool)> {
    let root = toml::de::DeTable::parse(text).ok()?;
    let mut table = root.get_ref();
    let mut best: Option<std::ops::Range<usize>> = None;
    let mut value: Option<&toml::Spanned<toml::de::DeValue>> = None;
    for (depth, seg) in path.iter().enumerate() {
        if let Some(v) = value {
            match v.get_ref() {
                toml::de::DeValue::Table(t) => table = t,
                toml::de::DeValue::Array(a) => {
                    if let Ok(idx) = seg.parse::<usize>()
                        && let Some(el) = a.get(idx)
                    {
                        best = Some(el.span());
                        value = Some(el);
                        if depth + 1 == path.len() {
                            return best.map(|s| (s, true));
                        }
                        continue;
                    }
                    return best.map(|s| (s, false));
                }
                _ => return best.map(|s| (s, false)),
            }
        }
        let Some((k, v)) = table
            .iter()
            .find(|(k, _)| k.get_ref().as_ref() == seg.as_str())
        else {
            return best.map(|s| (s, false));
        };
        best = Some(k.span());
        value = Some(v);
    }
    best.map(|s| (s, true))
}

impl Locator<'_> {
    fn error(&self, key: &[String], message: impl Into<String>) -> ScenarioError {
        let dotted = key.join(".");
        for (path, origin) in &self.overrides {
            let n = path.len().min(key.len());
            if path[..n] == key[..n] {
                return ScenarioError {
                    origin: origin.clone(),
                    key: Some(dotted),
                    message: message.into(),
                };
            }
        }
        // Exact location first in any source, then the deepest ancestor in the user's file.
        let mut fallback = None;
        for src in &self.sources {
            if let Some((span, exact)) = find_span(src.text, key) {
                let (l, c) = line_col(src.text, span.start);
                let origin = format!("{}:{l}:{c}", src.origin);
                if exact {
                    return ScenarioError {
                        origin,
                        key: Some(dotted),
                        message: message.into(),
                    };
                }
                fallback.get_or_insert(origin);
            }
        }
        ScenarioError {
            origin: fallback.unwrap_or_else(|| self.sources[0].origin.clone()),
            key: Some(dotted),
            message: message.into(),
        }
    }
}

/// `origin:line:col` of the key at `path` in `text` (or of its deepest written ancestor), else `origin`.
pub fn key_origin(text: &str, origin: &str, path: &[String]) -> String {
    match find_span(text, path) {
        Some((span, _)) => {
            let (l, c) = line_col(text, span.start);
            format!("{origin}:{l}:{c}")
        }
        None => origin.to_string(),
    }
}

fn split_key(dotted: &str) -> Vec<String> {
    dotted.split('.').map(str::to_string).collect()
}

// ---------------------------------------------------------------------------------------------------
// Loading.

/// Reads, overrides, expands, deserializes and validates a scenario file.
pub fn load(path: &Path, sets: &[String]) -> Result<Loaded, ScenarioError> {
    let display = path.display().to_string();
    let source = std::fs::read_to_string(path).map_err(|e| ScenarioError {
        origin: display.clone(),
        key: None,
        message: format!("cannot read the scenario file: {e}"),
    })?;
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    load_str(&source, &display, &base_dir, sets).map(|(scenario, effective, overrides)| Loaded {
        scenario,
        path: path.to_path_buf(),
        source,
        effective,
        overrides,
    })
}

/// Parses TOML text, mapping a syntax error to `origin:line:col`.
fn parse_table(text: &str, origin: &str) -> Result<Table, ScenarioError> {
    text.parse::<Table>().map_err(|e| {
        let (l, c) = e.span().map_or((1, 1), |s| line_col(text, s.start));
        ScenarioError {
            origin: format!("{origin}:{l}:{c}"),
            key: None,
            message: format!("invalid TOML: {}", e.message().trim().replace('\n', " ")),
        }
    })
}

/// Parses one `--set key=value` argument into a key path and a TOML value. Values that are not valid
/// TOML are taken as strings, so `--set device.model=soft-bounds` needs no quotes.
pub fn parse_override(raw: &str) -> Result<(Vec<String>, Value), ScenarioError> {
    let err = |message: String| ScenarioError {
        origin: format!("--set {raw}"),
        key: None,
        message,
    };
    let Some((key, value)) = raw.split_once('=') else {
        return Err(err(
            "expected <dotted.key>=<value>, e.g. --set device.c2c=0.02".into(),
        ));
    };
    let key = key.trim();
    let path = split_key(key);
    if path.iter().any(|s| {
        s.is_empty()
            || !s
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    }) {
        return Err(err(format!(
            "`{key}` is not a dotted key path (letters, digits, `_` and `-` separated by dots)"
        )));
    }
    let value = value.trim();
    let parsed = format!("v = {value}")
        .parse::<Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| Value::String(value.to_string()));
    Ok((path, parsed))
}

fn apply_override(
    table: &mut Table,
    path: &[String],
    value: Value,
    raw: &str,
) -> Result<(), ScenarioError> {
    let mut cur = table;
    for (i, seg) in path[..path.len() - 1].iter().enumerate() {
        let entry = cur
            .entry(seg.clone())
            .or_insert_with(|| Value::Table(Table::new()));
        cur = match entry {
            Value::Table(t) => t,
            _ => {
                return Err(ScenarioError {
                    origin: format!("--set {raw}"),
                    key: Some(path[..=i].join(".")),
                    message: "is a value, not a section: cannot set a key inside it".into(),
                });
            }
        };
    }
    cur.insert(path[path.len() - 1].clone(), value);
    Ok(())
}

/// Overlays `top` onto `base`, merging sub-tables key by key.
fn deep_merge(base: &mut Table, top: Table) {
    for (k, v) in top {
        match (base.get_mut(&k), v) {
            (Some(Value::Table(b)), Value::Table(t)) => deep_merge(b, t),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// [`load`] on text already read. `base_dir` resolves relative data files.
pub fn load_str(
    text: &str,
    origin: &str,
    base_dir: &Path,
    sets: &[String],
) -> Result<(Scenario, String, Vec<String>), ScenarioError> {
    load_variant_str(text, origin, base_dir, sets, None)
}

/// Loads a scenario as seen by one of its `[[variant]]`s: the variant's `set` table is applied after the
/// command line's overrides.
pub fn load_variant_str(
    text: &str,
    origin: &str,
    base_dir: &Path,
    sets: &[String],
    variant: Option<&str>,
) -> Result<(Scenario, String, Vec<String>), ScenarioError> {
    load_point_str(text, origin, base_dir, sets, variant, &[])
}

/// One value a sweep point sets: dotted key path, value, and where it was written (for errors).
#[derive(Debug, Clone)]
pub struct PointSet {
    /// Dotted key path.
    pub key: String,
    /// The value.
    pub value: Value,
    /// Where the value comes from, e.g. `sweep.toml:12:3 (sweep point p0003)`.
    pub origin: String,
}

/// [`load_variant_str`] plus the values of one sweep point, applied after the command line's overrides
/// exactly like `--set` (so any key path works), with errors pointing at `PointSet::origin`.
pub fn load_point_str(
    text: &str,
    origin: &str,
    base_dir: &Path,
    sets: &[String],
    variant: Option<&str>,
    point: &[PointSet],
) -> Result<(Scenario, String, Vec<String>), ScenarioError> {
    let mut table = parse_table(text, origin)?;
    let mut overrides = Vec::new();
    for raw in sets {
        let (path, value) = parse_override(raw)?;
        apply_override(&mut table, &path, value, raw)?;
        overrides.push((path, format!("--set {raw}")));
    }
    let mut applied = sets.to_vec();
    for p in point {
        let path = split_key(&p.key);
        let raw = format!("{}={}", p.key, p.value);
        apply_override(&mut table, &path, p.value.clone(), &raw).map_err(|mut e| {
            e.origin = p.origin.clone();
            e
        })?;
        overrides.push((path, p.origin.clone()));
        applied.push(format!("sweep: {raw}"));
    }
    if let Some(name) = variant {
        let entry = table
            .get("variant")
            .and_then(Value::as_array)
            .and_then(|vs| {
                vs.iter()
                    .find(|v| v.get("name").and_then(Value::as_str) == Some(name))
            })
            .cloned();
        let Some(entry) = entry else {
            return Err(ScenarioError {
                origin: origin.to_string(),
                key: Some("variant".into()),
                message: format!("no [[variant]] is named `{name}`"),
            });
        };
        if let Some(Value::Table(set)) = entry.get("set") {
            for (k, v) in set {
                let path = split_key(k);
                let raw = format!("{k}={v}");
                let label = format!("{origin}: [[variant]] `{name}` set {k} = {v}");
                if path.iter().any(|p| p.is_empty()) || path[0] == "variant" {
                    return Err(ScenarioError {
                        origin: label,
                        key: Some(k.clone()),
                        message: "is not a dotted key path of a scenario key".into(),
                    });
                }
                apply_override(&mut table, &path, v.clone(), &raw).map_err(|mut e| {
                    e.origin = label.clone();
                    e
                })?;
                overrides.push((path, label));
                applied.push(format!("variant {name}: {raw}"));
            }
        }
    }
    let mut locator = Locator {
        overrides,
        sources: vec![Source {
            origin: origin.to_string(),
            text,
        }],
    };

    // Preset expansion: the preset's [device] table is the base, the user's keys override it.
    let preset_name = match table.get("device").and_then(|d| d.get("preset")) {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            return Err(locator.error(
                &split_key("device.preset"),
                "must be a string naming a built-in preset",
            ));
        }
    };
    let mut preset_files: &[(&str, &str)] = &[];
    if let Some(name) = &preset_name {
        let Some(p) = presets::find(name) else {
            return Err(locator.error(
                &split_key("device.preset"),
                format!(
                    "unknown preset `{name}`; built-in presets: {}",
                    presets::PRESETS
                        .iter()
                        .map(|p| p.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        };
        let preset_origin = format!("preset `{}` (scenarios/devices/{}.toml)", p.name, p.name);
        let mut preset_table = parse_table(p.toml, &preset_origin)?;
        let Some(Value::Table(mut base)) = preset_table.remove("device") else {
            return Err(ScenarioError {
                origin: preset_origin,
                key: Some("device".into()),
                message: "a preset needs a [device] section".into(),
            });
        };
        base.remove("preset");
        if let Some(Value::Table(user)) = table.remove("device") {
            // Keys of the preset that do not fit a model the user switched to are reported (in the
            // preset's file) by the model-key check in `convert`.
            deep_merge(&mut base, user);
        }
        base.insert("preset".into(), Value::String(name.clone()));
        table.insert("device".into(), Value::Table(base));
        locator.sources.push(Source {
            origin: preset_origin,
            text: p.toml,
        });
        preset_files = p.files;
    }

    let effective = toml::to_string(&table).unwrap_or_default();
    let file: ScenarioFile = serde_path_to_error::deserialize(Value::Table(table.clone())).map_err(|e| {
        let mut path: Vec<String> = e
            .path()
            .iter()
            .filter_map(|s| match s {
                serde_path_to_error::Segment::Seq { index } => Some(index.to_string()),
                serde_path_to_error::Segment::Map { key } | serde_path_to_error::Segment::Enum { variant: key } => {
                    Some(key.clone())
                }
                serde_path_to_error::Segment::Unknown => None,
            })
            .collect();
        let message = e.inner().to_string();
        let mut message = message.trim().trim_end_matches('.').replace('\n', " ");
        // The TOML value deserializer appends the path itself; the error already names the key.
        if let Some(idx) = message.rfind(" in `") {
            message.truncate(idx);
        }
        // Unknown fields are reported at the parent: name the field itself.
        if let Some(rest) = message.strip_prefix("unknown field `")
            && let Some((field, _)) = rest.split_once('`')
            && path.last().map(String::as_str) != Some(field)
        {
            path.push(field.to_string());
        }
        if path.is_empty() {
            return ScenarioError {
                origin: origin.to_string(),
                key: None,
                message: format!("{message} (a scenario needs a [scenario] section with `name`, and a [device] section)"),
            };
        }
        locator.error(&path, message)
    })?;

    convert(file, &locator, base_dir, preset_files).map(|s| (s, effective, applied))
}

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

fn convert(
    file: ScenarioFile,
    loc: &Locator,
    base_dir: &Path,
    preset_files: &[(&str, &str)],
) -> Result<Scenario, ScenarioError> {
    let d = file.device;
    let key = |k: &str| split_key(&format!("device.{k}"));
    let Some(model_name) = &d.model else {
        return Err(loc.error(
            &split_key("device.model"),
            "missing: set `model` (constant-step, linear-step, soft-bounds, exp-step, pow-step, neurosim, table) \
             or start from a `preset`",
        ));
    };

    // Keys that belong to one family of models only.
    let step_only = [
        ("dw_min", d.dw_min.is_some()),
        ("up_down", d.up_down.is_some()),
        ("w_min", d.w_min.is_some()),
        ("w_max", d.w_max.is_some()),
    ];
    let gamma = [
        ("gamma_up", d.gamma_up.is_some()),
        ("gamma_down", d.gamma_down.is_some()),
    ];
    let exp_only = [
        ("a", d.a.is_some()),
        ("b", d.b.is_some()),
        ("a_up", d.a_up.is_some()),
        ("a_down", d.a_down.is_some()),
    ];
    let neurosim_only = [
        ("nl_up", d.nl_up.is_some()),
        ("nl_down", d.nl_down.is_some()),
        ("levels_down", d.levels_down.is_some()),
    ];
    let table_only = [("table", d.table.is_some())];
    let reference_only = [
        ("reference_mean", d.reference_mean.is_some()),
        ("reference_std", d.reference_std.is_some()),
        (
            "subtract_symmetry_point",
            d.subtract_symmetry_point.is_some(),
        ),
    ];
    let step_noise = [
        ("c2c_mode", d.c2c_mode.is_some()),
        ("write_noise", d.write_noise.is_some()),
    ];
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
    let mut not_allowed: Vec<&[(&str, bool)]> = Vec::new();
    if !reference {
        not_allowed.push(&reference_only);
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
            not_allowed.push(&neurosim_only);
            not_allowed.push(&table_only);
            if k != StepKind::Exp {
                not_allowed.push(&exp_only);
            }
            if matches!(k, StepKind::Constant | StepKind::SoftBounds) {
                not_allowed.push(&gamma);
            }
        }
        None => {
            not_allowed.extend([&step_only[..], &gamma, &exp_only, &step_noise]);
            if matches!(model_name, ModelName::Neurosim) {
                not_allowed.push(&table_only);
            } else {
                not_allowed.push(&neurosim_only);
            }
        }
    }
    for group in not_allowed {
        for (k, present) in group {
            if *present {
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
        let entries = [
            (Param::DwMin, &v.dw_min),
            (Param::UpDown, &v.up_down),
            (Param::WMin, &v.w_min),
            (Param::WMax, &v.w_max),
            (Param::GammaUp, &v.gamma_up),
            (Param::GammaDown, &v.gamma_down),
            (Param::A, &v.a),
            (Param::B, &v.b),
            (Param::AUp, &v.a_up),
            (Param::ADown, &v.a_down),
            (Param::NlUp, &v.nl_up),
            (Param::NlDown, &v.nl_down),
            (Param::GMin, &v.g_min),
            (Param::GMax, &v.g_max),
        ];
        for (p, section) in entries {
            if let Some(s) = section {
                let var = variation(s, &format!("device.d2d.{}", p.key()), loc)?;
                spec.d2d.push((p, var));
            }
        }
    }
    spec.validate()
        .map_err(|e| loc.error(&split_key(&format!("device.{}", e.key)), e.message))?;

    let p = file.protocol.unwrap_or(ProtocolSection {
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
    let (tile, w_scale, controller, cost) = chip(file.tile, file.io, file.update, file.cost, loc)?;
    if tile.zero_reference && !matches!(&spec.model, Model::Step(s) if s.g_range.is_none()) {
        return Err(loc.error(
            &split_key("tile.reference"),
            "\"device-zero\" needs a device in weight units (a step model without g_min/g_max): a \
             conductance has no weight 0 to read against",
        ));
    }
    let trace = file.trace.map(|t| trace_spec(t, loc)).transpose()?;
    let train = match file.train {
        None => None,
        Some(t) => Some(train_spec(t, loc, base_dir, trace.as_ref())?),
    };
    let (ep, local) = energy_and_local(file.ep, file.local, loc)?;
    let mut variants: Vec<String> = Vec::new();
    let mut variant_groups: Vec<Option<String>> = Vec::new();
    for (k, v) in file.variant.unwrap_or_default().into_iter().enumerate() {
        if let Some(g) = &v.group {
            let gkey = split_key(&format!("variant.{k}.group"));
            if g.is_empty() || g.chars().any(char::is_whitespace) {
                return Err(loc.error(
                    &gkey,
                    format!("`{g}`: a group name is a word (no spaces), e.g. \"unidirectional\""),
                ));
            }
            match &train {
                Some(t) if t.validation > 0 => {}
                _ => {
                    return Err(loc.error(
                        &gkey,
                        "choosing among a group's variants needs a validation split: set \
                         train.validation to the number of training samples to hold out",
                    ));
                }
            }
        }
        let key = split_key(&format!("variant.{k}.name"));
        if v.name.is_empty()
            || !v
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(loc.error(
                &key,
                format!(
                    "`{}`: a variant name becomes a folder name: use letters, digits, `-` and `_`",
                    v.name
                ),
            ));
        }
        if variants.contains(&v.name) {
            return Err(loc.error(&key, format!("two variants are named `{}`", v.name)));
        }
        let _ = v.set;
        variants.push(v.name);
        variant_groups.push(v.group);
    }
    if !variants.is_empty() && train.is_none() && local.is_none() {
        return Err(loc.error(
            &split_key("variant"),
            "variants compare training runs: add a [train] or [local] section",
        ));
    }
    let seed = file.scenario.seed.unwrap_or(0);
    let sweep = match file.sweep {
        None => None,
        Some(sw) => Some(sweep_spec(
            sw,
            seed,
            !variants.is_empty(),
            train.as_ref(),
            loc,
        )?),
    };

    Ok(Scenario {
        name: file.scenario.name,
        seed,
        description: file.scenario.description,
        preset: d.preset,
        label: d.label,
        citation: d.citation,
        device: spec,
        protocol,
        tile,
        w_scale,
        controller,
        cost,
        train,
        ep,
        local,
        variants,
        variant_groups,
        sweep,
        trace,
    })
}

/// Checks that `key` is a dotted key path a sweep may vary.
fn sweep_key_ok(key: &str) -> Result<(), String> {
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|s| {
        s.is_empty()
            || !s
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    }) {
        return Err(
            "is not a dotted key path (letters, digits, `_` and `-` separated by dots)".into(),
        );
    }
    match (parts[0], key) {
        ("sweep" | "variant", _) => Err(format!("a sweep cannot vary the `{}` section", parts[0])),
        (_, "scenario.seed") => Err(
            "every point's seed is derived from the master seed and the point index: use `repeats` for more seeds"
                .into(),
        ),
        (_, "train.seeds") => Err("use `sweep.repeats` to repeat points with distinct seeds".into()),
        _ => Ok(()),
    }
}

fn sweep_spec(
    sw: SweepSection,
    scenario_seed: u64,
    has_variants: bool,
    train: Option<&TrainSpec>,
    loc: &Locator,
) -> Result<SweepSpec, ScenarioError> {
    let key = |k: &str| split_key(&format!("sweep.{k}"));
    let Some(t) = train else {
        return Err(loc.error(
            &split_key("sweep"),
            "every sweep point trains a network: add a [train] section",
        ));
    };
    if has_variants {
        return Err(loc.error(
            &split_key("sweep"),
            "a scenario with [sweep] cannot have [[variant]]s: put the settings they compare in `sweep.grid` \
             (e.g. \"update.controller\" = [\"bidirectional\", \"unidirectional\"])",
        ));
    }
    if !t.seeds.is_empty() {
        return Err(loc.error(
            &split_key("train.seeds"),
            "does not apply to a sweep: use `sweep.repeats`; each point's seed comes from the master seed and its index",
        ));
    }
    let mut axes: Vec<SweepAxis> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    let mut check_values =
        |path: Vec<String>, k: &str, v: &Value| -> Result<Vec<Value>, ScenarioError> {
            sweep_key_ok(k).map_err(|m| loc.error(&path, m))?;
            if seen.iter().any(|s| s == k) {
                return Err(loc.error(
                    &path,
                    "is swept twice (in `grid` and a `zip` group, or two groups)",
                ));
            }
            seen.push(k.to_string());
            match v {
                Value::Array(a) if !a.is_empty() && a.len() <= 10_000 => Ok(a.clone()),
                Value::Array(a) => {
                    Err(loc.error(&path, format!("needs 1 to 10000 values, got {}", a.len())))
                }
                _ => Err(loc.error(
                    &path,
                    "must be an array of the values to sweep, e.g. [0.5, 1.0, 2.0]",
                )),
            }
        };
    // Grid keys in name order (a TOML table has no order of its own).
    for (k, v) in sw.grid.unwrap_or_default() {
        let values = check_values(vec!["sweep".into(), "grid".into(), k.clone()], &k, &v)?;
        axes.push(SweepAxis {
            keys: vec![k],
            values: values.into_iter().map(|v| vec![v]).collect(),
            section: "grid".into(),
        });
    }
    for (i, group) in sw.zip.unwrap_or_default().into_iter().enumerate() {
        let gpath = vec!["sweep".into(), "zip".into(), i.to_string()];
        if group.is_empty() {
            return Err(loc.error(&gpath, "a zipped group needs at least one key"));
        }
        let mut keys = Vec::new();
        let mut cols: Vec<Vec<Value>> = Vec::new();
        for (k, v) in group {
            let mut path = gpath.clone();
            path.push(k.clone());
            let values = check_values(path.clone(), &k, &v)?;
            if let Some(first) = cols.first()
                && first.len() != values.len()
            {
                return Err(loc.error(
                    &path,
                    format!(
                        "the keys of a zipped group advance together and need equal lengths: `{}` has {}, this one {}",
                        keys[0],
                        first.len(),
                        values.len()
                    ),
                ));
            }
            keys.push(k);
            cols.push(values);
        }
        let steps = cols[0].len();
        axes.push(SweepAxis {
            keys,
            values: (0..steps)
                .map(|s| cols.iter().map(|c| c[s].clone()).collect())
                .collect(),
            section: format!("zip[{i}]"),
        });
    }
    let repeats = sw.repeats.unwrap_or(1);
    if !(1..=1000).contains(&repeats) {
        return Err(loc.error(
            &key("repeats"),
            format!("must lie in [1, 1000], got {repeats}"),
        ));
    }
    let points = axes
        .iter()
        .map(|a| a.values.len() as u64)
        .product::<u64>()
        .saturating_mul(u64::from(repeats));
    if points > MAX_SWEEP_POINTS {
        return Err(loc.error(
            &split_key("sweep"),
            format!("expands to {points} points, above the limit of {MAX_SWEEP_POINTS}"),
        ));
    }
    Ok(SweepSpec {
        axes,
        repeats,
        seed: sw.seed.unwrap_or(scenario_seed),
    })
}

fn trace_spec(t: TraceSection, loc: &Locator) -> Result<TraceSpec, ScenarioError> {
    let devices: Vec<DeviceAddress> = t
        .devices
        .unwrap_or_default()
        .into_iter()
        .map(|d| DeviceAddress {
            layer: d.layer.unwrap_or(0),
            tile: d.tile.unwrap_or(0),
            row: d.row.unwrap_or(0),
            col: d.col,
            array: d.array,
        })
        .collect();
    let sample = t.sample.unwrap_or(0);
    for (k, n) in [("devices", devices.len()), ("sample", sample as usize)] {
        if n > 100_000 {
            return Err(loc.error(
                &split_key(&format!("trace.{k}")),
                format!("at most 100000 traced devices, got {n}"),
            ));
        }
    }
    Ok(TraceSpec {
        devices,
        sample,
        every: t.every.unwrap_or(1),
        unit: match t.unit {
            None | Some(TraceUnitName::Updates) => TraceUnit::Updates,
            Some(TraceUnitName::Pulses) => TraceUnit::Pulses,
        },
    })
}

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

type ChipParts = (TileConfig, f32, ControllerSpec, CostModel);

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
    for (k, present) in [
        ("bl", u.bl.is_some()),
        ("update_management", u.update_management.is_some()),
        ("bl_management", u.bl_management.is_some()),
        ("max_pulses", u.max_pulses.is_some()),
        ("threshold", u.threshold.is_some()),
        ("scheme", u.scheme.is_some()),
        ("direction", u.direction.is_some()),
        ("refresh_every", u.refresh_every.is_some()),
        ("refresh_hi", u.refresh_hi.is_some()),
        ("refresh_lo", u.refresh_lo.is_some()),
        ("transfer_every", u.transfer_every.is_some()),
        ("transfer_lr", u.transfer_lr.is_some()),
        ("transfer_max_pulses", u.transfer_max_pulses.is_some()),
    ] {
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

/// A `seeds` list (of `[train]` or `[local]`): at most 1000 seeds, none listed twice.
fn seed_list(
    seeds: Option<Vec<u64>>,
    key: &[String],
    loc: &Locator,
) -> Result<Vec<u64>, ScenarioError> {
    let seeds = seeds.unwrap_or_default();
    if seeds.len() > 1000 {
        return Err(loc.error(key, format!("at most 1000 seeds, got {}", seeds.len())));
    }
    for (i, a) in seeds.iter().enumerate() {
        if seeds[..i].contains(a) {
            return Err(loc.error(key, format!("seed {a} is listed twice")));
        }
    }
    Ok(seeds)
}

fn train_spec(
    t: TrainSection,
    loc: &Locator,
    base_dir: &Path,
    trace: Option<&TraceSpec>,
) -> Result<TrainSpec, ScenarioError> {
    let key = |k: &str| split_key(&format!("train.{k}"));
    let dataset = match t.dataset {
        None | Some(DatasetName::Glyphs) => DatasetSpec::Glyphs {
            side: t.glyph_side.unwrap_or(16),
        },
        Some(DatasetName::TeacherStudent) => DatasetSpec::TeacherStudent,
        Some(DatasetName::FashionMnist) => DatasetSpec::Idx {
            name: "fashion-mnist",
            dir: t.data_dir.as_ref().map(|d| base_dir.join(d)),
        },
        Some(DatasetName::Mnist) => DatasetSpec::Idx {
            name: "mnist",
            dir: t.data_dir.as_ref().map(|d| base_dir.join(d)),
        },
    };
    if t.glyph_side.is_some() && !matches!(dataset, DatasetSpec::Glyphs { .. }) {
        return Err(loc.error(&key("glyph_side"), "only applies to dataset = \"glyphs\""));
    }
    if t.data_dir.is_some() && !matches!(dataset, DatasetSpec::Idx { .. }) {
        return Err(loc.error(
            &key("data_dir"),
            "only applies to IDX datasets (fashion-mnist, mnist)",
        ));
    }
    if let DatasetSpec::Glyphs { side } = dataset
        && !(8..=64).contains(&side)
    {
        return Err(loc.error(
            &key("glyph_side"),
            format!("must lie in [8, 64] pixels, got {side}"),
        ));
    }
    if let Some(c) = t.crop {
        match dataset {
            DatasetSpec::TeacherStudent => {
                return Err(loc.error(
                    &key("crop"),
                    "applies to image datasets (glyphs, fashion-mnist, mnist), not teacher-student",
                ));
            }
            DatasetSpec::Glyphs { side } if c == 0 || c > side => {
                return Err(loc.error(
                    &key("crop"),
                    format!("must lie in [1, {side}] pixels (train.glyph_side), got {c}"),
                ));
            }
            _ if c == 0 || c > 4096 => {
                return Err(loc.error(
                    &key("crop"),
                    format!("must lie in [1, 4096] pixels, got {c}"),
                ));
            }
            _ => {}
        }
    }
    if let Some(b) = t.binarize
        && !(b.is_finite() && b > 0.0 && b <= 1.0)
    {
        return Err(loc.error(
            &key("binarize"),
            format!("threshold must lie in (0, 1], got {b}"),
        ));
    }
    let (dtrain, dtest) = match dataset {
        DatasetSpec::Idx { .. } => (60_000, 10_000),
        _ => (4_000, 1_000),
    };
    let train_samples = t.train_samples.unwrap_or(dtrain);
    let test_samples = t.test_samples.unwrap_or(dtest);
    if train_samples == 0 {
        return Err(loc.error(&key("train_samples"), "must be at least 1"));
    }
    let validation = t.validation.unwrap_or(0);
    if validation >= train_samples {
        return Err(loc.error(
            &key("validation"),
            format!(
                "holds out {validation} of the {train_samples} training samples (train.train_samples): \
                 at least one must remain to train on"
            ),
        ));
    }
    let hidden = t.hidden.unwrap_or_else(|| vec![64]);
    if let Some(h) = hidden.iter().find(|h| **h == 0 || **h > 16_384) {
        return Err(loc.error(
            &key("hidden"),
            format!("layer sizes must lie in [1, 16384], got {h}"),
        ));
    }
    let epochs = t.epochs.unwrap_or(3);
    if epochs == 0 || epochs > 10_000 {
        return Err(loc.error(
            &key("epochs"),
            format!("must lie in [1, 10000], got {epochs}"),
        ));
    }
    let lr = t.lr.unwrap_or(0.1);
    if !(lr.is_finite() && lr > 0.0) {
        return Err(loc.error(&key("lr"), format!("must be > 0, got {lr}")));
    }
    let lr_scale = t.lr_scale.unwrap_or_default();
    if !lr_scale.is_empty() && lr_scale.len() != hidden.len() + 1 {
        return Err(loc.error(
            &key("lr_scale"),
            format!(
                "needs one factor per weight layer ({} for train.hidden = {hidden:?}), got {}",
                hidden.len() + 1,
                lr_scale.len()
            ),
        ));
    }
    if let Some(f) = lr_scale.iter().find(|f| !(f.is_finite() && **f > 0.0)) {
        return Err(loc.error(&key("lr_scale"), format!("factors must be > 0, got {f}")));
    }
    let lr_decay = t.lr_decay.unwrap_or(1.0);
    if !(lr_decay.is_finite() && lr_decay > 0.0 && lr_decay <= 1.0) {
        return Err(loc.error(
            &key("lr_decay"),
            format!("must lie in (0, 1], got {lr_decay}"),
        ));
    }
    let init_scale = t.init_scale.unwrap_or(1.0);
    if !(init_scale.is_finite() && init_scale >= 0.0) {
        return Err(loc.error(
            &key("init_scale"),
            format!("must be >= 0, got {init_scale}"),
        ));
    }
    let histogram_bins = t.histogram_bins.unwrap_or(40);
    if !(2..=10_000).contains(&histogram_bins) {
        return Err(loc.error(
            &key("histogram_bins"),
            format!("must lie in [2, 10000], got {histogram_bins}"),
        ));
    }
    let seeds = seed_list(t.seeds, &key("seeds"), loc)?;
    let algorithm = match t.algorithm {
        None | Some(AlgorithmName::Bp) => Algorithm::Bp,
        Some(AlgorithmName::Ep) => Algorithm::Ep,
    };
    if algorithm == Algorithm::Ep {
        for (k, present, instead) in [
            ("activation", t.activation.is_some(), "ep.activation"),
            ("loss", t.loss.is_some(), "EP's squared-error cost"),
            ("bias", t.bias.is_some(), "EP's digital biases"),
            ("lr_scale", !lr_scale.is_empty(), "one train.lr"),
            (
                "init_program",
                t.init_program.is_some(),
                "the pulse-programmed start EP networks use",
            ),
        ] {
            if present {
                return Err(loc.error(
                    &key(k),
                    format!("applies to algorithm = \"bp\" only; with \"ep\" use {instead}"),
                ));
            }
        }
    }
    let trace_devices = t.trace_devices.unwrap_or(16);
    if trace_devices > 100_000 {
        return Err(loc.error(
            &key("trace_devices"),
            format!("at most 100000, got {trace_devices}"),
        ));
    }
    if trace.is_some() {
        for (k, v) in [
            ("trace_devices", t.trace_devices),
            ("trace_every", t.trace_every),
        ] {
            if v.is_some() {
                return Err(loc.error(
                    &key(k),
                    "the scenario has a [trace] section: set the traced devices and cadence there",
                ));
            }
        }
    }
    let trace = trace.cloned().unwrap_or_else(|| TraceSpec {
        devices: Vec::new(),
        sample: trace_devices,
        every: u64::from(t.trace_every.unwrap_or(100)),
        unit: TraceUnit::Updates,
    });
    Ok(TrainSpec {
        dataset,
        train_samples,
        test_samples,
        crop: t.crop,
        binarize: t.binarize,
        hidden,
        activation: match t.activation {
            None | Some(ActivationName::Sigmoid) => Activation::Sigmoid,
            Some(ActivationName::Tanh) => Activation::Tanh,
            Some(ActivationName::Relu) => Activation::Relu,
            Some(ActivationName::HardSigmoid) => Activation::HardSigmoid,
        },
        loss: match t.loss {
            None | Some(LossName::CrossEntropy) => Loss::CrossEntropy,
            Some(LossName::Mse) => Loss::Mse,
        },
        bias: match t.bias {
            None | Some(BiasName::Digital) => BiasMode::Digital,
            Some(BiasName::Tile) => BiasMode::Tile,
        },
        init_scale,
        exact_init: matches!(t.init_program, Some(InitProgramName::Exact)),
        epochs,
        lr,
        lr_scale,
        lr_decay,
        shuffle: t.shuffle.unwrap_or(true),
        software: t.software.unwrap_or(false),
        trace_devices,
        trace_every: t.trace_every.unwrap_or(100),
        histogram_bins,
        seeds,
        algorithm,
        checkpoint_every: t.checkpoint_every.unwrap_or(1),
        validation,
        trace,
    })
}

// ---------------------------------------------------------------------------------------------------
// Equilibrium propagation (`[ep]`, `[train] algorithm = "ep"`) and local rules (`[local]`).

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
enum AlgorithmName {
    Bp,
    Ep,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
enum NudgeName {
    OneSided,
    RandomSign,
    Symmetric,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
enum EpActivationName {
    Clip,
    HardSigmoid,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
enum FeedbackName {
    Transpose,
    Separate,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
enum EpUpdateName {
    Decomposed,
    TwoPhase,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EpSection {
    steps_free: Option<u32>,
    steps_nudged: Option<u32>,
    eps: Option<f32>,
    beta: Option<f32>,
    nudge: Option<NudgeName>,
    activation: Option<EpActivationName>,
    feedback: Option<FeedbackName>,
    update: Option<EpUpdateName>,
    fidelity_betas: Option<Vec<f32>>,
    fidelity_nudges: Option<Vec<NudgeName>>,
    fidelity_samples: Option<u32>,
    tolerance: Option<f32>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
enum LocalRuleName {
    Curl,
    Hebbian,
    AntiHebbian,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LocalSection {
    rule: Option<LocalRuleName>,
    inputs: Option<u32>,
    hidden: Option<u32>,
    outputs: Option<u32>,
    flip_fraction: Option<f32>,
    lr: Option<f32>,
    steps: Option<u32>,
    eval_every: Option<u32>,
    test_samples: Option<u32>,
    software: Option<bool>,
    seeds: Option<Vec<u64>>,
}

/// The learning algorithm of `aimsim run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// Backpropagation through the tiles' transposes.
    Bp,
    /// Equilibrium propagation (`[ep]`).
    Ep,
}

/// The `[ep]` section, validated (network sizes and initial weights come from `[train]`).
#[derive(Debug, Clone, PartialEq)]
pub struct EpSpec {
    /// Relaxation steps of the free phase.
    pub steps_free: u32,
    /// Relaxation steps of each nudged phase.
    pub steps_nudged: u32,
    /// Relaxation step size.
    pub eps: f32,
    /// Nudging strength.
    pub beta: f32,
    /// Nudged phases.
    pub nudge: Nudge,
    /// Neuron nonlinearity.
    pub activation: EpActivation,
    /// Feedback path.
    pub feedback: Feedback,
    /// Split of the contrastive update.
    pub update: EpUpdate,
    /// `aimsim ep-fidelity`: nudging strengths.
    pub fidelity_betas: Vec<f32>,
    /// `aimsim ep-fidelity`: estimators.
    pub fidelity_nudges: Vec<Nudge>,
    /// `aimsim ep-fidelity`: samples in the batch.
    pub fidelity_samples: u32,
    /// A phase stops once no state moves by more than this in a step (0: run every step).
    pub tolerance: f32,
}

/// The `[local]` section, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalSpec {
    /// Rule.
    pub rule: LocalRule,
    /// Input dimension.
    pub inputs: u32,
    /// Hidden units (curl descent) or output units (Hebbian rules).
    pub hidden: u32,
    /// Output units of teacher and student (curl descent).
    pub outputs: u32,
    /// Fraction of hidden neurons whose updates are sign-flipped (curl descent).
    pub flip_fraction: f32,
    /// Learning rate.
    pub lr: f32,
    /// Training samples (one update each).
    pub steps: u32,
    /// Samples between two evaluations.
    pub eval_every: u32,
    /// Test samples of every evaluation.
    pub test_samples: u32,
    /// Float weights instead of tiles.
    pub software: bool,
    /// Seeds to repeat every run with (empty: the scenario's seed once).
    pub seeds: Vec<u64>,
}

fn nudge_of(n: NudgeName) -> Nudge {
    match n {
        NudgeName::OneSided => Nudge::OneSided,
        NudgeName::RandomSign => Nudge::RandomSign,
        NudgeName::Symmetric => Nudge::Symmetric,
    }
}

/// Validates `[ep]` (defaults when absent) and `[local]`.
fn energy_and_local(
    ep: Option<EpSection>,
    local: Option<LocalSection>,
    loc: &Locator,
) -> Result<(EpSpec, Option<LocalSpec>), ScenarioError> {
    let e = ep.unwrap_or_default();
    let key = |k: &str| split_key(&format!("ep.{k}"));
    let steps = |v: Option<u32>, d: u32, k: &str| match v.unwrap_or(d) {
        s @ 1..=100_000 => Ok(s),
        s => Err(loc.error(&key(k), format!("must lie in [1, 100000], got {s}"))),
    };
    let steps_free = steps(e.steps_free, 20, "steps_free")?;
    let steps_nudged = steps(e.steps_nudged, 4, "steps_nudged")?;
    let eps = e.eps.unwrap_or(0.5);
    if !(eps > 0.0 && eps <= 1.0) {
        return Err(loc.error(&key("eps"), format!("must lie in (0, 1], got {eps}")));
    }
    let positive = |b: f32| b.is_finite() && b > 0.0 && b <= 100.0;
    let beta = e.beta.unwrap_or(0.5);
    if !positive(beta) {
        return Err(loc.error(&key("beta"), format!("must lie in (0, 100], got {beta}")));
    }
    let fidelity_betas = e
        .fidelity_betas
        .unwrap_or_else(|| vec![0.01, 0.03, 0.1, 0.3, 1.0]);
    if fidelity_betas.is_empty() || fidelity_betas.len() > 100 {
        return Err(loc.error(&key("fidelity_betas"), "list 1 to 100 values"));
    }
    if let Some(b) = fidelity_betas.iter().find(|b| !positive(**b)) {
        return Err(loc.error(
            &key("fidelity_betas"),
            format!("every beta must lie in (0, 100], got {b}"),
        ));
    }
    let fidelity_nudges: Vec<Nudge> = match e.fidelity_nudges {
        None => vec![Nudge::OneSided, Nudge::RandomSign, Nudge::Symmetric],
        Some(v) if v.is_empty() => {
            return Err(loc.error(&key("fidelity_nudges"), "list at least one estimator"));
        }
        Some(v) => v.into_iter().map(nudge_of).collect(),
    };
    let fidelity_samples = e.fidelity_samples.unwrap_or(16);
    if !(1..=10_000).contains(&fidelity_samples) {
        return Err(loc.error(
            &key("fidelity_samples"),
            format!("must lie in [1, 10000], got {fidelity_samples}"),
        ));
    }
    let tolerance = e.tolerance.unwrap_or(0.0);
    if !(tolerance.is_finite() && tolerance >= 0.0) {
        return Err(loc.error(
            &key("tolerance"),
            format!("must be a finite number >= 0, got {tolerance}"),
        ));
    }
    let spec = EpSpec {
        steps_free,
        steps_nudged,
        eps,
        beta,
        nudge: nudge_of(e.nudge.unwrap_or(NudgeName::Symmetric)),
        activation: match e.activation {
            None | Some(EpActivationName::Clip) => EpActivation::Clip,
            Some(EpActivationName::HardSigmoid) => EpActivation::HardSigmoid,
        },
        feedback: match e.feedback {
            None | Some(FeedbackName::Transpose) => Feedback::Transpose,
            Some(FeedbackName::Separate) => Feedback::Separate,
        },
        update: match e.update {
            None | Some(EpUpdateName::Decomposed) => EpUpdate::Decomposed,
            Some(EpUpdateName::TwoPhase) => EpUpdate::TwoPhase,
        },
        fidelity_betas,
        fidelity_nudges,
        fidelity_samples,
        tolerance,
    };
    let Some(l) = local else {
        return Ok((spec, None));
    };
    let key = |k: &str| split_key(&format!("local.{k}"));
    let rule = match l.rule {
        None | Some(LocalRuleName::Curl) => LocalRule::Curl,
        Some(LocalRuleName::Hebbian) => LocalRule::Hebbian,
        Some(LocalRuleName::AntiHebbian) => LocalRule::AntiHebbian,
    };
    let size = |v: Option<u32>, d: u32, k: &str| match v.unwrap_or(d) {
        s @ 1..=4096 => Ok(s),
        s => Err(loc.error(&key(k), format!("must lie in [1, 4096], got {s}"))),
    };
    let inputs = size(l.inputs, 100, "inputs")?;
    let hidden = size(l.hidden, 10, "hidden")?;
    let outputs = size(l.outputs, 1, "outputs")?;
    if rule != LocalRule::Curl {
        for (k, present) in [
            ("outputs", l.outputs.is_some()),
            ("flip_fraction", l.flip_fraction.is_some()),
        ] {
            if present {
                return Err(loc.error(&key(k), "applies to rule = \"curl\" only"));
            }
        }
        if hidden > inputs {
            return Err(loc.error(
                &key("hidden"),
                format!(
                    "a Hebbian layer extracts at most `inputs` ({inputs}) directions, got {hidden}"
                ),
            ));
        }
    }
    let flip_fraction = l.flip_fraction.unwrap_or(0.0);
    if !(0.0..=1.0).contains(&flip_fraction) {
        return Err(loc.error(
            &key("flip_fraction"),
            format!("is a fraction of the hidden neurons in [0, 1], got {flip_fraction}"),
        ));
    }
    let lr = l.lr.unwrap_or(0.05);
    if !(lr.is_finite() && lr > 0.0) {
        return Err(loc.error(&key("lr"), format!("must be > 0, got {lr}")));
    }
    let steps = l.steps.unwrap_or(20_000);
    if !(1..=100_000_000).contains(&steps) {
        return Err(loc.error(&key("steps"), format!("must lie in [1, 1e8], got {steps}")));
    }
    let eval_every = l.eval_every.unwrap_or(500);
    if eval_every == 0 {
        return Err(loc.error(&key("eval_every"), "must be at least 1"));
    }
    let test_samples = l.test_samples.unwrap_or(1000);
    if !(1..=1_000_000).contains(&test_samples) {
        return Err(loc.error(
            &key("test_samples"),
            format!("must lie in [1, 1000000], got {test_samples}"),
        ));
    }
    let seeds = seed_list(l.seeds, &key("seeds"), loc)?;
    Ok((
        spec,
        Some(LocalSpec {
            rule,
            inputs,
            hidden,
            outputs,
            flip_fraction,
            lr,
            steps,
            eval_every,
            test_samples,
            software: l.software.unwrap_or(false),
            seeds,
        }),
    ))
}

fn chip(
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
    let fwd_keys = IoKeys {
        dac_bits: io.dac_bits,
        adc_bits: io.adc_bits,
        inp_bound: io.inp_bound,
        out_bound: io.out_bound,
        out_noise: io.out_noise,
        w_noise: io.w_noise,
        noise_management: io.noise_management,
        bound_management: io.bound_management,
        max_bm_iterations: io.max_bm_iterations,
        max_bm_res: io.max_bm_res,
    };
    let mut forward = io_config(&fwd_keys, &IoConfig::default(), "io", loc)?;
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
        return Err((
            "pulses",
            format!(
                "the trace would hold {cells} values (rows x devices), above the limit of {MAX_TRACE_CELLS}; \
                 use fewer pulses, cycles or devices"
            ),
        ));
    }
    Ok(())
}

fn load_table(
    t: &TableSection,
    loc: &Locator,
    base_dir: &Path,
    preset_files: &[(&str, &str)],
) -> Result<TableCurve, ScenarioError> {
    match (&t.file, &t.up, &t.down) {
        (Some(f), None, None) => {
            // A preset's data file is built in; a user's is read next to the scenario.
            let user_dir_file = base_dir.join(f);
            let (name, text) = match preset_files.iter().find(|(n, _)| n == f) {
                Some((n, text)) if !user_dir_file.exists() => (format!("preset data file {n}"), text.to_string()),
                _ => {
                    let text = std::fs::read_to_string(&user_dir_file).map_err(|e| {
                        loc.error(
                            &split_key("device.table.file"),
                            format!("cannot read {}: {e}", user_dir_file.display()),
                        )
                    })?;
                    (user_dir_file.display().to_string(), text)
                }
            };
            parse_table_csv(&text, &name)
        }
        (None, Some(up), Some(down)) => Ok(TableCurve {
            up: up.clone(),
            down: down.clone(),
        }),
        _ => Err(loc.error(
            &split_key("device.table"),
            "give either `file` (a CSV with columns direction,pulse,conductance) or both `up` and `down` arrays",
        )),
    }
}

/// Parses a measured-curve CSV (`direction,pulse,conductance`; direction `up` or `down`, pulses 0..n-1
/// once each). Errors name the file, line and byte offset.
pub fn parse_table_csv(text: &str, name: &str) -> Result<TableCurve, ScenarioError> {
    let err = |pos: Option<&csv::Position>, message: String| ScenarioError {
        origin: match pos {
            Some(p) => format!("{name}:{} (byte {})", p.line(), p.byte()),
            None => name.to_string(),
        },
        key: None,
        message,
    };
    let mut rdr = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = rdr
        .headers()
        .map_err(|e| err(e.position(), format!("cannot read the header: {e}")))?;
    let want = ["direction", "pulse", "conductance"];
    if headers.iter().collect::<Vec<_>>() != want {
        return Err(err(
            Some(&csv::Position::new().set_line(1).clone()),
            format!(
                "the header must be `direction,pulse,conductance`, got `{}`",
                headers.iter().collect::<Vec<_>>().join(",")
            ),
        ));
    }
    let mut sweeps: BTreeMap<bool, Vec<(u64, f64, csv::Position)>> = BTreeMap::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| err(e.position(), format!("malformed row: {e}")))?;
        let pos = rec.position().cloned().unwrap_or_else(csv::Position::new);
        let up = match &rec[0] {
            "up" => true,
            "down" => false,
            other => {
                return Err(err(
                    Some(&pos),
                    format!("direction must be `up` or `down`, got `{other}`"),
                ));
            }
        };
        let pulse: u64 = rec[1].parse().map_err(|_| {
            err(
                Some(&pos),
                format!("pulse must be a whole number >= 0, got `{}`", &rec[1]),
            )
        })?;
        let g: f64 = rec[2].parse().map_err(|_| {
            err(
                Some(&pos),
                format!("conductance must be a number (uS), got `{}`", &rec[2]),
            )
        })?;
        sweeps.entry(up).or_default().push((pulse, g, pos));
    }
    let mut take = |up: bool| -> Result<Vec<f64>, ScenarioError> {
        let dir = if up { "up" } else { "down" };
        let mut rows = sweeps.remove(&up).unwrap_or_default();
        rows.sort_by_key(|r| r.0);
        for (i, (p, _, pos)) in rows.iter().enumerate() {
            if *p != i as u64 {
                return Err(err(
                    Some(pos),
                    format!(
                        "the {dir} sweep must list pulses 0, 1, 2, ... once each; pulse {i} is missing or repeated (found {p})"
                    ),
                ));
            }
        }
        let values: Vec<f64> = rows.iter().map(|r| r.1).collect();
        // Report monotonicity problems at the row.
        for i in 1..values.len() {
            let ok = if up {
                values[i] > values[i - 1]
            } else {
                values[i] < values[i - 1]
            };
            if !ok {
                return Err(err(
                    Some(&rows[i].2),
                    format!(
                        "the {dir} sweep must be strictly {} in pulse number: pulse {} has {} after {}; \
                         smooth or thin out the measured curve",
                        if up { "increasing" } else { "decreasing" },
                        i,
                        values[i],
                        values[i - 1]
                    ),
                ));
            }
        }
        if values.len() < 2 {
            return Err(err(
                None,
                format!(
                    "the {dir} sweep needs at least 2 rows, got {}",
                    values.len()
                ),
            ));
        }
        Ok(values)
    };
    let up = take(true)?;
    let down = take(false)?;
    Ok(TableCurve { up, down })
}

/// A short human description of what a scenario defines (printed by `aimsim validate`).
pub fn describe(s: &Scenario) -> String {
    let mut out = format!("scenario `{}` (seed {})\n", s.name, s.seed);
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
    out += &format!("{}\n", s.device);
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
        s.tile.rows,
        s.tile.cols,
        s.tile.cell.name(),
        s.w_scale,
        io(&s.tile.forward),
        io(&s.tile.backward)
    );
    let rule = format!("{} {:?}", s.controller.name(), s.controller);
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
                let e = &s.ep;
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
    if let Some(l) = &s.local {
        out += &format!(
            "local: {} rule, {} inputs, {} hidden, {} outputs, flipped fraction {}, lr {}, {} steps{}\n",
            l.rule.name(),
            l.inputs,
            l.hidden,
            l.outputs,
            l.flip_fraction,
            l.lr,
            l.steps,
            if l.software { ", float weights" } else { "" }
        );
    }
    if !s.variants.is_empty() {
        out += &format!("variants: {}\n", s.variants.join(", "));
    }
    let c = &s.cost;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The keys serde accepts where `zz_not_a_key` is written, read from its "unknown field" message.
    fn accepted_keys(text: &str) -> Vec<String> {
        let err = load_str(text, "t.toml", Path::new("."), &[]).unwrap_err();
        let msg = err.message;
        let list = msg
            .split("expected one of ")
            .nth(1)
            .or_else(|| msg.split("expected ").nth(1))
            .unwrap_or_else(|| panic!("no key list in: {msg}"));
        list.split(", ")
            .flat_map(|k| k.split(" or "))
            .map(|k| k.trim().trim_matches('`').to_string())
            .filter(|k| !k.is_empty())
            .collect()
    }

    #[test]
    fn every_key_is_documented() {
        let doc = include_str!("../docs/scenarios.md");
        let meta = "[scenario]\nname = \"t\"\n";
        let dev = "[device]\nmodel = \"soft-bounds\"\ndw_min = 0.1\n";
        let texts = [
            format!("zz_not_a_key = 1\n{meta}{dev}"),
            format!("{dev}[scenario]\nname = \"t\"\nzz_not_a_key = 1\n"),
            format!("{meta}{dev}zz_not_a_key = 1\n"),
            format!("{meta}{dev}[device.d2d]\nzz_not_a_key = 1\n"),
            format!(
                "{meta}{dev}[device.d2d.dw_min]\ndist = \"normal\"\ncv = 0.1\nzz_not_a_key = 1\n"
            ),
            format!("{meta}{dev}[device.table]\nzz_not_a_key = 1\n"),
            format!("{meta}{dev}[protocol]\nzz_not_a_key = 1\n"),
            format!("{meta}{dev}[tile]\nzz_not_a_key = 1\n"),
            format!("{meta}{dev}[io]\nzz_not_a_key = 1\n"),
            format!("{meta}{dev}[io.backward]\nzz_not_a_key = 1\n"),
            format!("{meta}{dev}[update]\nzz_not_a_key = 1\n"),
            format!("{meta}{dev}[cost]\nzz_not_a_key = 1\n"),
            format!("{meta}{dev}[train]\nzz_not_a_key = 1\n"),
            format!("{meta}{dev}[ep]\nzz_not_a_key = 1\n"),
            format!("{meta}{dev}[local]\nzz_not_a_key = 1\n"),
            format!("{meta}{dev}[trace]\nzz_not_a_key = 1\n"),
            format!("{meta}{dev}[[trace.devices]]\ncol = 0\nzz_not_a_key = 1\n"),
            format!("{meta}{dev}[[variant]]\nname = \"a\"\nzz_not_a_key = 1\n"),
            format!("{meta}{dev}[sweep]\nzz_not_a_key = 1\n"),
        ];
        let mut total = 0;
        for text in &texts {
            let keys = accepted_keys(text);
            assert!(keys.len() >= 2, "{text}: {keys:?}");
            for k in keys {
                total += 1;
                let documented =
                    doc.contains(&format!("`{k}`")) || doc.contains(&format!("`[{k}]`"));
                assert!(documented, "docs/scenarios.md does not document `{k}`");
            }
        }
        assert_eq!(
            total, 189,
            "a section gained or lost keys: update this count and docs/scenarios.md"
        );
    }

    #[test]
    fn overrides_parse_toml_or_fall_back_to_strings() {
        let (p, v) = parse_override("device.c2c=0.5").unwrap();
        assert_eq!(p, vec!["device", "c2c"]);
        assert_eq!(v, Value::Float(0.5));
        let (_, v) = parse_override("device.model=soft-bounds").unwrap();
        assert_eq!(v, Value::String("soft-bounds".into()));
        let (_, v) = parse_override("device.d2d.nl_up={dist=\"normal\",sigma=0.5}").unwrap();
        assert!(v.is_table());
        assert!(parse_override("novalue").is_err());
        assert!(parse_override("a..b=1").is_err());
    }

    #[test]
    fn preset_keys_merge_and_user_keys_win() {
        let text = "[scenario]\nname = \"t\"\n[device]\npreset = \"neurosim-epiram\"\nc2c = 0.0\n";
        let (s, _, _) = load_str(text, "t.toml", Path::new("."), &[]).unwrap();
        assert_eq!(s.device.c2c, 0.0);
        assert_eq!(s.preset.as_deref(), Some("neurosim-epiram"));
        match &s.device.model {
            Model::NeuroSim(n) => assert_eq!((n.nl_up, n.nl_down), (0.5, -0.5)),
            m => panic!("{m:?}"),
        }
    }

    #[test]
    fn errors_point_at_the_line_of_the_key() {
        let text = "[scenario]\nname = \"t\"\n\n[device]\nmodel = \"neurosim\"\nlevels = 64\ng_min = 2.0\ng_max = 1.0\nnl_up = 1\nnl_down = -1\n";
        let e = load_str(text, "t.toml", Path::new("."), &[]).unwrap_err();
        assert_eq!(e.origin, "t.toml:7:1");
        assert_eq!(e.key.as_deref(), Some("device.g_min"));
        let e = load_str(text, "t.toml", Path::new("."), &["device.g_max=0.5".into()]).unwrap_err();
        assert_eq!(e.origin, "t.toml:7:1", "g_min is still the offending key");
        let e = load_str(text, "t.toml", Path::new("."), &["device.g_min=-1".into()]).unwrap_err();
        assert_eq!(e.origin, "--set device.g_min=-1");
    }

    #[test]
    fn crop_binarize_and_lr_scale_are_checked() {
        let base = "[scenario]\nname = \"t\"\n[device]\nmodel = \"soft-bounds\"\ndw_min = 0.1\n[train]\nhidden = [8]\n";
        let load = |sets: &[&str]| {
            let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
            load_str(base, "t.toml", Path::new("."), &sets)
        };
        let (s, _, _) = load(&[
            "train.crop=12",
            "train.binarize=0.5",
            "train.lr_scale=[1.0, 0.25]",
        ])
        .unwrap();
        let t = s.train.unwrap();
        assert_eq!((t.crop, t.binarize), (Some(12), Some(0.5)));
        assert_eq!(t.lr_scale, vec![1.0, 0.25]);
        let (s, _, _) = load(&[]).unwrap();
        let t = s.train.unwrap();
        assert_eq!((t.crop, t.binarize, t.lr_scale.len()), (None, None, 0));
        for (set, key, says) in [
            ("train.crop=17", "train.crop", "[1, 16]"),
            ("train.crop=0", "train.crop", "[1, 16]"),
            ("train.binarize=0", "train.binarize", "(0, 1]"),
            ("train.binarize=1.5", "train.binarize", "(0, 1]"),
            (
                "train.lr_scale=[1.0]",
                "train.lr_scale",
                "one factor per weight layer (2",
            ),
            ("train.lr_scale=[1.0, -1.0]", "train.lr_scale", "> 0"),
        ] {
            let e = load(&[set]).unwrap_err();
            assert_eq!(e.key.as_deref(), Some(key), "{set}");
            assert!(e.to_string().contains(says), "{set}: {e}");
        }
        let e = load(&["train.dataset=teacher-student", "train.crop=4"]).unwrap_err();
        assert!(e.to_string().contains("image datasets"), "{e}");
        let e = load(&["train.algorithm=ep", "train.lr_scale=[1.0, 1.0]"]).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("train.lr_scale"));
    }

    #[test]
    fn table_csv_errors_name_line_and_byte() {
        let csv = "direction,pulse,conductance\nup,0,1\nup,1,0.5\ndown,0,2\ndown,1,1\n";
        let e = parse_table_csv(csv, "m.csv").unwrap_err();
        assert!(e.origin.starts_with("m.csv:3 (byte "), "{}", e.origin);
        let ok = "direction,pulse,conductance\ndown,1,1\nup,1,2\nup,0,1\ndown,0,2\n";
        let t = parse_table_csv(ok, "m.csv").unwrap();
        assert_eq!(t.up, vec![1.0, 2.0]);
        assert_eq!(t.down, vec![2.0, 1.0]);
        let gap = "direction,pulse,conductance\nup,0,1\nup,2,2\ndown,0,2\ndown,1,1\n";
        assert!(
            parse_table_csv(gap, "m.csv")
                .unwrap_err()
                .message
                .contains("pulse 1")
        );
    }
}
