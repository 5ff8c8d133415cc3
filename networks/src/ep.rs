//! Equilibrium propagation (EP) on the same tiles, devices and controllers as backpropagation.
//!
//! A layered energy network (docs/ep.md): states `s_1 .. s_L` of the hidden and output layers, the input
//! `x` clamped as layer 0, and
//!
//! ```text
//! E(s) = 1/2 sum_k ||s_k||^2 - sum_k rho(s_k)^T W_k rho(s_{k-1}) - sum_k b_k^T rho(s_k)
//! C(s) = 1/2 ||rho(s_L) - y||^2,          F = E + beta C
//! ```
//!
//! States relax by projected gradient descent `s <- clip(s - eps dF/ds)` onto the interval where `rho` is
//! linear, so `rho` is exactly linear inside and `E` is a box-constrained quadratic. Every relaxation step
//! is made of tile reads: `W_k rho(s_{k-1})` forward through layer `k`'s tiles and `W_{k+1}^T
//! rho(s_{k+1})` backward through layer `k+1`'s tiles (the same conductances, or a separate feedback
//! array), with the periphery's noise and quantization, charged to the ledger.
//!
//! After a free phase (`beta = 0`) and one or two nudged phases, the contrastive update
//! `dW_k = lr / beta (rho_k^b rho_{k-1}^b^T - rho_k^0 rho_{k-1}^0^T)` (or its symmetric form) is handed to
//! the tiles' controllers as rank-one steps `dW = -lr d x^T`. [`EpNetwork::exact_gradient`] computes the
//! gradient of the loss at the free fixed point by implicit differentiation, for the fidelity diagnostic
//! ([`fidelity`]).
//!
//! Its size (about 1,100 lines, tests apart): the energy network, its relaxation, the nudged phases,
//! the exact gradient and the fidelity diagnostic all read the same layered state.

use aimsim_devices::{SpecError, StateError};
use aimsim_sim::ledger::Ledger;
use aimsim_sim::par::Par;
use aimsim_sim::rng::{Purpose, stream};
use aimsim_sim::tile::Tile;
use rand::{Rng, RngExt};

use crate::mlp::{Hardware, LayerState, MlpState, Weights, new_weights};

/// Neuron nonlinearity of an energy network: piecewise linear, so states are kept where it is linear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpActivation {
    /// `rho(s) = clip(s, 0, 1)`; states live in `[0, 1]`.
    Clip,
    /// `rho(s) = clip((1 + s) / 2, 0, 1)`; states live in `[-1, 1]`.
    HardSigmoid,
}

impl EpActivation {
    /// Scenario name.
    pub fn name(self) -> &'static str {
        match self {
            EpActivation::Clip => "clip",
            EpActivation::HardSigmoid => "hard-sigmoid",
        }
    }

    /// The interval the states are projected onto (where `rho` is linear).
    pub fn bounds(self) -> (f32, f32) {
        match self {
            EpActivation::Clip => (0.0, 1.0),
            EpActivation::HardSigmoid => (-1.0, 1.0),
        }
    }

    /// `rho'` inside the interval.
    pub fn slope(self) -> f32 {
        match self {
            EpActivation::Clip => 1.0,
            EpActivation::HardSigmoid => 0.5,
        }
    }

    /// `rho(s)`.
    #[inline]
    pub fn rho(self, s: f32) -> f32 {
        match self {
            EpActivation::Clip => s.clamp(0.0, 1.0),
            EpActivation::HardSigmoid => (0.5 * (1.0 + s)).clamp(0.0, 1.0),
        }
    }
}

/// How the nudged phases are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nudge {
    /// One nudged phase at `+beta`; the estimate has a bias of order `beta`.
    OneSided,
    /// One nudged phase at `+beta` or `-beta`, the sign drawn per sample; the bias averages out.
    RandomSign,
    /// Two nudged phases at `+beta` and `-beta`, divided by `2 beta`; bias of order `beta^2`.
    Symmetric,
}

impl Nudge {
    /// Scenario name.
    pub fn name(self) -> &'static str {
        match self {
            Nudge::OneSided => "one-sided",
            Nudge::RandomSign => "random-sign",
            Nudge::Symmetric => "symmetric",
        }
    }
}

/// Where the feedback signal `W^T rho` of the relaxation is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feedback {
    /// Backward reads through the same tiles as the forward reads: symmetric by construction.
    Transpose,
    /// Backward reads through separate tiles (their own devices, variation and noise), programmed and
    /// updated like the forward ones: the weights become asymmetric as the two arrays drift apart.
    Separate,
}

impl Feedback {
    /// Scenario name.
    pub fn name(self) -> &'static str {
        match self {
            Feedback::Transpose => "transpose",
            Feedback::Separate => "separate",
        }
    }
}

/// How the contrastive (rank-two) update is split into the controllers' rank-one steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpUpdate {
    /// `a a'^T - b b'^T = (a - b) a'^T + b (a' - b')^T`: two small steps of the size of the difference
    /// (one for the first layer, whose input is clamped).
    Decomposed,
    /// A Hebbian step `+a a'^T` after the nudged phase and an anti-Hebbian step `-b b'^T` after the free
    /// phase: two large opposite steps, as a chip without memory of the free phase would do.
    TwoPhase,
}

