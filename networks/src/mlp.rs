//! Multi-layer perceptrons whose weights live on simulated tiles (or, for the software baseline, in
//! float matrices), trained by backpropagation with every phase on the weight store.

use aimsim_devices::{DeviceSpec, SpecError, StateError};
/// Exact float weights: the software baseline (a `sim` type, on the tiles' kernels).
pub use aimsim_sim::float::FloatMatrix;
use aimsim_sim::ledger::{CostModel, Ledger};
use aimsim_sim::matrix::{AnalogMatrix, MatrixState};
use aimsim_sim::par::{Job, Par};
use aimsim_sim::tile::{Tile, TileConfig};
use aimsim_sim::update::{BatchUpdate, ControllerSpec};

use crate::conv::{ConvFront, ConvGeom, Pool};
use rand::{Rng, RngExt};

/// Neuron nonlinearity of the hidden layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `1 / (1 + e^-z)`.
    Sigmoid,
    /// `tanh z`.
    Tanh,
    /// `max(z, 0)`.
    Relu,
    /// `clip(0.2 z + 0.5, 0, 1)`.
    HardSigmoid,
}

impl Activation {
    /// Scenario name.
    pub fn name(self) -> &'static str {
        match self {
            Activation::Sigmoid => "sigmoid",
            Activation::Tanh => "tanh",
            Activation::Relu => "relu",
            Activation::HardSigmoid => "hard-sigmoid",
        }
    }

    /// `f(z)`.
    #[inline]
    pub fn apply(self, z: f32) -> f32 {
        match self {
            Activation::Sigmoid => 1.0 / (1.0 + (-z).exp()),
            Activation::Tanh => z.tanh(),
            Activation::Relu => z.max(0.0),
            Activation::HardSigmoid => (0.2 * z + 0.5).clamp(0.0, 1.0),
        }
    }

    /// `f'(z)` given `z` and `a = f(z)`.
    #[inline]
    pub fn derivative(self, z: f32, a: f32) -> f32 {
        match self {
            Activation::Sigmoid => a * (1.0 - a),
            Activation::Tanh => 1.0 - a * a,
            Activation::Relu => {
                if z > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            Activation::HardSigmoid => {
                if (-2.5..2.5).contains(&z) {
                    0.2
                } else {
                    0.0
                }
            }
        }
    }
}

/// Training loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    /// Softmax on a linear output layer, cross-entropy.
    CrossEntropy,
    /// Squared error `1/2 ||f(z) - onehot||^2` on an output layer with the hidden activation.
    Mse,
}

/// Where a layer's bias lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BiasMode {
    /// A float vector next to the tiles, updated digitally by SGD.
    Digital,
    /// An extra tile column driven by a constant input of 1: read and updated like any weight.
    Tile,
}

/// One layer's state: its weight store and its digital bias.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerState {
    /// Weight store.
    pub weights: WeightsState,
    /// Digital bias.
    pub bias: Vec<f32>,
}

/// Everything of a network that training changes, layer by layer (activations and error buffers are
/// rewritten by every sample and are not part of it).
#[derive(Debug, Clone, PartialEq)]
pub struct MlpState {
    /// Per layer, input side first.
    pub layers: Vec<LayerState>,
}

/// One layer: weights, bias, activation and its buffers.
#[derive(Debug)]
pub struct Layer {
    /// Weight store (`out x in`, plus a bias column in [`BiasMode::Tile`]).
    pub weights: Box<dyn Weights>,
    in_dim: usize,
    out_dim: usize,
    bias_mode: BiasMode,
    bias: Vec<f32>,
    act: Option<Activation>,
    /// Digital factors on the weights' outputs, before the bias: empty (none), one for all outputs,
    /// or one per output (deployment's weight mapping and drift compensation; see
    /// [`Layer::set_out_scale`]).
    out_scale: Vec<f32>,
    /// For a convolutional layer its geometry: the weights are its kernel matrix (`out_dim` kernels
    /// of `in_dim = c_in k k`), read once per output position.
    conv: Option<ConvGeom>,
    /// Pooling after the activation (convolutional layers).
    pool: Option<Pool>,
    /// The buffers of mini-batch and convolutional passes.
    buf: BatchBuffers,
    /// Input as applied (with the constant 1 in tile-bias mode).
    x: Vec<f32>,
    z: Vec<f32>,
    a: Vec<f32>,
    d: Vec<f32>,
    back: Vec<f32>,
}

