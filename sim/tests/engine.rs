//! Integration tests of the simulation engine: tiles, periphery, pulse schemes, controllers, the ledger,
//! and the tile grid of an `AnalogMatrix`, run end to end on real device populations.
//!
//! Every expected value is computed independently of the code under test (f64 products, hand-computed
//! costs, pulse counts from the scheme's definition), so a wrong formula, sign, index or cap fails here.

// Cell (i, j) of a row-major matrix reads clearest with explicit indices.
#![allow(clippy::needless_range_loop)]

use aimsim_devices::{
    DeviceSpec, Dist, Model, NeuroSimParams, Param, Spread, StepKind, StepParams, Variation,
};
use aimsim_sim::io::IoConfig;
use aimsim_sim::ledger::{CostModel, Ledger, Phase};
use aimsim_sim::matrix::AnalogMatrix;
use aimsim_sim::par::{Par, Spread as TeamSpread, Team};
use aimsim_sim::tile::{CellKind, Routing, Tile, TileConfig};
use aimsim_sim::update::{ControllerSpec, PulseScheme, Refresh};
use proptest::prelude::*;
use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64;

#[path = "../../devices/tests/support/props.rs"]
mod support;
use support::props;

/// A nominal step that is a power of two, so device states, weights and weight changes are exact in f32.
const DW: f64 = 1.0 / 1024.0;

fn constant(dw: f64) -> DeviceSpec {
    DeviceSpec::new(Model::Step(StepParams::new(StepKind::Constant, dw)))
}

fn cfg(rows: usize, cols: usize, cell: CellKind, io: IoConfig) -> TileConfig {
    TileConfig {
        rows,
        cols,
        cell,
        forward: io.clone(),
        backward: io,
        zero_reference: false,
    }
}

#[allow(clippy::too_many_arguments)]
fn matrix(
    out: usize,
    inp: usize,
    tile: &TileConfig,
    spec: &DeviceSpec,
    ctrl: &ControllerSpec,
    w_scale: f32,
    cost: CostModel,
    seed: u64,
) -> AnalogMatrix {
    AnalogMatrix::new(out, inp, tile, spec, ctrl, w_scale, cost, seed, 0).expect("valid matrix")
}

fn uniform(rng: &mut Pcg64, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(lo..hi)).collect()
}

fn norm(v: impl Iterator<Item = f32>) -> f64 {
    v.map(|a| (a as f64) * (a as f64)).sum::<f64>().sqrt()
}

// ---------------------------------------------------------------------------------------------------
// 1. Ideal devices and periphery reproduce a float matrix-vector product
// ---------------------------------------------------------------------------------------------------

#[test]
fn ideal_matrix_reproduces_float_products() {
    let (out, inp) = (70, 150);
    let w_scale = 0.5f32;
    let mut m = matrix(
        out,
        inp,
        &cfg(32, 64, CellKind::Pair, IoConfig::ideal()),
        &constant(1e-3),
        &ControllerSpec::default(),
        w_scale,
        CostModel::default(),
        11,
    );
    assert_eq!(m.grid(), (3, 3));
    let shapes: Vec<_> = m.tiles().iter().map(|t| (t.rows(), t.cols())).collect();
    assert_eq!(
        shapes,
        vec![
            (32, 64),
            (32, 64),
            (32, 22),
            (32, 64),
            (32, 64),
            (32, 22),
            (6, 64),
            (6, 64),
            (6, 22),
        ]
    );

    let mut rng = Pcg64::seed_from_u64(1);
    let target = uniform(&mut rng, out * inp, -0.45, 0.45);
    m.program(&target);
    let w = m.weights();
    // Each device of a pair lands within half a device step of its goal, so a weight lies within one cell
    // step (scaled to layer units) of its target.
    let step = m.tiles()[0].cell_step() * w_scale;
    let mut worst = 0.0f32;
    for (k, (a, b)) in w.iter().zip(&target).enumerate() {
        worst = worst.max((a - b).abs());
        assert!(
            (a - b).abs() <= step * 1.001 + 1e-7,
            "weight {k}: programmed {a}, target {b}, step {step}"
        );
    }
    assert!(worst > 0.0, "programming cannot be exact on a 1e-3 grid");

    let mut ledger = Ledger::default();
    for trial in 0..3 {
        let x = uniform(&mut rng, inp, -1.0, 1.0);
        let d = uniform(&mut rng, out, -1.0, 1.0);
        let mut y = vec![0.0; out];
        let mut z = vec![0.0; inp];
        m.forward(&x, &mut y, &mut ledger, Par::Seq);
        m.backward(&d, &mut z, &mut ledger, Par::Seq);
        let xn = norm(x.iter().copied());
        for i in 0..out {
            let row = &w[i * inp..(i + 1) * inp];
            let r: f64 = row.iter().zip(&x).map(|(a, b)| *a as f64 * *b as f64).sum();
            let tol = 1e-5 * norm(row.iter().copied()) * xn;
            assert!(
                (y[i] as f64 - r).abs() <= tol,
                "trial {trial}, y[{i}] = {} vs {r} (tol {tol})",
                y[i]
            );
        }
        let dn = norm(d.iter().copied());
        for j in 0..inp {
            let r: f64 = (0..out).map(|i| w[i * inp + j] as f64 * d[i] as f64).sum();
            let tol = 1e-5 * norm((0..out).map(|i| w[i * inp + j])) * dn;
            assert!(
                (z[j] as f64 - r).abs() <= tol,
                "trial {trial}, z[{j}] = {} vs {r} (tol {tol})",
                z[j]
            );
        }
    }
    // Ideal IO converts once per tile and step.
    assert_eq!(ledger.phase(Phase::Forward).steps, 3);
    assert_eq!(
        ledger.phase(Phase::Forward).conversions,
        3 * shapes.iter().map(|(r, c)| (r + c) as u64).sum::<u64>()
    );
}

// ---------------------------------------------------------------------------------------------------
// 2. DAC and ADC quantization match their bit counts
// ---------------------------------------------------------------------------------------------------

/// An `n x n` identity tile, programmed exactly (goals on the device grid).
fn identity_tile(n: usize, forward: IoConfig, backward: IoConfig) -> Tile {
    let c = TileConfig {
        rows: n,
        cols: n,
        cell: CellKind::Pair,
        forward,
        backward,
        zero_reference: false,
    };
    let mut t = Tile::new(0, &c, &constant(1.0 / 64.0), 3).unwrap();
    let eye: Vec<f32> = (0..n * n)
        .map(|k| if k / n == k % n { 1.0 } else { 0.0 })
        .collect();
    t.program(&eye);
    assert_eq!(t.weights(), &eye[..], "identity must program exactly");
    t
}

/// Pushes `xs` through the tile's forward (or backward) pass in chunks of `n`; returns the outputs.
fn sweep(t: &mut Tile, n: usize, xs: &[f32], backward: bool) -> Vec<f32> {
    let mut out = Vec::with_capacity(xs.len());
    for chunk in xs.chunks(n) {
        let mut x = chunk.to_vec();
        x.resize(n, 0.0);
        let mut y = vec![0.0; n];
        let r = if backward {
            t.backward(&x, &mut y)
        } else {
            t.forward(&x, &mut y)
        };
        assert_eq!(r.mvm.passes, 1);
        out.extend_from_slice(&y[..chunk.len()]);
    }
    out
}

fn check_quantizer(xs: &[f32], ys: &[f32], bound: f32, bits: u32, what: &str) {
    let step = 2.0 * bound / ((1u64 << bits) - 2) as f32;
    let mut worst = 0.0f32;
    let mut levels = std::collections::BTreeSet::new();
    for (x, y) in xs.iter().zip(ys) {
        let ideal = x.clamp(-bound, bound);
        let err = (y - ideal).abs();
        worst = worst.max(err);
        assert!(
            err <= step / 2.0 + 1e-5 * bound,
            "{what} {bits} bits: {x} -> {y}, error {err} > half step {}",
            step / 2.0
        );
        assert!(
            y.abs() <= bound * (1.0 + 1e-6),
            "{what}: {y} outside the range"
        );
        let q = y / step;
        assert!(
            (q - q.round()).abs() < 1e-3,
            "{what} {bits} bits: {y} is not on the {step} grid"
        );
        levels.insert(q.round() as i64);
    }
    // The sweep passes within 1e-4 bound of every mid-point between two levels.
    assert!(
        worst >= step / 2.0 - 1.5e-4 * bound,
        "{what} {bits} bits: worst error {worst} is below half a step {}: quantization too fine",
        step / 2.0
    );
    assert_eq!(
        levels.len() as u64,
        (1u64 << bits) - 1,
        "{what} {bits} bits: distinct outputs"
    );
}