impl EpUpdate {
    /// Scenario name.
    pub fn name(self) -> &'static str {
        match self {
            EpUpdate::Decomposed => "decomposed",
            EpUpdate::TwoPhase => "two-phase",
        }
    }
}

/// How to build and run an energy network.
#[derive(Debug, Clone, PartialEq)]
pub struct EpConfig {
    /// Layer sizes, input first, output last.
    pub sizes: Vec<usize>,
    /// Nonlinearity.
    pub activation: EpActivation,
    /// Relaxation steps of the free phase (from zero states).
    pub steps_free: u32,
    /// Relaxation steps of each nudged phase (from the free fixed point).
    pub steps_nudged: u32,
    /// Step size of the relaxation.
    pub eps: f32,
    /// Nudging strength (> 0).
    pub beta: f32,
    /// Nudged phases.
    pub nudge: Nudge,
    /// Feedback path.
    pub feedback: Feedback,
    /// Split of the contrastive update into rank-one steps.
    pub update: EpUpdate,
    /// Initial weights are uniform in `+-init_scale sqrt(6 / (fan_in + fan_out))`.
    pub init_scale: f32,
    /// A phase stops early once no state moved by more than this in a step (the neurons have settled);
    /// 0 runs every step.
    pub tolerance: f32,
}

impl Default for EpConfig {
    fn default() -> Self {
        EpConfig {
            sizes: vec![784, 500, 10],
            activation: EpActivation::Clip,
            steps_free: 20,
            steps_nudged: 4,
            eps: 0.5,
            beta: 0.5,
            nudge: Nudge::Symmetric,
            feedback: Feedback::Transpose,
            update: EpUpdate::Decomposed,
            init_scale: 1.0,
            tolerance: 0.0,
        }
    }
}

/// States (or their `rho`) of every layer, input (layer 0) first.
type Layers = Vec<Vec<f32>>;

/// The two phases an update contrasts: `rho` of every layer (input first) and the factor of the
/// difference (`1/beta`, `1/(2 beta)`, or `-1/beta` for a negative random sign).
#[derive(Debug, Clone)]
struct Contrast {
    pos: Layers,
    neg: Layers,
    scale: f32,
}

/// A layered energy network whose weights live on tiles (or float matrices for the software baseline).
#[derive(Debug)]
pub struct EpNetwork {
    cfg: EpConfig,
    /// `w[k]` maps layer `k` to layer `k + 1` (`sizes[k+1] x sizes[k]`).
    w: Vec<Box<dyn Weights>>,
    /// Separate feedback arrays, `fb[k]` mirrors `w[k]` (`None` for `k = 0` and with transpose feedback).
    fb: Vec<Option<Box<dyn Weights>>>,
    /// Digital biases of layers `1..=L` (`b[k-1]` for layer `k`).
    b: Vec<Vec<f32>>,
    /// States of layers `1..=L`.
    s: Layers,
    /// States of the last free phase.
    s_free: Layers,
    rho: Layers,
    fwd: Layers,
    bwd: Layers,
    seed: u64,
    samples: u64,
    prediction: usize,
}

/// Index of the largest value (the first one on ties).
fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (k, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = k;
        }
    }
    best
}

fn one_hot(label: usize, n: usize) -> Vec<f32> {
    (0..n).map(|k| if k == label { 1.0 } else { 0.0 }).collect()
}

impl EpNetwork {
    /// Builds the network: analog layers on `hw`, or float layers (software baseline) when `hw` is
    /// `None`. Initial weights are drawn from `rng` and programmed (onto the feedback arrays too).
    /// `seed` seeds the random nudge signs.
    pub fn new<R: Rng + ?Sized>(
        cfg: &EpConfig,
        hw: Option<&Hardware>,
        rng: &mut R,
        seed: u64,
    ) -> Result<Self, SpecError> {
        assert!(
            cfg.sizes.len() >= 2,
            "a network needs an input and an output size"
        );
        let n = cfg.sizes.len() - 1;
        let mut w = Vec::with_capacity(n);
        let mut fb = Vec::with_capacity(n);
        for k in 0..n {
            let (inp, out) = (cfg.sizes[k], cfg.sizes[k + 1]);
            let limit = cfg.init_scale * (6.0 / (inp + out) as f32).sqrt();
            let w0: Vec<f32> = (0..out * inp)
                .map(|_| rng.random_range(-limit..=limit))
                .collect();
            let mut m = new_weights(out, inp, hw, (k as u64) << 24)?;
            m.program(&w0);
            w.push(m);
            fb.push(if cfg.feedback == Feedback::Separate && k > 0 {
                let mut f = new_weights(out, inp, hw, ((k as u64) << 24) | (1 << 23))?;
                f.program(&w0);
                Some(f)
            } else {
                None
            });
        }
        let units = |k: usize| vec![0.0f32; cfg.sizes[k]];
        Ok(EpNetwork {
            cfg: cfg.clone(),
            w,
            fb,
            b: (1..=n).map(units).collect(),
            s: (1..=n).map(units).collect(),
            s_free: (1..=n).map(units).collect(),
            rho: (1..=n).map(units).collect(),
            fwd: (1..=n).map(units).collect(),
            bwd: (1..=n).map(units).collect(),
            seed,
            samples: 0,
            prediction: 0,
        })
    }

    /// The settings.
    pub fn config(&self) -> &EpConfig {
        &self.cfg
    }

