//! Conformance suite run by every device model (in the spirit of burn's backend test macro).
//!
//! `conformance!` instantiates the same generic checks for each model — the five step models, each both
//! continuous and quantized to `levels`, plus `neurosim` and `table` — over random parameters (proptest)
//! and over fixed "noisy" and "clean" specs. Model-specific physics (level counts, closed forms, step
//! equations, measured statistics, stuck devices, validation) follows in its own modules.
//!
//! Run with `cargo test -p aimsim-devices --release`.

use aimsim_devices::curves::{ExpCurve, a_norm};
use aimsim_devices::{
    DeviceSpec, Dist, Model, NeuroSimParams, Param, Population, Spread, StepKind, StepParams, TableCurve,
    Variation,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64Mcg;

// ------------------------------------------------------------------------------------------------
// Helpers
// ------------------------------------------------------------------------------------------------

fn rng(seed: u64) -> Pcg64Mcg {
    Pcg64Mcg::seed_from_u64(seed)
}

fn pop(spec: &DeviceSpec, n: usize, seed: u64) -> Population {
    Population::new(spec, n, &mut rng(seed)).expect("spec is valid")
}

fn mean_sd(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let m = xs.iter().sum::<f64>() / n;
    let v = xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0);
    (m, v.sqrt())
}

fn assert_rel(got: f64, want: f64, rel: f64, what: &str) {
    assert!(
        (got - want).abs() <= rel * want.abs(),
        "{what}: got {got}, want {want} (rel tol {rel})"
    );
}

fn var(dist: Dist, spread: Spread) -> Variation {
    Variation { dist, spread }
}

fn step_params(kind: StepKind, dw: f64) -> StepParams {
    let mut p = StepParams::new(kind, dw);
    match kind {
        StepKind::Linear => {
            p.gamma_up = 0.3;
            p.gamma_down = 0.5;
        }
        StepKind::Exp => {
            // aihwkit ExpStepDevice defaults: the step stays positive over the whole range.
            p.a = 0.244;
            p.b = 0.2425;
            p.a_up = 0.00081;
            p.a_down = 0.36833;
            p.gamma_up = 12.44625;
            p.gamma_down = 12.78785;
        }
        StepKind::Pow => {
            p.gamma_up = 1.5;
            p.gamma_down = 0.7;
        }
        StepKind::Constant | StepKind::SoftBounds => {}
    }
    p
}

fn step_spec(kind: StepKind, dw: f64, levels: Option<u32>) -> DeviceSpec {
    let mut p = step_params(kind, dw);
    p.levels = levels;
    let mut s = DeviceSpec::new(Model::Step(p));
    s.g_min = 1.0;
    s.g_max = 21.0;
    s
}

fn neurosim_spec(levels_up: u32, levels_down: u32, nl_up: f64, nl_down: f64) -> DeviceSpec {
    let mut s = DeviceSpec::new(Model::NeuroSim(NeuroSimParams {
        levels_up,
        levels_down,
        nl_up,
        nl_down,
    }));
    s.g_min = 1.0;
    s.g_max = 10.0;
    s
}

/// A measured-looking table: saturating up sweep, convex down sweep, shared end points.
fn table_curve() -> TableCurve {
    let up: Vec<f64> = (0..40).map(|k| 2.0 + 18.0 * (1.0 - (-(k as f64) / 15.0).exp())).collect();
    let top = *up.last().unwrap();
    let down: Vec<f64> = (0..30)
        .map(|k| 2.0 + (top - 2.0) * (1.0 - (k as f64 / 29.0).powf(0.6)))
        .collect();
    TableCurve { up, down }
}

fn table_spec() -> DeviceSpec {
    DeviceSpec::new(Model::Table(table_curve()))
}