impl Layer {
    /// Inputs of the layer (without the bias input).
    pub fn in_dim(&self) -> usize {
        self.in_dim
    }
    /// Outputs of the layer.
    pub fn out_dim(&self) -> usize {
        self.out_dim
    }
    /// Digital bias (zeros in tile-bias mode).
    pub fn bias(&self) -> &[f32] {
        &self.bias
    }
    /// Whether the bias is an extra tile column driven by a constant 1 (else a digital vector).
    pub fn bias_on_tile(&self) -> bool {
        self.bias_mode == BiasMode::Tile
    }
    /// Sets the digital bias (ignored in tile-bias mode, where the bias is the last weight column).
    pub fn set_bias(&mut self, b: &[f32]) {
        assert_eq!(b.len(), self.out_dim, "one bias per output");
        if self.bias_mode == BiasMode::Digital {
            self.bias.copy_from_slice(b);
        }
    }
    /// Multiplies the weights' outputs by digital factors before the bias is added: `[]` for none,
    /// `[s]` for one factor on every output, or one factor per output. Reads through the periphery
    /// are unchanged; this is the digital rescaling after the ADC that maps conductances back to
    /// weights and compensates drift.
    pub fn set_out_scale(&mut self, s: &[f32]) {
        assert!(
            s.len() <= 1 || s.len() == self.out_dim,
            "no factor, one, or one per output"
        );
        self.out_scale = s.to_vec();
    }
    /// Where the bias lives.
    pub fn bias_mode(&self) -> BiasMode {
        self.bias_mode
    }
    /// The convolution, for a convolutional layer (its weights are the kernel matrix).
    pub fn conv(&self) -> Option<&ConvGeom> {
        self.conv.as_ref()
    }
    /// The pooling after the activation, if any.
    pub fn pool(&self) -> Option<&Pool> {
        self.pool.as_ref()
    }
    /// Values of one input of the layer (an image for a convolution).
    pub fn input_len(&self) -> usize {
        self.conv.map_or(self.in_dim, |g| g.input_len())
    }
    /// Values of one output of the layer (the pooled maps of a convolution).
    pub fn output_len(&self) -> usize {
        match (self.conv, self.pool) {
            (_, Some(p)) => p.output_len(),
            (Some(g), None) => g.output_len(),
            (None, None) => self.out_dim,
        }
    }
    /// Weight reads (and outer products) per input: a convolution's output positions, else 1.
    pub fn positions(&self) -> usize {
        self.conv.map_or(1, |g| g.positions())
    }

    /// The layer as the linear map `z = W x + b` it computes: `W` row-major `out x in` as the weight
    /// store holds it ([`Weights::weights`]: on tiles the weights the devices hold, in layer units) and
    /// `b`, the digital bias or, in [`BiasMode::Tile`], the store's extra column. What a trained network
    /// hands to software that runs it.
    pub fn parameters(&self) -> (Vec<f32>, Vec<f32>) {
        let all = self.weights.weights();
        match self.bias_mode {
            BiasMode::Digital => (all, self.bias.clone()),
            BiasMode::Tile => {
                let cols = self.in_dim + 1;
                let mut w = Vec::with_capacity(self.out_dim * self.in_dim);
                let mut b = Vec::with_capacity(self.out_dim);
                for row in all.chunks_exact(cols) {
                    w.extend_from_slice(&row[..self.in_dim]);
                    b.push(row[self.in_dim]);
                }
                (w, b)
            }
        }
    }
}

/// The digital part of a layer after its weights: the output factors (none, one, or one per output;
/// [`Layer::set_out_scale`]), then the digital bias. One function for single and batched reads, so
/// both compute the same bits.
fn digital_tail(out_scale: &[f32], bias_mode: BiasMode, bias: &[f32], z: &mut [f32]) {
    match out_scale.len() {
        0 => {}
        1 => {
            let s = out_scale[0];
            z.iter_mut().for_each(|v| *v *= s);
        }
        _ => {
            for (v, s) in z.iter_mut().zip(out_scale) {
                *v *= s;
            }
        }
    }
    if bias_mode == BiasMode::Digital {
        for (v, b) in z.iter_mut().zip(bias) {
            *v += b;
        }
    }
}

