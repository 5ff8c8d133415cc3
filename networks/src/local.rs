//! Local plasticity rules on tiles: Hebbian and anti-Hebbian learning with normalization, and curl
//! descent in the teacher-student setting (docs/ep.md).
//!
//! Every rule is expressed as the three phases of the chip: forward reads `W x`, backward reads
//! `W^T v` on the same conductances, and rank-one pulsed updates `dW = -lr d x^T` through the tiles'
//! controllers, all charged to the ledger.
//!
//! - **Hebbian** (Oja's subspace rule): `y = W x`, `dW = lr y (x - W^T y)^T`. The residual term
//!   normalizes: the rows converge to an orthonormal basis of the input's principal subspace.
//! - **Anti-Hebbian**: `dW = lr y (-x - W^T y)^T = -lr (y x^T + y y^T W)`: the sign of the Hebbian term
//!   flips while the normalizing term stays, so the rule removes the input's variance from the outputs,
//!   the directions of largest variance first (a novelty filter), and the weights stay bounded.
//! - **Curl descent** (Ninou, Kadmon and Cayco-Gajic 2025): a student `y = tanh(W2 tanh(W1 x))` learns a
//!   teacher of the same shape from `x ~ N(0, I/2)` by backpropagation, except that the incoming weights
//!   of a chosen set of hidden neurons get sign-flipped updates (`dW1 = -lr D d1 x^T`, `D = diag(+-1)`).
//!   With no flipped neuron it is plain gradient descent.

use aimsim_devices::SpecError;
use aimsim_sim::ledger::Ledger;
use aimsim_sim::par::Par;
use aimsim_sim::rng::{Purpose, stream};
use rand::{Rng, RngExt};
use rand_distr::{Distribution, StandardNormal};

use crate::mlp::{Hardware, Weights, new_weights};

/// A local learning rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalRule {
    /// Curl descent in the teacher-student setting.
    Curl,
    /// Oja's subspace rule.
    Hebbian,
    /// Anti-Hebbian with the same normalizing term.
    AntiHebbian,
}

impl LocalRule {
    /// Scenario name.
    pub fn name(self) -> &'static str {
        match self {
            LocalRule::Curl => "curl",
            LocalRule::Hebbian => "hebbian",
            LocalRule::AntiHebbian => "anti-hebbian",
        }
    }
}

/// Settings of a local-rule experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalConfig {
    /// Rule.
    pub rule: LocalRule,
    /// Input dimension.
    pub inputs: usize,
    /// Hidden units (curl) or output units of the Hebbian layer.
    pub hidden: usize,
    /// Output units of teacher and student (curl).
    pub outputs: usize,
    /// Fraction of hidden neurons with sign-flipped updates (curl).
    pub flip_fraction: f32,
    /// Learning rate.
    pub lr: f32,
    /// Training samples, one update each.
    pub steps: u64,
    /// Samples between evaluations.
    pub eval_every: u64,
    /// Test samples per evaluation.
    pub test_samples: usize,
}

impl Default for LocalConfig {
    /// Curl descent on 100 inputs, 10 hidden units and 1 output with no flipped neurons, lr 0.05,
    /// 20000 samples, evaluated on 1000 test samples every 500.
    fn default() -> Self {
        LocalConfig {
            rule: LocalRule::Curl,
            inputs: 100,
            hidden: 10,
            outputs: 1,
            flip_fraction: 0.0,
            lr: 0.05,
            steps: 20_000,
            eval_every: 500,
            test_samples: 1000,
        }
    }
}

/// One evaluation of a local-rule run.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalPoint {
    /// Training samples seen.
    pub step: u64,
    /// Curl: test mean squared error `1/2 ||y - y*||^2`. Hebbian rules: relative reconstruction error
    /// `||x - W^T W x||^2 / ||x||^2` on the test inputs.
    pub test_loss: f64,
    /// Hebbian rules: mean over rows of the fraction of the row's squared norm inside the input's
    /// principal subspace (1: aligned, 0: orthogonal to it).
    pub alignment: Option<f64>,
    /// Mean row norm of the (first layer's) weights.
    pub weight_norm: f64,
}