    /// What training has changed in the network, as plain data: one [`LayerState`] per weight matrix
    /// `w[k]` with the bias of layer `k + 1`, then one per separate feedback array (in layer order,
    /// with an empty bias), and the count of samples trained (the nudge signs' stream index). The
    /// relaxation states are not part of it: every free phase starts from zero.
    pub fn export_state(&self) -> (MlpState, u64) {
        let mut layers: Vec<LayerState> = self
            .w
            .iter()
            .zip(&self.b)
            .map(|(w, b)| LayerState {
                weights: w.export_state(),
                bias: b.clone(),
            })
            .collect();
        layers.extend(self.fb.iter().flatten().map(|f| LayerState {
            weights: f.export_state(),
            bias: Vec::new(),
        }));
        (MlpState { layers }, self.samples)
    }

    /// Restores a state made by [`EpNetwork::export_state`] on a network built from the same scenario;
    /// it then trains on exactly as the exported one would have.
    pub fn import_state(&mut self, state: &MlpState, samples: u64) -> Result<(), StateError> {
        let n = self.w.len();
        let want = n + self.fb.iter().flatten().count();
        if state.layers.len() != want {
            return Err(StateError(format!(
                "saved state has {} weight array(s), the network {want}",
                state.layers.len()
            )));
        }
        for (k, (l, w)) in state.layers[..n].iter().zip(&mut self.w).enumerate() {
            if l.bias.len() != self.b[k].len() {
                return Err(StateError(format!(
                    "layer {}: {} saved biases for {} units",
                    k + 1,
                    l.bias.len(),
                    self.b[k].len()
                )));
            }
            w.import_state(&l.weights)
                .map_err(|e| StateError(format!("layer {}: {e}", k + 1)))?;
        }
        for (l, f) in state.layers[n..].iter().zip(self.fb.iter_mut().flatten()) {
            f.import_state(&l.weights)
                .map_err(|e| StateError(format!("feedback array: {e}")))?;
        }
        for (b, l) in self.b.iter_mut().zip(&state.layers) {
            b.copy_from_slice(&l.bias);
        }
        self.samples = samples;
        Ok(())
    }

    /// Changes the nudging strength and scheme (for diagnostics).
    pub fn set_nudge(&mut self, beta: f32, nudge: Nudge) {
        self.cfg.beta = beta;
        self.cfg.nudge = nudge;
    }

    /// Changes the relaxation steps (for diagnostics).
    pub fn set_steps(&mut self, free: u32, nudged: u32) {
        self.cfg.steps_free = free;
        self.cfg.steps_nudged = nudged;
    }

    /// Forward weights `W_k` as the devices hold them (layer units, row-major `sizes[k+1] x sizes[k]`).
    pub fn weights(&self) -> Vec<Vec<f32>> {
        self.w.iter().map(|m| m.weights()).collect()
    }

    /// Weights of the separate feedback arrays (`None` where there are none).
    pub fn feedback_weights(&self) -> Vec<Option<Vec<f32>>> {
        self.fb
            .iter()
            .map(|f| f.as_ref().map(|m| m.weights()))
            .collect()
    }

    /// Digital biases of layers `1..=L`.
    pub fn biases(&self) -> &[Vec<f32>] {
        &self.b
    }

    /// Whether `W_k` has a separate feedback array.
    pub fn has_feedback(&self, k: usize) -> bool {
        self.fb.get(k).is_some_and(Option::is_some)
    }

    /// Sets `W_k` (row-major `sizes[k+1] x sizes[k]`) and the bias of layer `k + 1`, e.g. weights
    /// trained elsewhere, programmed with pulses as the initial weights are; a separate feedback array
    /// gets `feedback` (the same shape as `w`), or `w` itself when `None`, as at the start.
    pub fn set_parameters(
        &mut self,
        k: usize,
        w: &[f32],
        b: &[f32],
        feedback: Option<&[f32]>,
    ) -> Result<(), StateError> {
        let n = self.w.len();
        if k >= n {
            return Err(StateError(format!(
                "layer {k} of a network of {n} layer(s)"
            )));
        }
        let (inp, out) = (self.cfg.sizes[k], self.cfg.sizes[k + 1]);
        let fb_len = feedback.map_or(w.len(), <[f32]>::len);
        if w.len() != out * inp || b.len() != out || fb_len != w.len() {
            return Err(StateError(format!(
                "layer {k}: {} weights, {} feedback weights and {} biases for a {out}x{inp} layer",
                w.len(),
                fb_len,
                b.len()
            )));
        }
        if feedback.is_some() && self.fb[k].is_none() {
            return Err(StateError(format!(
                "layer {k} has no separate feedback array"
            )));
        }
        self.w[k].program(w);
        if let Some(f) = &mut self.fb[k] {
            f.program(feedback.unwrap_or(w));
        }
        self.b[k].copy_from_slice(b);
        Ok(())
    }

    /// Tiles of every forward layer, then of every separate feedback array.
    pub fn tiles(&self) -> Vec<&[Tile]> {
        let mut t: Vec<&[Tile]> = self.w.iter().map(|m| m.tiles()).collect();
        t.extend(self.fb.iter().flatten().map(|m| m.tiles()));
        t
    }

    /// Current states of layers `1..=L`.
    pub fn states(&self) -> &[Vec<f32>] {
        &self.s
    }