#[test]
fn dac_and_adc_errors_match_their_bit_counts() {
    let n = 256;
    for bits in [4u32, 7, 9] {
        let dac = IoConfig {
            dac_bits: Some(bits),
            adc_bits: None,
            out_noise: 0.0,
            noise_management: false,
            bound_management: false,
            ..IoConfig::default()
        };
        let out_bound = 2.0f32;
        let adc = IoConfig {
            dac_bits: None,
            adc_bits: Some(bits),
            inp_bound: f32::INFINITY,
            out_bound,
            out_noise: 0.0,
            noise_management: false,
            bound_management: false,
            ..IoConfig::default()
        };
        let mut t = identity_tile(n, dac.clone(), adc.clone());
        // DAC on the forward pass (inputs beyond inp_bound = 1 are clipped to it).
        let xs: Vec<f32> = (0..=24_000).map(|k| -1.2 + k as f32 * 1e-4).collect();
        let ys = sweep(&mut t, n, &xs, false);
        check_quantizer(&xs, &ys, 1.0, bits, "DAC");
        // ADC on the backward pass (outputs beyond out_bound are clipped to it).
        let xs: Vec<f32> = xs.iter().map(|v| v * out_bound).collect();
        let ys = sweep(&mut t, n, &xs, true);
        check_quantizer(&xs, &ys, out_bound, bits, "ADC");
        assert_eq!(dac.dac_step(), Some(2.0 / ((1u64 << bits) - 2) as f32));
        assert_eq!(
            adc.adc_step(),
            Some(2.0 * out_bound / ((1u64 << bits) - 2) as f32)
        );
    }
}

// ---------------------------------------------------------------------------------------------------
// 3. The stochastic update is unbiased, and its train length follows BL management
// ---------------------------------------------------------------------------------------------------

struct StochasticStats {
    mean: Vec<f64>,
    se: Vec<f64>,
}

/// Runs `trials` stochastic updates of a 4 x 6 pair tile from weight 0, each after reprogramming; checks
/// every update's pulse counts against the train length and returns per-cell statistics of the weight
/// change.
fn stochastic_trials(
    um: bool,
    blm: bool,
    x: &[f32],
    d: &[f32],
    lr: f32,
    trials: usize,
    seed: u64,
) -> StochasticStats {
    let (rows, cols) = (d.len(), x.len());
    let ctrl = ControllerSpec::SgdStochastic(PulseScheme::Stochastic {
        bl: 31,
        update_management: um,
        bl_management: blm,
    });
    let mut m = matrix(
        rows,
        cols,
        &cfg(rows, cols, CellKind::Pair, IoConfig::ideal()),
        &constant(DW),
        &ctrl,
        1.0,
        CostModel::default(),
        seed,
    );
    let dw = m.tiles()[0].cell_step() as f64;
    assert_eq!(dw, DW, "pair cell step = dw_min");
    let x_max = x.iter().fold(0.0f64, |a, v| a.max(v.abs() as f64));
    let d_max = d.iter().fold(0.0f64, |a, v| a.max(v.abs() as f64));
    let bl = if blm {
        ((lr as f64 * x_max * d_max / dw).ceil() as u64).clamp(1, 31)
    } else {
        31
    };
    let zeros = vec![0.0f32; rows * cols];
    let mut sum = vec![0.0f64; rows * cols];
    let mut sum2 = vec![0.0f64; rows * cols];
    let mut ledger = Ledger::default();
    for t in 0..trials {
        m.program(&zeros);
        let w0 = m.weights();
        assert!(w0.iter().all(|v| *v == 0.0));
        let before = m.tiles()[0].tally();
        let r = m.update(x, d, lr, &mut ledger, Par::Seq);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].slots, bl, "trial {t}: train length");
        let w = m.weights();
        let mut pulses = 0u64;
        for i in 0..rows {
            for j in 0..cols {
                let k = i * cols + j;
                let n = (w[k] - w0[k]) as f64 / dw;
                assert_eq!(n, n.round(), "cell ({i},{j}): a change of {n} steps");
                assert!(
                    n.abs() <= bl as f64,
                    "cell ({i},{j}): {n} coincidences in {bl} slots"
                );
                let want = -(d[i] as f64) * x[j] as f64;
                assert!(
                    n * want >= 0.0 && (want != 0.0 || n == 0.0),
                    "cell ({i},{j}): {n} pulses for a desired step of {want}"
                );
                pulses += n.abs() as u64;
                sum[k] += n * dw;
                sum2[k] += (n * dw) * (n * dw);
            }
        }
        // Push-pull: every coincidence potentiates one device of the pair and depresses the other.
        let after = m.tiles()[0].tally();
        assert_eq!((r[0].up, r[0].down), (pulses, pulses), "trial {t}");
        assert_eq!(after.up - before.up, pulses);
        assert_eq!(after.down - before.down, pulses);
    }
    assert_eq!(ledger.phase(Phase::Update).steps, trials as u64);
    assert_eq!(
        ledger.phase(Phase::Update).cycles,
        trials as u64 * bl * CostModel::default().pulse_cycles as u64
    );
    let n = trials as f64;
    let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
    let se = sum2
        .iter()
        .zip(&mean)
        .map(|(s2, m)| ((s2 / n - m * m).max(0.0) * n / (n - 1.0) / n).sqrt())
        .collect();
    StochasticStats { mean, se }
}

fn assert_unbiased(s: &StochasticStats, x: &[f32], d: &[f32], lr: f32, what: &str) {
    let cols = x.len();
    for (k, (m, se)) in s.mean.iter().zip(&s.se).enumerate() {
        let (i, j) = (k / cols, k % cols);
        let want = -(lr as f64) * d[i] as f64 * x[j] as f64;
        assert!(
            (m - want).abs() <= 4.0 * se + 1e-9,
            "{what}: cell ({i},{j}) mean step {m} vs -lr d x = {want} (se {se})"
        );
    }
}

#[test]
fn stochastic_update_is_unbiased() {
    let trials = 2000;
    let x = [1.0f32, -0.5, 0.25, 0.0, -0.875, 0.625];
    // Balanced x and d: every combination of update and BL management keeps probabilities <= 1.
    let d = [1.0f32, -0.5, 0.25, -0.75];
    let lr = 8.0 * DW as f32; // lr x_max d_max / dw = 8 pulses for the largest product
    for (k, (um, blm)) in [(false, false), (true, false), (false, true), (true, true)]
        .into_iter()
        .enumerate()
    {
        let s = stochastic_trials(um, blm, &x, &d, lr, trials, 100 + k as u64);
        assert_unbiased(&s, &x, &d, lr, &format!("balanced um={um} blm={blm}"));
    }
    // d four times smaller than x: update management must rebalance the row and column probabilities.
    let d = [0.25f32, -0.125, 0.0625, -0.1875];
    let lr = 32.0 * DW as f32; // again 8 pulses for the largest product
    for (k, blm) in [false, true].into_iter().enumerate() {
        let s = stochastic_trials(true, blm, &x, &d, lr, trials, 200 + k as u64);
        assert_unbiased(&s, &x, &d, lr, &format!("unbalanced um=true blm={blm}"));
    }
    // Without update management the column train saturates (probability 2 -> 1) and the largest step
    // comes out at half its size: proof that the flag is honoured.
    let s = stochastic_trials(false, true, &x, &d, lr, 500, 300);
    let want = lr as f64 * 0.25;
    assert!(
        (s.mean[0].abs() - 0.5 * want).abs() <= 4.0 * s.se[0] + 1e-9,
        "saturated train: mean {} vs half of {want}",
        s.mean[0]
    );
}