/// The network's scores of output activations `out`: softmax probabilities for cross-entropy, the
/// activations themselves for MSE.
fn scores(loss: Loss, out: &[f32], probs: &mut [f32]) {
    match loss {
        Loss::CrossEntropy => {
            let m = out.iter().fold(f32::NEG_INFINITY, |m, v| m.max(*v));
            let mut sum = 0.0;
            for (p, z) in probs.iter_mut().zip(out) {
                *p = (z - m).exp();
                sum += *p;
            }
            probs.iter_mut().for_each(|p| *p /= sum);
        }
        Loss::Mse => probs.copy_from_slice(out),
    }
}

/// How to build a network.
#[derive(Debug, Clone)]
pub struct MlpConfig {
    /// Layer sizes, input first, output last (e.g. `[784, 256, 128, 10]`).
    pub sizes: Vec<usize>,
    /// Hidden activation.
    pub activation: Activation,
    /// Loss.
    pub loss: Loss,
    /// Bias placement.
    pub bias: BiasMode,
    /// Initial weights are uniform in `+-init_scale sqrt(6 / (fan_in + fan_out))`.
    pub init_scale: f32,
    /// Set the initial weights on the devices exactly ([`Weights::set_exact`], as aihwkit's
    /// `set_weights` does) instead of programming them with pulses.
    pub exact_init: bool,
    /// Convolutional layers in front of the dense ones (`None`: an MLP). `sizes[0]` is then the
    /// image's values and the first dense layer takes the last convolution's (pooled) maps, flattened.
    pub conv: Option<ConvFront>,
}

/// A multi-layer perceptron.
#[derive(Debug)]
pub struct Mlp {
    layers: Vec<Layer>,
    loss: Loss,
    probs: Vec<f32>,
    /// Factor on the learning rate of each layer (all 1 unless [`Mlp::set_lr_scale`] changes them).
    lr_scale: Vec<f32>,
    /// Hardware-aware training: the weight noise of float layers' training forward passes, relative
    /// to each layer's largest `|w|`, and the seed of its streams (see [`Mlp::set_weight_noise`]).
    weight_noise: (f32, u64),
    /// The stream of the training step in progress, while its forward pass runs.
    noise: Option<aimsim_sim::rng::Pcg>,
    /// The scores of the last mini-batch pass, one row per sample.
    batch_probs: Vec<f32>,
}

/// What the tiles of an analog network are made of.
#[derive(Debug, Clone)]
pub struct Hardware {
    /// Devices.
    pub device: DeviceSpec,
    /// Tile shape, cell and periphery.
    pub tile: TileConfig,
    /// Learning rule's controller.
    pub controller: ControllerSpec,
    /// Layer weight of a normalized weight of 1.
    pub w_scale: f32,
    /// Ledger costs.
    pub cost: CostModel,
    /// Seed of devices and noise.
    pub seed: u64,
}

/// An `out x inp` weight matrix with tile id `id`: analog on `hw`, or a float matrix (software
/// baseline) when `hw` is `None`.
pub fn new_weights(
    out: usize,
    inp: usize,
    hw: Option<&Hardware>,
    id: u64,
) -> Result<Box<dyn Weights>, SpecError> {
    Ok(match hw {
        None => Box::new(FloatMatrix::new(out, inp)),
        Some(h) => Box::new(AnalogMatrix::new(
            out,
            inp,
            &h.tile,
            &h.device,
            &h.controller,
            h.w_scale,
            h.cost.clone(),
            h.seed,
            id,
        )?),
    })
}

