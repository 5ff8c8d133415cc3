//! The training loop: epochs of on-chip SGD, evaluation on a held-out validation split and on the test
//! set, metrics from the ledger.

use aimsim_sim::ledger::{CostModel, Ledger, Phase};
use aimsim_sim::par::Par;
use aimsim_sim::rng::{Purpose, stream};
use rand::RngExt;

use aimsim_sim::tile::Tile;
use aimsim_sim::update::BatchUpdate;

use crate::data::Dataset;
use crate::ep::EpNetwork;
use crate::mlp::Mlp;

/// What the training loop needs from a network: backpropagation's [`Mlp`] and equilibrium
/// propagation's [`EpNetwork`] both provide it. Every method that reads or writes tiles runs them in
/// parallel as its `par` argument allows.
pub trait Network {
    /// One on-chip learning step on one sample; returns the sample's loss.
    fn learn(
        &mut self,
        input: &[f32],
        label: usize,
        lr: f32,
        ledger: &mut Ledger,
        par: Par<'_>,
    ) -> f32;
    /// [`Network::learn`] told the next training sample, which the next call must learn (a network
    /// may start reading it early, with the same results). By default the hint is ignored.
    fn learn_ahead(
        &mut self,
        input: &[f32],
        label: usize,
        lr: f32,
        ledger: &mut Ledger,
        next: Option<&[f32]>,
        par: Par<'_>,
    ) -> f32 {
        let _ = next;
        self.learn(input, label, lr, ledger, par)
    }
    /// One learning step on a mini-batch of `labels.len()` samples (`inputs`, one after another):
    /// returns each sample's loss and predicted class. Networks without mini-batches (the default)
    /// learn the samples one by one, so callers use batches above 1 only with networks that have them
    /// (scenarios refuse the others).
    fn learn_batch(
        &mut self,
        inputs: &[f32],
        labels: &[usize],
        lr: f32,
        mode: BatchUpdate,
        ledger: &mut Ledger,
        par: Par<'_>,
    ) -> Vec<(f32, usize)> {
        let _ = mode;
        let n = inputs.len() / labels.len().max(1);
        labels
            .iter()
            .zip(inputs.chunks_exact(n.max(1)))
            .map(|(y, x)| {
                let l = self.learn(x, *y, lr, ledger, par);
                (l, self.prediction())
            })
            .collect()
    }
    /// Inference on one sample, charged to `ledger`; returns the predicted class.
    fn infer(&mut self, input: &[f32], ledger: &mut Ledger, par: Par<'_>) -> usize;
    /// Class predicted for the last sample seen by [`Network::learn`] or [`Network::infer`].
    fn prediction(&self) -> usize;
    /// The training loss of the last sample seen by [`Network::infer`] had its label been `label`, if
    /// the network can tell (by default it cannot: validation metrics then have no loss).
    fn last_loss(&self, label: usize) -> Option<f32> {
        let _ = label;
        None
    }
    /// The tiles of every weight array, one slice per array (empty for float weights).
    fn layer_tiles(&self) -> Vec<&[Tile]>;
}

impl Network for Mlp {
    fn learn(
        &mut self,
        input: &[f32],
        label: usize,
        lr: f32,
        ledger: &mut Ledger,
        par: Par<'_>,
    ) -> f32 {
        self.train_step(input, label, lr, ledger, par)
    }
    fn learn_ahead(
        &mut self,
        input: &[f32],
        label: usize,
        lr: f32,
        ledger: &mut Ledger,
        next: Option<&[f32]>,
        par: Par<'_>,
    ) -> f32 {
        self.train_step_ahead(input, label, lr, ledger, next, par)
    }
    fn learn_batch(
        &mut self,
        inputs: &[f32],
        labels: &[usize],
        lr: f32,
        mode: BatchUpdate,
        ledger: &mut Ledger,
        par: Par<'_>,
    ) -> Vec<(f32, usize)> {
        self.train_batch(inputs, labels, lr, mode, ledger, par)
    }
    fn infer(&mut self, input: &[f32], ledger: &mut Ledger, par: Par<'_>) -> usize {
        self.forward(input, ledger, par);
        self.predicted()
    }
    fn prediction(&self) -> usize {
        self.predicted()
    }
    fn last_loss(&self, label: usize) -> Option<f32> {
        Some(self.loss_of(label))
    }
    fn layer_tiles(&self) -> Vec<&[Tile]> {
        self.layers().iter().map(|l| l.weights.tiles()).collect()
    }
}

impl Network for EpNetwork {
    fn learn(
        &mut self,
        input: &[f32],
        label: usize,
        lr: f32,
        ledger: &mut Ledger,
        par: Par<'_>,
    ) -> f32 {
        self.train_step(input, label, lr, ledger, par)
    }
    fn infer(&mut self, input: &[f32], ledger: &mut Ledger, par: Par<'_>) -> usize {
        self.predict(input, ledger, par)
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
    /// Training samples held out as a validation split: the last `validation` samples of the
    /// dataset's training set, in dataset order, taken before any shuffling. The network never trains
    /// on them; every epoch (and epoch 0) reports its accuracy and loss on them. 0: no split.
    pub validation: usize,
    /// Samples per mini-batch (1: [`Network::learn_ahead`] after every sample, else
    /// [`Network::learn_batch`] on consecutive samples of the epoch's order; the last batch of an
    /// epoch may be shorter).
    pub batch: usize,
    /// How the tiles take a batch's outer products.
    pub batch_update: BatchUpdate,
}

/// Calls the macro `$m` with the fields of [`EpochMetrics`], in column order: for each, its doc lines,
/// name, type and the decimals of its text form (whole numbers are written whole; a missing optional
/// value is an empty cell). This is the one list of the per-epoch metrics: `EpochMetrics` is generated
/// from it here, and so are the checkpoint's copy of it and the columns of `metrics.csv` in the
/// `aimsim` package.
#[macro_export]
macro_rules! with_epoch_metrics {
    ($m:ident) => {
        $m! {
            /// Epoch number (0 = before training).
            epoch: u32 => 0,
            /// Mean training loss over the epoch.
            train_loss: f64 => 6,
            /// Training accuracy over the epoch (predictions made during training), percent.
            train_accuracy: f64 => 4,
            /// Test accuracy after the epoch, percent.
            test_accuracy: f64 => 4,
            /// Potentiation pulses in the epoch.
            pulses_up: u64 => 0,
            /// Depression pulses in the epoch.
            pulses_down: u64 => 0,
            /// Refresh operations in the epoch.
            refreshes: u64 => 0,
            /// Simulated training latency of the epoch, ns.
            train_latency_ns: f64 => 1,
            /// Simulated training energy of the epoch, pJ.
            train_energy_pj: f64 => 1,
            /// Simulated inference latency per test sample, ns.
            test_latency_ns_per_sample: f64 => 3,
            /// Simulated inference energy per test sample, pJ.
            test_energy_pj_per_sample: f64 => 3,
            /// Mean loss on the validation split after the epoch (`None` without a split, or for a
            /// network that reports no loss, see [`Network::last_loss`]).
            val_loss: Option<f64> => 6,
            /// Accuracy on the validation split after the epoch, percent (`None` without a split).
            val_accuracy: Option<f64> => 4,
        }
    };
}

/// Defines [`EpochMetrics`] from the list of [`with_epoch_metrics!`].
macro_rules! define_epoch_metrics {
    ($($(#[$doc:meta])* $field:ident: $ty:ty => $decimals:literal,)*) => {
        /// What one epoch did. All quantities are simulated (no wall time), so two runs with the same
        /// seed give identical metrics.
        #[derive(Debug, Clone, Default, PartialEq)]
        pub struct EpochMetrics {
            $($(#[$doc])* pub $field: $ty,)*
        }
    };
}

with_epoch_metrics!(define_epoch_metrics);

/// The epoch a validation split selects: among the trained epochs (1..), the one with the highest
/// validation accuracy, the earliest of equals. `None` when no row has a validation accuracy. Model
/// selection uses this and never the test accuracy.
pub fn best_validation(rows: &[EpochMetrics]) -> Option<&EpochMetrics> {
    let mut best: Option<&EpochMetrics> = None;
    for m in rows.iter().filter(|m| m.epoch >= 1) {
        if let Some(v) = m.val_accuracy
            && best.is_none_or(|b| b.val_accuracy.is_none_or(|bv| v > bv))
        {
            best = Some(m);
        }
    }
    best
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
pub fn evaluate<N: Network + ?Sized>(
    net: &mut N,
    data: &Dataset,
    ledger: &mut Ledger,
    par: Par<'_>,
) -> f64 {
    let n = data.test_len();
    if n == 0 {
        return 0.0;
    }
    let mut correct = 0usize;
    for i in 0..n {
        let (x, y) = data.test_sample(i);
        correct += usize::from(net.infer(x, ledger, par) == y as usize);
        ledger.count_sample();
    }
    100.0 * correct as f64 / n as f64
}

/// Accuracy (percent) and mean loss of `net` on the validation split of `cfg` (the last
/// `cfg.validation` training samples), or `(None, None)` without one. Inference runs on a ledger of its
/// own: validation is a methodological step, charged to neither the training nor the test cost.
pub fn validate<N: Network + ?Sized>(
    net: &mut N,
    data: &Dataset,
    cfg: &TrainConfig,
    par: Par<'_>,
) -> (Option<f64>, Option<f64>) {
    let n = data.train_len();
    let v = cfg.validation.min(n);
    if v == 0 {
        return (None, None);
    }
    let mut ledger = Ledger::default();
    let (mut correct, mut loss) = (0usize, Some(0.0f64));
    for i in n - v..n {
        let (x, y) = data.train_sample(i);
        correct += usize::from(net.infer(x, &mut ledger, par) == y as usize);
        loss = loss
            .zip(net.last_loss(y as usize))
            .map(|(s, l)| s + l as f64);
    }
    (
        Some(100.0 * correct as f64 / v as f64),
        loss.map(|s| s / v as f64),
    )
}

/// Training samples a run trains on: the dataset's training set less the validation split.
pub fn train_split(data: &Dataset, cfg: &TrainConfig) -> usize {
    data.train_len().saturating_sub(cfg.validation)
}

/// Where a training run stands between two epochs: everything the loop itself carries from one epoch to
/// the next, as plain data, so a run can stop after any epoch and continue bit-identically (the network's
/// own state is, for backpropagation, [`Mlp::export_state`]).
#[derive(Debug, Clone, PartialEq)]
pub struct TrainProgress {
    /// Epochs completed.
    pub epoch: u32,
    /// Training samples processed over the whole run.
    pub step: u64,
    /// Learning rate of the next epoch.
    pub lr: f32,
    /// Sample order of the last epoch (each epoch's shuffle starts from the previous order).
    pub order: Vec<u32>,
    /// Metrics so far, epoch 0 first.
    pub rows: Vec<EpochMetrics>,
}

/// A training run, one epoch at a time. [`train`] runs it to the end; `aimsim run` drives it epoch by
/// epoch to write checkpoints in between.
pub struct Training<'a> {
    data: &'a Dataset,
    cfg: &'a TrainConfig,
    cost: &'a CostModel,
    progress: TrainProgress,
}

impl<'a> Training<'a> {
    /// Starts a run: evaluates the untrained network (epoch 0, reported to the observer) on the
    /// validation split, then on the test set, with the tiles in parallel as `par` allows.
    pub fn start<N: Network>(
        net: &mut N,
        data: &'a Dataset,
        cfg: &'a TrainConfig,
        cost: &'a CostModel,
        observer: &mut dyn Observer,
        par: Par<'_>,
    ) -> Self {
        let (val_accuracy, val_loss) = validate(net, data, cfg, par);
        let (acc, lat, en) = eval_cost(net, data, cost, par);
        let zero = EpochMetrics {
            epoch: 0,
            test_accuracy: acc,
            test_latency_ns_per_sample: lat,
            test_energy_pj_per_sample: en,
            val_loss,
            val_accuracy,
            ..EpochMetrics::default()
        };
        observer.after_epoch(&*net, &zero);
        let mut rows = Vec::with_capacity(cfg.epochs as usize + 1);
        rows.push(zero);
        Training {
            data,
            cfg,
            cost,
            progress: TrainProgress {
                epoch: 0,
                step: 0,
                lr: cfg.lr,
                order: (0..train_split(data, cfg) as u32).collect(),
                rows,
            },
        }
    }

    /// Continues a run from saved progress (with the network restored to the same point). Refuses
    /// progress whose sample order does not fit the dataset.
    pub fn resume(
        data: &'a Dataset,
        cfg: &'a TrainConfig,
        cost: &'a CostModel,
        progress: TrainProgress,
    ) -> Result<Self, String> {
        let n = train_split(data, cfg);
        if progress.order.len() != n || progress.order.iter().any(|i| *i as usize >= n) {
            return Err(format!(
                "the saved sample order has {} entries for a training set of {n}",
                progress.order.len()
            ));
        }
        if progress.rows.len() != progress.epoch as usize + 1 || progress.epoch > cfg.epochs {
            return Err(format!(
                "the saved progress (epoch {} with {} metrics rows) does not fit a run of {} epochs",
                progress.epoch,
                progress.rows.len(),
                cfg.epochs
            ));
        }
        Ok(Training {
            data,
            cfg,
            cost,
            progress,
        })
    }

    /// Where the run stands.
    pub fn progress(&self) -> &TrainProgress {
        &self.progress
    }

    /// True when every epoch has run.
    pub fn done(&self) -> bool {
        self.progress.epoch >= self.cfg.epochs
    }

    /// The metrics rows, epoch 0 first.
    pub fn into_rows(self) -> Vec<EpochMetrics> {
        self.progress.rows
    }

    /// Runs the next epoch (shuffle, one update per training sample outside the validation split,
    /// evaluation on the validation split, then on the test set) and returns its metrics. The tiles'
    /// parallel phases run as `par` allows (training at batch 1 runs best on a
    /// [`Team`](aimsim_sim::par::Team)); the metrics do not depend on it.
    pub fn run_epoch<N: Network>(
        &mut self,
        net: &mut N,
        observer: &mut dyn Observer,
        par: Par<'_>,
    ) -> &EpochMetrics {
        let (data, cfg) = (self.data, self.cfg);
        let p = &mut self.progress;
        let ns = |cycles: u64| cycles as f64 / self.cost.clock_hz * 1e9;
        let n = train_split(data, cfg);
        let total = n as u64 * cfg.epochs as u64;
        let epoch = p.epoch + 1;
        if cfg.shuffle {
            let mut rng = stream(cfg.seed, Purpose::Shuffle, epoch as u64);
            for i in (1..n).rev() {
                let j = rng.random_range(0..=i);
                p.order.swap(i, j);
            }
        }
        let mut ledger = Ledger::default();
        let (mut loss, mut correct) = (0.0f64, 0usize);
        // Batches go through `learn_batch`; so does batch 1 with accumulated updates (a convolution's
        // positions are then summed before one update).
        let batched = cfg.batch > 1 || cfg.batch_update == BatchUpdate::Accumulated;
        if batched {
            let mut xs = Vec::new();
            let mut ys = Vec::new();
            for chunk in p.order.chunks(cfg.batch.max(1)) {
                xs.clear();
                ys.clear();
                for &i in chunk {
                    let (x, y) = data.train_sample(i as usize);
                    xs.extend_from_slice(x);
                    ys.push(y as usize);
                }
                let r = net.learn_batch(&xs, &ys, p.lr, cfg.batch_update, &mut ledger, par);
                for ((l, pred), y) in r.iter().zip(&ys) {
                    loss += *l as f64;
                    correct += usize::from(pred == y);
                    p.step += 1;
                    observer.after_update(&*net, p.step);
                    if p.step.is_multiple_of(256) || p.step == total {
                        observer.progress(p.step, total);
                    }
                }
            }
        }
        for (k, &i) in p.order.iter().enumerate().filter(|_| !batched) {
            let (x, y) = data.train_sample(i as usize);
            // The next sample of this epoch (the epoch's evaluation comes after its last one).
            let next = p.order.get(k + 1).map(|j| data.train_sample(*j as usize).0);
            loss += net.learn_ahead(x, y as usize, p.lr, &mut ledger, next, par) as f64;
            correct += usize::from(net.prediction() == y as usize);
            p.step += 1;
            observer.after_update(&*net, p.step);
            if p.step.is_multiple_of(256) || p.step == total {
                observer.progress(p.step, total);
            }
        }
        let (val_accuracy, val_loss) = validate(net, data, cfg, par);
        let (acc, lat, en) = eval_cost(net, data, self.cost, par);
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
            val_loss,
            val_accuracy,
        };
        observer.after_epoch(&*net, &m);
        p.rows.push(m);
        p.epoch = epoch;
        p.lr *= cfg.lr_decay;
        p.rows.last().expect("just pushed")
    }
}

/// Test accuracy, inference latency (ns) and energy (pJ) per test sample, on a fresh ledger.
fn eval_cost<N: Network + ?Sized>(
    net: &mut N,
    data: &Dataset,
    cost: &CostModel,
    par: Par<'_>,
) -> (f64, f64, f64) {
    let mut l = Ledger::default();
    let acc = evaluate(net, data, &mut l, par);
    let n = l.samples().max(1) as f64;
    let ns = l.total_cycles() as f64 / cost.clock_hz * 1e9;
    (acc, ns / n, l.total_energy_pj() / n)
}

/// Trains `net` on `data` for `cfg.epochs` epochs, returning one row of metrics per epoch (plus epoch 0,
/// the untrained network). `cost` converts ledger cycles to time. Tiles run in parallel as `par` allows.
pub fn train<N: Network>(
    net: &mut N,
    data: &Dataset,
    cfg: &TrainConfig,
    cost: &CostModel,
    observer: &mut dyn Observer,
    par: Par<'_>,
) -> Vec<EpochMetrics> {
    let mut t = Training::start(net, data, cfg, cost, observer, par);
    while !t.done() {
        t.run_epoch(net, observer, par);
    }
    t.into_rows()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A network that learns nothing and records which samples it trained and inferred on (each
    /// sample's single input is its index).
    #[derive(Default)]
    struct Recording {
        learned: Vec<usize>,
        inferred: Vec<usize>,
        last: usize,
    }

    impl Network for Recording {
        fn learn(
            &mut self,
            input: &[f32],
            label: usize,
            _lr: f32,
            _ledger: &mut Ledger,
            _par: Par<'_>,
        ) -> f32 {
            self.learned.push(input[0] as usize);
            self.last = label;
            0.5
        }
        fn infer(&mut self, input: &[f32], _ledger: &mut Ledger, _par: Par<'_>) -> usize {
            self.inferred.push(input[0] as usize);
            // Right on even indices: the label of sample i is i % 2.
            self.last = 0;
            0
        }
        fn prediction(&self) -> usize {
            self.last
        }
        fn last_loss(&self, label: usize) -> Option<f32> {
            Some(label as f32)
        }
        fn layer_tiles(&self) -> Vec<&[Tile]> {
            Vec::new()
        }
    }

    fn indexed(train: usize, test: usize) -> Dataset {
        Dataset {
            name: "indexed".into(),
            inputs: 1,
            classes: 2,
            train_x: (0..train).map(|i| i as f32).collect(),
            train_y: (0..train).map(|i| (i % 2) as u8).collect(),
            test_x: (0..test).map(|i| (1000 + i) as f32).collect(),
            test_y: vec![0; test],
        }
    }

    fn config(validation: usize) -> TrainConfig {
        TrainConfig {
            epochs: 3,
            lr: 0.1,
            lr_decay: 1.0,
            shuffle: true,
            seed: 9,
            validation,
            batch: 1,
            batch_update: BatchUpdate::Sequential,
        }
    }

    #[test]
    fn the_validation_split_is_the_last_samples_and_never_trained_on() {
        let data = indexed(20, 4);
        let cost = CostModel::default();
        let mut net = Recording::default();
        let rows = train(&mut net, &data, &config(6), &cost, &mut Quiet, Par::Seq);
        // train_samples - validation updates per epoch, every one on samples 0..14, each once an epoch.
        assert_eq!(net.learned.len(), 3 * 14);
        for epoch in net.learned.chunks(14) {
            let mut seen = epoch.to_vec();
            seen.sort_unstable();
            assert_eq!(seen, (0..14).collect::<Vec<_>>());
        }
        // Validation (samples 14..20, in order) then test, after every epoch and before training.
        let per_eval: Vec<usize> = (14..20).chain(1000..1004).collect();
        assert_eq!(net.inferred, per_eval.repeat(4));
        assert_eq!(rows.len(), 4);
        for m in &rows {
            // Samples 14, 16, 18 have label 0 (predicted): 50 %; mean loss = mean label = 0.5.
            assert_eq!(m.val_accuracy, Some(50.0));
            assert_eq!(m.val_loss, Some(0.5));
            assert_eq!(m.test_accuracy, 100.0);
        }
        // Without a split every sample trains and no validation metric exists.
        let mut net = Recording::default();
        let rows = train(&mut net, &data, &config(0), &cost, &mut Quiet, Par::Seq);
        assert_eq!(net.learned.len(), 3 * 20);
        assert!(net.inferred.iter().all(|i| *i >= 1000));
        assert!(
            rows.iter()
                .all(|m| m.val_accuracy.is_none() && m.val_loss.is_none())
        );
    }

    #[test]
    fn metrics_and_weights_do_not_depend_on_the_executor() {
        use crate::mlp::BiasMode;
        use aimsim_sim::par::{Spread, Team};
        use rand::SeedableRng;

        let mut rng = rand_pcg::Pcg64::seed_from_u64(3);
        let mut draw =
            |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(0.0..1.0)).collect() };
        let data = Dataset {
            name: "random".into(),
            inputs: 20,
            classes: 4,
            train_x: draw(40 * 20),
            train_y: (0..40).map(|i| (i % 4) as u8).collect(),
            test_x: draw(10 * 20),
            test_y: (0..10).map(|i| (i % 4) as u8).collect(),
        };
        let cost = CostModel::default();
        let tc = TrainConfig {
            validation: 8,
            ..config(0)
        };
        let run = |par: Par<'_>| {
            // The read-ahead tests' network: stochastic pulses, c2c noise, a noisy periphery.
            let mut net = crate::mlp::tests::noisy_net(BiasMode::Digital);
            let rows = train(&mut net, &data, &tc, &cost, &mut Quiet, par);
            (rows, net.export_state())
        };
        let want = run(Par::Seq);
        assert!(want.0.last().unwrap().pulses_up > 0);
        for (threads, spread) in [
            (2, Spread::Always),
            (3, Spread::Always),
            (2, Spread::Adaptive),
        ] {
            let team = Team::with_spread(threads, spread);
            assert!(run(team.par()) == want, "{threads} threads, {spread:?}");
        }
    }

    #[test]
    fn batches_and_accumulated_updates_reach_the_network() {
        // A network that records the batch sizes and modes it is given.
        #[derive(Default)]
        struct Batches {
            seen: Vec<(usize, BatchUpdate)>,
            inner: Recording,
        }
        impl Network for Batches {
            fn learn(&mut self, x: &[f32], y: usize, lr: f32, l: &mut Ledger, p: Par<'_>) -> f32 {
                self.seen.push((1, BatchUpdate::Sequential));
                self.inner.learn(x, y, lr, l, p)
            }
            fn learn_batch(
                &mut self,
                inputs: &[f32],
                labels: &[usize],
                _lr: f32,
                mode: BatchUpdate,
                _ledger: &mut Ledger,
                _par: Par<'_>,
            ) -> Vec<(f32, usize)> {
                self.seen.push((labels.len(), mode));
                assert_eq!(inputs.len(), labels.len());
                labels.iter().map(|y| (0.5, *y)).collect()
            }
            fn infer(&mut self, x: &[f32], l: &mut Ledger, p: Par<'_>) -> usize {
                self.inner.infer(x, l, p)
            }
            fn prediction(&self) -> usize {
                0
            }
            fn layer_tiles(&self) -> Vec<&[Tile]> {
                Vec::new()
            }
        }
        let data = indexed(10, 2);
        let cost = CostModel::default();
        let run = |batch: usize, mode: BatchUpdate| {
            let cfg = TrainConfig {
                epochs: 1,
                batch,
                batch_update: mode,
                ..config(0)
            };
            let mut net = Batches::default();
            train(&mut net, &data, &cfg, &cost, &mut Quiet, Par::Seq);
            net.seen
        };
        // 10 samples in batches of 4: 4, 4 and the short last batch of 2.
        let b4 = run(4, BatchUpdate::Sequential);
        assert_eq!(b4.iter().map(|b| b.0).collect::<Vec<_>>(), [4, 4, 2]);
        // Batch 1: sample by sample, unless the updates accumulate (then through learn_batch).
        assert_eq!(run(1, BatchUpdate::Sequential).len(), 10);
        assert!(
            run(1, BatchUpdate::Sequential)
                .iter()
                .all(|b| *b == (1, BatchUpdate::Sequential))
        );
        let acc = run(1, BatchUpdate::Accumulated);
        assert_eq!(acc.len(), 10);
        assert!(acc.iter().all(|b| *b == (1, BatchUpdate::Accumulated)));
    }

    #[test]
    fn resuming_checks_the_order_against_the_split() {
        let data = indexed(20, 4);
        let cost = CostModel::default();
        let cfg = config(6);
        let mut net = Recording::default();
        let mut t = Training::start(&mut net, &data, &cfg, &cost, &mut Quiet, Par::Seq);
        t.run_epoch(&mut net, &mut Quiet, Par::Seq);
        let saved = t.progress().clone();
        assert_eq!(saved.order.len(), 14);
        assert!(Training::resume(&data, &cfg, &cost, saved.clone()).is_ok());
        assert!(Training::resume(&data, &config(0), &cost, saved).is_err());
    }

    fn row(epoch: u32, val: Option<f64>, test: f64) -> EpochMetrics {
        EpochMetrics {
            epoch,
            val_accuracy: val,
            test_accuracy: test,
            ..EpochMetrics::default()
        }
    }

    #[test]
    fn best_validation_picks_the_earliest_best_trained_epoch() {
        let rows = [
            row(0, Some(95.0), 10.0), // untrained: never selected
            row(1, Some(60.0), 99.0), // the best test accuracy: irrelevant
            row(2, Some(80.0), 70.0),
            row(3, Some(75.0), 90.0),
            row(4, Some(80.0), 72.0), // ties epoch 2: the earlier one wins
        ];
        let best = best_validation(&rows).unwrap();
        assert_eq!((best.epoch, best.test_accuracy), (2, 70.0));
        let rows = [row(0, None, 10.0), row(1, None, 50.0)];
        assert!(best_validation(&rows).is_none());
        assert!(best_validation(&[]).is_none());
    }
}