/// A finished local-rule run.
#[derive(Debug, Clone)]
pub struct LocalRun {
    /// Evaluations, step 0 first.
    pub points: Vec<LocalPoint>,
    /// Curl: the hidden neurons whose updates were flipped.
    pub flipped: Vec<usize>,
    /// What the training cost (reads and pulses).
    pub ledger: Ledger,
}

fn normal<R: Rng + ?Sized>(rng: &mut R, sd: f32) -> f32 {
    let z: f32 = StandardNormal.sample(rng);
    z * sd
}

/// Mean Euclidean norm of the rows of a row-major `rows x cols` matrix.
fn mean_row_norm(w: &[f32], cols: usize) -> f64 {
    let rows = w.len() / cols.max(1);
    w.chunks_exact(cols)
        .map(|r| r.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt())
        .sum::<f64>()
        / rows.max(1) as f64
}

/// The teacher of curl descent: `W1` (`hidden x inputs`, entries `N(0, 2 / inputs)`, so each
/// pre-activation has unit variance for `x ~ N(0, I/2)`) and `W2` (`outputs x hidden`, `N(0, 1 /
/// hidden)`), drawn from the stream `(seed, Local, 0)`.
pub fn teacher(inputs: usize, hidden: usize, outputs: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let mut rng = stream(seed, Purpose::Local, 0);
    let sd1 = (2.0 / inputs as f32).sqrt();
    let w1 = (0..hidden * inputs)
        .map(|_| normal(&mut rng, sd1))
        .collect();
    let sd2 = (1.0 / hidden as f32).sqrt();
    let w2 = (0..outputs * hidden)
        .map(|_| normal(&mut rng, sd2))
        .collect();
    (w1, w2)
}

/// `tanh(W2 tanh(W1 x))` in float arithmetic.
pub fn two_layer(w1: &[f32], w2: &[f32], x: &[f32]) -> Vec<f32> {
    let inputs = x.len();
    let h: Vec<f32> = w1
        .chunks_exact(inputs)
        .map(|r| r.iter().zip(x).map(|(a, b)| a * b).sum::<f32>().tanh())
        .collect();
    w2.chunks_exact(h.len())
        .map(|r| r.iter().zip(&h).map(|(a, b)| a * b).sum::<f32>().tanh())
        .collect()
}

/// The hidden neurons whose updates curl descent flips: `round(fraction x hidden)` of them, chosen by a
/// shuffle from the stream `(seed, Local, 1)`, sorted.
pub fn flipped_neurons(hidden: usize, fraction: f32, seed: u64) -> Vec<usize> {
    let k = ((fraction * hidden as f32).round() as usize).min(hidden);
    let mut order: Vec<usize> = (0..hidden).collect();
    let mut rng = stream(seed, Purpose::Local, 1);
    for i in (1..hidden).rev() {
        let j = rng.random_range(0..=i);
        order.swap(i, j);
    }
    let mut chosen = order[..k].to_vec();
    chosen.sort_unstable();
    chosen
}

/// The student of curl descent: two weight arrays on tiles (or floats), tanh units.
#[derive(Debug)]
pub struct CurlStudent {
    w1: Box<dyn Weights>,
    w2: Box<dyn Weights>,
    /// +1, or -1 for a flipped hidden neuron.
    sign: Vec<f32>,
    a1: Vec<f32>,
    h: Vec<f32>,
    a2: Vec<f32>,
    y: Vec<f32>,
    d1: Vec<f32>,
    d2: Vec<f32>,
    back: Vec<f32>,
}

impl CurlStudent {
    /// A student with initial weights `w1` (`hidden x inputs`) and `w2` (`outputs x hidden`),
    /// programmed onto tiles of `hw` (floats when `None`), and the hidden neurons `flipped`.
    pub fn new(
        inputs: usize,
        hidden: usize,
        outputs: usize,
        w1: &[f32],
        w2: &[f32],
        flipped: &[usize],
        hw: Option<&Hardware>,
    ) -> Result<Self, SpecError> {
        let mut m1 = new_weights(hidden, inputs, hw, 0)?;
        let mut m2 = new_weights(outputs, hidden, hw, 1 << 24)?;
        m1.program(w1);
        m2.program(w2);
        let mut sign = vec![1.0f32; hidden];
        for &i in flipped {
            sign[i] = -1.0;
        }
        Ok(CurlStudent {
            w1: m1,
            w2: m2,
            sign,
            a1: vec![0.0; hidden],
            h: vec![0.0; hidden],
            a2: vec![0.0; outputs],
            y: vec![0.0; outputs],
            d1: vec![0.0; hidden],
            d2: vec![0.0; outputs],
            back: vec![0.0; hidden],
        })
    }