/// Adds d2d, c2c and read noise that every model understands, plus model-specific d2d.
fn noisy(mut s: DeviceSpec, c2c: f64) -> DeviceSpec {
    s.c2c = c2c;
    s.read_noise = 0.02;
    let rel = |r| var(Dist::Normal, Spread::Relative(r));
    match &s.model {
        Model::Step(p) => {
            s.d2d.push((Param::DwMin, rel(0.3)));
            s.d2d.push((Param::UpDown, var(Dist::Normal, Spread::Absolute(0.1))));
            s.d2d.push((Param::WMin, var(Dist::Uniform, Spread::Relative(0.1))));
            s.d2d.push((Param::WMax, var(Dist::LogNormal, Spread::Relative(0.1))));
            if matches!(p.kind, StepKind::Linear | StepKind::Pow | StepKind::Exp) {
                s.d2d.push((Param::GammaUp, rel(0.1)));
                s.d2d.push((Param::GammaDown, rel(0.1)));
            }
        }
        Model::NeuroSim(_) => {
            s.d2d.push((Param::NlUp, var(Dist::Normal, Spread::Absolute(0.3))));
            s.d2d.push((Param::NlDown, var(Dist::Normal, Spread::Absolute(0.3))));
            s.d2d.push((Param::GMin, rel(0.05)));
            s.d2d.push((Param::GMax, var(Dist::LogNormal, Spread::Relative(0.1))));
        }
        Model::Table(_) => {
            s.d2d.push((Param::GMin, var(Dist::Uniform, Spread::Relative(0.1))));
            s.d2d.push((Param::GMax, rel(0.1)));
        }
    }
    s.validate().expect("noisy spec is valid");
    s
}

/// Parameters a spec's model can vary (those with a nominal value).
fn variable_params(s: &DeviceSpec) -> Vec<Param> {
    Param::ALL.into_iter().filter(|p| s.nominal(*p).is_some()).collect()
}

// ------------------------------------------------------------------------------------------------
// Random specs (proptest strategies)
// ------------------------------------------------------------------------------------------------

/// Parameters shared by every model: conductance range, noise, stuck fractions, d2d draws.
#[derive(Debug, Clone)]
struct Common {
    g_min: f64,
    g_span: f64,
    c2c: f64,
    read_noise: f64,
    stuck: [f64; 3],
    /// Per parameter (Param::ALL order): whether it varies, the kind of variation, its size.
    d2d: Vec<(bool, usize, f64)>,
}

fn frac(max: f64) -> impl Strategy<Value = f64> {
    prop_oneof![2 => Just(0.0), 3 => 0.0..max]
}

prop_compose! {
    fn arb_common()(
        g_min in prop_oneof![Just(0.0), 0.0..5.0f64],
        g_span in 0.1..50.0f64,
        c2c in frac(0.5),
        read_noise in frac(0.2),
        stuck in [frac(0.3), frac(0.3), frac(0.3)],
        d2d in prop::collection::vec((any::<bool>(), 0..5usize, 0.0..0.5f64), Param::ALL.len()),
    ) -> Common {
        Common { g_min, g_span, c2c, read_noise, stuck, d2d }
    }
}

impl Common {
    fn apply(&self, model: Model) -> DeviceSpec {
        let mut s = DeviceSpec::new(model);
        if !matches!(s.model, Model::Table(_)) {
            s.g_min = self.g_min;
            s.g_max = self.g_min + self.g_span;
        }
        s.c2c = self.c2c;
        s.read_noise = self.read_noise;
        [s.stuck_min, s.stuck_max, s.stuck_random] = self.stuck;
        for p in variable_params(&s) {
            let (on, kind, size) = self.d2d[p as usize];
            if !on {
                continue;
            }
            let nominal = s.nominal(p).unwrap();
            let scale = nominal.abs().max(0.1);
            let v = match kind {
                0 => var(Dist::Normal, Spread::Absolute(size * scale)),
                1 => var(Dist::Normal, Spread::Relative(size)),
                2 if nominal != 0.0 => var(Dist::LogNormal, Spread::Relative(size)),
                2 => var(Dist::Normal, Spread::Relative(size)),
                3 => var(Dist::Uniform, Spread::Absolute(size * scale)),
                _ => var(Dist::Uniform, Spread::Relative(size)),
            };
            s.d2d.push((p, v));
        }
        s
    }
}