impl Mlp {
    /// Builds the network: analog layers on `hw`, or float layers (software baseline) when `hw` is
    /// `None`. Initial weights are drawn from `rng` and programmed.
    pub fn new<R: Rng + ?Sized>(
        cfg: &MlpConfig,
        hw: Option<&Hardware>,
        rng: &mut R,
    ) -> Result<Self, SpecError> {
        assert!(
            cfg.sizes.len() >= 2,
            "a network needs an input and an output size"
        );
        let mut layers = Vec::new();
        let (convs, dense_in) = match &cfg.conv {
            Some(front) => {
                let (convs, flat) = front
                    .shapes()
                    .map_err(|e| SpecError::new("train.layers", e))?;
                let (c, h, w) = front.image;
                if c * h * w != cfg.sizes[0] {
                    return Err(SpecError::new(
                        "train.layers",
                        format!("a {c}x{h}x{w} image for {} inputs", cfg.sizes[0]),
                    ));
                }
                (convs, flat)
            }
            None => (Vec::new(), cfg.sizes[0]),
        };
        // Per weight layer: inputs and outputs of the weights, fan-in and fan-out, the convolution.
        type Dims = (usize, usize, usize, usize, Option<ConvGeom>, Option<Pool>);
        let mut dims: Vec<Dims> = convs
            .iter()
            .map(|(g, p)| {
                let kk = g.k * g.k;
                (g.patch(), g.c_out, g.c_in * kk, g.c_out * kk, Some(*g), *p)
            })
            .collect();
        let mut prev = dense_in;
        for &out in &cfg.sizes[1..] {
            dims.push((prev, out, prev, out, None, None));
            prev = out;
        }
        let n_layers = dims.len();
        for (l, &(in_dim, out_dim, fan_in, fan_out, conv, pool)) in dims.iter().enumerate() {
            let cols = in_dim + usize::from(cfg.bias == BiasMode::Tile);
            let mut weights = new_weights(out_dim, cols, hw, (l as u64) << 24)?;
            let limit = cfg.init_scale * (6.0 / (fan_in + fan_out) as f32).sqrt();
            let mut w0 = vec![0.0f32; out_dim * cols];
            for i in 0..out_dim {
                for j in 0..in_dim {
                    w0[i * cols + j] = rng.random_range(-limit..=limit);
                }
            }
            if cfg.exact_init {
                weights.set_exact(&w0);
            } else {
                weights.program(&w0);
            }
            let last = l + 1 == n_layers;
            let act = match (last, cfg.loss) {
                (true, Loss::CrossEntropy) => None,
                _ => Some(cfg.activation),
            };
            layers.push(Layer {
                weights,
                in_dim,
                out_dim,
                bias_mode: cfg.bias,
                bias: vec![0.0; out_dim],
                act,
                out_scale: Vec::new(),
                conv,
                pool,
                buf: BatchBuffers::default(),
                x: vec![0.0; cols],
                z: vec![0.0; out_dim],
                a: vec![0.0; out_dim],
                d: vec![0.0; out_dim],
                back: vec![0.0; cols],
            });
        }
        let classes = *cfg.sizes.last().expect("sizes");
        let lr_scale = vec![1.0; layers.len()];
        Ok(Mlp {
            layers,
            loss: cfg.loss,
            probs: vec![0.0; classes],
            batch_probs: Vec::new(),
            lr_scale,
            weight_noise: (0.0, 0),
            noise: None,
        })
    }

    /// Gives every layer its own learning rate: layer `k` (0 = the first) is updated with
    /// `lr * scales[k]`, weights and digital bias alike. One finite factor > 0 per layer.
    pub fn set_lr_scale(&mut self, scales: &[f32]) -> Result<(), String> {
        if scales.len() != self.layers.len() {
            return Err(format!(
                "{} learning-rate factors for {} layers",
                scales.len(),
                self.layers.len()
            ));
        }
        if let Some(f) = scales.iter().find(|f| !(f.is_finite() && **f > 0.0)) {
            return Err(format!("learning-rate factors must be > 0, got {f}"));
        }
        self.lr_scale = scales.to_vec();
        Ok(())
    }

    /// Hardware-aware training (float layers only): every training forward pass reads each float
    /// layer's weights as `W + sigma max|W| E` with a fresh Gaussian `E` per sample and weight
    /// (`sigma` = `level`), so that training learns weights that tolerate the conductance errors of a
    /// chip. The perturbed output `sum_j (w_ij + e_ij) x_j` is drawn exactly, as `W x` plus one normal
    /// per output of standard deviation `sigma max|W| ||x||`. The backward pass and the update use the
    /// weights themselves; evaluation reads them without noise. The noise of training sample `n`
    /// (the `n`-th sample the training ledger counts) comes from the stream `(seed, WeightNoise, n)`,
    /// so a resumed run draws what an uninterrupted one does.
    pub fn set_weight_noise(&mut self, level: f32, seed: u64) {
        self.weight_noise = (level, seed);
    }