    /// Sets every state to zero.
    pub fn reset_states(&mut self) {
        self.s.iter_mut().flatten().for_each(|v| *v = 0.0);
    }

    /// Runs up to `steps` relaxation steps of `F = E + beta C` from the current states, every layer at
    /// once (synchronous), with `target = (y, beta)` for a nudged phase; stops early when no state moved
    /// by more than the configured tolerance. Every step reads every layer's tiles forward and (except
    /// the first) backward, each read's tiles in parallel as `par` allows. Returns the steps run.
    pub fn relax(
        &mut self,
        x: &[f32],
        target: Option<(&[f32], f32)>,
        steps: u32,
        ledger: &mut Ledger,
        par: Par<'_>,
    ) -> u32 {
        let n = self.w.len();
        let act = self.cfg.activation;
        let (lo, hi) = act.bounds();
        let a = act.slope();
        let eps = self.cfg.eps;
        for step in 0..steps {
            let mut moved = 0.0f32;
            for (r, s) in self.rho.iter_mut().zip(&self.s) {
                for (rv, sv) in r.iter_mut().zip(s) {
                    *rv = act.rho(*sv);
                }
            }
            for k in 0..n {
                let input: &[f32] = if k == 0 { x } else { &self.rho[k - 1] };
                self.w[k].forward(input, &mut self.fwd[k], ledger, par);
            }
            // Feedback into layer k (1-based) from layer k + 1, through matrix w[k].
            for k in 1..n {
                let m = match &mut self.fb[k] {
                    Some(f) => f,
                    None => &mut self.w[k],
                };
                m.backward(&self.rho[k], &mut self.bwd[k - 1], ledger, par);
            }
            for k in 0..n {
                let last = k + 1 == n;
                let s = &mut self.s[k];
                for i in 0..s.len() {
                    let mut h = self.fwd[k][i] + self.b[k][i];
                    if !last {
                        h += self.bwd[k][i];
                    }
                    let mut g = s[i] - a * h;
                    if last && let Some((y, beta)) = target {
                        g += beta * a * (self.rho[k][i] - y[i]);
                    }
                    let v = (s[i] - eps * g).clamp(lo, hi);
                    moved = moved.max((v - s[i]).abs());
                    s[i] = v;
                }
            }
            if moved < self.cfg.tolerance {
                return step + 1;
            }
        }
        steps
    }

    /// `rho` of every layer, input first.
    fn snapshot(&self, x: &[f32]) -> Layers {
        let act = self.cfg.activation;
        let mut out = vec![x.to_vec()];
        out.extend(
            self.s
                .iter()
                .map(|s| s.iter().map(|v| act.rho(*v)).collect::<Vec<f32>>()),
        );
        out
    }

    /// Free phase from zero states; returns `rho` of every layer and remembers the fixed point.
    fn free_phase(&mut self, x: &[f32], ledger: &mut Ledger, par: Par<'_>) -> Layers {
        self.reset_states();
        self.relax(x, None, self.cfg.steps_free, ledger, par);
        self.s_free.clone_from(&self.s);
        let snap = self.snapshot(x);
        self.prediction = argmax(snap.last().expect("layers"));
        snap
    }

    /// Nudged phase at `beta` from the last free fixed point.
    fn nudged_phase(
        &mut self,
        x: &[f32],
        y: &[f32],
        beta: f32,
        ledger: &mut Ledger,
        par: Par<'_>,
    ) -> Layers {
        self.s.clone_from(&self.s_free);
        self.relax(x, Some((y, beta)), self.cfg.steps_nudged, ledger, par);
        self.snapshot(x)
    }

    /// Runs the phases of one sample; returns the contrast and the free phase's cost.
    fn contrast(
        &mut self,
        x: &[f32],
        label: usize,
        ledger: &mut Ledger,
        par: Par<'_>,
    ) -> (Contrast, f32) {
        let classes = *self.cfg.sizes.last().expect("sizes");
        let y = one_hot(label, classes);
        let free = self.free_phase(x, ledger, par);
        let cost = 0.5
            * free
                .last()
                .expect("layers")
                .iter()
                .zip(&y)
                .map(|(r, t)| (r - t) * (r - t))
                .sum::<f32>();
        let beta = self.cfg.beta;
        let c = match self.cfg.nudge {
            Nudge::OneSided => Contrast {
                pos: self.nudged_phase(x, &y, beta, ledger, par),
                neg: free,
                scale: 1.0 / beta,
            },
            Nudge::RandomSign => {
                let sign = if stream(self.seed, Purpose::Nudge, self.samples).random::<bool>() {
                    1.0
                } else {
                    -1.0
                };
                Contrast {
                    pos: self.nudged_phase(x, &y, sign * beta, ledger, par),
                    neg: free,
                    scale: 1.0 / (sign * beta),
                }
            }
            Nudge::Symmetric => Contrast {
                pos: self.nudged_phase(x, &y, beta, ledger, par),
                neg: self.nudged_phase(x, &y, -beta, ledger, par),
                scale: 0.5 / beta,
            },
        };
        self.samples += 1;
        (c, cost)
    }