fn arb_step(kind: StepKind, quantized: bool) -> BoxedStrategy<DeviceSpec> {
    let gamma_max = match kind {
        StepKind::Linear => 2.0,
        StepKind::Exp => 5.0,
        StepKind::Pow => 5.0,
        _ => 0.0,
    };
    (
        (-2.0..-0.1f64, 0.1..2.0f64, 0.001..0.2f64, -0.9..0.9f64),
        (0.0..1.0f64, 0.0..1.0f64, -1.0..1.0f64, -1.0..1.0f64, 0.0..1.0f64, 0.0..1.0f64),
        2u32..64,
        arb_common(),
    )
        .prop_map(move |((w_min, w_max, dw_frac, up_down), (gu, gd, a, b, au, ad), levels, c)| {
            let mut p = StepParams::new(kind, dw_frac * (w_max - w_min));
            p.w_min = w_min;
            p.w_max = w_max;
            p.up_down = up_down;
            p.gamma_up = gu * gamma_max;
            p.gamma_down = gd * gamma_max;
            p.a = a;
            p.b = b;
            p.a_up = au;
            p.a_down = ad;
            p.levels = quantized.then_some(levels);
            c.apply(Model::Step(p))
        })
        .boxed()
}

fn arb_nl() -> impl Strategy<Value = f64> {
    prop_oneof![1 => Just(0.0), 6 => -10.0..10.0f64]
}

fn arb_neurosim() -> BoxedStrategy<DeviceSpec> {
    (2u32..200, 2u32..200, arb_nl(), arb_nl(), arb_common())
        .prop_map(|(lu, ld, nu, nd, c)| {
            c.apply(Model::NeuroSim(NeuroSimParams {
                levels_up: lu,
                levels_down: ld,
                nl_up: nu,
                nl_down: nd,
            }))
        })
        .boxed()
}

/// A random strictly monotone table: up from `base`, down from `top` (>= the up sweep's end) to
/// `base - dip` (>= 0).
fn arb_table_curve() -> impl Strategy<Value = TableCurve> {
    (
        0.0..5.0f64,
        prop::collection::vec(0.01..1.0f64, 1..40),
        prop::collection::vec(0.01..1.0f64, 1..40),
        frac(2.0),
        frac(1.0),
    )
        .prop_map(|(base, inc, dec, extra, dip)| {
            let mut up = vec![base];
            for d in inc {
                up.push(up.last().unwrap() + d);
            }
            let top = up.last().unwrap() + extra;
            let end = (base - dip).max(0.0);
            let total: f64 = dec.iter().sum();
            let mut down = vec![top];
            let mut acc = 0.0;
            for d in &dec {
                acc += d;
                down.push(top - (top - end) * acc / total);
            }
            TableCurve { up, down }
        })
}

fn arb_table() -> BoxedStrategy<DeviceSpec> {
    (arb_table_curve(), arb_common())
        .prop_map(|(t, c)| c.apply(Model::Table(t)))
        .boxed()
}

// ------------------------------------------------------------------------------------------------
// Generic checks
// ------------------------------------------------------------------------------------------------

const N_DEV: usize = 12;

#[derive(Debug, Clone)]
enum Op {
    Pulse(usize, i32),
    All(i32),
    ResetMin(usize),
    ResetMax(usize),
    Read(usize),
}

fn arb_ops() -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        6 => (0..N_DEV, -3i32..=3).prop_map(|(i, n)| Op::Pulse(i, n)),
        3 => (0..N_DEV, -200i32..=200).prop_map(|(i, n)| Op::Pulse(i, n)),
        2 => (-200i32..=200).prop_map(Op::All),
        1 => (0..N_DEV).prop_map(Op::ResetMin),
        1 => (0..N_DEV).prop_map(Op::ResetMax),
        1 => (0..N_DEV).prop_map(Op::Read),
    ];
    prop::collection::vec(op, 1..120)
}