    /// `y = tanh(W2 tanh(W1 x))` through the tiles (in parallel as `par` allows).
    pub fn output(&mut self, x: &[f32], ledger: &mut Ledger, par: Par<'_>) -> &[f32] {
        self.w1.forward(x, &mut self.a1, ledger, par);
        for (h, a) in self.h.iter_mut().zip(&self.a1) {
            *h = a.tanh();
        }
        self.w2.forward(&self.h, &mut self.a2, ledger, par);
        for (y, a) in self.y.iter_mut().zip(&self.a2) {
            *y = a.tanh();
        }
        &self.y
    }

    /// One curl-descent step on `(x, target)`: forward, output error, backward through `W2`'s tiles, and
    /// the updates `dW2 = -lr d2 h^T`, `dW1 = -lr (D d1) x^T`. Returns the sample's loss
    /// `1/2 ||y - target||^2` before the step. Tiles run in parallel as `par` allows.
    pub fn step(
        &mut self,
        x: &[f32],
        target: &[f32],
        lr: f32,
        ledger: &mut Ledger,
        par: Par<'_>,
    ) -> f32 {
        self.output(x, ledger, par);
        let mut loss = 0.0;
        for ((d, y), t) in self.d2.iter_mut().zip(&self.y).zip(target) {
            let e = y - t;
            loss += 0.5 * e * e;
            *d = e * (1.0 - y * y);
        }
        self.w2.backward(&self.d2, &mut self.back, ledger, par);
        for j in 0..self.h.len() {
            self.d1[j] = self.sign[j] * self.back[j] * (1.0 - self.h[j] * self.h[j]);
        }
        self.w2.update(&self.h, &self.d2, lr, ledger, par);
        self.w1.update(x, &self.d1, lr, ledger, par);
        ledger.count_sample();
        loss
    }

    /// The weights `(W1, W2)` the devices hold now.
    pub fn weights(&self) -> (Vec<f32>, Vec<f32>) {
        (self.w1.weights(), self.w2.weights())
    }
}

/// A random orthonormal basis of `k` directions in `n` dimensions (rows, row-major `k x n`).
fn orthonormal<R: Rng + ?Sized>(k: usize, n: usize, rng: &mut R) -> Vec<f32> {
    let mut q: Vec<Vec<f64>> = Vec::with_capacity(k);
    while q.len() < k {
        let mut v: Vec<f64> = (0..n).map(|_| normal(rng, 1.0) as f64).collect();
        for u in &q {
            let d: f64 = u.iter().zip(&v).map(|(a, b)| a * b).sum();
            v.iter_mut().zip(u).for_each(|(a, b)| *a -= d * b);
        }
        let norm = v.iter().map(|a| a * a).sum::<f64>().sqrt();
        if norm > 1e-6 {
            q.push(v.into_iter().map(|a| a / norm).collect());
        }
    }
    q.into_iter().flatten().map(|v| v as f32).collect()
}

/// Input distribution of the Hebbian experiments: `x = Q^T (sqrt(lambda) z) + 0.1 n` with `Q` a random
/// `k`-dimensional orthonormal basis (the principal subspace), `lambda_i` from 4 down to 1, `z` and `n`
/// standard normal.
struct Correlated {
    q: Vec<f32>,
    sd: Vec<f32>,
    n: usize,
}

impl Correlated {
    fn new(k: usize, n: usize, seed: u64) -> Self {
        let mut rng = stream(seed, Purpose::Local, 0);
        let sd = (0..k)
            .map(|i| (4.0 - 3.0 * i as f32 / (k.max(2) - 1) as f32).sqrt())
            .collect();
        Correlated {
            q: orthonormal(k, n, &mut rng),
            sd,
            n,
        }
    }

