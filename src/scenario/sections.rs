//! The file format: one serde type per section, documented key by key in docs/scenarios.md.
//!
//! Every section refuses unknown keys (`deny_unknown_fields`): serde's message lists the keys it
//! accepts, which `tests/reference.rs` compares with the documentation. Every value is optional here;
//! defaults and checks belong to the conversion of each section. The module is private to `scenario`,
//! so its `pub` items and fields are visible to the conversions only.

use aimsim_devices::Param;
use serde::Deserialize;
use toml::Table;

/// A whole scenario file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    pub scenario: MetaSection,
    pub device: DeviceSection,
    pub protocol: Option<ProtocolSection>,
    pub tile: Option<TileSection>,
    pub io: Option<IoSection>,
    pub update: Option<UpdateSection>,
    pub cost: Option<CostSection>,
    pub train: Option<TrainSection>,
    pub ep: Option<EpSection>,
    pub local: Option<LocalSection>,
    pub inference: Option<InferenceSection>,
    pub trace: Option<TraceSection>,
    pub variant: Option<Vec<VariantSection>>,
    pub sweep: Option<SweepSection>,
}

/// `[sweep]`: the grid, zipped groups and repeats of `aimsim sweep` (docs/sweeps.md).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepSection {
    pub grid: Option<Table>,
    pub zip: Option<Vec<Table>>,
    pub repeats: Option<u32>,
    pub seed: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceSection {
    pub devices: Option<Vec<TraceDeviceSection>>,
    pub sample: Option<u32>,
    pub every: Option<u64>,
    pub unit: Option<TraceUnitName>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceDeviceSection {
    pub layer: Option<usize>,
    pub tile: Option<usize>,
    pub row: Option<usize>,
    pub col: usize,
    pub array: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub enum TraceUnitName {
    Updates,
    Pulses,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariantSection {
    pub name: String,
    pub set: Option<Table>,
    pub group: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub enum DatasetName {
    Glyphs,
    TeacherStudent,
    FashionMnist,
    Mnist,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub enum ActivationName {
    Sigmoid,
    Tanh,
    Relu,
    HardSigmoid,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub enum LossName {
    CrossEntropy,
    Mse,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub enum BiasName {
    Digital,
    Tile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSection {
    pub dataset: Option<DatasetName>,
    pub data_dir: Option<String>,
    pub train_samples: Option<u32>,
    pub test_samples: Option<u32>,
    pub glyph_side: Option<u32>,
    pub crop: Option<u32>,
    pub binarize: Option<f32>,
    pub hidden: Option<Vec<u32>>,
    pub activation: Option<ActivationName>,
    pub loss: Option<LossName>,
    pub bias: Option<BiasName>,
    pub init_scale: Option<f32>,
    pub init_program: Option<InitProgramName>,
    pub init_weights: Option<String>,
    pub epochs: Option<u32>,
    pub lr: Option<f32>,
    pub lr_scale: Option<Vec<f32>>,
    pub lr_decay: Option<f32>,
    pub shuffle: Option<bool>,
    pub software: Option<bool>,
    pub weight_noise: Option<f32>,
    pub trace_devices: Option<u32>,
    pub trace_every: Option<u32>,
    pub histogram_bins: Option<u32>,
    pub seeds: Option<Vec<u64>>,
    pub algorithm: Option<AlgorithmName>,
    pub checkpoint_every: Option<u32>,
    pub validation: Option<u32>,
    pub batch: Option<u32>,
    pub batch_update: Option<BatchUpdateName>,
    pub layers: Option<Vec<LayerEntry>>,
}

/// `train.batch_update`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub enum BatchUpdateName {
    Sequential,
    Accumulated,
}

/// `train.layers[i].kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub enum LayerKindName {
    Conv,
    Maxpool,
    Avgpool,
    Dense,
}

/// One entry of `train.layers`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerEntry {
    pub kind: LayerKindName,
    pub channels: Option<u32>,
    pub kernel: Option<u32>,
    pub stride: Option<u32>,
    pub padding: Option<u32>,
    pub size: Option<u32>,
    pub units: Option<u32>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub enum InitProgramName {
    Pulses,
    Exact,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub enum CellName {
    Single,
    Pair,
    OneSided,
    MultiArray,
}

/// `tile.reference`: what a single device is read against.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub enum ReferenceName {
    MidRange,
    DeviceZero,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TileSection {
    pub rows: Option<u32>,
    pub cols: Option<u32>,
    pub cell: Option<CellName>,
    pub gamma: Option<f32>,
    pub w_scale: Option<f32>,
    pub reference: Option<ReferenceName>,
}

/// Defines `[io]` and `[io.backward]` from the keys of one direction of the periphery: `[io]` has
/// them (for the forward direction) and keys of its own.
macro_rules! io_sections {
    ($($field:ident: $ty:ty,)*) => {
        /// Keys of one direction of the periphery (`[io.backward]`).
        #[derive(Debug, Default, Clone, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct IoKeys {
            $(pub $field: Option<$ty>,)*
        }

        /// `[io]`: the keys of the forward direction, the error rule at the bound, and
        /// `[io.backward]`.
        #[derive(Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct IoSection {
            $(pub $field: Option<$ty>,)*
            pub zero_grad_at_bound: Option<bool>,
            pub backward: Option<IoKeys>,
        }

        impl IoSection {
            /// The keys of the forward direction.
            pub fn forward(&self) -> IoKeys {
                IoKeys {
                    $($field: self.$field,)*
                }
            }
        }
    };
}

io_sections! {
    dac_bits: u32,
    adc_bits: u32,
    inp_bound: f32,
    out_bound: f32,
    out_noise: f32,
    w_noise: f32,
    noise_management: bool,
    bound_management: bool,
    max_bm_iterations: u32,
    max_bm_res: f32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub enum ControllerName {
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
pub enum SchemeName {
    Stochastic,
    Count,
    Sign,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub enum DirectionName {
    Bidirectional,
    Unidirectional,
}

/// `[update]`: the controller and its keys, each written once; [`UpdateSection::present`] lists which
/// of the keys other than `controller` a scenario set (what `chip::controller_spec` checks against the
/// keys each controller and scheme take).
macro_rules! update_section {
    ($($key:ident: $ty:ty),* $(,)?) => {
        #[derive(Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct UpdateSection {
            pub controller: Option<ControllerName>,
            $(pub $key: Option<$ty>,)*
        }

        impl UpdateSection {
            /// Every key but `controller`, with whether the scenario set it.
            pub fn present(&self) -> Vec<(&'static str, bool)> {
                vec![$((stringify!($key), self.$key.is_some()),)*]
            }
        }
    };
}

update_section! {
    bl: u32,
    update_management: bool,
    bl_management: bool,
    max_pulses: u32,
    threshold: f32,
    scheme: SchemeName,
    direction: DirectionName,
    refresh_every: u32,
    refresh_hi: f32,
    refresh_lo: f32,
    transfer_every: u32,
    transfer_lr: f32,
    transfer_max_pulses: u32,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CostSection {
    pub clock_hz: Option<f64>,
    pub read_cycles: Option<u32>,
    pub adc_cycles: Option<u32>,
    pub adc_energy_pj: Option<f64>,
    pub outputs_per_adc: Option<u32>,
    pub dac_energy_pj: Option<f64>,
    pub read_voltage: Option<f64>,
    pub pulse_cycles: Option<u32>,
    pub pulse_energy_pj: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetaSection {
    pub name: String,
    pub seed: Option<u64>,
    pub description: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub enum ModelName {
    ConstantStep,
    LinearStep,
    SoftBounds,
    SoftBoundsReference,
    ExpStep,
    PowStep,
    Neurosim,
    Table,
}

/// `[device]` from its keys, each written once: the struct, and [`DeviceSection::is_set`] by key name.
macro_rules! device_section {
    ([$($(#[$doc:meta])* $key:ident: $ty:ty,)*]) => {
        /// `[device]`: model, noise, stuck devices, levels, the nominal parameters, a measured table
        /// and the device-to-device variations.
        #[derive(Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct DeviceSection {
            $($(#[$doc])* pub $key: Option<$ty>,)*
        }

        impl DeviceSection {
            /// Whether the key `name` of `[device]` is written; `None` when `[device]` has no such key.
            pub fn is_set(&self, name: &str) -> Option<bool> {
                $(if name == stringify!($key) {
                    return Some(self.$key.is_some());
                })*
                None
            }
        }
    };
}

/// Defines `[device]` and `[device.d2d]` from the device parameters of
/// `aimsim_devices::with_device_params!`: the nominal value of each in `[device]` (after the keys of
/// its own), its variation in `[device.d2d]`.
macro_rules! device_sections {
    ($($(#[$doc:meta])* $variant:ident $key:ident,)*) => {
        device_section! {
            [
                preset: String,
                label: String,
                citation: String,
                model: ModelName,
                c2c: f64,
                c2c_mode: C2cModeName,
                write_noise: f64,
                read_noise: f64,
                reference_mean: f64,
                reference_std: f64,
                subtract_symmetry_point: bool,
                stuck_min: f64,
                stuck_max: f64,
                stuck_random: f64,
                levels: u32,
                levels_down: u32,
                $($(#[$doc])* $key: f64,)*
                table: TableSection,
                d2d: D2dSection,
            ]
        }

        /// `[device.d2d]`: the variation of each parameter, under its key.
        #[derive(Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct D2dSection {
            $($(#[$doc])* pub $key: Option<VariationSection>,)*
        }

        impl D2dSection {
            /// The variation of `p`, when written.
            pub fn get(&self, p: Param) -> Option<&VariationSection> {
                match p {
                    $(Param::$variant => self.$key.as_ref(),)*
                }
            }
        }
    };
}

aimsim_devices::with_device_params!(device_sections);

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub enum C2cModeName {
    Multiplicative,
    Additive,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub enum DistName {
    Normal,
    Lognormal,
    Uniform,
    #[serde(rename = "lognormal-median")]
    LognormalMedian,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariationSection {
    pub dist: DistName,
    pub sigma: Option<f64>,
    pub cv: Option<f64>,
    pub half_width: Option<f64>,
    pub rel_half_width: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableSection {
    pub file: Option<String>,
    pub up: Option<Vec<f64>>,
    pub down: Option<Vec<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProtocolSection {
    pub pulses: Option<u32>,
    pub cycles: Option<u32>,
    pub devices: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub enum AlgorithmName {
    Bp,
    Ep,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub enum NudgeName {
    OneSided,
    RandomSign,
    Symmetric,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub enum EpActivationName {
    Clip,
    HardSigmoid,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub enum FeedbackName {
    Transpose,
    Separate,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub enum EpUpdateName {
    Decomposed,
    TwoPhase,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EpSection {
    pub steps_free: Option<u32>,
    pub steps_nudged: Option<u32>,
    pub eps: Option<f32>,
    pub beta: Option<f32>,
    pub nudge: Option<NudgeName>,
    pub activation: Option<EpActivationName>,
    pub feedback: Option<FeedbackName>,
    pub update: Option<EpUpdateName>,
    pub fidelity_betas: Option<Vec<f32>>,
    pub fidelity_nudges: Option<Vec<NudgeName>>,
    pub fidelity_samples: Option<u32>,
    pub tolerance: Option<f32>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub enum LocalRuleName {
    Curl,
    Hebbian,
    AntiHebbian,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalSection {
    pub rule: Option<LocalRuleName>,
    pub inputs: Option<u32>,
    pub hidden: Option<u32>,
    pub outputs: Option<u32>,
    pub flip_fraction: Option<f32>,
    pub lr: Option<f32>,
    pub steps: Option<u32>,
    pub eval_every: Option<u32>,
    pub test_samples: Option<u32>,
    pub software: Option<bool>,
    pub seeds: Option<Vec<u64>>,
}

/// `[inference]`: deploying a trained network and aging it (`aimsim infer`, docs/inference.md).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InferenceSection {
    pub program: Option<ProgramName>,
    pub tolerance: Option<f32>,
    pub max_pulses: Option<u32>,
    pub noise: Option<NoiseName>,
    pub noise_sigma_us: Option<f64>,
    pub mapping: Option<MappingName>,
    pub g_max_us: Option<f64>,
    pub retention: Option<RetentionName>,
    pub drift: Option<DriftName>,
    pub nu_mean: Option<f64>,
    pub nu_sd: Option<f64>,
    pub t0_s: Option<f64>,
    pub relaxed: Option<f64>,
    pub rate_median: Option<f64>,
    pub rate_sigma: Option<f64>,
    pub tau_s: Option<f64>,
    pub read_noise: Option<NoiseName>,
    pub q_s: Option<f64>,
    pub t_read_s: Option<f64>,
    pub fail_tau_s: Option<f64>,
    pub fail_shape: Option<f64>,
    pub fail_p_high: Option<f64>,
    pub times_s: Option<Vec<f64>>,
    pub compensation: Option<Vec<CompensationName>>,
    pub repeats: Option<u32>,
    pub histogram_bins: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub enum ProgramName {
    Exact,
    WriteVerify,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub enum NoiseName {
    None,
    Pcm,
    Constant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub enum MappingName {
    Layer,
    Column,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub enum RetentionName {
    None,
    Drift,
    Relaxation,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub enum DriftName {
    Pcm,
    Constant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub enum CompensationName {
    None,
    Global,
    Column,
}