    /// EP's estimate of `dL/dW_k` for one sample (row-major per layer), with the tile reads of all its
    /// phases charged to `ledger`. The weights are not changed.
    pub fn gradient_estimate(
        &mut self,
        x: &[f32],
        label: usize,
        ledger: &mut Ledger,
        par: Par<'_>,
    ) -> Vec<Vec<f32>> {
        let (c, _) = self.contrast(x, label, ledger, par);
        (0..self.w.len())
            .map(|k| {
                let (pp, po, np, no) = (&c.pos[k], &c.pos[k + 1], &c.neg[k], &c.neg[k + 1]);
                let mut g = Vec::with_capacity(po.len() * pp.len());
                for i in 0..po.len() {
                    for j in 0..pp.len() {
                        g.push(-c.scale * (po[i] * pp[j] - no[i] * np[j]));
                    }
                }
                g
            })
            .collect()
    }

    /// One EP learning step on one sample: free phase, nudged phase(s), contrastive update of every layer
    /// (and of the separate feedback arrays) through the controllers. Returns the free phase's cost
    /// `1/2 ||rho(s_L) - y||^2`. Tiles run in parallel as `par` allows.
    pub fn train_step(
        &mut self,
        x: &[f32],
        label: usize,
        lr: f32,
        ledger: &mut Ledger,
        par: Par<'_>,
    ) -> f32 {
        let (c, cost) = self.contrast(x, label, ledger, par);
        let sc = c.scale;
        for k in 0..self.w.len() {
            let (pp, po, np, no) = (&c.pos[k], &c.pos[k + 1], &c.neg[k], &c.neg[k + 1]);
            // Rank-one steps (x, d) with dW = -lr d x^T.
            let mut steps: Vec<(Vec<f32>, Vec<f32>)> = Vec::with_capacity(2);
            match self.cfg.update {
                EpUpdate::Decomposed => {
                    let d: Vec<f32> = po.iter().zip(no).map(|(p, q)| -sc * (p - q)).collect();
                    steps.push((pp.clone(), d));
                    if k > 0 {
                        let dx: Vec<f32> = pp.iter().zip(np).map(|(p, q)| p - q).collect();
                        steps.push((dx, no.iter().map(|q| -sc * q).collect()));
                    }
                }
                EpUpdate::TwoPhase => {
                    steps.push((pp.clone(), po.iter().map(|p| -sc * p).collect()));
                    steps.push((np.clone(), no.iter().map(|q| sc * q).collect()));
                }
            }
            for (sx, sd) in &steps {
                self.w[k].update(sx, sd, lr, ledger, par);
                if let Some(f) = &mut self.fb[k] {
                    f.update(sx, sd, lr, ledger, par);
                }
            }
            for (b, (p, q)) in self.b[k].iter_mut().zip(po.iter().zip(no)) {
                *b += lr * sc * (p - q);
            }
        }
        ledger.count_sample();
        cost
    }

    /// Inference: the free phase; returns the predicted class (largest output `rho`).
    pub fn predict(&mut self, x: &[f32], ledger: &mut Ledger, par: Par<'_>) -> usize {
        self.free_phase(x, ledger, par);
        self.prediction
    }

    /// Class predicted by the last free phase.
    pub fn prediction(&self) -> usize {
        self.prediction
    }

    /// The energy `E` of the current states for input `x`, with the weights the devices hold now
    /// (exact float arithmetic, no periphery).
    pub fn energy(&self, x: &[f32]) -> f64 {
        let act = self.cfg.activation;
        let w = self.weights();
        let rho: Vec<Vec<f64>> = std::iter::once(x.iter().map(|v| *v as f64).collect())
            .chain(
                self.s
                    .iter()
                    .map(|s| s.iter().map(|v| act.rho(*v) as f64).collect()),
            )
            .collect();
        let mut e = 0.0f64;
        for (k, s) in self.s.iter().enumerate() {
            e += 0.5 * s.iter().map(|v| (*v as f64).powi(2)).sum::<f64>();
            let (out, inp) = (&rho[k + 1], &rho[k]);
            for i in 0..out.len() {
                let row = &w[k][i * inp.len()..(i + 1) * inp.len()];
                let h: f64 = row.iter().zip(inp).map(|(a, b)| *a as f64 * b).sum();
                e -= out[i] * (h + self.b[k][i] as f64);
            }
        }
        e
    }