    /// The layers.
    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    /// The layers, to deploy or rescale them (see [`Layer::set_out_scale`]).
    pub fn layers_mut(&mut self) -> &mut [Layer] {
        &mut self.layers
    }

    /// Sets layer `k` (0 = the first) to the linear map `z = W x + b` (`w` row-major `out x in`, `b` of
    /// `out`), e.g. weights trained elsewhere: float layers take them exactly; tiles are programmed with
    /// pulses, or set without pulses with `exact`, as initial weights are ([`MlpConfig::exact_init`]).
    /// In [`BiasMode::Tile`] the bias is written to the extra column with the weights.
    pub fn set_parameters(
        &mut self,
        k: usize,
        w: &[f32],
        b: &[f32],
        exact: bool,
    ) -> Result<(), StateError> {
        let n = self.layers.len();
        let l = self
            .layers
            .get_mut(k)
            .ok_or_else(|| StateError(format!("layer {k} of a network of {n} layer(s)")))?;
        if w.len() != l.out_dim * l.in_dim || b.len() != l.out_dim {
            return Err(StateError(format!(
                "layer {k}: {} weights and {} biases for a {}x{} layer",
                w.len(),
                b.len(),
                l.out_dim,
                l.in_dim
            )));
        }
        let all = match l.bias_mode {
            BiasMode::Digital => {
                l.bias.copy_from_slice(b);
                w.to_vec()
            }
            BiasMode::Tile => w
                .chunks_exact(l.in_dim)
                .zip(b)
                .flat_map(|(row, bias)| row.iter().chain(std::iter::once(bias)).copied())
                .collect(),
        };
        if exact {
            l.weights.set_exact(&all);
        } else {
            l.weights.program(&all);
        }
        Ok(())
    }

    /// What training has changed in the network (see [`MlpState`]).
    pub fn export_state(&self) -> MlpState {
        MlpState {
            layers: self
                .layers
                .iter()
                .map(|l| LayerState {
                    weights: l.weights.export_state(),
                    bias: l.bias.clone(),
                })
                .collect(),
        }
    }

    /// Restores a state made by [`Mlp::export_state`] on a network built from the same scenario; the
    /// network then trains on exactly as the exported one would have.
    pub fn import_state(&mut self, state: &MlpState) -> Result<(), StateError> {
        if state.layers.len() != self.layers.len() {
            return Err(StateError(format!(
                "saved state has {} layer(s), the network {}",
                state.layers.len(),
                self.layers.len()
            )));
        }
        for (k, (l, s)) in self.layers.iter_mut().zip(&state.layers).enumerate() {
            if s.bias.len() != l.bias.len() {
                return Err(StateError(format!(
                    "layer {}: {} saved biases for {} outputs",
                    k + 1,
                    s.bias.len(),
                    l.bias.len()
                )));
            }
            l.weights
                .import_state(&s.weights)
                .map_err(|e| StateError(format!("layer {}: {e}", k + 1)))?;
            l.bias.copy_from_slice(&s.bias);
        }
        Ok(())
    }

