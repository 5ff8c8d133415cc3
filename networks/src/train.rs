//! The training loop: epochs of on-chip SGD, evaluation on the test set, metrics from the ledger.

use aimsim_sim::ledger::{CostModel, Ledger, Phase};
use aimsim_sim::rng::{Purpose, stream};
use rand::RngExt;

use aimsim_sim::tile::Tile;

use crate::data::Dataset;
use crate::ep::EpNetwork;
use crate::mlp::Mlp;

/// What the training loop needs from a network: backpropagation's [`Mlp`] and equilibrium
/// propagation's [`EpNetwork`] both provide it.
pub trait Network {
    /// One on-chip learning step on one sample; returns the sample's loss.
    fn learn(&mut self, input: &[f32], label: usize, lr: f32, ledger: &mut Ledger) -> f32;
    /// Inference on one sample, charged to `ledger`; returns the predicted class.
    fn infer(&mut self, input: &[f32], ledger: &mut Ledger) -> usize;
    /// Class predicted for the last sample seen by [`Network::learn`] or [`Network::infer`].
    fn prediction(&self) -> usize;
    /// The tiles of every weight array, one slice per array (empty for float weights).
    fn layer_tiles(&self) -> Vec<&[Tile]>;
}

impl Network for Mlp {
    fn learn(&mut self, input: &[f32], label: usize, lr: f32, ledger: &mut Ledger) -> f32 {
        self.train_step(input, label, lr, ledger)
    }
    fn infer(&mut self, input: &[f32], ledger: &mut Ledger) -> usize {
        self.forward(input, ledger);
        self.predicted()
    }
    fn prediction(&self) -> usize {
        self.predicted()
    }
    fn layer_tiles(&self) -> Vec<&[Tile]> {
        self.layers().iter().map(|l| l.weights.tiles()).collect()
    }
}

impl Network for EpNetwork {
    fn learn(&mut self, input: &[f32], label: usize, lr: f32, ledger: &mut Ledger) -> f32 {
        self.train_step(input, label, lr, ledger)
    }
    fn infer(&mut self, input: &[f32], ledger: &mut Ledger) -> usize {
        self.predict(input, ledger)
    }
    fn prediction(&self) -> usize {
        EpNetwork::prediction(self)
    }
    fn layer_tiles(&self) -> Vec<&[Tile]> {
        self.tiles()
    }
}

/// Settings of a training run.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    /// Epochs.
    pub epochs: u32,
    /// Learning rate (layer weight units).
    pub lr: f32,
    /// Factor applied to the learning rate after every epoch.
    pub lr_decay: f32,
    /// Shuffle the training set every epoch (from the seed).
    pub shuffle: bool,
    /// Seed of the shuffles.
    pub seed: u64,
}

/// What one epoch did. All quantities are simulated (no wall time), so two runs with the same seed give
/// identical metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EpochMetrics {
    /// Epoch number (0 = before training).
    pub epoch: u32,
    /// Mean training loss over the epoch.
    pub train_loss: f64,
    /// Training accuracy over the epoch (predictions made during training), percent.
    pub train_accuracy: f64,
    /// Test accuracy after the epoch, percent.
    pub test_accuracy: f64,
    /// Potentiation pulses in the epoch.
    pub pulses_up: u64,
    /// Depression pulses in the epoch.
    pub pulses_down: u64,
    /// Refresh operations in the epoch.
    pub refreshes: u64,
    /// Simulated training latency of the epoch, ns.
    pub train_latency_ns: f64,
    /// Simulated training energy of the epoch, pJ.
    pub train_energy_pj: f64,
    /// Simulated inference latency per test sample, ns.
    pub test_latency_ns_per_sample: f64,
    /// Simulated inference energy per test sample, pJ.
    pub test_energy_pj_per_sample: f64,
}

