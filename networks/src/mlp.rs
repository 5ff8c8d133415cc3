//! Multi-layer perceptrons whose weights live on simulated tiles (or, for the software baseline, in
//! float matrices), trained by backpropagation with every phase on the weight store.

use aimsim_devices::{DeviceSpec, SpecError, StateError};
/// Exact float weights: the software baseline (a `sim` type, on the tiles' kernels).
pub use aimsim_sim::float::FloatMatrix;
use aimsim_sim::ledger::{CostModel, Ledger};
use aimsim_sim::matrix::{AnalogMatrix, MatrixState};
use aimsim_sim::par::{Job, Par};
use aimsim_sim::tile::{Tile, TileConfig};
use aimsim_sim::update::ControllerSpec;
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

/// A layer's weight store: the three phases of on-chip learning. Each phase may run its tiles in
/// parallel as `par` allows.
pub trait Weights: Send + std::fmt::Debug {
    /// `y = W x`.
    fn forward(&mut self, x: &[f32], y: &mut [f32], ledger: &mut Ledger, par: Par<'_>);
    /// `y_b = W x_b` for `batch` inputs one after another (`xs` to `ys`): the same outputs, draws and
    /// charges as [`Weights::forward`] on each in order (for inference: no update may follow).
    fn forward_batch(&mut self, xs: &[f32], ys: &mut [f32], batch: usize, ledger: &mut Ledger) {
        let (inp, out) = (xs.len() / batch.max(1), ys.len() / batch.max(1));
        for b in 0..batch {
            self.forward(
                &xs[b * inp..(b + 1) * inp],
                &mut ys[b * out..(b + 1) * out],
                ledger,
                Par::Seq,
            );
        }
    }
    /// `z = W^T d`.
    fn backward(&mut self, d: &[f32], z: &mut [f32], ledger: &mut Ledger, par: Par<'_>);
    /// `W -= lr d x^T`.
    fn update(&mut self, x: &[f32], d: &[f32], lr: f32, ledger: &mut Ledger, par: Par<'_>);
    /// [`Weights::update`] as independent jobs (one per tile on analog weights), so that a network can
    /// run the updates of all its layers at once; the caller runs them with [`Par::run`], then calls
    /// [`Weights::finish_update`].
    fn update_jobs<'a>(&'a mut self, x: &'a [f32], d: &'a [f32], lr: f32) -> Vec<Job<'a>>;
    /// [`Weights::update_jobs`] that may also read ahead: given `next`, the jobs may make the forward
    /// read of `next` after their updates, which the next [`Weights::forward`] (of `next`) then
    /// returns, with the same results. By default they do not.
    fn update_jobs_ahead<'a>(
        &'a mut self,
        x: &'a [f32],
        d: &'a [f32],
        lr: f32,
        next: Option<&'a [f32]>,
    ) -> Vec<Job<'a>> {
        let _ = next;
        self.update_jobs(x, d, lr)
    }
    /// Charges `ledger` with the update made by the jobs of [`Weights::update_jobs`].
    fn finish_update(&mut self, ledger: &mut Ledger);
    /// Current weights, row-major `out x in`.
    fn weights(&self) -> Vec<f32>;
    /// Sets initial weights (programmed with pulses on tiles).
    fn program(&mut self, w: &[f32]);
    /// Sets initial weights exactly, without pulses (the same as [`Weights::program`] for float
    /// weights).
    fn set_exact(&mut self, w: &[f32]) {
        self.program(w);
    }
    /// The tiles, if the weights are analog.
    fn tiles(&self) -> &[Tile] {
        &[]
    }
    /// The layer on tiles, if the weights are analog (deployment works on it directly).
    fn analog_mut(&mut self) -> Option<&mut AnalogMatrix> {
        None
    }
    /// What training has changed in the store, for checkpoints.
    fn export_state(&self) -> WeightsState;
    /// Restores a state made by [`Weights::export_state`] on a store built from the same scenario.
    fn import_state(&mut self, state: &WeightsState) -> Result<(), StateError>;
}