    /// Forward pass, each layer's tiles in parallel as `par` allows; returns the output scores (softmax
    /// probabilities for cross-entropy, activations for MSE).
    pub fn forward(&mut self, input: &[f32], ledger: &mut Ledger, par: Par<'_>) -> &[f32] {
        if self.has_conv() {
            let noise = self.noise.is_some();
            self.forward_many(input, 1, ledger, par, noise);
            return &self.probs;
        }
        for l in 0..self.layers.len() {
            let (prev, rest) = self.layers.split_at_mut(l);
            let layer = &mut rest[0];
            let src: &[f32] = if l == 0 { input } else { &prev[l - 1].a };
            layer.x[..layer.in_dim].copy_from_slice(src);
            if layer.bias_mode == BiasMode::Tile {
                layer.x[layer.in_dim] = 1.0;
            }
            layer.weights.forward(&layer.x, &mut layer.z, ledger, par);
            if let Some(rng) = self.noise.as_mut()
                && layer.weights.tiles().is_empty()
            {
                let w_max = layer
                    .weights
                    .weights()
                    .iter()
                    .fold(0.0f32, |m, v| m.max(v.abs()));
                let norm = layer.x.iter().map(|v| v * v).sum::<f32>().sqrt();
                let sigma = self.weight_noise.0 * w_max * norm;
                for z in layer.z.iter_mut() {
                    let xi: f32 = aimsim_devices::normal::standard_normal(rng);
                    *z += sigma * xi;
                }
            }
            digital_tail(&layer.out_scale, layer.bias_mode, &layer.bias, &mut layer.z);
            match layer.act {
                Some(f) => {
                    for (a, z) in layer.a.iter_mut().zip(&layer.z) {
                        *a = f.apply(*z);
                    }
                }
                None => layer.a.copy_from_slice(&layer.z),
            }
        }
        let out = &self.layers.last().expect("layers").a;
        scores(self.loss, out, &mut self.probs);
        &self.probs
    }

    /// The predicted classes of `batch` inputs one after another (`inputs`, `in_dim` values each),
    /// layer by layer for the whole batch ([`Weights::forward_batch`]): the predictions, random draws
    /// and charges of [`Mlp::forward`] and [`Mlp::predicted`] on each input in order (the ledger's
    /// totals may differ in their last bits, being summed in another order). For inference only.
    pub fn predict_batch(
        &mut self,
        inputs: &[f32],
        batch: usize,
        ledger: &mut Ledger,
    ) -> Vec<usize> {
        if self.has_conv() {
            let width = inputs.len() / batch.max(1);
            let mut out = Vec::with_capacity(batch);
            for chunk in inputs.chunks(64 * width) {
                let n = chunk.len() / width;
                self.forward_many(chunk, n, ledger, Par::Seq, false);
                out.extend(self.batch_predictions());
                for _ in 0..n {
                    ledger.count_sample();
                }
            }
            return out;
        }
        let mut cur: Vec<f32> = inputs.to_vec();
        let mut width = cur.len() / batch.max(1);
        let mut xs = Vec::new();
        let mut zs = Vec::new();
        for layer in &mut self.layers {
            let cols = layer.x.len();
            xs.clear();
            for b in 0..batch {
                xs.extend_from_slice(&cur[b * width..(b + 1) * width]);
                if layer.bias_mode == BiasMode::Tile {
                    xs.push(1.0);
                }
            }
            debug_assert_eq!(xs.len(), batch * cols);
            zs.clear();
            zs.resize(batch * layer.out_dim, 0.0);
            layer
                .weights
                .forward_batch(&xs, &mut zs, batch, ledger, Par::Seq);
            for z in zs.chunks_exact_mut(layer.out_dim) {
                digital_tail(&layer.out_scale, layer.bias_mode, &layer.bias, z);
                if let Some(f) = layer.act {
                    for v in z.iter_mut() {
                        *v = f.apply(*v);
                    }
                }
            }
            std::mem::swap(&mut cur, &mut zs);
            width = layer.out_dim;
        }
        let mut out = Vec::with_capacity(batch);
        for a in cur.chunks_exact(width) {
            scores(self.loss, a, &mut self.probs);
            out.push(self.predicted());
            ledger.count_sample();
        }
        out
    }

    /// Predicted class of the last forward pass.
    pub fn predicted(&self) -> usize {
        batch::argmax(&self.probs)
    }

    /// Loss of the last forward pass had its label been `label`, as [`Mlp::train_step`] computes it:
    /// cross-entropy of the softmax, or half the squared error of the activated outputs.
    pub fn loss_of(&self, label: usize) -> f32 {
        match self.loss {
            Loss::CrossEntropy => -(self.probs[label].max(1e-12)).ln(),
            Loss::Mse => self
                .probs
                .iter()
                .enumerate()
                .map(|(k, a)| {
                    let e = a - if k == label { 1.0 } else { 0.0 };
                    0.5 * e * e
                })
                .sum(),
        }
    }