fn check_device(p: &Population, i: usize, stuck_at: &[Option<f32>]) -> Result<(), TestCaseError> {
    let s = p.state(i);
    let (lo, hi) = p.bounds(i);
    let g = p.conductance(i);
    let (glo, ghi) = p.conductance_bounds(i);
    prop_assert!(lo.is_finite() && hi.is_finite() && lo < hi, "device {i}: bounds [{lo}, {hi}]");
    prop_assert!(s.is_finite() && lo <= s && s <= hi, "device {i}: state {s} outside [{lo}, {hi}]");
    prop_assert!(glo < ghi, "device {i}: conductance bounds [{glo}, {ghi}]");
    prop_assert!(g.is_finite() && glo <= g && g <= ghi, "device {i}: G {g} outside [{glo}, {ghi}]");
    if let Some(v) = stuck_at[i] {
        prop_assert!(s.to_bits() == v.to_bits(), "stuck device {i} moved from {v} to {s}");
    }
    Ok(())
}

/// Property 1: states and conductances stay inside each device's own bounds, never NaN, whatever the
/// pulses; stuck devices never move.
fn check_bounds(spec: &DeviceSpec, ops: &[Op], seed: u64) -> Result<(), TestCaseError> {
    prop_assert!(spec.validate().is_ok(), "strategy made an invalid spec: {:?}", spec.validate());
    let mut r = rng(seed);
    let mut p = Population::new(spec, N_DEV, &mut r).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let stuck_at: Vec<Option<f32>> = (0..N_DEV).map(|i| p.is_stuck(i).then(|| p.state(i))).collect();
    for i in 0..N_DEV {
        check_device(&p, i, &stuck_at)?;
    }
    for op in ops {
        match *op {
            Op::Pulse(i, n) => {
                p.pulse(i, n, &mut r);
                check_device(&p, i, &stuck_at)?;
            }
            Op::All(n) => {
                for i in 0..N_DEV {
                    p.pulse(i, n, &mut r);
                    check_device(&p, i, &stuck_at)?;
                }
            }
            Op::ResetMin(i) => {
                p.reset_to_min(i);
                check_device(&p, i, &stuck_at)?;
                if stuck_at[i].is_none() {
                    prop_assert_eq!(p.state(i), p.bounds(i).0);
                }
            }
            Op::ResetMax(i) => {
                p.reset_to_max(i);
                check_device(&p, i, &stuck_at)?;
                if stuck_at[i].is_none() {
                    prop_assert_eq!(p.state(i), p.bounds(i).1);
                }
            }
            Op::Read(i) => {
                let before = p.state(i);
                let g = p.read(i, &mut r);
                prop_assert!(g.is_finite(), "read of device {i} gave {g}");
                prop_assert!(p.state(i).to_bits() == before.to_bits(), "a read disturbed device {i}");
            }
        }
    }
    Ok(())
}