/// A weight store's state as plain data.
#[derive(Debug, Clone, PartialEq)]
pub enum WeightsState {
    /// Float weights, row-major.
    Float(Vec<f32>),
    /// Tiles and their controllers.
    Analog(MatrixState),
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

impl Weights for AnalogMatrix {
    fn forward(&mut self, x: &[f32], y: &mut [f32], ledger: &mut Ledger, par: Par<'_>) {
        AnalogMatrix::forward(self, x, y, ledger, par);
    }
    fn forward_batch(&mut self, xs: &[f32], ys: &mut [f32], batch: usize, ledger: &mut Ledger) {
        AnalogMatrix::forward_batch(self, xs, ys, batch, ledger);
    }
    fn backward(&mut self, d: &[f32], z: &mut [f32], ledger: &mut Ledger, par: Par<'_>) {
        AnalogMatrix::backward(self, d, z, ledger, par);
    }
    fn update(&mut self, x: &[f32], d: &[f32], lr: f32, ledger: &mut Ledger, par: Par<'_>) {
        AnalogMatrix::update(self, x, d, lr, ledger, par);
    }
    fn update_jobs<'a>(&'a mut self, x: &'a [f32], d: &'a [f32], lr: f32) -> Vec<Job<'a>> {
        AnalogMatrix::update_jobs(self, x, d, lr)
    }
    fn update_jobs_ahead<'a>(
        &'a mut self,
        x: &'a [f32],
        d: &'a [f32],
        lr: f32,
        next: Option<&'a [f32]>,
    ) -> Vec<Job<'a>> {
        AnalogMatrix::update_jobs_ahead(self, x, d, lr, next)
    }
    fn finish_update(&mut self, ledger: &mut Ledger) {
        AnalogMatrix::finish_update(self, ledger);
    }
    fn weights(&self) -> Vec<f32> {
        AnalogMatrix::weights(self)
    }
    fn program(&mut self, w: &[f32]) {
        AnalogMatrix::program(self, w);
    }
    fn set_exact(&mut self, w: &[f32]) {
        AnalogMatrix::set_weights_exact(self, w);
    }
    fn tiles(&self) -> &[Tile] {
        AnalogMatrix::tiles(self)
    }
    fn analog_mut(&mut self) -> Option<&mut AnalogMatrix> {
        Some(self)
    }
    fn export_state(&self) -> WeightsState {
        WeightsState::Analog(AnalogMatrix::export_state(self))
    }
    fn import_state(&mut self, state: &WeightsState) -> Result<(), StateError> {
        match state {
            WeightsState::Analog(m) => AnalogMatrix::import_state(self, m),
            WeightsState::Float(_) => Err(StateError(
                "saved float weights for a layer on tiles".into(),
            )),
        }
    }
}