/// Hooks into a training run (progress bars, traces, histograms). Every method has a default that does
/// nothing.
pub trait Observer {
    /// After every training sample; `step` counts samples from 1 over the whole run.
    fn after_update(&mut self, _net: &dyn Network, _step: u64) {}
    /// After every epoch's evaluation (and once before training, epoch 0).
    fn after_epoch(&mut self, _net: &dyn Network, _metrics: &EpochMetrics) {}
    /// Progress within the run: samples done of the total.
    fn progress(&mut self, _done: u64, _total: u64) {}
}

/// An observer that does nothing.
pub struct Quiet;
impl Observer for Quiet {}

/// Test accuracy (percent) of `net` on `data`'s test set, with the inference cost charged to `ledger`.
pub fn evaluate<N: Network + ?Sized>(net: &mut N, data: &Dataset, ledger: &mut Ledger) -> f64 {
    let n = data.test_len();
    if n == 0 {
        return 0.0;
    }
    let mut correct = 0usize;
    for i in 0..n {
        let (x, y) = data.test_sample(i);
        correct += usize::from(net.infer(x, ledger) == y as usize);
        ledger.count_sample();
    }
    100.0 * correct as f64 / n as f64
}

/// Trains `net` on `data` for `cfg.epochs` epochs, returning one row of metrics per epoch (plus epoch 0,
/// the untrained network). `cost` converts ledger cycles to time.
pub fn train<N: Network>(
    net: &mut N,
    data: &Dataset,
    cfg: &TrainConfig,
    cost: &CostModel,
    observer: &mut dyn Observer,
) -> Vec<EpochMetrics> {
    let mut rows = Vec::with_capacity(cfg.epochs as usize + 1);
    let ns = |cycles: u64| cycles as f64 / cost.clock_hz * 1e9;
    let eval = |net: &mut N| {
        let mut l = Ledger::default();
        let acc = evaluate(net, data, &mut l);
        let n = l.samples().max(1) as f64;
        (acc, ns(l.total_cycles()) / n, l.total_energy_pj() / n)
    };
    let (acc, lat, en) = eval(net);
    let zero = EpochMetrics {
        epoch: 0,
        test_accuracy: acc,
        test_latency_ns_per_sample: lat,
        test_energy_pj_per_sample: en,
        ..EpochMetrics::default()
    };
    observer.after_epoch(&*net, &zero);
    rows.push(zero);

    let n = data.train_len();
    let total = n as u64 * cfg.epochs as u64;
    let mut order: Vec<usize> = (0..n).collect();
    let mut lr = cfg.lr;
    let mut step = 0u64;
    for epoch in 1..=cfg.epochs {
        if cfg.shuffle {
            let mut rng = stream(cfg.seed, Purpose::Shuffle, epoch as u64);
            for i in (1..n).rev() {
                let j = rng.random_range(0..=i);
                order.swap(i, j);
            }
        }
        let mut ledger = Ledger::default();
        let (mut loss, mut correct) = (0.0f64, 0usize);
        for &i in &order {
            let (x, y) = data.train_sample(i);
            loss += net.learn(x, y as usize, lr, &mut ledger) as f64;
            correct += usize::from(net.prediction() == y as usize);
            step += 1;
            observer.after_update(&*net, step);
            if step.is_multiple_of(256) || step == total {
                observer.progress(step, total);
            }
        }
        let (acc, lat, en) = eval(net);
        let upd = ledger.phase(Phase::Update);
        let m = EpochMetrics {
            epoch,
            train_loss: loss / n.max(1) as f64,
            train_accuracy: 100.0 * correct as f64 / n.max(1) as f64,
            test_accuracy: acc,
            pulses_up: upd.pulses_up,
            pulses_down: upd.pulses_down,
            refreshes: upd.refreshes,
            train_latency_ns: ns(ledger.total_cycles()),
            train_energy_pj: ledger.total_energy_pj(),
            test_latency_ns_per_sample: lat,
            test_energy_pj_per_sample: en,
        };
        observer.after_epoch(&*net, &m);
        rows.push(m);
        lr *= cfg.lr_decay;
    }
    rows
}