/// Property 2a: the population mean of G after k up pulses from the minimum is non-decreasing in k, and
/// after k down pulses from the maximum non-increasing, within 4 standard errors of the paired
/// per-pulse change.
fn check_mean_monotone(spec: &DeviceSpec) {
    let n = 4000;
    let mut p = pop(spec, n, 11);
    let mut r = rng(12);
    let k_max = (spec.full_sweep_pulses() as usize * 3 / 2).max(20);
    let g = |p: &Population| (0..n).map(|i| p.conductance(i) as f64).collect::<Vec<_>>();
    for dir in [1i32, -1] {
        for i in 0..n {
            if dir > 0 {
                p.reset_to_min(i)
            } else {
                p.reset_to_max(i)
            }
        }
        let start = mean_sd(&g(&p)).0;
        let mut prev = g(&p);
        for k in 1..=k_max {
            for i in 0..n {
                p.pulse(i, dir, &mut r);
            }
            let cur = g(&p);
            let diff: Vec<f64> = cur.iter().zip(&prev).map(|(c, q)| dir as f64 * (c - q)).collect();
            let (m, sd) = mean_sd(&diff);
            let tol = 4.0 * sd / (n as f64).sqrt() + 1e-6 * (spec.g_max - spec.g_min);
            assert!(
                m >= -tol,
                "{}: dir {dir}, pulse {k}: mean G moved against the pulses by {m} (tol {tol})",
                spec.model.name()
            );
            prev = cur;
        }
        // And it actually moved a good part of the range.
        let end = mean_sd(&prev).0;
        assert!(
            dir as f64 * (end - start) > 0.3 * (spec.g_max - spec.g_min),
            "{}: dir {dir}: mean G went from {start} to {end} only",
            spec.model.name()
        );
    }
}

/// Property 2b: without noise every single device is exactly monotone (each device of a population with
/// d2d but no c2c too), and it crosses most of its range.
fn check_device_monotone(spec: &DeviceSpec) {
    let n = 64;
    let mut p = pop(spec, n, 5);
    let mut r = rng(6);
    let k_max = (spec.full_sweep_pulses() as usize * 3 / 2).max(20);
    for i in 0..n {
        let (glo, ghi) = p.conductance_bounds(i);
        for dir in [1i32, -1] {
            if dir > 0 {
                p.reset_to_min(i)
            } else {
                p.reset_to_max(i)
            }
            let start = p.conductance(i);
            let mut prev = start;
            for k in 1..=k_max {
                p.pulse(i, dir, &mut r);
                let g = p.conductance(i);
                assert!(
                    dir as f32 * (g - prev) >= 0.0,
                    "{} device {i} dir {dir} pulse {k}: {prev} -> {g}",
                    spec.model.name()
                );
                prev = g;
            }
            assert!(
                dir as f32 * (prev - start) > 0.3 * (ghi - glo),
                "{} device {i} dir {dir}: only moved {start} -> {prev}",
                spec.model.name()
            );
        }
    }
}

/// Random sequence of pulses and resets on a population built from `seed`; returns states and reads.
fn run_sequence(spec: &DeviceSpec, seed: u64) -> (Vec<u32>, Vec<u32>) {
    let n = 50;
    let mut r = rng(seed);
    let mut p = Population::new(spec, n, &mut r).unwrap();
    let mut ops = rng(999); // the sequence itself is fixed
    let mut reads = Vec::new();
    for _ in 0..2000 {
        let i = ops.random_range(0..n);
        match ops.random_range(0..10) {
            0 => p.reset_to_min(i),
            1 => p.reset_to_max(i),
            2 => reads.push(p.read(i, &mut r).to_bits()),
            _ => p.pulse(i, ops.random_range(-30..=30), &mut r),
        }
    }
    (p.states().iter().map(|s| s.to_bits()).collect(), reads)
}

/// Property 4: same seed, bit-identical; different seed, different (noise is on).
fn check_determinism(spec: &DeviceSpec) {
    let a = run_sequence(spec, 42);
    let b = run_sequence(spec, 42);
    assert_eq!(a, b, "{}: same seed gave different results", spec.model.name());
    let c = run_sequence(spec, 43);
    assert_ne!(a.0, c.0, "{}: a different seed gave identical states", spec.model.name());
    assert_ne!(a.1, c.1, "{}: a different seed gave identical reads", spec.model.name());
}

