//! `[train]`: dataset, network, learning rate and schedule, seeds, checkpoints and the validation
//! split of `aimsim run` (docs/training.md).

use std::path::{Path, PathBuf};

use aimsim_networks::ep::Feedback;
use aimsim_networks::mlp::{Activation, BiasMode, Loss};

use super::locate::{Locator, split_key};
use aimsim_networks::conv::{ConvFront, ConvSpec, PoolKind};
use aimsim_sim::update::{BatchUpdate, ControllerSpec};

use super::sections::{
    ActivationName, AlgorithmName, BatchUpdateName, BiasName, DatasetName, InitProgramName,
    LayerEntry, LayerKindName, LossName, TrainSection,
};
use super::{EpSpec, ScenarioError};
use crate::trace::{TraceSpec, TraceUnit};
use crate::weights::{self, InitWeights};

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
    /// Starting weights read from a file (`init_weights`), checked against the network's sizes.
    pub init_weights: Option<InitWeights>,
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
    /// Hardware-aware training of a software network: weight noise in every training forward pass,
    /// relative to each layer's largest `|w|` (0: none; `Mlp::set_weight_noise`).
    pub weight_noise: f32,
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
    /// Samples per mini-batch (1: an update after every sample).
    pub batch: u32,
    /// How a tile takes a mini-batch's (and a convolution's) outer products.
    pub batch_update: BatchUpdate,
    /// Convolutional layers in front of the dense ones (`train.layers`; `hidden` then holds the dense
    /// layers' sizes).
    pub conv: Option<ConvFront>,
}

impl TrainSpec {
    /// Layer sizes of the network, input first: the dataset's inputs (after `crop`), `hidden`, and its
    /// classes; known before the dataset is loaded (glyphs are `glyph_side` squared pixels, the
    /// teacher-student task has 64 inputs, MNIST-layout IDX images 28 x 28; 10 classes each).
    pub fn layer_sizes(&self) -> Vec<usize> {
        let inputs = match self.image() {
            Some((c, h, w)) => c * h * w,
            None => 64,
        };
        let mut sizes = vec![inputs];
        sizes.extend(self.hidden.iter().map(|h| *h as usize));
        sizes.push(10);
        sizes
    }
}

impl TrainSpec {
    /// The input image (channels, height, width) of an image dataset, after `crop`: glyphs are one
    /// channel of `glyph_side` squared pixels, MNIST-layout IDX images one channel of 28 x 28; `None`
    /// for the teacher-student task.
    pub fn image(&self) -> Option<(usize, usize, usize)> {
        let side = |s: u32| self.crop.unwrap_or(s) as usize;
        match self.dataset {
            DatasetSpec::Glyphs { side: s } => Some((1, side(s), side(s))),
            DatasetSpec::Idx { .. } => Some((1, side(28), side(28))),
            DatasetSpec::TeacherStudent => None,
        }
    }

    /// Weight layers of the network: convolutions and dense layers (the output layer included).
    pub fn weight_layers(&self) -> usize {
        self.conv.as_ref().map_or(0, |c| c.layers.len()) + self.hidden.len() + 1
    }
}