    fn sample<R: Rng + ?Sized>(&self, rng: &mut R, x: &mut [f32]) {
        for v in x.iter_mut() {
            *v = normal(rng, 0.1);
        }
        for (row, sd) in self.q.chunks_exact(self.n).zip(&self.sd) {
            let z = normal(rng, *sd);
            x.iter_mut().zip(row).for_each(|(a, b)| *a += z * b);
        }
    }

    /// Mean over rows of `w` of the fraction of its squared norm inside the subspace.
    fn alignment(&self, w: &[f32]) -> f64 {
        let rows = w.len() / self.n;
        let mut total = 0.0;
        for r in w.chunks_exact(self.n) {
            let norm2: f64 = r.iter().map(|v| (*v as f64).powi(2)).sum();
            if norm2 == 0.0 {
                continue;
            }
            let inside: f64 = self
                .q
                .chunks_exact(self.n)
                .map(|u| {
                    u.iter()
                        .zip(r)
                        .map(|(a, b)| *a as f64 * *b as f64)
                        .sum::<f64>()
                        .powi(2)
                })
                .sum();
            total += inside / norm2;
        }
        total / rows.max(1) as f64
    }
}

/// Runs a local-rule experiment with seed `seed` on tiles of `hw` (floats when `None`), evaluating every
/// `eval_every` samples (and at 0 and the end). All randomness comes from streams `(seed, Local, i)`:
/// 0 teacher or input distribution, 1 flipped neurons, 2 training inputs, 3 test inputs, 4 initial
/// weights.
pub fn run(
    cfg: &LocalConfig,
    hw: Option<&Hardware>,
    seed: u64,
    par: Par<'_>,
) -> Result<LocalRun, SpecError> {
    let mut ledger = Ledger::default();
    let mut points = Vec::new();
    let mut train_rng = stream(seed, Purpose::Local, 2);
    let mut init = stream(seed, Purpose::Local, 4);
    let (n, h) = (cfg.inputs, cfg.hidden);
    let due = |step: u64| step.is_multiple_of(cfg.eval_every) || step == cfg.steps;
    match cfg.rule {
        LocalRule::Curl => {
            let (t1, t2) = teacher(n, h, cfg.outputs, seed);
            let flipped = flipped_neurons(h, cfg.flip_fraction, seed);
            let sd1 = 0.5 * (2.0 / n as f32).sqrt();
            let sd2 = 0.5 * (1.0 / h as f32).sqrt();
            let w1: Vec<f32> = (0..h * n).map(|_| normal(&mut init, sd1)).collect();
            let w2: Vec<f32> = (0..cfg.outputs * h)
                .map(|_| normal(&mut init, sd2))
                .collect();
            let mut student = CurlStudent::new(n, h, cfg.outputs, &w1, &w2, &flipped, hw)?;
            let sd_x = 0.5f32.sqrt();
            let mut test_rng = stream(seed, Purpose::Local, 3);
            let test: Vec<(Vec<f32>, Vec<f32>)> = (0..cfg.test_samples)
                .map(|_| {
                    let x: Vec<f32> = (0..n).map(|_| normal(&mut test_rng, sd_x)).collect();
                    let y = two_layer(&t1, &t2, &x);
                    (x, y)
                })
                .collect();
            let evaluate = |s: &mut CurlStudent, step: u64| {
                let mut l = Ledger::default();
                let loss = test
                    .iter()
                    .map(|(x, t)| {
                        s.output(x, &mut l, par)
                            .iter()
                            .zip(t)
                            .map(|(a, b)| 0.5 * ((a - b) as f64).powi(2))
                            .sum::<f64>()
                    })
                    .sum::<f64>()
                    / test.len() as f64;
                LocalPoint {
                    step,
                    test_loss: loss,
                    alignment: None,
                    weight_norm: mean_row_norm(&s.weights().0, n),
                }
            };
            points.push(evaluate(&mut student, 0));
            let mut x = vec![0.0f32; n];
            for step in 1..=cfg.steps {
                for v in x.iter_mut() {
                    *v = normal(&mut train_rng, sd_x);
                }
                let y = two_layer(&t1, &t2, &x);
                student.step(&x, &y, cfg.lr, &mut ledger, par);
                if due(step) {
                    points.push(evaluate(&mut student, step));
                }
            }
            Ok(LocalRun {
                points,
                flipped,
                ledger,
            })
        }
        LocalRule::Hebbian | LocalRule::AntiHebbian => {
            let sign = if cfg.rule == LocalRule::Hebbian {
                1.0
            } else {
                -1.0
            };
            let dist = Correlated::new(h, n, seed);
            let sd = 0.5 / (n as f32).sqrt();
            let w0: Vec<f32> = (0..h * n).map(|_| normal(&mut init, sd)).collect();
            let mut w = new_weights(h, n, hw, 0)?;
            w.program(&w0);
            let mut test_rng = stream(seed, Purpose::Local, 3);
            let test: Vec<Vec<f32>> = (0..cfg.test_samples)
                .map(|_| {
                    let mut x = vec![0.0; n];
                    dist.sample(&mut test_rng, &mut x);
                    x
                })
                .collect();
            let evaluate = |w: &dyn Weights, step: u64| {
                let m = w.weights();
                let mut err = 0.0f64;
                for x in &test {
                    let y: Vec<f64> = m
                        .chunks_exact(n)
                        .map(|r| r.iter().zip(x).map(|(a, b)| *a as f64 * *b as f64).sum())
                        .collect();
                    let mut num = 0.0;
                    let mut den = 0.0;
                    for j in 0..n {
                        let rec: f64 = (0..h).map(|i| m[i * n + j] as f64 * y[i]).sum();
                        num += (x[j] as f64 - rec).powi(2);
                        den += (x[j] as f64).powi(2);
                    }
                    err += num / den.max(1e-30);
                }
                LocalPoint {
                    step,
                    test_loss: err / test.len() as f64,
                    alignment: Some(dist.alignment(&m)),
                    weight_norm: mean_row_norm(&m, n),
                }
            };
            points.push(evaluate(w.as_ref(), 0));
            let (mut x, mut y, mut back) = (vec![0.0f32; n], vec![0.0f32; h], vec![0.0f32; n]);
            for step in 1..=cfg.steps {
                dist.sample(&mut train_rng, &mut x);
                w.forward(&x, &mut y, &mut ledger, par);
                w.backward(&y, &mut back, &mut ledger, par);
                // dW = lr y (sign x - W^T y)^T = -lr d r^T with d = -y.
                let r: Vec<f32> = x.iter().zip(&back).map(|(a, b)| sign * a - b).collect();
                let d: Vec<f32> = y.iter().map(|v| -v).collect();
                w.update(&r, &d, cfg.lr, &mut ledger, par);
                ledger.count_sample();
                if due(step) {
                    points.push(evaluate(w.as_ref(), step));
                }
            }
            Ok(LocalRun {
                points,
                flipped: Vec::new(),
                ledger,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curl(fraction: f32, steps: u64) -> LocalConfig {
        LocalConfig {
            rule: LocalRule::Curl,
            inputs: 100,
            hidden: 20,
            outputs: 5,
            flip_fraction: fraction,
            lr: 0.05,
            steps,
            eval_every: steps,
            test_samples: 300,
        }
    }

    #[test]
    fn curl_descent_with_no_flipped_neuron_is_plain_gradient_descent() {
        let (n, h, o) = (7, 5, 2);
        let (t1, t2) = teacher(n, h, o, 3);
        let (s1, s2) = teacher(n, h, o, 4);
        let lr = 0.1f32;
        let mut student = CurlStudent::new(n, h, o, &s1, &s2, &[], None).unwrap();
        let mut flipped = CurlStudent::new(n, h, o, &s1, &s2, &[2], None).unwrap();
        // Reference: the gradient of 1/2 ||y - y*||^2 written out in f64.
        let mut w1: Vec<f64> = s1.iter().map(|v| *v as f64).collect();
        let mut w2: Vec<f64> = s2.iter().map(|v| *v as f64).collect();
        let mut rng = stream(9, Purpose::Local, 2);
        let mut ledger = Ledger::default();
        for _ in 0..300 {
            let x: Vec<f32> = (0..n).map(|_| normal(&mut rng, 0.7)).collect();
            let t = two_layer(&t1, &t2, &x);
            student.step(&x, &t, lr, &mut ledger, Par::Seq);
            flipped.step(&x, &t, lr, &mut ledger, Par::Seq);
            let hid: Vec<f64> = (0..h)
                .map(|i| {
                    (0..n)
                        .map(|j| w1[i * n + j] * x[j] as f64)
                        .sum::<f64>()
                        .tanh()
                })
                .collect();
            let y: Vec<f64> = (0..o)
                .map(|k| (0..h).map(|i| w2[k * h + i] * hid[i]).sum::<f64>().tanh())
                .collect();
            let d2: Vec<f64> = (0..o)
                .map(|k| (y[k] - t[k] as f64) * (1.0 - y[k] * y[k]))
                .collect();
            let d1: Vec<f64> = (0..h)
                .map(|i| {
                    (0..o).map(|k| w2[k * h + i] * d2[k]).sum::<f64>() * (1.0 - hid[i] * hid[i])
                })
                .collect();
            for k in 0..o {
                for i in 0..h {
                    w2[k * h + i] -= lr as f64 * d2[k] * hid[i];
                }
            }
            for i in 0..h {
                for j in 0..n {
                    w1[i * n + j] -= lr as f64 * d1[i] * x[j] as f64;
                }
            }
        }
        let (a1, a2) = student.weights();
        let worst = a1
            .iter()
            .zip(&w1)
            .chain(a2.iter().zip(&w2))
            .fold(0.0f64, |m, (a, b)| m.max((*a as f64 - b).abs()));
        assert!(worst < 1e-4, "differs from gradient descent by {worst}");
        let (f1, _) = flipped.weights();
        let moved = f1
            .iter()
            .zip(&a1)
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(moved > 1e-3, "a flipped neuron changes the trajectory");
    }

    #[test]
    fn curl_descent_learns_with_no_flips_and_breaks_down_with_all_flipped() {
        let plain = run(&curl(0.0, 6000), None, 1, Par::Seq).unwrap();
        let all = run(&curl(1.0, 6000), None, 1, Par::Seq).unwrap();
        let (p0, p1) = (
            plain.points[0].test_loss,
            plain.points.last().unwrap().test_loss,
        );
        let a1 = all.points.last().unwrap().test_loss;
        assert!(p1 < 0.3 * p0, "gradient descent: {p0} -> {p1}");
        assert!(a1 > 0.8 * p0, "all flipped should not learn: {p0} -> {a1}");
        assert_eq!(all.flipped, (0..20).collect::<Vec<_>>());
        assert_eq!(flipped_neurons(10, 0.3, 1).len(), 3);
    }

    #[test]
    fn oja_rule_finds_the_principal_subspace_and_anti_hebbian_leaves_it() {
        let mut cfg = LocalConfig {
            rule: LocalRule::Hebbian,
            inputs: 16,
            hidden: 3,
            outputs: 1,
            flip_fraction: 0.0,
            lr: 0.01,
            steps: 4000,
            eval_every: 4000,
            test_samples: 200,
        };
        let heb = run(&cfg, None, 2, Par::Seq).unwrap();
        let (first, last) = (&heb.points[0], heb.points.last().unwrap());
        assert!(
            last.alignment.unwrap() > 0.95 && first.alignment.unwrap() < 0.5,
            "alignment {:?} -> {:?}",
            first.alignment,
            last.alignment
        );
        assert!(
            (last.weight_norm - 1.0).abs() < 0.1,
            "rows normalize: {}",
            last.weight_norm
        );
        assert!(
            last.test_loss < 0.1,
            "reconstruction error {}",
            last.test_loss
        );
        cfg.rule = LocalRule::AntiHebbian;
        let anti = run(&cfg, None, 2, Par::Seq).unwrap();
        let (first, last) = (&anti.points[0], anti.points.last().unwrap());
        assert!(
            last.weight_norm < first.weight_norm,
            "weights stay bounded and shrink"
        );
        assert!(
            last.alignment.unwrap() < first.alignment.unwrap(),
            "variance directions are removed first: {:?} -> {:?}",
            first.alignment,
            last.alignment
        );
    }
}