/// Read noise: std of repeated reads of one device = read_noise (g_max - g_min), mean = G, and reads do
/// not disturb the device.
fn check_read_noise(spec: &DeviceSpec) {
    let mut s = spec.clone();
    s.read_noise = 0.05;
    s.c2c = 0.0;
    let mut p = pop(&s, 1, 1);
    let mut r = rng(2);
    p.pulse(0, (s.full_sweep_pulses() / 2) as i32, &mut r);
    let g = p.conductance(0) as f64;
    let reads: Vec<f64> = (0..100_000).map(|_| p.read(0, &mut r) as f64).collect();
    let (m, sd) = mean_sd(&reads);
    let want = 0.05 * (s.g_max - s.g_min);
    assert_rel(sd, want, 0.05, &format!("{}: read-noise std", s.model.name()));
    assert!((m - g).abs() < 5.0 * want / (reads.len() as f64).sqrt() + 1e-6 * g.abs());
    assert_eq!(p.conductance(0) as f64, g);
}

/// Property 3: levels. Conductance models: a full noise-free sweep visits exactly `levels` distinct
/// conductances (up from the minimum: levels_up, down from the maximum: levels_down). Quantized step
/// models: every state stays on the grid `lo + k (hi - lo)/(L - 1)` and a long random walk visits all L
/// states. Continuous step models: nothing to check.
fn check_levels(spec: &DeviceSpec) {
    match &spec.model {
        Model::Step(s) => {
            if let Some(l) = s.levels {
                check_step_grid(spec, l);
            }
        }
        _ => {
            let (lu, ld) = match &spec.model {
                Model::NeuroSim(n) => (n.levels_up, n.levels_down),
                Model::Table(t) => (t.up.len() as u32, t.down.len() as u32),
                Model::Step(_) => unreachable!(),
            };
            let (up, down) = sweep_level_counts(spec);
            assert_eq!(up, lu as usize, "{}: distinct G on the up sweep", spec.model.name());
            assert_eq!(down, ld as usize, "{}: distinct G on the down sweep", spec.model.name());
        }
    }
}

/// Distinct conductances visited by a noise-free device on a full up sweep from the minimum and a full
/// down sweep from the maximum (twice as many pulses as levels, so saturation is included).
fn sweep_level_counts(spec: &DeviceSpec) -> (usize, usize) {
    let mut p = pop(spec, 1, 0);
    let mut r = rng(0);
    let pulses = 2 * spec.full_sweep_pulses() + 5;
    let mut count = |p: &mut Population, dir: i32| {
        let mut seen = vec![p.conductance(0).to_bits()];
        for _ in 0..pulses {
            p.pulse(0, dir, &mut r);
            seen.push(p.conductance(0).to_bits());
        }
        seen.sort_unstable();
        seen.dedup();
        seen.len()
    };
    p.reset_to_min(0);
    let up = count(&mut p, 1);
    p.reset_to_max(0);
    let down = count(&mut p, -1);
    (up, down)
}

fn check_step_grid(spec: &DeviceSpec, levels: u32) {
    let n = 8;
    let mut p = pop(spec, n, 3);
    let mut r = rng(4);
    let mut seen: Vec<Vec<u32>> = vec![Vec::new(); n];
    let on_grid = |p: &Population, i: usize| -> u32 {
        let (lo, hi) = p.bounds(i);
        let s = p.state(i);
        let q = (s - lo) as f64 / ((hi - lo) as f64 / (levels - 1) as f64);
        let k = q.round();
        assert!(
            (q - k).abs() < 1e-4 && (0.0..=(levels - 1) as f64).contains(&k),
            "{} device {i}: state {s} is off the {levels}-level grid of [{lo}, {hi}] (index {q})",
            spec.model.name()
        );
        k as u32
    };
    for step in 0..6000 {
        // Long biased excursions so that both ends are reached, with single and lumped pulses.
        let dir = if (step / 300) % 2 == 0 { 1 } else { -1 };
        for i in 0..n {
            let m = if r.random_bool(0.7) { 1 } else { r.random_range(1..=20) };
            let sign = if r.random_bool(0.8) { dir } else { -dir };
            p.pulse(i, sign * m, &mut r);
            seen[i].push(on_grid(&p, i));
        }
    }
    for (i, s) in seen.iter_mut().enumerate() {
        s.sort_unstable();
        s.dedup();
        assert_eq!(s.len(), levels as usize, "{} device {i}: visited {:?}", spec.model.name(), s);
    }
}