impl Weights for FloatMatrix {
    fn forward(&mut self, x: &[f32], y: &mut [f32], _: &mut Ledger, _: Par<'_>) {
        FloatMatrix::forward(self, x, y);
    }
    fn forward_batch(&mut self, xs: &[f32], ys: &mut [f32], batch: usize, _: &mut Ledger) {
        FloatMatrix::forward_batch(self, xs, ys, batch);
    }
    fn backward(&mut self, d: &[f32], z: &mut [f32], _: &mut Ledger, _: Par<'_>) {
        FloatMatrix::backward(self, d, z);
    }
    fn update(&mut self, x: &[f32], d: &[f32], lr: f32, _: &mut Ledger, _: Par<'_>) {
        FloatMatrix::update(self, x, d, lr);
    }
    fn update_jobs<'a>(&'a mut self, x: &'a [f32], d: &'a [f32], lr: f32) -> Vec<Job<'a>> {
        let cost = self.weights().len() as u64;
        vec![Job::new(cost, move || FloatMatrix::update(self, x, d, lr))]
    }
    fn finish_update(&mut self, _: &mut Ledger) {}
    fn weights(&self) -> Vec<f32> {
        FloatMatrix::weights(self).to_vec()
    }
    fn program(&mut self, w: &[f32]) {
        self.weights_mut().copy_from_slice(w);
    }
    fn export_state(&self) -> WeightsState {
        WeightsState::Float(FloatMatrix::weights(self).to_vec())
    }
    fn import_state(&mut self, state: &WeightsState) -> Result<(), StateError> {
        match state {
            WeightsState::Float(w) if w.len() == FloatMatrix::weights(self).len() => {
                self.weights_mut().copy_from_slice(w);
                Ok(())
            }
            WeightsState::Float(w) => Err(StateError(format!(
                "{} saved float weights for a {}x{} layer",
                w.len(),
                self.shape().0,
                self.shape().1
            ))),
            WeightsState::Analog(_) => Err(StateError(
                "saved tile state for a layer of float weights".into(),
            )),
        }
    }
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
        let n_layers = cfg.sizes.len() - 1;
        for l in 0..n_layers {
            let (in_dim, out_dim) = (cfg.sizes[l], cfg.sizes[l + 1]);
            let cols = in_dim + usize::from(cfg.bias == BiasMode::Tile);
            let mut weights = new_weights(out_dim, cols, hw, (l as u64) << 24)?;
            let limit = cfg.init_scale * (6.0 / (in_dim + out_dim) as f32).sqrt();
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
            match layer.out_scale.len() {
                0 => {}
                1 => {
                    let s = layer.out_scale[0];
                    layer.z.iter_mut().for_each(|z| *z *= s);
                }
                _ => {
                    for (z, s) in layer.z.iter_mut().zip(&layer.out_scale) {
                        *z *= s;
                    }
                }
            }
            if layer.bias_mode == BiasMode::Digital {
                for (z, b) in layer.z.iter_mut().zip(&layer.bias) {
                    *z += b;
                }
            }
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
        match self.loss {
            Loss::CrossEntropy => {
                let m = out.iter().fold(f32::NEG_INFINITY, |m, v| m.max(*v));
                let mut sum = 0.0;
                for (p, z) in self.probs.iter_mut().zip(out) {
                    *p = (z - m).exp();
                    sum += *p;
                }
                self.probs.iter_mut().for_each(|p| *p /= sum);
            }
            Loss::Mse => self.probs.copy_from_slice(out),
        }
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
            layer.weights.forward_batch(&xs, &mut zs, batch, ledger);
            for z in zs.chunks_exact_mut(layer.out_dim) {
                match layer.out_scale.len() {
                    0 => {}
                    1 => {
                        let s = layer.out_scale[0];
                        z.iter_mut().for_each(|v| *v *= s);
                    }
                    _ => {
                        for (v, s) in z.iter_mut().zip(&layer.out_scale) {
                            *v *= s;
                        }
                    }
                }
                if layer.bias_mode == BiasMode::Digital {
                    for (v, b) in z.iter_mut().zip(&layer.bias) {
                        *v += b;
                    }
                }
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
            match self.loss {
                Loss::CrossEntropy => {
                    let m = a.iter().fold(f32::NEG_INFINITY, |m, v| m.max(*v));
                    let mut sum = 0.0;
                    for (p, z) in self.probs.iter_mut().zip(a) {
                        *p = (z - m).exp();
                        sum += *p;
                    }
                    self.probs.iter_mut().for_each(|p| *p /= sum);
                }
                Loss::Mse => self.probs.copy_from_slice(a),
            }
            out.push(self.predicted());
            ledger.count_sample();
        }
        out
    }

    /// Predicted class of the last forward pass.
    pub fn predicted(&self) -> usize {
        let mut best = 0;
        for (k, p) in self.probs.iter().enumerate() {
            if *p > self.probs[best] {
                best = k;
            }
        }
        best
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_pcg::Pcg64;

    #[test]
    fn activations_and_derivatives_agree_with_finite_differences() {
        for f in [
            Activation::Sigmoid,
            Activation::Tanh,
            Activation::Relu,
            Activation::HardSigmoid,
        ] {
            for z in [-3.1f32, -0.7, 0.3, 1.9] {
                let h = 1e-3;
                let num = (f.apply(z + h) - f.apply(z - h)) / (2.0 * h);
                let ana = f.derivative(z, f.apply(z));
                assert!((num - ana).abs() < 1e-3, "{f:?} at {z}: {num} vs {ana}");
            }
        }
    }

    #[test]
    fn parameters_are_the_linear_map_the_layer_computes_in_both_bias_modes() {
        for bias in [BiasMode::Digital, BiasMode::Tile] {
            let cfg = MlpConfig {
                sizes: vec![3, 4, 2],
                activation: Activation::Tanh,
                loss: Loss::CrossEntropy,
                bias,
                init_scale: 1.0,
                exact_init: false,
            };
            let mut net = Mlp::new(&cfg, None, &mut Pcg64::seed_from_u64(1)).unwrap();
            let w: Vec<f32> = (0..12).map(|i| i as f32 * 0.1 - 0.5).collect();
            let b = vec![0.5, -0.25, 1.0, 2.0];
            net.set_parameters(0, &w, &b, false).unwrap();
            assert_eq!(net.layers()[0].parameters(), (w.clone(), b.clone()));
            let x = [0.3f32, -0.2, 0.9];
            net.forward(&x, &mut Ledger::default(), Par::Seq);
            for i in 0..4 {
                let z = (0..3).map(|j| w[i * 3 + j] * x[j]).sum::<f32>() + b[i];
                assert!((net.layers[0].z[i] - z).abs() < 1e-6, "{bias:?} output {i}");
            }
            assert!(net.set_parameters(0, &w[..11], &b, false).is_err());
            assert!(net.set_parameters(2, &w, &b, false).is_err());
        }
    }

    #[test]
    fn float_network_gradient_matches_finite_differences() {
        // One step with a tiny lr changes the loss by -lr ||grad||^2: check the backward pass.
        let cfg = MlpConfig {
            sizes: vec![5, 4, 3],
            activation: Activation::Tanh,
            loss: Loss::CrossEntropy,
            bias: BiasMode::Digital,
            init_scale: 1.0,
            exact_init: false,
        };
        let mut rng = Pcg64::seed_from_u64(3);
        let mut net = Mlp::new(&cfg, None, &mut rng).unwrap();
        let x = [0.1, -0.4, 0.8, 0.3, -0.2];
        let mut ledger = Ledger::default();
        let loss_at = |net: &mut Mlp, ledger: &mut Ledger| {
            let p = net.forward(&x, ledger, Par::Seq);
            -(p[2].ln())
        };
        let before = loss_at(&mut net, &mut ledger);
        let w_before: Vec<Vec<f32>> = net.layers.iter().map(|l| l.weights.weights()).collect();
        let lr = 1e-3;
        net.train_step(&x, 2, lr, &mut ledger, Par::Seq);
        let grad_sq: f32 = net
            .layers
            .iter()
            .zip(&w_before)
            .map(|(l, w0)| {
                let w1 = l.weights.weights();
                w1.iter()
                    .zip(w0)
                    .map(|(a, b)| ((a - b) / lr).powi(2))
                    .sum::<f32>()
                    + l.d.iter().map(|d| d * d).sum::<f32>()
            })
            .sum();
        let after = loss_at(&mut net, &mut ledger);
        let predicted = -lr * grad_sq;
        assert!(
            ((after - before) - predicted).abs() < 0.05 * predicted.abs(),
            "loss change {} vs first-order {}",
            after - before,
            predicted
        );
    }

    /// A noisy analog network whose first layer spans several tiles (tile bias column included), for
    /// the read-ahead tests: stochastic pulses, c2c noise, a noisy periphery.
    pub(crate) fn noisy_net(bias: BiasMode) -> Mlp {
        use aimsim_devices::{Model, StepKind, StepParams};
        use aimsim_sim::tile::CellKind;
        let mut device = DeviceSpec::new(Model::Step(StepParams::new(StepKind::Constant, 0.01)));
        device.c2c = 0.3;
        let hw = Hardware {
            device,
            tile: TileConfig {
                rows: 8,
                cols: 8,
                cell: CellKind::Single,
                ..TileConfig::default()
            },
            controller: ControllerSpec::default(),
            w_scale: 1.0,
            cost: CostModel::default(),
            seed: 7,
        };
        let cfg = MlpConfig {
            sizes: vec![20, 12, 4],
            activation: Activation::Sigmoid,
            loss: Loss::CrossEntropy,
            bias,
            init_scale: 1.0,
            exact_init: false,
        };
        Mlp::new(&cfg, Some(&hw), &mut Pcg64::seed_from_u64(4)).unwrap()
    }

    #[test]
    fn reading_ahead_changes_no_bit() {
        // Training told the next sample (the first layer's tiles read it inside the update jobs, on a
        // team of three threads) against plain steps on one thread: the same losses, predictions, ledger
        // totals and network state after every sample, with the digital and the tile bias.
        let team = aimsim_sim::par::Team::with_spread(3, aimsim_sim::par::Spread::Always);
        for bias in [BiasMode::Digital, BiasMode::Tile] {
            let (mut plain, mut ahead) = (noisy_net(bias), noisy_net(bias));
            let mut rng = Pcg64::seed_from_u64(12);
            let samples: Vec<(Vec<f32>, usize)> = (0..30)
                .map(|k| {
                    let x = (0..20)
                        .map(|j| {
                            if j % 5 == 0 {
                                0.0
                            } else {
                                rng.random_range(0.0..1.0)
                            }
                        })
                        .collect();
                    (x, k % 4)
                })
                .collect();
            let (mut la, mut lb) = (Ledger::default(), Ledger::default());
            for (k, (x, y)) in samples.iter().enumerate() {
                let next = samples.get(k + 1).map(|(n, _)| n.as_slice());
                let a = plain.train_step(x, *y, 0.5, &mut la, Par::Seq);
                let b = ahead.train_step_ahead(x, *y, 0.5, &mut lb, next, team.par());
                assert_eq!(a.to_bits(), b.to_bits(), "{bias:?}: loss of sample {k}");
                assert_eq!(plain.predicted(), ahead.predicted());
                if next.is_none() {
                    assert_eq!(plain.export_state(), ahead.export_state(), "{bias:?}");
                }
            }
            assert_eq!(la.total_cycles(), lb.total_cycles());
            assert_eq!(
                la.total_energy_pj().to_bits(),
                lb.total_energy_pj().to_bits()
            );
            for phase in [
                aimsim_sim::ledger::Phase::Forward,
                aimsim_sim::ledger::Phase::Update,
            ] {
                assert_eq!(la.phase(phase), lb.phase(phase), "{bias:?}: {phase:?}");
            }
            // The same network afterwards: evaluation gives the same outputs.
            let (pa, pb) = (
                plain.forward(&samples[0].0, &mut la, Par::Seq).to_vec(),
                ahead.forward(&samples[0].0, &mut lb, team.par()).to_vec(),
            );
            assert_eq!(pa, pb);
        }
    }

    #[test]
    #[should_panic(expected = "a forward read ahead waits for another input")]
    fn a_read_ahead_refuses_another_input() {
        let mut net = noisy_net(BiasMode::Digital);
        let mut ledger = Ledger::default();
        let (x, other) = (vec![0.5f32; 20], vec![0.25f32; 20]);
        net.train_step_ahead(&x, 1, 0.5, &mut ledger, Some(&x), Par::Seq);
        net.forward(&other, &mut ledger, Par::Seq);
    }

    #[test]
    fn two_layer_network_on_ideal_devices_matches_the_float_reference() {
        use aimsim_devices::{Model, StepKind, StepParams};
        use aimsim_sim::io::IoConfig;
        use aimsim_sim::tile::CellKind;
        use aimsim_sim::update::PulseScheme;
        // Ideal devices: a fine constant step, no noise, no variation; ideal periphery; counted pulses.
        let dw = 1e-5;
        let hw = Hardware {
            device: DeviceSpec::new(Model::Step(StepParams::new(StepKind::Constant, dw))),
            tile: TileConfig {
                rows: 8,
                cols: 8,
                cell: CellKind::Pair,
                forward: IoConfig::ideal(),
                backward: IoConfig::ideal(),
                zero_reference: false,
            },
            controller: ControllerSpec::SgdCount(PulseScheme::Count {
                max_pulses: 100_000,
            }),
            // Weights stay well inside the devices' range, so the bounds never clip a step.
            w_scale: 4.0,
            cost: CostModel::default(),
            seed: 5,
        };
        let cfg = MlpConfig {
            sizes: vec![10, 12, 4],
            activation: Activation::Sigmoid,
            loss: Loss::CrossEntropy,
            bias: BiasMode::Digital,
            init_scale: 1.0,
            exact_init: false,
        };
        let mut analog = Mlp::new(&cfg, Some(&hw), &mut Pcg64::seed_from_u64(9)).unwrap();
        let mut float = Mlp::new(&cfg, None, &mut Pcg64::seed_from_u64(9)).unwrap();
        // Same start: copy the programmed weights into the float network.
        for (a, f) in analog.layers.iter().zip(float.layers.iter_mut()) {
            let w = a.weights.weights();
            f.weights.program(&w);
        }
        let start = float.layers[1].weights.weights();
        let mut rng = Pcg64::seed_from_u64(11);
        let mut ledger = Ledger::default();
        let samples: Vec<(Vec<f32>, usize)> = (0..40)
            .map(|k| ((0..10).map(|_| rng.random_range(0.0..1.0)).collect(), k % 4))
            .collect();
        for _ in 0..5 {
            for (x, y) in &samples {
                analog.train_step(x, *y, 0.5, &mut ledger, Par::Seq);
                float.train_step(x, *y, 0.5, &mut ledger, Par::Seq);
            }
        }
        let mut worst = 0.0f32;
        let mut moved = 0.0f32;
        for (x, _) in &samples {
            let pa = analog.forward(x, &mut ledger, Par::Seq).to_vec();
            let pf = float.forward(x, &mut ledger, Par::Seq).to_vec();
            for (a, f) in pa.iter().zip(&pf) {
                worst = worst.max((a - f).abs());
            }
        }
        for (a, f) in analog.layers.iter().zip(&float.layers) {
            let (wa, wf) = (a.weights.weights(), f.weights.weights());
            for (x, y) in wa.iter().zip(&wf) {
                moved = moved.max((x - y).abs());
            }
        }
        // Each weight differs from the float one by at most a few quantized steps.
        assert!(moved < 200.0 * 4.0 * dw as f32, "weights differ by {moved}");
        assert!(worst < 1e-2, "probabilities differ by {worst}");
        // And training did something: the weights moved far more than the two networks differ.
        let travelled = float.layers[1]
            .weights
            .weights()
            .iter()
            .zip(&start)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            travelled > 20.0 * moved,
            "training moved weights by {travelled} only"
        );
    }

    #[test]
    fn loss_of_the_last_forward_pass_is_the_training_loss() {
        // Validation reports `loss_of` after a forward pass: it must be the loss training reports.
        for loss in [Loss::CrossEntropy, Loss::Mse] {
            let cfg = MlpConfig {
                sizes: vec![5, 4, 3],
                activation: Activation::Sigmoid,
                loss,
                bias: BiasMode::Digital,
                init_scale: 1.0,
                exact_init: false,
            };
            let mut net = Mlp::new(&cfg, None, &mut Pcg64::seed_from_u64(5)).unwrap();
            let x = [0.1, -0.4, 0.8, 0.3, -0.2];
            let mut ledger = Ledger::default();
            for label in 0..3 {
                net.forward(&x, &mut ledger, Par::Seq);
                let seen = net.loss_of(label);
                let mut twin = Mlp::new(&cfg, None, &mut Pcg64::seed_from_u64(5)).unwrap();
                let trained = twin.train_step(&x, label, 0.1, &mut ledger, Par::Seq);
                assert_eq!(seen, trained, "{loss:?}, label {label}");
            }
        }
    }

    #[test]
    fn weight_noise_perturbs_training_reads_by_the_stated_spread() {
        // One linear layer (MSE loss, identity-free check through the loss): with lr 0 the weights stay,
        // so the spread of the training outputs over many samples is the injected noise alone.
        let cfg = MlpConfig {
            sizes: vec![6, 3],
            activation: Activation::Sigmoid,
            loss: Loss::Mse,
            bias: BiasMode::Digital,
            init_scale: 1.0,
            exact_init: false,
        };
        let x = [0.5, -0.2, 0.9, 0.1, -0.7, 0.3];
        let mut clean = Mlp::new(&cfg, None, &mut Pcg64::seed_from_u64(2)).unwrap();
        let mut ledger = Ledger::default();
        let base = clean.train_step(&x, 0, 0.0, &mut ledger, Par::Seq);
        // Level 0: the same bits as without noise.
        let mut zero = Mlp::new(&cfg, None, &mut Pcg64::seed_from_u64(2)).unwrap();
        zero.set_weight_noise(0.0, 9);
        assert_eq!(
            zero.train_step(&x, 0, 0.0, &mut Ledger::default(), Par::Seq),
            base
        );
        let mut noisy = Mlp::new(&cfg, None, &mut Pcg64::seed_from_u64(2)).unwrap();
        let level = 0.1;
        noisy.set_weight_noise(level, 9);
        let w = noisy.layers()[0].weights.weights();
        let w_max = w.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let norm = x.iter().map(|v| v * v).sum::<f32>().sqrt();
        let clean_z = clean.layers()[0].z.clone();
        let mut ledger = Ledger::default();
        let (mut sum, mut sq, n) = (0.0f64, 0.0f64, 20_000);
        for k in 0..n {
            noisy.train_step(&x, 0, 0.0, &mut ledger, Par::Seq);
            let e = (noisy.layers()[0].z[k % 3] - clean_z[k % 3]) as f64;
            sum += e;
            sq += e * e;
        }
        let (mean, sd) = (
            sum / n as f64,
            (sq / n as f64 - (sum / n as f64).powi(2)).sqrt(),
        );
        let want = (level * w_max * norm) as f64;
        assert!(mean.abs() < 0.05 * want, "mean {mean}");
        assert!((sd / want - 1.0).abs() < 0.03, "sd {sd} want {want}");
        // The same sample index draws the same noise; evaluation reads without noise.
        let mut a = Mlp::new(&cfg, None, &mut Pcg64::seed_from_u64(2)).unwrap();
        a.set_weight_noise(level, 9);
        let mut b = Mlp::new(&cfg, None, &mut Pcg64::seed_from_u64(2)).unwrap();
        b.set_weight_noise(level, 9);
        let mut l = Ledger::default();
        let first = a.train_step(&x, 0, 0.0, &mut l, Par::Seq);
        assert_eq!(
            b.train_step(&x, 0, 0.0, &mut Ledger::default(), Par::Seq),
            first
        );
        assert_ne!(a.train_step(&x, 0, 0.0, &mut l, Par::Seq), first);
        a.forward(&x, &mut l, Par::Seq);
        assert_eq!(a.layers()[0].z, clean_z);
    }

    #[test]
    fn lr_scale_gives_each_layer_its_own_rate() {
        // One step of a net with factors [2, 0.5] at lr 0.1 moves layer 0 as lr 0.2 does and layer 1
        // as lr 0.05 does (weights and digital bias); factors of 1 change nothing.
        let cfg = MlpConfig {
            sizes: vec![6, 5, 3],
            activation: Activation::Sigmoid,
            loss: Loss::Mse,
            bias: BiasMode::Digital,
            init_scale: 1.0,
            exact_init: false,
        };
        let x = [0.1, 0.9, 0.4, 0.0, 1.0, 0.3];
        let step = |lr: f32, scales: Option<&[f32]>| {
            let mut net = Mlp::new(&cfg, None, &mut Pcg64::seed_from_u64(3)).unwrap();
            if let Some(s) = scales {
                net.set_lr_scale(s).unwrap();
            }
            net.train_step(&x, 1, lr, &mut Ledger::default(), Par::Seq);
            net.layers
                .iter()
                .map(|l| (l.weights.weights(), l.bias.clone()))
                .collect::<Vec<_>>()
        };
        let scaled = step(0.1, Some(&[2.0, 0.5]));
        assert_eq!(scaled[0], step(0.2, None)[0]);
        assert_eq!(scaled[1], step(0.05, None)[1]);
        assert_ne!(scaled[0], step(0.1, None)[0]);
        assert_eq!(step(0.1, Some(&[1.0, 1.0])), step(0.1, None));
        let mut net = Mlp::new(&cfg, None, &mut Pcg64::seed_from_u64(3)).unwrap();
        assert!(net.set_lr_scale(&[1.0]).unwrap_err().contains("2 layers"));
        assert!(net.set_lr_scale(&[1.0, 0.0]).is_err());
        assert!(net.set_lr_scale(&[1.0, f32::NAN]).is_err());
    }
}