    /// The gradient of the loss `L = 1/2 ||rho(s*_L) - y||^2` at the free fixed point `s*` with respect
    /// to every forward weight (row-major per layer), and `L`. The fixed point is computed in `f64` with
    /// the weights the devices hold now (no periphery) by projected gradient descent to convergence; the
    /// gradient by implicit differentiation: `H lambda = dC/ds` on the units inside their interval (`H`
    /// the Hessian of `E` there), `dL/dW_k[i][j] = a (lambda_k,i rho_k-1,j + rho_k,i lambda_k-1,j)`.
    /// The system is solved by nalgebra's LU with partial pivoting in `f64`; a singular or numerically
    /// singular `H` (the gradient is not defined by implicit differentiation there) is a
    /// [`SingularError`] naming the unit where the factorization broke down.
    pub fn exact_gradient(
        &self,
        x: &[f32],
        label: usize,
    ) -> Result<(Vec<Vec<f64>>, f64), SingularError> {
        let act = self.cfg.activation;
        let (lo, hi) = (act.bounds().0 as f64, act.bounds().1 as f64);
        let a = act.slope() as f64;
        let rho = |s: f64| match act {
            EpActivation::Clip => s.clamp(0.0, 1.0),
            EpActivation::HardSigmoid => (0.5 * (1.0 + s)).clamp(0.0, 1.0),
        };
        let sizes = &self.cfg.sizes;
        let n = sizes.len() - 1;
        let w: Vec<Vec<f64>> = self
            .weights()
            .iter()
            .map(|m| m.iter().map(|v| *v as f64).collect())
            .collect();
        let b: Vec<Vec<f64>> = self
            .b
            .iter()
            .map(|v| v.iter().map(|x| *x as f64).collect())
            .collect();
        let x64: Vec<f64> = x.iter().map(|v| *v as f64).collect();
        // States of layers 1..=n; input as layer 0 of rho.
        let mut s: Vec<Vec<f64>> = (1..=n).map(|k| vec![0.0; sizes[k]]).collect();
        let eps = (self.cfg.eps as f64).min(0.5);
        let mut r: Vec<Vec<f64>> = std::iter::once(x64.clone())
            .chain(s.iter().map(|l| l.iter().map(|v| rho(*v)).collect()))
            .collect();
        let mut h: Vec<Vec<f64>> = s.clone();
        for _ in 0..100_000 {
            for (rk, sk) in r[1..].iter_mut().zip(&s) {
                for (p, q) in rk.iter_mut().zip(sk) {
                    *p = rho(*q);
                }
            }
            for k in 0..n {
                let cols = sizes[k];
                for (i, hv) in h[k].iter_mut().enumerate() {
                    *hv = b[k][i]
                        + w[k][i * cols..(i + 1) * cols]
                            .iter()
                            .zip(&r[k])
                            .map(|(p, q)| p * q)
                            .sum::<f64>();
                }
                if k + 1 < n {
                    let cn = sizes[k + 1];
                    for (row, rv) in w[k + 1].chunks_exact(cn).zip(&r[k + 2]) {
                        if *rv == 0.0 {
                            continue;
                        }
                        for (hv, wv) in h[k].iter_mut().zip(row) {
                            *hv += wv * rv;
                        }
                    }
                }
            }
            let mut moved = 0.0f64;
            for (sk, hk) in s.iter_mut().zip(&h) {
                for (sv, hv) in sk.iter_mut().zip(hk) {
                    let v = (*sv - eps * (*sv - a * hv)).clamp(lo, hi);
                    moved = moved.max((v - *sv).abs());
                    *sv = v;
                }
            }
            if moved < 1e-12 {
                break;
            }
        }
        for (rk, sk) in r[1..].iter_mut().zip(&s) {
            for (p, q) in rk.iter_mut().zip(sk) {
                *p = rho(*q);
            }
        }
        let y = one_hot(label, sizes[n]);
        let loss = 0.5
            * r[n]
                .iter()
                .zip(&y)
                .map(|(p, t)| (p - *t as f64).powi(2))
                .sum::<f64>();
        // Free units (strictly inside the interval) and their global indices.
        let tol = 1e-9;
        let mut index: Vec<Vec<Option<usize>>> = Vec::with_capacity(n);
        let mut count = 0;
        for l in &s {
            index.push(
                l.iter()
                    .map(|v| {
                        if *v > lo + tol && *v < hi - tol {
                            count += 1;
                            Some(count - 1)
                        } else {
                            None
                        }
                    })
                    .collect(),
            );
        }
        // H = I - a^2 (coupling between adjacent layers through W), restricted to the free units.
        let mut hm = vec![0.0f64; count * count];
        for i in 0..count {
            hm[i * count + i] = 1.0;
        }
        for k in 1..n {
            // w[k] couples layer k (0-based s[k-1]) and layer k + 1 (s[k]).
            let cols = sizes[k];
            for i in 0..sizes[k + 1] {
                let Some(p) = index[k][i] else { continue };
                for j in 0..cols {
                    let Some(q) = index[k - 1][j] else { continue };
                    let v = a * a * w[k][i * cols + j];
                    hm[p * count + q] -= v;
                    hm[q * count + p] -= v;
                }
            }
        }
        let mut rhs = vec![0.0f64; count];
        for (i, idx) in index[n - 1].iter().enumerate() {
            if let Some(p) = idx {
                rhs[*p] = a * (r[n][i] - y[i] as f64);
            }
        }
        let sol = solve(&hm, &rhs, count).map_err(|reason| {
            // Unknown `u` is the `u`-th free unit in layer order.
            let at = reason.unknown().and_then(|u| {
                index.iter().enumerate().find_map(|(k, l)| {
                    l.iter()
                        .position(|p| *p == Some(u))
                        .map(|unit| (k + 1, unit))
                })
            });
            SingularError {
                n: count,
                at,
                reason,
            }
        })?;
        let lambda: Vec<Vec<f64>> = index
            .iter()
            .map(|l| l.iter().map(|p| p.map_or(0.0, |p| sol[p])).collect())
            .collect();
        let grads = (0..n)
            .map(|k| {
                let (rows, cols) = (sizes[k + 1], sizes[k]);
                let mut g = vec![0.0f64; rows * cols];
                for i in 0..rows {
                    for j in 0..cols {
                        let mut v = a * lambda[k][i] * r[k][j];
                        if k > 0 {
                            v += a * r[k + 1][i] * lambda[k - 1][j];
                        }
                        g[i * cols + j] = v;
                    }
                }
                g
            })
            .collect();
        Ok((grads, loss))
    }
}