#[test]
fn bl_management_sets_the_train_length() {
    let x = [1.0f32, -0.5, 0.25];
    let d = [0.5f32, -1.0];
    let cell_step = DW as f32;
    // (lr x_max d_max / dw, BL with management)
    for (ratio, bl) in [
        (0.3f32, 1u64),
        (1.0, 1),
        (2.3, 3),
        (2.5, 3),
        (9.7, 10),
        (16.0, 16),
        (31.0, 31),
        (100.0, 31),
    ] {
        let lr = ratio * cell_step;
        for blm in [false, true] {
            let ctrl = ControllerSpec::SgdStochastic(PulseScheme::Stochastic {
                bl: 31,
                update_management: true,
                bl_management: blm,
            });
            let mut m = matrix(
                2,
                3,
                &cfg(2, 3, CellKind::Pair, IoConfig::ideal()),
                &constant(DW),
                &ctrl,
                1.0,
                CostModel::default(),
                5,
            );
            m.program(&[0.0; 6]);
            let mut ledger = Ledger::default();
            let r = m.update(&x, &d, lr, &mut ledger, Par::Seq);
            let expect = if blm { bl } else { 31 };
            assert_eq!(r[0].slots, expect, "ratio {ratio} blm {blm}");
            // No cell gets more coincidences than there are slots.
            let w = m.weights();
            assert!(
                w.iter()
                    .all(|v| (v / cell_step).abs() <= expect as f32 + 1e-3),
                "ratio {ratio} blm {blm}: {w:?}"
            );
            // All-zero inputs: nothing to do, no slots.
            let r = m.update(&[0.0; 3], &d, lr, &mut ledger, Par::Seq);
            assert_eq!((r[0].slots, r[0].up, r[0].down), (0, 0, 0));
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// 4. Deterministic schemes: counted pulses and sign-threshold pulses
// ---------------------------------------------------------------------------------------------------

/// Runs one update of a fresh 3 x 5 pair tile (weights 0, deterministic devices) and checks every
/// cell's pulses against `expect(scaled |x d|)`; returns the update report's slots.
fn check_counted(
    ctrl: ControllerSpec,
    w_scale: f32,
    scale: f64,
    expect: impl Fn(f64) -> u32,
) -> u64 {
    let x = [0.9f32, -0.37, 0.05, 0.0, -1.0];
    let d = [0.8f32, -0.33, 0.61];
    let (rows, cols) = (d.len(), x.len());
    let mut m = matrix(
        rows,
        cols,
        &cfg(rows, cols, CellKind::Pair, IoConfig::ideal()),
        &constant(DW),
        &ctrl,
        w_scale,
        CostModel::default(),
        9,
    );
    m.program(&vec![0.0; rows * cols]);
    // The layer's learning rate is in layer units: lr / w_scale in normalized units is scale * dw.
    let lr = (scale * DW) as f32 * w_scale;
    let mut ledger = Ledger::default();
    let r = m.update(&x, &d, lr, &mut ledger, Par::Seq);
    let t = &m.tiles()[0];
    let w = t.weights();
    let layer = m.weights();
    let mut slots = 0u64;
    let mut total = 0u64;
    for i in 0..rows {
        let mut row_max = 0;
        for j in 0..cols {
            let k = i * cols + j;
            let want = -(d[i] as f64) * x[j] as f64;
            let v = scale * want.abs();
            assert!(
                (v - v.floor() - 0.5).abs() > 0.01,
                "test values must avoid rounding ties: {v}"
            );
            let n = expect(v);
            row_max = row_max.max(n);
            total += n as u64;
            let up = want > 0.0;
            let (p_up, p_down) = t.device_pulses(0, k);
            let (m_up, m_down) = t.device_pulses(1, k);
            let (e_plus, e_minus) = if up {
                ((n, 0), (0, n))
            } else {
                ((0, n), (n, 0))
            };
            assert_eq!((p_up, p_down), e_plus, "cell ({i},{j}) G+ for {v} steps");
            assert_eq!((m_up, m_down), e_minus, "cell ({i},{j}) G- for {v} steps");
            let signed = if up { n as f64 } else { -(n as f64) };
            assert_eq!(w[k] as f64, signed * DW, "cell ({i},{j}) weight");
            assert_eq!(layer[k], w[k] * w_scale, "cell ({i},{j}) layer weight");
        }
        slots += row_max as u64;
    }
    assert_eq!(r[0].slots, slots, "rows are written one after another");
    assert_eq!((r[0].up, r[0].down), (total, total));
    assert_eq!(
        r[0].evaluations,
        (rows * cols) as u64,
        "every row has d != 0"
    );
    r[0].slots
}

#[test]
fn count_scheme_rounds_and_caps() {
    for cap in [1u32, 3, 5, 100] {
        let ctrl = ControllerSpec::SgdCount(PulseScheme::Count { max_pulses: cap });
        let slots = check_counted(ctrl, 0.5, 10.0, |v| (v.round() as u32).min(cap));
        assert!(slots > 0);
    }
    // A large learning rate: every non-zero product hits the cap.
    let ctrl = ControllerSpec::SgdCount(PulseScheme::Count { max_pulses: 7 });
    check_counted(ctrl, 1.0, 1003.0, |v| if v > 0.0 { 7 } else { 0 });
}

#[test]
fn sign_threshold_sends_one_pulse_above_threshold() {
    for threshold in [0.5f32, 2.5, 4.0, 7.3] {
        let ctrl = ControllerSpec::SignThreshold(PulseScheme::SignThreshold { threshold });
        let slots = check_counted(ctrl, 2.0, 10.0, |v| u32::from(v >= threshold as f64));
        assert!(slots <= 3, "at most one slot per row");
    }
}

// ---------------------------------------------------------------------------------------------------
// 5. One-sided cells never see depression pulses
// ---------------------------------------------------------------------------------------------------

#[test]
fn one_sided_cells_only_potentiate() {
    let schemes = [
        ControllerSpec::SgdStochastic(PulseScheme::Stochastic {
            bl: 31,
            update_management: true,
            bl_management: true,
        }),
        ControllerSpec::SgdCount(PulseScheme::Count { max_pulses: 4 }),
        ControllerSpec::SignThreshold(PulseScheme::SignThreshold { threshold: 1.0 }),
    ];
    let dw = 1.0 / 256.0;
    for ctrl in &schemes {
        for cell in [CellKind::OneSided, CellKind::Pair] {
            let (out, inp) = (5, 7);
            let mut m = matrix(
                out,
                inp,
                &cfg(4, 4, cell, IoConfig::ideal()),
                &constant(dw),
                ctrl,
                1.0,
                CostModel::default(),
                21,
            );
            m.program(&vec![0.0; out * inp]);
            let mut rng = Pcg64::seed_from_u64(4);
            let mut ledger = Ledger::default();
            let w0 = m.weights();
            let lr = 5.0 * dw as f32;
            let mut desired = vec![0.0f64; out * inp];
            for _ in 0..20 {
                let x = uniform(&mut rng, inp, -1.0, 1.0);
                let d = uniform(&mut rng, out, -1.0, 1.0);
                m.update(&x, &d, lr, &mut ledger, Par::Seq);
                for i in 0..out {
                    for j in 0..inp {
                        desired[i * inp + j] -= (lr * d[i] * x[j]) as f64;
                    }
                }
            }
            let what = format!("{} on {}", ctrl.name(), cell.name());
            let w = m.weights();
            assert_ne!(w, w0, "{what}: the updates moved nothing");
            // The weights moved along the desired steps (the pulses went to the right device).
            let moved: Vec<f32> = w.iter().zip(&w0).map(|(a, b)| a - b).collect();
            let dot: f64 = moved.iter().zip(&desired).map(|(a, b)| *a as f64 * b).sum();
            let cosine =
                dot / (norm(moved.iter().copied()) * norm(desired.iter().map(|v| *v as f32)));
            assert!(
                cosine > 0.5,
                "{what}: weight change against the desired step ({cosine})"
            );
            let totals = ledger.phase(Phase::Update);
            assert!(totals.pulses_up > 0, "{what}");
            for t in m.tiles() {
                let tally = t.tally();
                let n = t.rows() * t.cols();
                let ups: [u64; 2] =
                    [0, 1].map(|a| (0..n).map(|i| t.device_pulses(a, i).0 as u64).sum::<u64>());
                let downs: [u64; 2] =
                    [0, 1].map(|a| (0..n).map(|i| t.device_pulses(a, i).1 as u64).sum::<u64>());
                assert_eq!(ups[0] + ups[1], tally.up, "{what}: tally vs devices");
                assert_eq!(downs[0] + downs[1], tally.down, "{what}: tally vs devices");
                if cell == CellKind::OneSided {
                    assert_eq!(
                        tally.down, 0,
                        "{what}: depression pulses on a one-sided cell"
                    );
                    assert_eq!(downs, [0, 0], "{what}");
                    assert!(
                        ups[0] > 0 && ups[1] > 0,
                        "{what}: both G+ and G- must climb ({ups:?})"
                    );
                } else {
                    assert!(tally.up > 0 && tally.down > 0, "{what}: {tally:?}");
                    assert_eq!(tally.up, tally.down, "{what}: push-pull");
                }
            }
            if cell == CellKind::OneSided {
                assert_eq!(totals.pulses_down, 0, "{what}: ledger");
            } else {
                assert_eq!(totals.pulses_down, totals.pulses_up, "{what}: ledger");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// 6. Devices stay inside their bounds under any sequence of phases
// ---------------------------------------------------------------------------------------------------

fn vary(dist: Dist, spread: Spread) -> Variation {
    Variation { dist, spread }
}

fn noisy_spec(kind: usize) -> DeviceSpec {
    let step = |k: StepKind, f: &dyn Fn(&mut StepParams)| {
        let mut p = StepParams::new(k, 0.02);
        f(&mut p);
        DeviceSpec::new(Model::Step(p))
    };
    let mut spec = match kind {
        0 => step(StepKind::Constant, &|p| p.g_range = Some((1.0, 25.0))),
        1 => step(StepKind::SoftBounds, &|p| p.up_down = 0.2),
        2 => step(StepKind::Linear, &|p| {
            p.gamma_up = 0.5;
            p.gamma_down = 0.3;
        }),
        3 => step(StepKind::Exp, &|p| {
            p.a = 0.244;
            p.b = 0.2425;
            p.a_up = 0.00081;
            p.a_down = 0.36833;
            p.gamma_up = 12.44625;
            p.gamma_down = 12.78785;
        }),
        4 => step(StepKind::Pow, &|p| {
            p.gamma_up = 1.5;
            p.gamma_down = 0.7;
            p.levels = Some(60);
        }),
        _ => {
            let mut s = DeviceSpec::new(Model::NeuroSim(NeuroSimParams {
                levels_up: 64,
                levels_down: 48,
                nl_up: 2.4,
                nl_down: -4.88,
            }));
            s.g_min = 0.5;
            s.g_max = 30.0;
            s
        }
    };
    spec.c2c = 0.3;
    spec.read_noise = 0.01;
    spec.stuck_min = 0.03;
    spec.stuck_max = 0.03;
    spec.stuck_random = 0.03;
    let n = |s| vary(Dist::Normal, Spread::Absolute(s));
    spec.d2d = if kind == 5 {
        vec![
            (Param::NlUp, n(1.0)),
            (Param::GMin, vary(Dist::Uniform, Spread::Absolute(0.4))),
            (Param::GMax, vary(Dist::LogNormal, Spread::Relative(0.2))),
        ]
    } else {
        let mut v = vec![
            (Param::DwMin, vary(Dist::LogNormal, Spread::Relative(0.5))),
            (Param::UpDown, n(0.1)),
            (Param::WMin, n(0.1)),
            (Param::WMax, n(0.1)),
        ];
        if kind >= 2 {
            v.push((Param::GammaUp, n(0.1)));
        }
        v
    };
    spec.validate().expect("valid noisy spec");
    spec
}

fn controller(k: usize) -> ControllerSpec {
    let stochastic = PulseScheme::Stochastic {
        bl: 31,
        update_management: true,
        bl_management: true,
    };
    match k {
        0 => ControllerSpec::SgdStochastic(stochastic),
        1 => ControllerSpec::SgdCount(PulseScheme::Count { max_pulses: 25 }),
        2 => ControllerSpec::SignThreshold(PulseScheme::SignThreshold { threshold: 1.0 }),
        3 => ControllerSpec::Unidirectional(stochastic, Refresh::default()),
        4 => ControllerSpec::RelativeCount(
            PulseScheme::RelativeCount {
                max_pulses: 10,
                threshold: 0.1,
            },
            Some(Refresh {
                every: 3,
                ..Refresh::default()
            }),
        ),
        5 => ControllerSpec::TikiTaka {
            scheme: stochastic,
            transfer_every: 2,
            transfer_lr: 1.0,
            max_pulses: 10,
        },
        _ => ControllerSpec::MixedPrecision { max_pulses: 25 },
    }
}

fn cell_kind(k: usize) -> CellKind {
    [
        CellKind::Single,
        CellKind::Pair,
        CellKind::OneSided,
        CellKind::MultiArray { gamma: 0.25 },
    ][k]
}

/// Every device of every tile inside its own bounds, conductances inside their bounds, weights finite.
fn check_bounds(m: &AnalogMatrix) -> Result<(), TestCaseError> {
    for t in m.tiles() {
        for a in 0..t.cell().arrays() {
            let p = t.array(a);
            for i in 0..p.len() {
                let (lo, hi) = p.bounds(i);
                let s = p.state(i);
                prop_assert!(
                    s.is_finite() && lo <= s && s <= hi,
                    "tile {} array {a} device {i}: state {s} outside [{lo}, {hi}]",
                    t.id()
                );
                let (gl, gh) = p.conductance_bounds(i);
                let g = p.conductance(i);
                prop_assert!(
                    gl <= g && g <= gh,
                    "tile {} array {a} device {i}: conductance {g} outside [{gl}, {gh}]",
                    t.id()
                );
            }
        }
        prop_assert!(t.weights().iter().all(|w| w.is_finite()));
    }
    Ok(())
}

fn random_vector(rng: &mut Pcg64, n: usize) -> Vec<f32> {
    let scale = 10f32.powf(rng.random_range(-2.0f32..1.5));
    (0..n)
        .map(|_| {
            if rng.random_range(0..10) == 0 {
                0.0
            } else {
                rng.random_range(-scale..scale)
            }
        })
        .collect()
}

proptest! {
    #![proptest_config(props(128))]

    #[test]
    fn devices_stay_in_bounds_under_random_phases(
        device in 0usize..6,
        cell in 0usize..4,
        ctrl in 0usize..7,
        seed in any::<u64>(),
        ops in prop::collection::vec((0u8..3, -4i32..3, any::<u64>()), 1..20),
    ) {
        let (out, inp) = (9, 11);
        let io = IoConfig { w_noise: 0.02, ..IoConfig::default() };
        let mut m = matrix(
            out,
            inp,
            &cfg(8, 8, cell_kind(cell), io),
            &noisy_spec(device),
            &controller(ctrl),
            0.7,
            CostModel::default(),
            seed,
        );
        let mut rng = Pcg64::seed_from_u64(seed ^ 0x5eed);
        let init = uniform(&mut rng, out * inp, -0.7, 0.7);
        m.program(&init);
        check_bounds(&m)?;
        let mut ledger = Ledger::default();
        for (op, lr_exp, op_seed) in ops {
            let mut r = Pcg64::seed_from_u64(op_seed);
            match op {
                0 => {
                    let x = random_vector(&mut r, inp);
                    let mut y = vec![0.0; out];
                    m.forward(&x, &mut y, &mut ledger, Par::Seq);
                    prop_assert!(y.iter().all(|v| v.is_finite()), "forward {y:?}");
                }
                1 => {
                    let d = random_vector(&mut r, out);
                    let mut z = vec![0.0; inp];
                    m.backward(&d, &mut z, &mut ledger, Par::Seq);
                    prop_assert!(z.iter().all(|v| v.is_finite()), "backward {z:?}");
                }
                _ => {
                    let x = random_vector(&mut r, inp);
                    let d = random_vector(&mut r, out);
                    let lr = 10f32.powi(lr_exp);
                    m.update(&x, &d, lr, &mut ledger, Par::Seq);
                }
            }
            check_bounds(&m)?;
        }
        prop_assert!(ledger.total_energy_pj().is_finite());
    }
}

// ---------------------------------------------------------------------------------------------------
// 7. Results do not depend on the thread count
// ---------------------------------------------------------------------------------------------------

struct RunResult {
    outputs: Vec<u32>,
    weights: Vec<u32>,
    ledger: Ledger,
}

/// Where a run's tiles run.
#[derive(Debug, Clone, Copy)]
enum Exec {
    Seq,
    /// A rayon pool of this many threads.
    Rayon(usize),
    /// A team of this many threads.
    Team(usize, TeamSpread),
}

/// `batched`: single cells of a continuous constant-step device with c2c noise, whose rows take the
/// fused write loop and the tiles' noise lanes; otherwise pairs of soft-bounds devices.
fn threaded_run_of(exec: Exec, seed: u64, batched: bool) -> RunResult {
    match exec {
        Exec::Seq => run_on(Par::Seq, seed, batched),
        Exec::Rayon(threads) => {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                assert_eq!(Par::Rayon.threads(), threads);
                run_on(Par::Rayon, seed, batched)
            })
        }
        Exec::Team(threads, spread) => {
            let team = Team::with_spread(threads, spread);
            assert_eq!(team.par().threads(), threads);
            let r = run_on(team.par(), seed, batched);
            if spread == TeamSpread::Always && threads > 1 {
                // Every phase of more than one job ran spread over the team.
                assert!(team.report().spread_phases >= 45, "{:?}", team.report());
            }
            r
        }
    }
}

fn run_on(par: Par<'_>, seed: u64, batched: bool) -> RunResult {
    let (out, inp) = (40, 50);
    let mut spec = constant(0.01);
    spec.c2c = 0.3;
    let cell = if batched {
        spec.d2d = vec![(Param::DwMin, vary(Dist::Normal, Spread::Relative(0.3)))];
        CellKind::Single
    } else {
        if let Model::Step(p) = &mut spec.model {
            p.kind = StepKind::SoftBounds;
            p.up_down = 0.1;
        }
        spec.stuck_random = 0.05;
        spec.d2d = vec![
            (Param::DwMin, vary(Dist::LogNormal, Spread::Relative(0.3))),
            (Param::WMax, vary(Dist::Normal, Spread::Absolute(0.1))),
        ];
        CellKind::Pair
    };
    let mut m = matrix(
        out,
        inp,
        &cfg(16, 16, cell, IoConfig::default()),
        &spec,
        &ControllerSpec::default(),
        0.5,
        CostModel::default(),
        seed,
    );
    assert_eq!(m.tile_count(), 12);
    // The data do not depend on the seed under test: only the devices and their noise do.
    let mut rng = Pcg64::seed_from_u64(77);
    m.program(&uniform(&mut rng, out * inp, -0.4, 0.4));
    let mut ledger = Ledger::default();
    let mut outputs = Vec::new();
    for _ in 0..15 {
        let x = uniform(&mut rng, inp, -1.0, 1.0);
        let d = uniform(&mut rng, out, -0.3, 0.3);
        let mut y = vec![0.0; out];
        let mut z = vec![0.0; inp];
        m.forward(&x, &mut y, &mut ledger, par);
        m.backward(&d, &mut z, &mut ledger, par);
        m.update(&x, &d, 0.05, &mut ledger, par);
        outputs.extend(y.iter().chain(&z).map(|v| v.to_bits()));
    }
    RunResult {
        outputs,
        weights: m.weights().iter().map(|v| v.to_bits()).collect(),
        ledger,
    }
}

/// The same outputs, weights and ledger on one thread, on rayon pools of 1, 2 and 4 threads and on teams
/// of 2 and 4 (always spreading, and adapting); another seed changes them.
fn assert_thread_count_does_not_matter(batched: bool) {
    let one = threaded_run_of(Exec::Seq, 42, batched);
    for exec in [
        Exec::Rayon(1),
        Exec::Rayon(2),
        Exec::Rayon(4),
        Exec::Team(2, TeamSpread::Always),
        Exec::Team(4, TeamSpread::Always),
        Exec::Team(2, TeamSpread::Adaptive),
    ] {
        let other = threaded_run_of(exec, 42, batched);
        assert!(one.outputs == other.outputs, "outputs differ on {exec:?}");
        assert!(one.weights == other.weights, "weights differ on {exec:?}");
        assert_eq!(one.ledger, other.ledger, "ledger differs on {exec:?}");
    }
    assert!(one.ledger.phase(Phase::Update).pulses_up > 0);
    let other_seed = threaded_run_of(Exec::Team(2, TeamSpread::Always), 43, batched);
    assert!(
        one.weights != other_seed.weights,
        "a different seed gives the same weights"
    );
    assert!(one.outputs != other_seed.outputs);
}

#[test]
fn results_do_not_depend_on_thread_count() {
    assert_thread_count_does_not_matter(false);
}

#[test]
fn batched_constant_step_writes_do_not_depend_on_thread_count() {
    assert_thread_count_does_not_matter(true);
}

#[test]
fn tiles_draw_independent_devices_and_noise() {
    // Two tiles (stacked rows) holding the same block, read with the same input block.
    let io = IoConfig {
        dac_bits: None,
        adc_bits: None,
        ..IoConfig::default()
    };
    let mut spec = constant(1.0 / 256.0);
    spec.d2d = vec![(Param::WMax, vary(Dist::Normal, Spread::Absolute(0.05)))];
    let mut m = matrix(
        8,
        8,
        &cfg(4, 8, CellKind::Pair, io),
        &spec,
        &ControllerSpec::default(),
        1.0,
        CostModel::default(),
        3,
    );
    let (t0, t1) = (&m.tiles()[0], &m.tiles()[1]);
    let bounds = |t: &Tile| (0..32).map(|i| t.array(0).bounds(i)).collect::<Vec<_>>();
    assert_ne!(bounds(t0), bounds(t1), "tiles share their device draws");
    let block: Vec<f32> = (0..32).map(|k| (k % 7) as f32 * 0.1 - 0.3).collect();
    let target: Vec<f32> = block.iter().chain(&block).copied().collect();
    m.program(&target);
    let x: Vec<f32> = (0..8).map(|j| 0.9 - 0.2 * j as f32).collect();
    let mut y = vec![0.0; 8];
    let mut ledger = Ledger::default();
    let mut same = 0;
    for _ in 0..20 {
        m.forward(&x, &mut y, &mut ledger, Par::Seq);
        let w = m.weights();
        // Remove the (slightly different) programmed products; what is left is each tile's noise.
        let noise: Vec<f32> = (0..8)
            .map(|i| y[i] - (0..8).map(|j| w[i * 8 + j] * x[j]).sum::<f32>())
            .collect();
        if (0..4).all(|i| (noise[i] - noise[i + 4]).abs() < 1e-6) {
            same += 1;
        }
    }
    assert_eq!(same, 0, "tiles share their read-noise stream");
}

// ---------------------------------------------------------------------------------------------------
// 8. The ledger adds up to hand-computed costs
// ---------------------------------------------------------------------------------------------------

fn costs() -> CostModel {
    CostModel {
        clock_hz: 1e8,
        read_cycles: 7,
        adc_cycles: 5,
        adc_energy_pj: 1.75,
        outputs_per_adc: 2,
        dac_energy_pj: 0.3,
        read_voltage: 0.5,
        pulse_cycles: 3,
        pulse_energy_pj: 0.25,
    }
}

/// Constant-step devices on a 1..25 uS range (w in [-1, 1] -> G = 13 + 12 w), step 1/16: a push-pull
/// pair programmed to any multiple of the step holds u+ + u- = 1, i.e. G+ + G- = 26 uS.
fn ledger_spec() -> DeviceSpec {
    let mut p = StepParams::new(StepKind::Constant, 1.0 / 16.0);
    p.g_range = Some((1.0, 25.0));
    DeviceSpec::new(Model::Step(p))
}

fn close(a: f64, b: f64, what: &str) {
    assert!(
        (a - b).abs() <= 1e-6 * b.abs().max(1.0),
        "{what}: {a} vs {b}"
    );
}

#[test]
fn ledger_matches_hand_computed_costs_on_one_tile() {
    let ctrl = ControllerSpec::SgdCount(PulseScheme::Count { max_pulses: 4 });
    let mut m = matrix(
        2,
        3,
        &cfg(2, 3, CellKind::Pair, IoConfig::ideal()),
        &ledger_spec(),
        &ctrl,
        1.0,
        costs(),
        1,
    );
    let target = [0.25f32, -0.5, 0.0, 0.125, 0.375, -0.25];
    m.program(&target);
    assert_eq!(m.weights(), target.to_vec());
    let t = &m.tiles()[0];
    for i in 0..6 {
        let g = t.array(0).conductance(i) as f64 + t.array(1).conductance(i) as f64;
        assert!((g - 26.0).abs() < 1e-5, "cell {i}: G+ + G- = {g}");
    }
    let mut ledger = Ledger::default();
    // t_read = 7 cycles / 1e8 Hz = 7e-8 s; V^2 = 0.25; pJ per (uS x^2) = 0.25 * 7e-8 * 1e6 = 0.0175.
    let e_dev = 0.0175;

    // Forward: x^2 sums to 1.2; every column holds 2 cells of 26 uS.
    let x = [0.4f32, -1.0, 0.2];
    let mut y = [0.0f32; 2];
    m.forward(&x, &mut y, &mut ledger, Par::Seq);
    let f = ledger.phase(Phase::Forward);
    assert_eq!(f.steps, 1);
    assert_eq!(f.cycles, 7 + 5 * 2, "read + 2 serial conversions");
    assert_eq!(f.conversions, 3 + 2);
    close(
        f.energy_pj,
        3.0 * 0.3 + 2.0 * 1.75 + 52.0 * 1.2 * e_dev,
        "forward energy",
    );

    // Backward: d^2 sums to 1.36; every row holds 3 cells of 26 uS; 3 outputs share ADCs of 2.
    let d = [1.0f32, -0.6];
    let mut z = [0.0f32; 3];
    m.backward(&d, &mut z, &mut ledger, Par::Seq);
    let b = ledger.phase(Phase::Backward);
    assert_eq!(
        b.cycles,
        7 + 5 * 2,
        "outputs_per_adc caps the serial conversions"
    );
    assert_eq!(b.conversions, 2 + 3);
    close(
        b.energy_pj,
        2.0 * 0.3 + 3.0 * 1.75 + 78.0 * 1.36 * e_dev,
        "backward energy",
    );
    assert_eq!(
        ledger.phase(Phase::Forward),
        f,
        "backward leaves forward alone"
    );

    // Update, lr / dw = 5: counts round(5 |x d|) capped at 4:
    //   row 0 (d = 1):    2.0 -> 2, 5.0 -> 4 (cap), 1.0 -> 1   (row max 4)
    //   row 1 (d = -0.6): 1.2 -> 1, 3.0 -> 3,       0.6 -> 1   (row max 3)
    // 12 cell pulses, each a potentiation and a depression on the pair.
    let lr = 5.0 / 16.0;
    let r = m.update(&x, &d, lr, &mut ledger, Par::Seq);
    assert_eq!(r[0].slots, 7);
    let u = ledger.phase(Phase::Update);
    assert_eq!(u.cycles, 7 * 3);
    assert_eq!((u.pulses_up, u.pulses_down), (12, 12));
    close(u.energy_pj, 24.0 * 0.25, "update energy");
    // dW = -lr d x: row 0 falls where x > 0, row 1 rises where x > 0.
    let step = 1.0 / 16.0;
    let expect = [
        0.25 - 2.0 * step,
        -0.5 + 4.0 * step,
        0.0 - step,
        0.125 + step,
        0.375 - 3.0 * step,
        -0.25 + step,
    ];
    assert_eq!(m.weights(), expect.to_vec());

    // A second forward adds another step: latencies add.
    m.forward(&x, &mut y, &mut ledger, Par::Seq);
    assert_eq!(ledger.phase(Phase::Forward).cycles, 2 * 17);
    assert_eq!(ledger.phase(Phase::Forward).steps, 2);
    assert_eq!(ledger.total_cycles(), 2 * 17 + 17 + 21);
}

#[test]
fn ledger_takes_max_latency_and_summed_energy_over_tiles() {
    let ctrl = ControllerSpec::SgdCount(PulseScheme::Count { max_pulses: 4 });
    // 3 x 3 on 2 x 3 tiles: tile 0 has 2 rows, tile 1 has 1 row.
    let mut m = matrix(
        3,
        3,
        &cfg(2, 3, CellKind::Pair, IoConfig::ideal()),
        &ledger_spec(),
        &ctrl,
        1.0,
        costs(),
        1,
    );
    assert_eq!(m.tile_count(), 2);
    m.program(&[0.0; 9]);
    let e_dev = 0.0175;
    let mut ledger = Ledger::default();
    let x = [0.4f32, -1.0, 0.2];
    let mut y = [0.0f32; 3];
    m.forward(&x, &mut y, &mut ledger, Par::Seq);
    let f = ledger.phase(Phase::Forward);
    // Tile 0: 7 + 5 * 2 = 17 cycles; tile 1: 7 + 5 * 1 = 12 cycles.
    assert_eq!(f.cycles, 17);
    assert_eq!(f.conversions, 5 + 4);
    let e0 = 3.0 * 0.3 + 2.0 * 1.75 + 52.0 * 1.2 * e_dev;
    let e1 = 3.0 * 0.3 + 1.75 + 26.0 * 1.2 * e_dev;
    close(f.energy_pj, e0 + e1, "forward energy of two tiles");

    // Backward: both tiles have 3 outputs (2 serial); tile 0 reads 2 rows of 78 uS, tile 1 one row.
    let d = [1.0f32, -0.6, 0.55];
    let mut z = [0.0f32; 3];
    m.backward(&d, &mut z, &mut ledger, Par::Seq);
    let b = ledger.phase(Phase::Backward);
    assert_eq!(b.cycles, 17);
    let e0 = 2.0 * 0.3 + 3.0 * 1.75 + 78.0 * 1.36 * e_dev;
    let e1 = 0.3 + 3.0 * 1.75 + 78.0 * 0.3025 * e_dev;
    close(b.energy_pj, e0 + e1, "backward energy of two tiles");

    // Update: tile 0 as on one tile (7 slots, 12 cell pulses); tile 1 (d = 0.55): 1.1 -> 1,
    // 2.75 -> 3, 0.55 -> 1 (3 slots, 5 cell pulses).
    let r = m.update(&x, &d, 5.0 / 16.0, &mut ledger, Par::Seq);
    assert_eq!((r[0].slots, r[1].slots), (7, 3));
    let u = ledger.phase(Phase::Update);
    assert_eq!(u.cycles, 7 * 3, "latency of the slower tile");
    assert_eq!((u.pulses_up, u.pulses_down), (17, 17));
    close(u.energy_pj, 34.0 * 0.25, "update energy of two tiles");
    assert_eq!(u.steps, 1);
}

// ---------------------------------------------------------------------------------------------------
// 9. Bound management recovers clipped outputs
// ---------------------------------------------------------------------------------------------------

#[test]
fn bound_management_recovers_clipped_outputs() {
    let (rows, cols) = (2, 64);
    let io = IoConfig {
        out_noise: 0.0,
        ..IoConfig::default()
    };
    let c = cfg(rows, cols, CellKind::Pair, io.clone());
    let spec = constant(1.0 / 64.0);
    let mut t = Tile::new(0, &c, &spec, 8).unwrap();
    let target: Vec<f32> = (0..rows * cols)
        .map(|k| {
            if k < cols {
                0.75
            } else if k % 2 == 0 {
                0.5
            } else {
                -0.5
            }
        })
        .collect();
    t.program(&target);
    let w: Vec<f32> = t.weights().to_vec();
    let mut rng = Pcg64::seed_from_u64(12);
    let x = uniform(&mut rng, cols, 0.5, 1.0);
    let ideal: Vec<f64> = (0..rows)
        .map(|i| {
            (0..cols)
                .map(|j| w[i * cols + j] as f64 * x[j] as f64)
                .sum()
        })
        .collect();
    assert!(
        ideal[0] > 3.0 * io.out_bound as f64,
        "row 0 must clip: {ideal:?}"
    );

    let mut y = vec![0.0; rows];
    let r = t.forward(&x, &mut y);
    assert!(r.mvm.passes > 1, "bound management must retry");
    assert!(!r.mvm.clipped, "the last pass must fit");
    // Halving until the largest output (ideal / max|x|, about 38 here) fits under 12 takes 3 passes;
    // the data keep every halving at least 20% away from the bound, so quantization cannot tip it.
    let alpha = x.iter().fold(0.0f32, |a, v| a.max(v.abs())) as f64;
    let mut passes = 1;
    while ideal[0] / alpha / 2f64.powi(passes - 1) >= io.out_bound as f64 {
        let margin = ideal[0] / alpha / 2f64.powi(passes - 1) / io.out_bound as f64;
        assert!(
            !(0.8..1.2).contains(&margin),
            "too close to the bound: {margin}"
        );
        passes += 1;
    }
    assert_eq!(passes, 3);
    assert_eq!(r.mvm.passes as i32, passes);
    // Worst-case conversion error of the last pass, scaled back.
    let back = alpha * 2f64.powi(r.mvm.passes as i32 - 1);
    let (dac, adc) = (io.dac_step().unwrap() as f64, io.adc_step().unwrap() as f64);
    for i in 0..rows {
        let sum_w: f64 = w[i * cols..(i + 1) * cols]
            .iter()
            .map(|v| v.abs() as f64)
            .sum();
        let bound = back * (dac / 2.0 * sum_w + adc / 2.0) + 1e-4;
        assert!(
            (y[i] as f64 - ideal[i]).abs() <= bound,
            "row {i}: {} vs ideal {} (bound {bound})",
            y[i],
            ideal[i]
        );
    }
    let rel = (y[0] as f64 - ideal[0]).abs() / ideal[0];
    assert!(rel < 0.03, "row 0: relative error {rel}");

    // Without bound management the same read clips at out_bound (times the noise-management scale).
    let c = cfg(
        rows,
        cols,
        CellKind::Pair,
        IoConfig {
            bound_management: false,
            ..io
        },
    );
    let mut t = Tile::new(0, &c, &spec, 8).unwrap();
    t.program(&target);
    let r = t.forward(&x, &mut y);
    assert_eq!(r.mvm.passes, 1);
    assert!(r.mvm.clipped);
    assert!(
        (y[0] as f64 - 12.0 * alpha).abs() < 1e-4,
        "clipped output {}",
        y[0]
    );

    // Through a matrix, the ledger pays for every pass.
    let mut m = matrix(
        rows,
        cols,
        &c_with_bm(rows, cols),
        &spec,
        &ControllerSpec::default(),
        1.0,
        CostModel::default(),
        8,
    );
    m.program(&target);
    let mut ledger = Ledger::default();
    let mut y2 = vec![0.0; rows];
    m.forward(&x, &mut y2, &mut ledger, Par::Seq);
    let cost = CostModel::default();
    let f = ledger.phase(Phase::Forward);
    assert_eq!(f.conversions, passes as u64 * (rows + cols) as u64);
    assert_eq!(
        f.cycles,
        passes as u64 * (cost.read_cycles + cost.adc_cycles * rows as u32) as u64
    );
}

fn c_with_bm(rows: usize, cols: usize) -> TileConfig {
    cfg(
        rows,
        cols,
        CellKind::Pair,
        IoConfig {
            out_noise: 0.0,
            ..IoConfig::default()
        },
    )
}

// ---------------------------------------------------------------------------------------------------
// Device read noise enters every analog read
// ---------------------------------------------------------------------------------------------------

/// Forward and backward reads of a tile whose devices have `read_noise = r` scatter around the exact
/// product with sigma `r * c * ||x||` per output, `c` the cell's device weights in quadrature (2 for a
/// single device against its reference, sqrt 2 for a pair); the same seed gives the same reads; the
/// refresh and transfer reads see the noise too.
#[test]
fn read_noise_enters_forward_and_backward_reads() {
    let (rows, cols) = (32, 48);
    let r = 0.02f32;
    for (cell, c) in [(CellKind::Single, 2.0f64), (CellKind::Pair, 2f64.sqrt())] {
        let mut spec = constant(DW);
        spec.read_noise = r as f64;
        let cf = cfg(rows, cols, cell, IoConfig::ideal());
        let mut t = Tile::new(5, &cf, &spec, 11).unwrap();
        let mut rng = Pcg64::seed_from_u64(2);
        let target = uniform(&mut rng, rows * cols, -0.8, 0.8);
        t.program(&target);
        let w = t.weights().to_vec();
        assert!((t.read_sigma() as f64 - r as f64 * c).abs() < 1e-6);
        let (mut z_f, mut z_b) = (Vec::new(), Vec::new());
        for _ in 0..400 {
            let x = uniform(&mut rng, cols, -1.0, 1.0);
            let d = uniform(&mut rng, rows, -1.0, 1.0);
            let (mut y, mut z) = (vec![0.0; rows], vec![0.0; cols]);
            t.forward(&x, &mut y);
            t.backward(&d, &mut z);
            let (nx, nd) = (norm(x.iter().copied()), norm(d.iter().copied()));
            for i in 0..rows {
                let exact: f64 = (0..cols)
                    .map(|j| w[i * cols + j] as f64 * x[j] as f64)
                    .sum();
                z_f.push((y[i] as f64 - exact) / nx);
            }
            for j in 0..cols {
                let exact: f64 = (0..rows)
                    .map(|i| w[i * cols + j] as f64 * d[i] as f64)
                    .sum();
                z_b.push((z[j] as f64 - exact) / nd);
            }
        }
        for (what, e) in [("forward", &z_f), ("backward", &z_b)] {
            let n = e.len() as f64;
            let mean = e.iter().sum::<f64>() / n;
            let sd = (e.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
            let want = r as f64 * c;
            assert!(
                (sd - want).abs() < 0.05 * want,
                "{cell:?} {what}: sd {sd} vs {want}"
            );
            assert!(mean.abs() < 4.0 * want / n.sqrt(), "{what}: mean {mean}");
        }
        // The same tile, seed and inputs read the same noisy values; without read noise no draw is made.
        let mut a = Tile::new(5, &cf, &spec, 11).unwrap();
        let mut b = Tile::new(5, &cf, &spec, 11).unwrap();
        let x = vec![0.5; cols];
        let (mut ya, mut yb) = (vec![0.0; rows], vec![0.0; rows]);
        a.forward(&x, &mut ya);
        b.forward(&x, &mut yb);
        assert_eq!(ya, yb);
        a.forward(&x, &mut ya);
        assert_ne!(ya, yb, "every read draws afresh");
        // Reads of single devices (refresh and transfer decisions) carry the noise as well.
        let reads: Vec<f32> = (0..2000).map(|_| a.read_fraction(0, 3)).collect();
        let f = a.array(0).fraction(3);
        let sd = (reads.iter().map(|v| ((v - f) as f64).powi(2)).sum::<f64>() / 2000.0).sqrt();
        assert!(
            (sd - r as f64).abs() < 0.1 * r as f64,
            "device read sd {sd}"
        );
    }
    let clean = Tile::new(
        0,
        &cfg(4, 4, CellKind::Pair, IoConfig::ideal()),
        &constant(DW),
        1,
    )
    .unwrap();
    assert_eq!(clean.read_sigma(), 0.0);
}

/// A saturating stochastic update (`lr x_max d_max / dw > bl`) keeps x's probabilities proportional to
/// `|x|` (aihwkit's rescale of d) instead of clipping both sides: the column with half the input gets
/// half the pulses of the full one (both rows' probabilities clip at 1).
#[test]
fn saturating_updates_keep_x_proportional() {
    let c = cfg(1, 2, CellKind::Pair, IoConfig::ideal());
    let spec = constant(DW);
    let scheme = PulseScheme::Stochastic {
        bl: 31,
        update_management: true,
        bl_management: true,
    };
    let (x, d) = ([1.0f32, 0.5], [1.0f32]);
    let mut counts = [0u64; 2];
    let trials = 400;
    for seed in 0..trials {
        let mut t = Tile::new(0, &c, &spec, seed).unwrap();
        t.program(&[0.0, 0.0]);
        let before = t.weights().to_vec();
        // k = lr x_max d_max / dw = 100 > 31 slots.
        let lr = 100.0 * t.cell_step();
        aimsim_sim::update::apply_scheme(&scheme, &mut t, &x, &d, lr);
        for j in 0..2 {
            counts[j] += ((before[j] - t.weights()[j]) / t.cell_step()).round() as u64;
        }
    }
    let mean = |k: u64| k as f64 / trials as f64;
    assert!(
        (mean(counts[0]) - 31.0).abs() < 1e-9,
        "x = 1 fires in every slot"
    );
    // Binomial(31, 0.5): mean 15.5, standard error 2.78 / sqrt(400).
    assert!(
        (mean(counts[1]) - 15.5).abs() < 0.6,
        "x = 0.5: {} pulses on average",
        mean(counts[1])
    );
}

/// Write noise reaches the tile's reads (the weight cache that MVMs use) and its checkpointed state: a
/// tile restored from an exported state continues bit-identically, offsets included.
#[test]
fn write_noise_reaches_reads_and_round_trips() {
    let mut spec = constant(DW);
    spec.write_noise = 20.0;
    spec.c2c = 0.1;
    let c = cfg(4, 8, CellKind::Single, IoConfig::ideal());
    let mut t = Tile::new(2, &c, &spec, 5).unwrap();
    t.program(&[0.0; 32]);
    let scheme = PulseScheme::Count { max_pulses: 31 };
    let mut rng = Pcg64::seed_from_u64(1);
    let step = |t: &mut Tile, rng: &mut Pcg64| {
        let (x, d) = (uniform(rng, 8, -1.0, 1.0), uniform(rng, 4, -1.0, 1.0));
        aimsim_sim::update::apply_scheme(&scheme, t, &x, &d, 20.0 * t.cell_step());
    };
    for _ in 0..5 {
        step(&mut t, &mut rng);
    }
    // The weights reads see differ from the stored states by the write noise (20 dw_min in w = 2u - 1
    // units of a single device: sigma 2 * 20 dw_min / 2).
    let p = t.array(0);
    let dev: Vec<f64> = (0..32)
        .map(|i| (t.weights()[i] - (2.0 * p.fraction(i) - 1.0)) as f64)
        .collect();
    assert!(
        dev.iter().any(|v| v.abs() > 1e-6),
        "reads must see write noise"
    );
    assert!(dev.iter().all(|v| v.abs() < 8.0 * 20.0 * DW));
    let saved = t.export_state();
    assert_eq!(saved.offsets[0].len(), 32);
    let mut u = Tile::new(2, &c, &spec, 5).unwrap();
    u.import_state(&saved).unwrap();
    assert_eq!(u.weights(), t.weights());
    let mut rng2 = rng.clone();
    for _ in 0..5 {
        step(&mut t, &mut rng);
        step(&mut u, &mut rng2);
    }
    assert_eq!(t.export_state(), u.export_state());
    assert_eq!(t.weights(), u.weights());
}

// ---------------------------------------------------------------------------------------------------
// The error of outputs at the bound (`IoConfig::zero_grad_at_bound`)
// ---------------------------------------------------------------------------------------------------

/// A 4 x 24 layer on 2 x 12 tiles (a 2 x 2 grid) whose weights put row 0's partial output of the first
/// tile column at 6 (past an out_bound of 5) and every other partial output at 1.2 or less.
fn bound_layer(zero_grad: bool) -> AnalogMatrix {
    let io = IoConfig {
        out_bound: 5.0,
        zero_grad_at_bound: zero_grad,
        ..IoConfig::ideal()
    };
    let tile = TileConfig {
        rows: 2,
        cols: 12,
        cell: CellKind::Single,
        forward: io,
        backward: IoConfig::ideal(),
        zero_reference: false,
    };
    let mut m = matrix(
        4,
        24,
        &tile,
        &constant(DW),
        &ControllerSpec::default(),
        1.0,
        CostModel::default(),
        3,
    );
    let mut w = vec![0.1f32; 4 * 24];
    w[..12].iter_mut().for_each(|v| *v = 0.5);
    m.set_weights_exact(&w);
    m
}

#[test]
fn errors_of_outputs_at_the_bound_are_zeroed_only_when_asked() {
    let x = vec![1.0f32; 24];
    let d = vec![1.0f32, 0.5, -0.25, 0.75];
    let mut ledger = Ledger::default();
    let mut out = Vec::new();
    for zero_grad in [false, true] {
        let mut m = bound_layer(zero_grad);
        let w = m.weights();
        let mut y = vec![0.0; 4];
        m.forward(&x, &mut y, &mut ledger, Par::Seq);
        // Row 0: 5 (clipped) from the first tile column plus 1.2 from the second.
        assert!((y[0] - 6.2).abs() < 1e-4, "y[0] = {}", y[0]);
        let mut z = vec![0.0; 24];
        m.backward(&d, &mut z, &mut ledger, Par::Seq);
        for j in 0..24 {
            // With the rule, row 0's error does not reach the inputs of the tile whose output clipped
            // (columns 0..12); the second tile column's row 0 output (1.2) keeps its error.
            let skip0 = zero_grad && j < 12;
            let want: f32 = (0..4)
                .filter(|&i| !(skip0 && i == 0))
                .map(|i| w[i * 24 + j] * d[i])
                .sum();
            assert!(
                (z[j] - want).abs() < 1e-5,
                "zero_grad {zero_grad}: z[{j}] = {} vs {want}",
                z[j]
            );
        }
        out.push(z);
    }
    assert_ne!(out[0], out[1]);
    // Below the bound the rule changes nothing, bit for bit.
    let small = vec![0.5f32; 24];
    let mut zs = Vec::new();
    for zero_grad in [false, true] {
        let mut m = bound_layer(zero_grad);
        let (mut y, mut z) = (vec![0.0; 4], vec![0.0; 24]);
        m.forward(&small, &mut y, &mut ledger, Par::Seq);
        m.backward(&d, &mut z, &mut ledger, Par::Seq);
        zs.push(z);
    }
    assert_eq!(zs[0], zs[1]);
}

// ---------------------------------------------------------------------------------------------------
// The reference of a single device (`TileConfig::zero_reference`)
// ---------------------------------------------------------------------------------------------------

/// Soft bounds on [-0.75, 1.25] (aihwkit's ReRamSB range), single-device cells.
fn off_centre_tile(zero_reference: bool, seed: u64) -> Tile {
    let mut p = StepParams::new(StepKind::SoftBounds, DW);
    p.w_min = -0.75;
    p.w_max = 1.25;
    let spec = DeviceSpec::new(Model::Step(p));
    let cfg = TileConfig {
        zero_reference,
        ..cfg(4, 8, CellKind::Single, IoConfig::ideal())
    };
    Tile::new(0, &cfg, &spec, seed).expect("valid tile")
}

#[test]
fn a_zero_reference_reads_the_device_weight_itself() {
    for zero in [false, true] {
        let mut t = off_centre_tile(zero, 5);
        let target: Vec<f32> = (0..32).map(|k| -0.5 + k as f32 / 31.0).collect();
        t.set_weights_exact(&target);
        for (k, want) in target.iter().enumerate() {
            // Mid-range: weight 0 at device w = 0.25 and w = device w - 0.25; zero reference: w = device w.
            let dev = t.array(0).state(k);
            let read = if zero { dev } else { dev - 0.25 };
            assert!(
                (t.weights()[k] - want).abs() < 1e-6,
                "zero {zero}: weight {k}"
            );
            assert!(
                (read - want).abs() < 1e-6,
                "zero {zero}: device {k} at {dev}"
            );
        }
        // Weights cached by the write paths equal the weights computed afresh from the states, bit for bit.
        let n: Vec<i32> = (0..8i32).map(|c| c * 3 - 11).collect();
        let cols: Vec<u32> = (0..8).collect();
        for row in 0..4 {
            t.pulse_row(row, &cols, &n, Routing::Cell);
        }
        let mut fresh = off_centre_tile(zero, 5);
        fresh.import_state(&t.export_state()).unwrap();
        let bits = |w: &[f32]| w.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(t.weights()), bits(fresh.weights()), "zero {zero}");
    }
    // Without the option the weights are unchanged for a range centred on 0, and bit-identical.
    let spec = constant(DW);
    let weights = |zero_reference| {
        let c = TileConfig {
            zero_reference,
            ..cfg(2, 2, CellKind::Single, IoConfig::ideal())
        };
        let mut t = Tile::new(0, &c, &spec, 1).unwrap();
        t.set_weights_exact(&[0.3, -0.2, 0.0, 0.9]);
        t.pulse_row(0, &[0, 1], &[5, -7], Routing::Cell);
        t.weights().iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    };
    assert_eq!(weights(false), weights(true));
}

#[test]
fn batch_reads_mask_each_inputs_errors_at_the_bound() {
    // An exact periphery with a small output bound and zero_grad_at_bound: reads are deterministic,
    // so a batch of reads (all forwards, then all backwards) must give what each input's forward and
    // backward read give one after another, masks included; on 1 and 3 threads.
    let mut io = IoConfig::ideal();
    io.out_bound = 0.6;
    io.zero_grad_at_bound = true;
    let tc = cfg(4, 5, CellKind::Pair, io);
    let spec = constant(DW);
    let ctrl = ControllerSpec::default();
    let (out, inp, batch) = (7, 9, 5);
    let mut rng = Pcg64::seed_from_u64(3);
    let w = uniform(&mut rng, out * inp, -0.4, 0.4);
    let xs = uniform(&mut rng, batch * inp, 0.0, 1.0);
    let ds = uniform(&mut rng, batch * out, -1.0, 1.0);
    let team = Team::with_spread(3, TeamSpread::Always);
    let mut reference: Option<(Vec<f32>, Vec<f32>)> = None;
    for par in [Par::Seq, team.par()] {
        let mut a = matrix(out, inp, &tc, &spec, &ctrl, 1.0, CostModel::default(), 1);
        let mut b = matrix(out, inp, &tc, &spec, &ctrl, 1.0, CostModel::default(), 1);
        a.set_weights_exact(&w);
        b.set_weights_exact(&w);
        let (mut ys, mut zs) = (vec![0.0; batch * out], vec![0.0; batch * inp]);
        let (mut la, mut lb) = (Ledger::default(), Ledger::default());
        a.forward_batch(&xs, &mut ys, batch, &mut la, par);
        a.backward_batch(&ds, &mut zs, batch, &mut la, par);
        let mut masked = 0;
        for k in 0..batch {
            let (mut y, mut z) = (vec![0.0; out], vec![0.0; inp]);
            b.forward(&xs[k * inp..(k + 1) * inp], &mut y, &mut lb, Par::Seq);
            b.backward(&ds[k * out..(k + 1) * out], &mut z, &mut lb, Par::Seq);
            assert_eq!(&ys[k * out..(k + 1) * out], &y[..], "forward of input {k}");
            assert_eq!(&zs[k * inp..(k + 1) * inp], &z[..], "backward of error {k}");
            masked += y.iter().filter(|v| v.abs() >= 0.999 * 0.6).count();
        }
        assert!(
            masked > 0,
            "no output reached the bound: the masks were not exercised"
        );
        assert_eq!(la.phase(Phase::Forward), lb.phase(Phase::Forward));
        match &reference {
            None => reference = Some((ys, zs)),
            Some((y0, z0)) => assert_eq!((y0, z0), (&ys, &zs), "threads changed the reads"),
        }
    }
}