// ------------------------------------------------------------------------------------------------
// The conformance macro: one module of tests per model variant
// ------------------------------------------------------------------------------------------------

macro_rules! conformance {
    ($($name:ident { arb: $arb:expr, clean: $clean:expr, c2c: $c2c:expr $(,)? })*) => {$(
        mod $name {
            use super::*;

            fn clean() -> DeviceSpec {
                $clean
            }

            fn noisy_spec() -> DeviceSpec {
                noisy(clean(), $c2c)
            }

            proptest! {
                #![proptest_config(ProptestConfig {
                    cases: 64,
                    failure_persistence: None,
                    ..ProptestConfig::default()
                })]
                #[test]
                fn bounds_hold_under_random_pulses(spec in $arb, ops in arb_ops(), seed in any::<u64>()) {
                    check_bounds(&spec, &ops, seed)?;
                }
            }

            #[test]
            fn mean_response_is_monotone_with_d2d_and_c2c() {
                check_mean_monotone(&noisy_spec());
            }

            #[test]
            fn noise_free_devices_are_exactly_monotone() {
                check_device_monotone(&clean());
                let mut d2d_only = noisy_spec();
                d2d_only.c2c = 0.0;
                check_device_monotone(&d2d_only);
            }

            #[test]
            fn deterministic_per_seed() {
                check_determinism(&noisy_spec());
            }

            #[test]
            fn read_noise_has_the_requested_std() {
                check_read_noise(&clean());
            }

            #[test]
            fn levels() {
                check_levels(&clean());
            }
        }
    )*};
}

conformance! {
    constant_step {
        arb: arb_step(StepKind::Constant, false),
        clean: step_spec(StepKind::Constant, 0.02, None),
        c2c: 0.1,
    }
    constant_step_quantized {
        arb: arb_step(StepKind::Constant, true),
        clean: step_spec(StepKind::Constant, 0.05, Some(17)),
        c2c: 0.1,
    }
    linear_step {
        arb: arb_step(StepKind::Linear, false),
        clean: step_spec(StepKind::Linear, 0.02, None),
        c2c: 0.1,
    }
    linear_step_quantized {
        arb: arb_step(StepKind::Linear, true),
        clean: step_spec(StepKind::Linear, 0.05, Some(12)),
        c2c: 0.1,
    }
    soft_bounds {
        arb: arb_step(StepKind::SoftBounds, false),
        clean: step_spec(StepKind::SoftBounds, 0.02, None),
        c2c: 0.1,
    }
    soft_bounds_quantized {
        arb: arb_step(StepKind::SoftBounds, true),
        clean: step_spec(StepKind::SoftBounds, 0.1, Some(9)),
        c2c: 0.1,
    }
    exp_step {
        arb: arb_step(StepKind::Exp, false),
        clean: step_spec(StepKind::Exp, 0.02, None),
        c2c: 0.1,
    }
    exp_step_quantized {
        arb: arb_step(StepKind::Exp, true),
        clean: step_spec(StepKind::Exp, 0.05, Some(16)),
        c2c: 0.1,
    }
    pow_step {
        arb: arb_step(StepKind::Pow, false),
        clean: step_spec(StepKind::Pow, 0.02, None),
        c2c: 0.1,
    }
    pow_step_quantized {
        arb: arb_step(StepKind::Pow, true),
        clean: step_spec(StepKind::Pow, 0.05, Some(10)),
        c2c: 0.1,
    }
    neurosim {
        arb: arb_neurosim(),
        clean: neurosim_spec(97, 100, 2.4, -4.88),
        c2c: 0.01,
    }
    table {
        arb: arb_table(),
        clean: table_spec(),
        c2c: 0.01,
    }
}