/// Converts `train.layers` into the convolutional front and the dense sizes, checking every entry's
/// keys and that the shapes fit the dataset's images (`image`; `None`: not an image dataset).
fn network_layers(
    entries: Vec<LayerEntry>,
    image: Option<(usize, usize, usize)>,
    loc: &Locator,
) -> Result<(Option<ConvFront>, Vec<u32>), ScenarioError> {
    let at = |i: usize, k: &str| {
        let mut p = split_key("train.layers");
        p.push(i.to_string());
        if !k.is_empty() {
            p.push(k.to_string());
        }
        p
    };
    let mut convs: Vec<ConvSpec> = Vec::new();
    let mut dense: Vec<u32> = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let allowed: &[&str] = match e.kind {
            LayerKindName::Conv => &["channels", "kernel", "stride", "padding"],
            LayerKindName::Maxpool | LayerKindName::Avgpool => &["size", "stride"],
            LayerKindName::Dense => &["units"],
        };
        let kind = match e.kind {
            LayerKindName::Conv => "conv",
            LayerKindName::Maxpool => "maxpool",
            LayerKindName::Avgpool => "avgpool",
            LayerKindName::Dense => "dense",
        };
        for (k, present) in [
            ("channels", e.channels.is_some()),
            ("kernel", e.kernel.is_some()),
            ("stride", e.stride.is_some()),
            ("padding", e.padding.is_some()),
            ("size", e.size.is_some()),
            ("units", e.units.is_some()),
        ] {
            if present && !allowed.contains(&k) {
                return Err(loc.error(
                    &at(i, k),
                    format!(
                        "does not apply to a `{kind}` layer (its keys: {})",
                        allowed.join(", ")
                    ),
                ));
            }
        }
        let need = |k: &str, v: Option<u32>, max: u32| -> Result<u32, ScenarioError> {
            let v =
                v.ok_or_else(|| loc.error(&at(i, ""), format!("a `{kind}` layer needs `{k}`")))?;
            if v == 0 || v > max {
                return Err(loc.error(&at(i, k), format!("must lie in [1, {max}], got {v}")));
            }
            Ok(v)
        };
        let opt = |k: &str, v: Option<u32>, lo: u32, max: u32, default: u32| {
            let v = v.unwrap_or(default);
            if v < lo || v > max {
                return Err(loc.error(&at(i, k), format!("must lie in [{lo}, {max}], got {v}")));
            }
            Ok(v)
        };
        match e.kind {
            LayerKindName::Conv | LayerKindName::Maxpool | LayerKindName::Avgpool
                if !dense.is_empty() =>
            {
                return Err(loc.error(
                    &at(i, "kind"),
                    "convolutions and pooling come before the dense layers (a dense layer flattens \
                     the maps)",
                ));
            }
            LayerKindName::Conv => {
                if image.is_none() {
                    return Err(loc.error(
                        &at(i, "kind"),
                        "convolutions need an image dataset (glyphs, fashion-mnist, mnist), not \
                         teacher-student",
                    ));
                }
                convs.push(ConvSpec {
                    channels: need("channels", e.channels, 4096)? as usize,
                    kernel: need("kernel", e.kernel, 64)? as usize,
                    stride: opt("stride", e.stride, 1, 64, 1)? as usize,
                    padding: opt("padding", e.padding, 0, 64, 0)? as usize,
                    pool: None,
                });
            }
            LayerKindName::Maxpool | LayerKindName::Avgpool => {
                let size = need("size", e.size, 64)? as usize;
                let stride = opt("stride", e.stride, 1, 64, size as u32)? as usize;
                let Some(last) = convs.last_mut().filter(|c| c.pool.is_none()) else {
                    return Err(loc.error(
                        &at(i, "kind"),
                        "pooling follows a convolution (one pooling per convolution)",
                    ));
                };
                let pk = if e.kind == LayerKindName::Maxpool {
                    PoolKind::Max
                } else {
                    PoolKind::Avg
                };
                last.pool = Some((pk, size, stride));
            }
            LayerKindName::Dense => dense.push(need("units", e.units, 16_384)?),
        }
    }
    let front = match (convs.is_empty(), image) {
        (true, _) => None,
        (false, None) => unreachable!("convolutions were refused without an image"),
        (false, Some(image)) => {
            let front = ConvFront {
                image,
                layers: convs,
            };
            if let Err(m) = front.shapes() {
                let (c, h, w) = image;
                return Err(loc.error(
                    &split_key("train.layers"),
                    format!("{m} (images of {c}x{h}x{w} after train.crop)"),
                ));
            }
            Some(front)
        }
    };
    Ok((front, dense))
}

/// Refuses `train.batch_update = "accumulated"` where the tiles' controller does not accumulate
/// digitally (only `mixed-precision` does; float software weights always may): a check that needs
/// `[update]`.
pub fn check_batch_update(
    t: Option<&TrainSpec>,
    controller: &ControllerSpec,
    loc: &Locator,
) -> Result<(), ScenarioError> {
    match t {
        Some(t)
            if t.batch_update == BatchUpdate::Accumulated
                && !t.software
                && !matches!(controller, ControllerSpec::MixedPrecision { .. }) =>
        {
            Err(loc.error(
                &split_key("train.batch_update"),
                format!(
                    "\"accumulated\" sums a batch's outer products digitally, which only the \
                     mixed-precision controller (or train.software = true) does; update.controller \
                     = \"{}\" pulses every outer product (use \"sequential\")",
                    controller.name()
                ),
            ))
        }
        _ => Ok(()),
    }
}

/// The learning algorithm of `aimsim run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// Backpropagation through the tiles' transposes.
    Bp,
    /// Equilibrium propagation (`[ep]`).
    Ep,
}