/// Why the exact gradient's linear solve (LU with partial pivoting) refused a system: it is singular,
/// numerically singular or not finite.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Singularity {
    /// The matrix or the right-hand side has a NaN or infinite entry (row `row`).
    NonFiniteSystem {
        /// Row of the first non-finite entry.
        row: usize,
    },
    /// The LU factorization's pivot for unknown `unknown` (the diagonal entry of `U`; partial pivoting
    /// permutes rows only, so column `unknown` is that unknown's) is NaN or no larger in magnitude than
    /// `tol = n eps max|m_ij|`: the matrix is singular to working precision.
    Pivot {
        /// Unknown (column) whose pivot failed, the first in column order.
        unknown: usize,
        /// The pivot.
        value: f64,
        /// The tolerance it failed.
        tol: f64,
    },
    /// The solution has a NaN or infinite entry (overflow of a nearly singular system).
    NonFiniteSolution {
        /// Unknown with the first non-finite value.
        unknown: usize,
        /// Its value.
        value: f64,
    },
}

impl Singularity {
    /// The unknown the failure is attributed to, if any.
    pub fn unknown(&self) -> Option<usize> {
        match *self {
            Singularity::NonFiniteSystem { row } => Some(row),
            Singularity::Pivot { unknown, .. } | Singularity::NonFiniteSolution { unknown, .. } => {
                Some(unknown)
            }
        }
    }
}

impl std::fmt::Display for Singularity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Singularity::NonFiniteSystem { .. } => write!(f, "the system has a non-finite entry"),
            Singularity::Pivot { value, tol, .. } => write!(
                f,
                "LU pivot {value:.3e} is not above the tolerance {tol:.3e}: singular to working precision"
            ),
            Singularity::NonFiniteSolution { value, .. } => {
                write!(f, "the solution is {value} (numerically singular)")
            }
        }
    }
}

/// EP's exact gradient is undefined: the Hessian system `H lambda = dC/ds` of the implicit
/// differentiation ([`EpNetwork::exact_gradient`]) is singular or numerically singular at this fixed
/// point.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "singular Hessian in EP's exact gradient ({n} x {n} system on the free units{}): {reason}",
    match at { Some((l, u)) => format!(", at layer {l} unit {u}"), None => String::new() }
)]
pub struct SingularError {
    /// Free units (unknowns) in the system.
    pub n: usize,
    /// `(layer, unit)` of the unknown where it failed: layer 1 is the first hidden layer, the output
    /// layer is the last; units count from 0.
    pub at: Option<(usize, usize)>,
    /// What failed.
    pub reason: Singularity,
}

/// Error of the fidelity diagnostic ([`fidelity`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FidelityError {
    /// The network could not be built.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The exact gradient of a sample is undefined.
    #[error("sample {sample} (label {label}) of the batch")]
    Singular {
        /// Index of the sample in the batch (from 0).
        sample: usize,
        /// Its label.
        label: usize,
        /// The singular system.
        #[source]
        source: SingularError,
    },
}

/// Solves `m x = v` (`m` is `n x n`, row-major) in `f64` by nalgebra's LU factorization with partial
/// (row) pivoting. Partial rather than full pivoting: `m` here is the Hessian `I - a^2 (coupling)`,
/// symmetric with a unit diagonal and positive semi-definite at a stable free fixed point, where
/// elimination is backward stable with little growth, and a singular `H` (a fixed point that is not
/// isolated) shows as a vanishing pivot; full pivoting would make the pivot test more rank-revealing
/// only for contrived matrices, at an extra O(n^2) search per step. A singular or numerically
/// singular system is an error, never a silent 0: a NaN or infinite entry, a pivot that is NaN or at
/// most `n eps max|m_ij|` in magnitude, or a non-finite solution.
fn solve(m: &[f64], v: &[f64], n: usize) -> Result<Vec<f64>, Singularity> {
    assert_eq!(m.len(), n * n, "solve: matrix is not n x n");
    assert_eq!(v.len(), n, "solve: right-hand side is not of length n");
    if n == 0 {
        // Every unit saturated: nothing to solve (nalgebra's triangular solves panic on 0 x 0).
        return Ok(Vec::new());
    }
    if let Some(row) =
        (0..n).find(|r| !v[*r].is_finite() || m[r * n..(r + 1) * n].iter().any(|x| !x.is_finite()))
    {
        return Err(Singularity::NonFiniteSystem { row });
    }
    let scale = m.iter().fold(0.0f64, |a, x| a.max(x.abs()));
    let tol = n as f64 * f64::EPSILON * scale;
    let lu = nalgebra::DMatrix::from_row_slice(n, n, m).lu();
    // Columns are not permuted, so U's diagonal entry `j` is the pivot of unknown `j`.
    if let Some((unknown, value)) = lu
        .u()
        .diagonal()
        .iter()
        .copied()
        .enumerate()
        .find(|(_, p)| p.is_nan() || p.abs() <= tol)
    {
        return Err(Singularity::Pivot {
            unknown,
            value,
            tol,
        });
    }
    let mut x = nalgebra::DVector::from_column_slice(v);
    if !lu.solve_mut(&mut x) {
        // Unreachable after the pivot test (solve_mut fails only on an exactly zero pivot).
        return Err(Singularity::Pivot {
            unknown: 0,
            value: 0.0,
            tol,
        });
    }
    if let Some((unknown, value)) = x.iter().copied().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(Singularity::NonFiniteSolution { unknown, value });
    }
    Ok(x.iter().copied().collect())
}