    /// One on-chip learning step on one sample: forward, error at the output, backward through the
    /// tiles' transposes, pulsed updates of every layer; the tiles of each phase in parallel as `par`
    /// allows. Returns the sample's loss.
    pub fn train_step(
        &mut self,
        input: &[f32],
        label: usize,
        lr: f32,
        ledger: &mut Ledger,
        par: Par<'_>,
    ) -> f32 {
        self.train_step_ahead(input, label, lr, ledger, None, par)
    }

    /// [`Mlp::train_step`] that, given the next training sample `next`, lets the first layer's tiles
    /// make its forward read right after their own updates (while other tiles still update). The next
    /// call must then train on `next` (or infer on it); results are the same bits either way.
    pub fn train_step_ahead(
        &mut self,
        input: &[f32],
        label: usize,
        lr: f32,
        ledger: &mut Ledger,
        next: Option<&[f32]>,
        par: Par<'_>,
    ) -> f32 {
        if self.has_conv() {
            let r = self.train_batch(input, &[label], lr, BatchUpdate::Sequential, ledger, par);
            return r[0].0;
        }
        if self.weight_noise.0 > 0.0 {
            self.noise = Some(aimsim_sim::rng::stream(
                self.weight_noise.1,
                aimsim_sim::rng::Purpose::WeightNoise,
                ledger.samples(),
            ));
        }
        self.forward(input, ledger, par);
        self.noise = None;
        let n = self.layers.len();
        let loss = {
            let last = &mut self.layers[n - 1];
            match self.loss {
                Loss::CrossEntropy => {
                    for (k, (d, p)) in last.d.iter_mut().zip(&self.probs).enumerate() {
                        *d = p - if k == label { 1.0 } else { 0.0 };
                    }
                    -(self.probs[label].max(1e-12)).ln()
                }
                Loss::Mse => {
                    let f = last.act.expect("MSE output has an activation");
                    let mut loss = 0.0;
                    for k in 0..last.out_dim {
                        let e = last.a[k] - if k == label { 1.0 } else { 0.0 };
                        loss += 0.5 * e * e;
                        last.d[k] = e * f.derivative(last.z[k], last.a[k]);
                    }
                    loss
                }
            }
        };
        // Backward: errors of every hidden layer from the layer above, through its tiles' transposes.
        for l in (1..n).rev() {
            let (lower, upper) = self.layers.split_at_mut(l);
            let above = &mut upper[0];
            let below = &mut lower[l - 1];
            above
                .weights
                .backward(&above.d, &mut above.back, ledger, par);
            let f = below.act.expect("hidden layers have an activation");
            for k in 0..below.out_dim {
                below.d[k] = above.back[k] * f.derivative(below.z[k], below.a[k]);
            }
        }
        // Every layer's update depends only on its own input and error, so all layers (and all their
        // tiles) write at the same time; each layer charges its own ledger, merged in layer order so the
        // totals do not depend on the thread count.
        let mut ledgers = vec![Ledger::default(); n];
        // The first layer's input for `next`, as `forward` will build it.
        let next_x = next.map(|v| {
            let first = &self.layers[0];
            let mut x = first.x.clone();
            x[..first.in_dim].copy_from_slice(v);
            x
        });
        let mut jobs = Vec::new();
        for (k, layer) in self.layers.iter_mut().enumerate() {
            let ahead = if k == 0 { next_x.as_deref() } else { None };
            jobs.extend(layer.weights.update_jobs_ahead(
                &layer.x,
                &layer.d,
                lr * self.lr_scale[k],
                ahead,
            ));
        }
        par.run(jobs);
        for ((layer, own), f) in self.layers.iter_mut().zip(&mut ledgers).zip(&self.lr_scale) {
            layer.weights.finish_update(own);
            if layer.bias_mode == BiasMode::Digital {
                for (b, d) in layer.bias.iter_mut().zip(&layer.d) {
                    *b -= lr * f * d;
                }
            }
        }
        for own in &ledgers {
            ledger.absorb(own);
        }
        ledger.count_sample();
        loss
    }
}

#[path = "mlp_weights.rs"]
mod weights;
pub use weights::{Weights, WeightsState};

#[path = "mlp_batch.rs"]
mod batch;
pub use batch::BatchBuffers;

#[cfg(test)]
#[path = "mlp_tests.rs"]
pub(crate) mod tests;