/// A `seeds` list (of `[train]` or `[local]`): at most 1000 seeds, none listed twice.
pub fn seed_list(
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

/// Refuses starting weights with separate feedback weights (`layer{i}.feedback`) for an EP network
/// without separate feedback arrays: a check of `train.init_weights` that needs `[ep]`.
pub fn check_init_feedback(
    t: Option<&TrainSpec>,
    ep: &EpSpec,
    loc: &Locator,
) -> Result<(), ScenarioError> {
    let Some(w) = t.and_then(|t| t.init_weights.as_ref()) else {
        return Ok(());
    };
    match w.layers.iter().position(|l| l.feedback.is_some()) {
        Some(i) if ep.config.feedback != Feedback::Separate => Err(loc.error(
            &split_key("train.init_weights"),
            format!(
                "{}: `layer{i}.feedback` holds the weights of a separate feedback array, but \
                 ep.feedback = \"{}\" gives the network none (set ep.feedback = \"separate\", or \
                 leave the feedback arrays out of the file)",
                w.path.display(),
                ep.config.feedback.name()
            ),
        )),
        _ => Ok(()),
    }
}

/// Validates `[train]`; `trace` is the `[trace]` section, when written.
pub fn train_spec(
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
    let image = match dataset {
        DatasetSpec::Glyphs { side } => {
            let s = t.crop.unwrap_or(side) as usize;
            Some((1, s, s))
        }
        DatasetSpec::Idx { .. } => {
            let s = t.crop.unwrap_or(28) as usize;
            Some((1, s, s))
        }
        DatasetSpec::TeacherStudent => None,
    };
    let (conv, hidden) = match t.layers {
        Some(entries) => {
            let (front, dense) = network_layers(entries, image, loc)?;
            match (dense.is_empty(), t.hidden) {
                (false, Some(h)) if !h.is_empty() => {
                    return Err(loc.error(
                        &key("hidden"),
                        "train.layers lists dense layers already: list them in one place (in \
                         train.layers, or all in train.hidden)",
                    ));
                }
                (true, h) => (front, h.unwrap_or_else(|| vec![64])),
                (false, _) => (front, dense),
            }
        }
        None => (None, t.hidden.unwrap_or_else(|| vec![64])),
    };
    if let Some(h) = hidden.iter().find(|h| **h == 0 || **h > 16_384) {
        return Err(loc.error(
            &key("hidden"),
            format!("layer sizes must lie in [1, 16384], got {h}"),
        ));
    }
    let epochs = t.epochs.unwrap_or(3);
    if (epochs == 0 && t.init_weights.is_none()) || epochs > 10_000 {
        return Err(loc.error(
            &key("epochs"),
            format!(
                "must lie in [1, 10000] (0, evaluation only, with train.init_weights), got {epochs}"
            ),
        ));
    }
    let lr = t.lr.unwrap_or(0.1);
    if !(lr.is_finite() && lr > 0.0) {
        return Err(loc.error(&key("lr"), format!("must be > 0, got {lr}")));
    }
    let lr_scale = t.lr_scale.unwrap_or_default();
    let weight_layers = conv.as_ref().map_or(0, |c| c.layers.len()) + hidden.len() + 1;
    if !lr_scale.is_empty() && lr_scale.len() != weight_layers {
        let shown = if conv.is_some() {
            "train.layers and the output layer".to_string()
        } else {
            format!("train.hidden = {hidden:?}")
        };
        return Err(loc.error(
            &key("lr_scale"),
            format!(
                "needs one factor per weight layer ({weight_layers} for {shown}), got {}",
                lr_scale.len()
            ),
        ));
    }
    let batch = t.batch.unwrap_or(1);
    if !(1..=4096).contains(&batch) {
        return Err(loc.error(&key("batch"), format!("must lie in [1, 4096], got {batch}")));
    }
    let batch_update = match t.batch_update {
        None | Some(BatchUpdateName::Sequential) => BatchUpdate::Sequential,
        Some(BatchUpdateName::Accumulated) => BatchUpdate::Accumulated,
    };
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
    let software = t.software.unwrap_or(false);
    let weight_noise = t.weight_noise.unwrap_or(0.0);
    if !(weight_noise.is_finite() && (0.0..=10.0).contains(&weight_noise)) {
        return Err(loc.error(
            &key("weight_noise"),
            format!("is a fraction of each layer's largest |w| in [0, 10], got {weight_noise}"),
        ));
    }
    if t.weight_noise.is_some() && !software {
        return Err(loc.error(
            &key("weight_noise"),
            "is hardware-aware training of a software network (train.software = true); tiles have \
             their own read noise (io.w_noise, device.read_noise)",
        ));
    }
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
                "weight_noise",
                t.weight_noise.is_some(),
                "no weight noise (not implemented for EP)",
            ),
            (
                "init_program",
                t.init_program.is_some(),
                "the pulse-programmed start EP networks use",
            ),
            (
                "batch",
                batch != 1,
                "batch = 1 (EP relaxes and updates sample by sample)",
            ),
            (
                "batch_update",
                t.batch_update.is_some(),
                "updates after every sample",
            ),
            (
                "layers",
                conv.is_some(),
                "train.hidden (EP networks are layered dense energy networks)",
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
    let init_weights = t.init_weights.map(|p| base_dir.join(p));
    let trace = trace.cloned().unwrap_or_else(|| TraceSpec {
        devices: Vec::new(),
        sample: trace_devices,
        every: u64::from(t.trace_every.unwrap_or(100)),
        unit: TraceUnit::Updates,
    });
    let mut spec = TrainSpec {
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
        init_weights: None,
        epochs,
        lr,
        lr_scale,
        lr_decay,
        shuffle: t.shuffle.unwrap_or(true),
        software,
        weight_noise,
        trace_devices,
        trace_every: t.trace_every.unwrap_or(100),
        histogram_bins,
        seeds,
        algorithm,
        checkpoint_every: t.checkpoint_every.unwrap_or(1),
        validation,
        trace,
        batch,
        batch_update,
        conv,
    };
    if let Some(path) = init_weights {
        let hidden = format!("{:?}", spec.hidden);
        let sizes = spec.layer_sizes();
        let w = weights::load_init(
            &path,
            &sizes,
            spec.conv.as_ref(),
            algorithm == Algorithm::Ep,
            &hidden,
        )
        .map_err(|m| loc.error(&key("init_weights"), m))?;
        spec.init_weights = Some(w);
    }
    Ok(spec)
}