/// Cosine similarity and relative error `||a - b|| / ||b||` of `a` against the reference `b`, and the
/// two norms.
pub fn compare(a: &[f64], b: &[f64]) -> (f64, f64, f64, f64) {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let nb = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    let diff = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).powi(2))
        .sum::<f64>()
        .sqrt();
    let cos = if na > 0.0 && nb > 0.0 {
        dot / (na * nb)
    } else {
        0.0
    };
    (cos, diff / nb.max(1e-300), na, nb)
}

/// One point of the gradient-fidelity diagnostic.
#[derive(Debug, Clone, PartialEq)]
pub struct FidelityPoint {
    /// Nudging strength.
    pub beta: f32,
    /// Estimator.
    pub nudge: Nudge,
    /// Cosine between EP's estimate (summed over the batch) and the exact gradient.
    pub cosine: f64,
    /// Median over the samples of the per-sample cosine (robust to a sample whose nudged phase jumps
    /// to another fixed point).
    pub cosine_median: f64,
    /// `||g_EP - g|| / ||g||`.
    pub rel_error: f64,
    /// Cosine between the weight change the controllers made over the batch and `-lr g`.
    pub cosine_applied: f64,
    /// `||dW / lr + g|| / ||g||` of the applied change.
    pub rel_error_applied: f64,
    /// `||g||` of the exact batch gradient.
    pub norm_exact: f64,
    /// `||g_EP||`.
    pub norm_estimate: f64,
}

fn flat(v: &[Vec<f64>]) -> Vec<f64> {
    v.iter().flatten().copied().collect()
}

/// The gradient-fidelity diagnostic: for a batch of `samples`, EP's estimate of the gradient (summed
/// over the batch, every estimate at the same starting weights; and per sample) and the weight change
/// its updates make through the controllers (`lr`, samples in order, from the same start), against the
/// exact gradient of the same network at the start, for every `beta` and estimator. `build` must return
/// the same starting network every call (same seeds). A sample whose exact gradient is undefined (a
/// singular Hessian system) is a [`FidelityError::Singular`] naming the sample. Tiles run in parallel as
/// `par` allows.
pub fn fidelity(
    build: &dyn Fn() -> Result<EpNetwork, SpecError>,
    samples: &[(&[f32], usize)],
    betas: &[f32],
    nudges: &[Nudge],
    lr: f32,
    par: Par<'_>,
) -> Result<Vec<FidelityPoint>, FidelityError> {
    let mut probe = build()?;
    let per_sample: Vec<Vec<f64>> = samples
        .iter()
        .enumerate()
        .map(|(sample, (x, y))| {
            probe
                .exact_gradient(x, *y)
                .map(|(g, _)| flat(&g))
                .map_err(|source| FidelityError::Singular {
                    sample,
                    label: *y,
                    source,
                })
        })
        .collect::<Result<_, _>>()?;
    let mut exact = vec![0.0f64; per_sample.first().map_or(0, Vec::len)];
    for g in &per_sample {
        exact.iter_mut().zip(g).for_each(|(a, b)| *a += b);
    }
    let w0: Vec<f64> = probe
        .weights()
        .iter()
        .flatten()
        .map(|v| *v as f64)
        .collect();
    let mut out = Vec::new();
    for &beta in betas {
        for &nudge in nudges {
            // Estimates leave the weights alone: one network serves every configuration.
            probe.set_nudge(beta, nudge);
            let mut ledger = Ledger::default();
            let mut est = vec![0.0f64; exact.len()];
            let mut cosines = Vec::with_capacity(samples.len());
            for ((x, y), g_exact) in samples.iter().zip(&per_sample) {
                let g: Vec<f64> = probe
                    .gradient_estimate(x, *y, &mut ledger, par)
                    .iter()
                    .flatten()
                    .map(|v| *v as f64)
                    .collect();
                cosines.push(compare(&g, g_exact).0);
                est.iter_mut().zip(&g).for_each(|(e, v)| *e += v);
            }
            cosines.sort_by(f64::total_cmp);
            let median = if cosines.is_empty() {
                0.0
            } else if cosines.len() % 2 == 1 {
                cosines[cosines.len() / 2]
            } else {
                0.5 * (cosines[cosines.len() / 2 - 1] + cosines[cosines.len() / 2])
            };
            let mut net = build()?;
            net.set_nudge(beta, nudge);
            for (x, y) in samples {
                net.train_step(x, *y, lr, &mut ledger, par);
            }
            let applied: Vec<f64> = net
                .weights()
                .iter()
                .flatten()
                .zip(&w0)
                .map(|(w, a)| -(*w as f64 - a) / lr as f64)
                .collect();
            let (cosine, rel_error, norm_estimate, norm_exact) = compare(&est, &exact);
            let (cosine_applied, rel_error_applied, _, _) = compare(&applied, &exact);
            out.push(FidelityPoint {
                beta,
                nudge,
                cosine,
                cosine_median: median,
                rel_error,
                cosine_applied,
                rel_error_applied,
                norm_exact,
                norm_estimate,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
#[path = "ep_tests.rs"]
mod tests;
