//! Conformance suite run by every device model (in the spirit of burn's backend test macro).
//!
//! `conformance!` instantiates the same generic checks for each model — the five step models, each both
//! continuous and quantized to `levels`, plus `neurosim` and `table` — over random parameters (proptest)
//! and over fixed "noisy" and "clean" specs. Model-specific physics (level counts, closed forms, step
//! equations, measured statistics, stuck devices, validation) follows in its own modules.
//!
//! Run with `cargo test -p aimsim-devices --release`.

use aimsim_devices::curves::{ExpCurve, a_norm};
use aimsim_devices::lanes::NormalLanes;
use aimsim_devices::{
    DeviceSpec, Dist, Model, NeuroSimParams, Param, Population, Spread, StepKind, StepParams,
    TableCurve, Variation,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use rand::{Rng, RngExt, SeedableRng};
use rand_pcg::Pcg64Mcg;

#[path = "support/props.rs"]
mod support;
use support::props;

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
    p.g_range = Some((1.0, 21.0));
    DeviceSpec::new(Model::Step(p))
}

/// Width of the range that `conductance()` reports in: `g_max - g_min` (uS), or for step models the
/// mapped conductance range, or the nominal weight range when they report in weight units.
fn g_span(s: &DeviceSpec) -> f64 {
    match &s.model {
        Model::Step(p) => p.g_range.map_or(p.w_max - p.w_min, |(a, b)| b - a),
        _ => s.g_max - s.g_min,
    }
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
    let up: Vec<f64> = (0..40)
        .map(|k| 2.0 + 18.0 * (1.0 - (-(k as f64) / 15.0).exp()))
        .collect();
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
            s.d2d
                .push((Param::UpDown, var(Dist::Normal, Spread::Absolute(0.1))));
            s.d2d
                .push((Param::WMin, var(Dist::Uniform, Spread::Relative(0.1))));
            s.d2d
                .push((Param::WMax, var(Dist::LogNormal, Spread::Relative(0.1))));
            if matches!(p.kind, StepKind::Linear | StepKind::Pow | StepKind::Exp) {
                s.d2d.push((Param::GammaUp, rel(0.1)));
                s.d2d.push((Param::GammaDown, rel(0.1)));
            }
        }
        Model::NeuroSim(_) => {
            s.d2d
                .push((Param::NlUp, var(Dist::Normal, Spread::Absolute(0.3))));
            s.d2d
                .push((Param::NlDown, var(Dist::Normal, Spread::Absolute(0.3))));
            s.d2d.push((Param::GMin, rel(0.05)));
            s.d2d
                .push((Param::GMax, var(Dist::LogNormal, Spread::Relative(0.1))));
        }
        Model::Table(_) => {
            s.d2d
                .push((Param::GMin, var(Dist::Uniform, Spread::Relative(0.1))));
            s.d2d.push((Param::GMax, rel(0.1)));
        }
    }
    s.validate().expect("noisy spec is valid");
    s
}

/// Parameters a spec's model can vary (those with a nominal value).
fn variable_params(s: &DeviceSpec) -> Vec<Param> {
    Param::ALL
        .into_iter()
        .filter(|p| s.nominal(*p).is_some())
        .collect()
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
    /// Step models: report in uS (with `g_range`) rather than weight units.
    g_units: bool,
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
        g_units in any::<bool>(),
        d2d in prop::collection::vec((any::<bool>(), 0..5usize, 0.0..0.5f64), Param::ALL.len()),
    ) -> Common {
        Common { g_min, g_span, c2c, read_noise, stuck, g_units, d2d }
    }
}

impl Common {
    fn apply(&self, mut model: Model) -> DeviceSpec {
        if let Model::Step(p) = &mut model {
            p.g_range = self
                .g_units
                .then_some((self.g_min, self.g_min + self.g_span));
        }
        let mut s = DeviceSpec::new(model);
        if matches!(s.model, Model::NeuroSim(_)) {
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
        (
            0.0..1.0f64,
            0.0..1.0f64,
            -1.0..1.0f64,
            -1.0..1.0f64,
            0.0..1.0f64,
            0.0..1.0f64,
        ),
        2u32..64,
        arb_common(),
    )
        .prop_map(
            move |((w_min, w_max, dw_frac, up_down), (gu, gd, a, b, au, ad), levels, c)| {
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
            },
        )
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
                down.push((top - (top - end) * acc / total).max(end));
            }
            *down.last_mut().unwrap() = end;
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
    prop_assert!(
        lo.is_finite() && hi.is_finite() && lo < hi,
        "device {i}: bounds [{lo}, {hi}]"
    );
    prop_assert!(
        s.is_finite() && lo <= s && s <= hi,
        "device {i}: state {s} outside [{lo}, {hi}]"
    );
    prop_assert!(glo < ghi, "device {i}: conductance bounds [{glo}, {ghi}]");
    prop_assert!(
        g.is_finite() && glo <= g && g <= ghi,
        "device {i}: G {g} outside [{glo}, {ghi}]"
    );
    if let Some(v) = stuck_at[i] {
        prop_assert!(
            s.to_bits() == v.to_bits(),
            "stuck device {i} moved from {v} to {s}"
        );
    }
    Ok(())
}

/// Property 1b: [`Population::pulse_many`] is exactly a sequence of single writes: of
/// [`Population::pulse`] calls (the same random draws, the generators end in the same state), or, for the
/// batched constant-step model, of [`Population::pulse_with_normals`] calls fed with one bulk fill of the
/// lanes in write order. The states agree bit for bit and the reported changes are the state differences.
fn check_batch(spec: &DeviceSpec, writes: &[(usize, i32)], seed: u64) -> Result<(), TestCaseError> {
    let mut r = rng(seed);
    let mut a =
        Population::new(spec, N_DEV, &mut r).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let mut b = a.clone();
    let (mut ra, mut rb) = (rng(seed ^ 1), rng(seed ^ 1));
    let mut lanes_b = NormalLanes::from_rng(&mut rng(seed ^ 2));
    let mut lanes_a = lanes_b.clone();
    let batched = a.batched_noise();
    let total: usize = writes.iter().map(|(_, n)| n.unsigned_abs() as usize).sum();
    let mut z = vec![0.0f32; total];
    if batched {
        lanes_a.fill(&mut z);
    }
    let before: Vec<f32> = (0..N_DEV).map(|i| a.state(i)).collect();
    let mut want = Vec::with_capacity(writes.len());
    let mut next = 0;
    for (i, n) in writes {
        let s = a.state(*i);
        if batched {
            let m = n.unsigned_abs() as usize;
            a.pulse_with_normals(*i, *n, &z[next..next + m]);
            next += m;
        } else {
            a.pulse(*i, *n, &mut ra);
        }
        want.push(a.state(*i) - s);
    }
    let idx: Vec<u32> = writes.iter().map(|(i, _)| *i as u32).collect();
    let n: Vec<i32> = writes.iter().map(|(_, n)| *n).collect();
    let mut delta = vec![f32::NAN; writes.len()];
    b.pulse_many(&idx, &n, &mut rb, &mut lanes_b, &mut Vec::new(), &mut delta);
    for (i, from) in before.iter().enumerate() {
        prop_assert!(
            a.state(i).to_bits() == b.state(i).to_bits(),
            "device {i}: sequential {} vs batch {} (from {from})",
            a.state(i),
            b.state(i),
        );
    }
    for (k, (w, d)) in want.iter().zip(&delta).enumerate() {
        prop_assert!(
            w.to_bits() == d.to_bits(),
            "write {k}: change {w} vs reported {d}"
        );
    }
    prop_assert_eq!(ra.next_u64(), rb.next_u64(), "random streams diverged");
    prop_assert_eq!(lanes_a, lanes_b, "noise lanes diverged");
    Ok(())
}

/// Property 1: states and conductances stay inside each device's own bounds, never NaN, whatever the
/// pulses; stuck devices never move.
fn check_bounds(spec: &DeviceSpec, ops: &[Op], seed: u64) -> Result<(), TestCaseError> {
    prop_assert!(
        spec.validate().is_ok(),
        "strategy made an invalid spec: {:?}",
        spec.validate()
    );
    let mut r = rng(seed);
    let mut p =
        Population::new(spec, N_DEV, &mut r).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let stuck_at: Vec<Option<f32>> = (0..N_DEV)
        .map(|i| p.is_stuck(i).then(|| p.state(i)))
        .collect();
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
                prop_assert!(
                    p.state(i).to_bits() == before.to_bits(),
                    "a read disturbed device {i}"
                );
            }
        }
    }
    Ok(())
}

/// Pulses that certainly cross most of the range of every device of a spec (with d2d on the step size).
fn sweep_len(spec: &DeviceSpec) -> usize {
    match &spec.model {
        Model::Step(s) => (6.0 * (s.w_max - s.w_min) / s.dw_min).ceil() as usize,
        _ => 2 * spec.full_sweep_pulses() as usize,
    }
}

/// Property 2a: the population mean of G after k up pulses from the minimum is non-decreasing in k, and
/// after k down pulses from the maximum non-increasing, within 4 standard errors of the paired
/// per-pulse change.
fn check_mean_monotone(spec: &DeviceSpec) {
    let n = 4000;
    let mut p = pop(spec, n, 11);
    let mut r = rng(12);
    let k_max = sweep_len(spec);
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
            let diff: Vec<f64> = cur
                .iter()
                .zip(&prev)
                .map(|(c, q)| dir as f64 * (c - q))
                .collect();
            let (m, sd) = mean_sd(&diff);
            let tol = 4.0 * sd / (n as f64).sqrt() + 1e-6 * g_span(spec);
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
            dir as f64 * (end - start) > 0.3 * g_span(spec),
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
    let k_max = sweep_len(spec);
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
    assert_eq!(
        a,
        b,
        "{}: same seed gave different results",
        spec.model.name()
    );
    let c = run_sequence(spec, 43);
    assert_ne!(
        a.0,
        c.0,
        "{}: a different seed gave identical states",
        spec.model.name()
    );
    assert_ne!(
        a.1,
        c.1,
        "{}: a different seed gave identical reads",
        spec.model.name()
    );
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
    let want = 0.05 * g_span(&s);
    assert_rel(
        sd,
        want,
        0.05,
        &format!("{}: read-noise std", s.model.name()),
    );
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
            assert_eq!(
                up,
                lu as usize,
                "{}: distinct G on the up sweep",
                spec.model.name()
            );
            assert_eq!(
                down,
                ld as usize,
                "{}: distinct G on the down sweep",
                spec.model.name()
            );
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
        for (i, seen) in seen.iter_mut().enumerate() {
            let m = if r.random_bool(0.7) {
                1
            } else {
                r.random_range(1..=20)
            };
            let sign = if r.random_bool(0.8) { dir } else { -dir };
            p.pulse(i, sign * m, &mut r);
            seen.push(on_grid(&p, i));
        }
    }
    for (i, s) in seen.iter_mut().enumerate() {
        s.sort_unstable();
        s.dedup();
        assert_eq!(
            s.len(),
            levels as usize,
            "{} device {i}: visited {:?}",
            spec.model.name(),
            s
        );
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
                #![proptest_config(props(64))]
                #[test]
                fn bounds_hold_under_random_pulses(spec in $arb, ops in arb_ops(), seed in any::<u64>()) {
                    check_bounds(&spec, &ops, seed)?;
                }

                #[test]
                fn batch_writes_equal_sequential_writes(
                    spec in $arb,
                    writes in proptest::collection::vec((0..N_DEV, -40i32..=40), 0..200),
                    seed in any::<u64>(),
                ) {
                    check_batch(&spec, &writes, seed)?;
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

// ------------------------------------------------------------------------------------------------
// Levels of the conductance models over random parameters
// ------------------------------------------------------------------------------------------------

mod levels {
    use super::*;

    proptest! {
        #![proptest_config(props(64))]

        /// A full noise-free sweep of a neurosim device visits exactly levels_up (up from the minimum) and
        /// levels_down (down from the maximum) distinct conductances, for moderate nonlinearities.
        #[test]
        fn neurosim_sweeps_visit_every_level(
            lu in 2u32..300, ld in 2u32..300, nu in -5.0..5.0f64, nd in -5.0..5.0f64,
            g0 in 0.0..5.0f64, span in 0.5..100.0f64,
        ) {
            let mut s = neurosim_spec(lu, ld, nu, nd);
            s.g_min = g0;
            s.g_max = g0 + span;
            prop_assert_eq!(sweep_level_counts(&s), (lu as usize, ld as usize));
        }

        /// Same for random measured tables: up.len() and down.len() distinct conductances.
        #[test]
        fn table_sweeps_visit_every_point(t in arb_table_curve()) {
            let (lu, ld) = (t.up.len(), t.down.len());
            let s = DeviceSpec::new(Model::Table(t));
            prop_assert_eq!(sweep_level_counts(&s), (lu, ld));
        }
    }

    /// A strongly nonlinear curve whose last levels lie closer together than the f32 rounding of the
    /// stored conductance resolves in pulse units (found by the property above): the sweep still stops
    /// on the top level instead of stepping once more onto the bound.
    #[test]
    fn flat_curve_ends_keep_their_levels() {
        let mut s = neurosim_spec(290, 2, 4.871119777414347, 0.0);
        s.g_min = 4.384101513713274;
        s.g_max = s.g_min + 1.5446916332262004;
        assert_eq!(sweep_level_counts(&s), (290, 2));
    }

    /// Noise-free table sweeps pass through the measured points themselves.
    #[test]
    fn table_sweeps_hit_the_measured_points() {
        let t = table_curve();
        let mut p = pop(&DeviceSpec::new(Model::Table(t.clone())), 1, 0);
        let mut r = rng(0);
        for (k, g) in t.up.iter().enumerate().skip(1) {
            p.pulse(0, 1, &mut r);
            assert_rel(p.conductance(0) as f64, *g, 1e-6, &format!("up point {k}"));
        }
        p.reset_to_max(0);
        for (k, g) in t.down.iter().enumerate().skip(1) {
            p.pulse(0, -1, &mut r);
            assert_rel(
                p.conductance(0) as f64,
                *g,
                1e-6,
                &format!("down point {k}"),
            );
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Statistics over >= 100k draws
// ------------------------------------------------------------------------------------------------

mod statistics {
    use super::*;

    const N: usize = 200_000;

    fn draws(v: Variation, nominal: f64) -> Vec<f64> {
        let mut r = rng(7);
        (0..N).map(|_| v.sample(nominal, &mut r)).collect()
    }

    /// Standard error of a mean of N draws with std `sd`.
    fn se(sd: f64) -> f64 {
        sd / (N as f64).sqrt()
    }

    #[test]
    fn normal_sigma_and_cv() {
        let x = draws(var(Dist::Normal, Spread::Absolute(0.3)), 2.0);
        let (m, sd) = mean_sd(&x);
        assert_rel(sd, 0.3, 0.05, "normal sigma");
        assert!((m - 2.0).abs() < 5.0 * se(0.3), "normal mean {m}");
        // cv is relative to |nominal|.
        let x = draws(var(Dist::Normal, Spread::Relative(0.2)), -3.0);
        let (m, sd) = mean_sd(&x);
        assert_rel(sd, 0.6, 0.05, "normal cv");
        assert!((m + 3.0).abs() < 5.0 * se(0.6), "normal cv mean {m}");
    }

    #[test]
    fn lognormal_cv_preserves_the_mean_and_sign() {
        for nominal in [2.0, -0.5] {
            let x = draws(var(Dist::LogNormal, Spread::Relative(0.3)), nominal);
            let (m, sd) = mean_sd(&x);
            let want = 0.3 * f64::abs(nominal);
            assert_rel(sd, want, 0.05, "lognormal cv");
            assert!(
                (m - nominal).abs() < 5.0 * se(want),
                "lognormal mean {m} vs {nominal}"
            );
            assert!(
                x.iter().all(|v| v.signum() == nominal.signum()),
                "lognormal flipped a sign"
            );
            // Skewed: the median lies below the mean in magnitude.
            let mut a: Vec<f64> = x.iter().map(|v| v.abs()).collect();
            a.sort_by(f64::total_cmp);
            assert!(
                a[N / 2] < 0.99 * nominal.abs(),
                "lognormal median {} not below mean",
                a[N / 2]
            );
        }
        // An absolute sigma on a log-normal is its std.
        let (m, sd) = mean_sd(&draws(var(Dist::LogNormal, Spread::Absolute(0.5)), 4.0));
        assert_rel(sd, 0.5, 0.05, "lognormal sigma");
        assert!((m - 4.0).abs() < 5.0 * se(0.5));
    }

    #[test]
    fn uniform_half_width() {
        let x = draws(var(Dist::Uniform, Spread::Absolute(0.5)), 1.0);
        let (m, sd) = mean_sd(&x);
        assert_rel(sd, 0.5 / 3f64.sqrt(), 0.05, "uniform std");
        assert!((m - 1.0).abs() < 5.0 * se(0.3));
        assert!(x.iter().all(|v| (0.5..=1.5).contains(v)));
        let lo = x.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        assert!(
            lo < 0.501 && hi > 1.499,
            "uniform does not fill its support: [{lo}, {hi}]"
        );
        let x = draws(var(Dist::Uniform, Spread::Relative(0.2)), -2.0);
        assert_rel(mean_sd(&x).1, 0.4 / 3f64.sqrt(), 0.05, "uniform rel std");
    }

    #[test]
    fn zero_spread_returns_the_nominal() {
        for d in [Dist::Normal, Dist::LogNormal, Dist::Uniform] {
            assert_eq!(
                var(d, Spread::Absolute(0.0)).sample(1.25, &mut rng(0)),
                1.25
            );
            assert_eq!(
                var(d, Spread::Relative(0.0)).sample(-0.5, &mut rng(0)),
                -0.5
            );
        }
    }

    /// constant-step, d2d cv 0.2 on dw_min: the first-pulse step over many devices has std/mean 0.2.
    #[test]
    fn constant_step_d2d_on_dw_min() {
        let mut p = StepParams::new(StepKind::Constant, 0.01);
        p.w_min = 0.0;
        let mut s = DeviceSpec::new(Model::Step(p));
        s.d2d
            .push((Param::DwMin, var(Dist::Normal, Spread::Relative(0.2))));
        let mut pop = pop(&s, N, 1);
        let mut r = rng(2);
        let steps: Vec<f64> = (0..N)
            .map(|i| {
                pop.pulse(i, 1, &mut r);
                pop.state(i) as f64
            })
            .collect();
        let (m, sd) = mean_sd(&steps);
        assert_rel(m, 0.01, 0.01, "mean first step");
        assert_rel(sd / m, 0.2, 0.05, "d2d cv of the step");
    }

    /// The up/down asymmetry varies per device (aihwkit `r = s_ud xi`): dw_up - dw_down = 2 r dw_min.
    #[test]
    fn step_d2d_on_up_down() {
        let mut p = StepParams::new(StepKind::Constant, 0.01);
        p.up_down = 0.1;
        let mut s = DeviceSpec::new(Model::Step(p));
        s.d2d
            .push((Param::UpDown, var(Dist::Normal, Spread::Absolute(0.05))));
        let n = 100_000;
        let mut pop = pop(&s, n, 1);
        let mut r = rng(2);
        let (mut up, mut down) = (Vec::new(), Vec::new());
        for i in 0..n {
            pop.pulse(i, 50, &mut r);
            let w = pop.state(i) as f64;
            pop.pulse(i, 1, &mut r);
            up.push(pop.state(i) as f64 - w);
            let w = pop.state(i) as f64;
            pop.pulse(i, -1, &mut r);
            down.push(w - pop.state(i) as f64);
        }
        let (mu, su) = mean_sd(&up);
        let (md, sd) = mean_sd(&down);
        // up_down 0.1 > 0: dw_up = dw_min, dw_down = 0.9 dw_min on average.
        assert_rel(mu, 0.01, 0.01, "mean dw_up");
        assert_rel(md, 0.009, 0.01, "mean dw_down");
        assert_rel(su, 0.05 * 0.01, 0.05, "std dw_up");
        assert_rel(sd, 0.05 * 0.01, 0.05, "std dw_down");
        let diff: Vec<f64> = up.iter().zip(&down).map(|(u, d)| u - d).collect();
        assert_rel(
            mean_sd(&diff).1,
            2.0 * 0.05 * 0.01,
            0.05,
            "std of dw_up - dw_down",
        );
    }

    /// neurosim, d2d on g_max: the spread of the devices' upper conductance bounds.
    #[test]
    fn neurosim_d2d_on_g_max() {
        let mut s = neurosim_spec(64, 64, 1.0, -1.0);
        s.d2d
            .push((Param::GMax, var(Dist::Normal, Spread::Absolute(0.5))));
        s.d2d
            .push((Param::GMin, var(Dist::Uniform, Spread::Absolute(0.3))));
        let p = pop(&s, N, 3);
        let his: Vec<f64> = (0..N).map(|i| p.conductance_bounds(i).1 as f64).collect();
        let los: Vec<f64> = (0..N).map(|i| p.conductance_bounds(i).0 as f64).collect();
        let (m, sd) = mean_sd(&his);
        assert_rel(sd, 0.5, 0.05, "d2d std of g_max");
        assert!((m - 10.0).abs() < 5.0 * se(0.5), "mean g_max {m}");
        assert_rel(mean_sd(&los).1, 0.3 / 3f64.sqrt(), 0.05, "d2d std of g_min");
        // Every device starts at its own minimum.
        assert!((0..N).all(|i| p.conductance(i) == p.conductance_bounds(i).0));
    }

    /// neurosim, d2d on nl_up: devices with a stronger label rise faster at the first pulse.
    #[test]
    fn neurosim_d2d_on_nl_up_changes_the_curve() {
        let mut s = neurosim_spec(97, 97, 2.4, -2.4);
        s.d2d
            .push((Param::NlUp, var(Dist::Normal, Spread::Absolute(0.5))));
        let n = 20_000;
        let mut p = pop(&s, n, 3);
        let mut r = rng(1);
        let g1: Vec<f64> = (0..n)
            .map(|i| {
                p.pulse(i, 1, &mut r);
                p.conductance(i) as f64
            })
            .collect();
        // First step of the nominal curve, and its sensitivity to NL, give the expected spread to first
        // order: dG1/dNL * 0.5.
        let first = |nl: f64| 9.0 * ExpCurve::new(97, nl).u(1.0);
        let slope = (first(2.41) - first(2.39)) / 0.02;
        let (m, sd) = mean_sd(&g1);
        assert!(
            (m - 1.0 - first(2.4)).abs() < 0.02 * first(2.4),
            "mean first step {}",
            m - 1.0
        );
        assert_rel(
            sd,
            slope * 0.5,
            0.1,
            "spread of the first step from d2d on nl_up",
        );
    }

    /// constant-step c2c: the relative size of a single step has std c2c.
    #[test]
    fn constant_step_c2c() {
        let mut s = DeviceSpec::new(Model::Step(StepParams::new(StepKind::Constant, 0.01)));
        s.c2c = 0.3;
        let n = 100_000;
        let mut p = pop(&s, n, 1);
        let mut r = rng(2);
        let rel: Vec<f64> = (0..n)
            .map(|i| {
                p.pulse(i, 100, &mut r); // mid-range, far from both bounds
                let w = p.state(i) as f64;
                p.pulse(i, if i % 2 == 0 { 1 } else { -1 }, &mut r);
                (p.state(i) as f64 - w).abs() / 0.01
            })
            .collect();
        // |1 + c2c xi| = 1 + c2c xi here (c2c xi > -1 with overwhelming probability).
        let (m, sd) = mean_sd(&rel);
        assert_rel(m, 1.0, 0.01, "mean relative step");
        assert_rel(sd, 0.3, 0.05, "c2c std of the relative step");

        // The noise is relative to the step: soft-bounds at mid-range, step / (dw (1 - w/b_max)).
        let mut s = DeviceSpec::new(Model::Step(StepParams::new(StepKind::SoftBounds, 0.01)));
        s.c2c = 0.3;
        let mut p = pop(&s, n, 1);
        let rel: Vec<f64> = (0..n)
            .map(|i| {
                p.pulse(i, 120, &mut r); // w about 0.4
                let w = p.state(i) as f64;
                p.pulse(i, 1, &mut r);
                (p.state(i) as f64 - w) / (0.01 * (1.0 - w))
            })
            .collect();
        let (m, sd) = mean_sd(&rel);
        assert_rel(m, 1.0, 0.01, "soft-bounds mean relative step");
        assert_rel(sd, 0.3, 0.05, "soft-bounds c2c std of the relative step");
    }

    /// neurosim c2c: from a mid-range level, the deviation from the noise-free write is
    /// N(0, c2c (g_max - g_min) sqrt(n)) for a write of n pulses.
    #[test]
    fn neurosim_c2c_scales_with_sqrt_pulses() {
        let (levels, nl_up, nl_down, c2c) = (97, 2.4, -4.88, 0.01);
        let mut s = neurosim_spec(levels, levels, nl_up, nl_down);
        s.c2c = c2c;
        let range = s.g_max - s.g_min;
        let (up, down) = (ExpCurve::new(levels, nl_up), ExpCurve::new(levels, nl_down));
        for n in [1i32, 16, -1, -16] {
            let mut p = pop(&s, N / 2, 1);
            let mut r = rng(2);
            let dev: Vec<f64> = (0..N / 2)
                .map(|i| {
                    // Reach a mid-range level with a noisy lumped write from the minimum.
                    p.pulse(i, 30, &mut r);
                    let g0 = p.conductance(i) as f64;
                    let u0 = (g0 - s.g_min) / range;
                    let c = if n > 0 { up } else { down };
                    let pos = c.p(u0);
                    let clean = s.g_min + range * c.u((pos + n as f64).clamp(0.0, c.pmax));
                    p.pulse(i, n, &mut r);
                    (p.conductance(i) as f64 - clean) / range
                })
                .collect();
            let (m, sd) = mean_sd(&dev);
            let want = c2c * f64::from(n.unsigned_abs()).sqrt();
            assert_rel(
                sd,
                want,
                0.05,
                &format!("c2c std after a write of {n} pulses"),
            );
            assert!(
                m.abs() < 5.0 * want / ((N / 2) as f64).sqrt(),
                "c2c bias {m} after {n} pulses"
            );
        }
    }

    /// Read noise over 100k reads: std = read_noise (g_max - g_min), for a step model with a
    /// conductance range, one in weight units, and neurosim.
    #[test]
    fn read_noise() {
        let mut step = StepParams::new(StepKind::SoftBounds, 0.01);
        step.g_range = Some((2.0, 12.0));
        let mut weight_units = StepParams::new(StepKind::Linear, 0.01);
        weight_units.w_min = -0.5;
        for (mut s, want) in [
            (DeviceSpec::new(Model::Step(step)), 0.1 * 10.0),
            (DeviceSpec::new(Model::Step(weight_units)), 0.1 * 1.5),
            (neurosim_spec(32, 32, 1.0, 1.0), 0.1 * 9.0),
        ] {
            s.read_noise = 0.1;
            let mut p = pop(&s, 1, 0);
            let mut r = rng(1);
            p.pulse(0, 10, &mut r);
            let reads: Vec<f64> = (0..N).map(|_| p.read(0, &mut r) as f64).collect();
            let (m, sd) = mean_sd(&reads);
            assert_rel(sd, want, 0.05, &format!("{}: read noise", s.model.name()));
            assert!((m - p.conductance(0) as f64).abs() < 5.0 * se(want));
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Golden checks against closed forms
// ------------------------------------------------------------------------------------------------

mod golden {
    use super::*;

    #[test]
    fn a_norm_check_values() {
        assert!(
            (a_norm(2.4) - 0.499).abs() <= 0.001,
            "a_norm(2.4) = {}",
            a_norm(2.4)
        );
        assert!(
            (a_norm(4.88) - 0.200).abs() <= 0.001,
            "a_norm(4.88) = {}",
            a_norm(4.88)
        );
        assert!(
            (a_norm(-4.88) + 0.200).abs() <= 0.001,
            "a_norm(-4.88) = {}",
            a_norm(-4.88)
        );
    }

    fn closed_form(p: f64, pmax: f64, a: f64) -> f64 {
        1.0 + 9.0 * (1.0 - (-p / a).exp()) / (1.0 - (-pmax / a).exp())
    }

    /// Ag:a-Si-like neurosim device (97/100 levels, NL 2.4/-4.88, G in [1, 10] uS, no noise): both sweeps
    /// follow G(P) = g_min + (g_max - g_min)(1 - exp(-P/A))/(1 - exp(-Pmax/A)), A = a_norm(NL) Pmax, the
    /// down sweep at P = Pmax - k after k pulses.
    #[test]
    fn neurosim_sweeps_follow_the_closed_form() {
        for levels_down in [97u32, 100] {
            let s = neurosim_spec(97, levels_down, 2.4, -4.88);
            let mut p = pop(&s, 1, 0);
            let mut r = rng(0);
            let a_up = a_norm(2.4) * 96.0;
            for k in 0..=96 {
                let want = closed_form(k as f64, 96.0, a_up);
                assert_rel(
                    p.conductance(0) as f64,
                    want,
                    1e-4,
                    &format!("up sweep P = {k}"),
                );
                p.pulse(0, 1, &mut r);
            }
            assert_eq!(p.conductance(0), 10.0, "saturates at g_max");
            p.reset_to_max(0);
            let pmax = f64::from(levels_down - 1);
            let a_down = a_norm(-4.88) * pmax;
            for k in 0..=levels_down - 1 {
                let want = closed_form(pmax - k as f64, pmax, a_down);
                assert_rel(
                    p.conductance(0) as f64,
                    want,
                    1e-4,
                    &format!("down sweep k = {k}"),
                );
                p.pulse(0, -1, &mut r);
            }
            assert_eq!(p.conductance(0), 1.0, "saturates at g_min");
        }
    }

    /// A lumped write of n pulses lands where n single pulses do, and a mixed up/down sequence moves along
    /// the curves (position recovered from the conductance).
    #[test]
    fn neurosim_lumped_write_equals_single_pulses() {
        let s = neurosim_spec(97, 100, 2.4, -4.88);
        let mut a = pop(&s, 1, 0);
        let mut b = pop(&s, 1, 0);
        let mut r = rng(0);
        a.pulse(0, 37, &mut r);
        for _ in 0..37 {
            b.pulse(0, 1, &mut r);
        }
        assert_rel(
            a.conductance(0) as f64,
            closed_form(37.0, 96.0, a_norm(2.4) * 96.0),
            1e-5,
            "lumped",
        );
        assert_rel(
            a.conductance(0) as f64,
            b.conductance(0) as f64,
            1e-5,
            "lumped vs single",
        );
        // Down 10 from there: the down curve at (its position of that G) - 10.
        let down = ExpCurve::new(100, -4.88);
        let u0 = (a.conductance(0) as f64 - 1.0) / 9.0;
        let want = 1.0 + 9.0 * down.u(down.p(u0) - 10.0);
        a.pulse(0, -10, &mut r);
        assert_rel(a.conductance(0) as f64, want, 1e-4, "down from the middle");
    }

    /// The NeuroSim curve stays finite up to the validated limit |NL| = 10 (both signs, any levels).
    #[test]
    fn neurosim_extreme_labels_stay_finite() {
        for nl in [-10.0, -9.999, -9.9, 9.9, 10.0] {
            for levels in [2u32, 5, 97, 1000] {
                let c = ExpCurve::new(levels, nl);
                for k in 0..levels {
                    let u = c.u(k as f64);
                    assert!(
                        u.is_finite() && (0.0..=1.0).contains(&u),
                        "NL {nl}, levels {levels}: u({k}) = {u}"
                    );
                    let q = c.p(u);
                    assert!(q.is_finite(), "NL {nl}: p(u({k})) = {q}");
                }
                let mut s = neurosim_spec(levels, levels, nl, nl);
                s.g_min = 0.0;
                let mut p = pop(&s, 1, 0);
                let mut r = rng(0);
                for n in [1, 3, -2, 50, -100, 7] {
                    p.pulse(0, n, &mut r);
                    let g = p.conductance(0);
                    assert!(
                        g.is_finite() && (0.0..=10.0).contains(&g),
                        "NL {nl} levels {levels}: G = {g}"
                    );
                }
            }
        }
    }

    /// soft-bounds without noise. The recursion is w_{n+1} = w_n + dw (1 - w_n / b_max). We test both
    /// (a) the general law from the minimum, w_n = b_max - (b_max - w_0)(1 - dw/b_max)^n, with w_0 = w_min,
    /// and (b) the closed form from 0, w_n = b_max (1 - (1 - dw/b_max)^n), reaching w = 0 exactly with
    /// one pulse from w_min = -0.25 with dw = 0.2 (-0.25 + 0.2 (1 + 0.25) = 0, exact in f32).
    #[test]
    fn soft_bounds_closed_form() {
        let s = DeviceSpec::new(Model::Step(StepParams::new(StepKind::SoftBounds, 0.01)));
        let mut p = pop(&s, 1, 0);
        let mut r = rng(0);
        for n in 0..=600 {
            let want = 1.0 - 2.0 * (1.0f64 - 0.01).powi(n);
            assert!(
                (p.state(0) as f64 - want).abs() < 2e-5,
                "n {n}: {} vs {want}",
                p.state(0)
            );
            p.pulse(0, 1, &mut r);
        }
        // Down from the maximum, mirrored: w_n = b_min - (b_min - w_0)(1 - dw/|b_min|)^n.
        p.reset_to_max(0);
        for n in 0..=600 {
            let want = -1.0 + 2.0 * (1.0f64 - 0.01).powi(n);
            assert!(
                (p.state(0) as f64 - want).abs() < 2e-5,
                "down n {n}: {} vs {want}",
                p.state(0)
            );
            p.pulse(0, -1, &mut r);
        }

        let mut sp = StepParams::new(StepKind::SoftBounds, 0.2);
        sp.w_min = -0.25;
        let mut p = pop(&DeviceSpec::new(Model::Step(sp)), 1, 0);
        p.pulse(0, 1, &mut r);
        assert_eq!(p.state(0), 0.0, "one pulse from -0.25 reaches 0");
        for n in 0..=60 {
            let want = 1.0 - (1.0f64 - 0.2).powi(n);
            assert!(
                (p.state(0) as f64 - want).abs() < 1e-6,
                "from 0, n {n}: {} vs {want}",
                p.state(0)
            );
            p.pulse(0, 1, &mut r);
        }
    }

    /// Single-step sizes of linear-, exp- and pow-step against physics.md section 1, at several states, up
    /// and down, with an up/down asymmetry.
    #[test]
    fn step_sizes_follow_their_equations() {
        let dw = 0.02f64;
        for kind in [
            StepKind::Linear,
            StepKind::Exp,
            StepKind::Pow,
            StepKind::Constant,
            StepKind::SoftBounds,
        ] {
            let mut sp = step_params(kind, dw);
            sp.up_down = 0.25;
            sp.w_min = -0.8;
            sp.w_max = 1.2;
            // Device-to-device bounds: soft-bounds, exp- and pow-step refer to each device's own bounds,
            // linear-step to the nominal ones.
            let mut spec = DeviceSpec::new(Model::Step(sp.clone()));
            let u = var(Dist::Uniform, Spread::Relative(0.2));
            spec.d2d = vec![(Param::WMin, u), (Param::WMax, u)];
            let devices = 6;
            let mut p = pop(&spec, devices, 0);
            let moved = (0..devices)
                .filter(|i| (p.bounds(*i).1 as f64 - sp.w_max).abs() > 0.02)
                .count();
            assert!(moved >= 3, "d2d on the bounds did not move them");
            let (dw_up, dw_down) = (dw, dw * 0.75); // up_down > 0 shrinks the down step
            let mut r = rng(0);
            let mut steps = [Vec::new(), Vec::new()];
            for (i, k) in (0..devices).flat_map(|i| [0, 13, 40, 77, 95].map(|k| (i, k))) {
                let (b_min, b_max) = (p.bounds(i).0 as f64, p.bounds(i).1 as f64);
                let range = b_max - b_min;
                for dir in [1i32, -1] {
                    p.reset_to_min(i);
                    p.pulse(i, k, &mut r);
                    let w = p.state(i) as f64;
                    p.pulse(i, dir, &mut r);
                    let got = p.state(i) as f64 - w;
                    let shape = match kind {
                        StepKind::Constant => 1.0,
                        StepKind::Linear if dir > 0 => 1.0 - sp.gamma_up * w / sp.w_max,
                        StepKind::Linear => 1.0 - sp.gamma_down * w / sp.w_min,
                        StepKind::SoftBounds if dir > 0 => 1.0 - w / b_max,
                        StepKind::SoftBounds => 1.0 - w / b_min,
                        StepKind::Exp => {
                            let z = 2.0 * sp.a * w / range + sp.b;
                            if dir > 0 {
                                (1.0 - sp.a_up * (sp.gamma_up * z).exp()).max(0.0)
                            } else {
                                (1.0 - sp.a_down * (-sp.gamma_down * z).exp()).max(0.0)
                            }
                        }
                        StepKind::Pow if dir > 0 => {
                            ((b_max - w) / range).max(0.0).powf(sp.gamma_up)
                        }
                        StepKind::Pow => ((w - b_min) / range).max(0.0).powf(sp.gamma_down),
                    };
                    let raw = if dir > 0 {
                        dw_up * shape
                    } else {
                        -dw_down * shape
                    };
                    let want = (w + raw).clamp(b_min, b_max) - w;
                    assert!(
                        (got - want).abs() < 1e-6,
                        "{} at w = {w}, dir {dir}: step {got}, equation {want}",
                        kind.name()
                    );
                    if b_min < w + raw && w + raw < b_max {
                        steps[(dir > 0) as usize].push(got); // not clipped
                    }
                }
            }
            // The shape matters: the states are far enough apart for the step size to change.
            for s in &steps {
                let max = s.iter().copied().fold(f64::MIN, f64::max);
                let min = s.iter().copied().fold(f64::MAX, f64::min);
                let shaped = kind != StepKind::Constant;
                assert!(
                    (max - min > 1e-4) == shaped,
                    "{}: the step varied by {} over the states",
                    kind.name(),
                    max - min
                );
            }
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Stuck devices
// ------------------------------------------------------------------------------------------------

mod stuck {
    use super::*;

    fn check_fractions(base: DeviceSpec) {
        let n = 100_000;
        let mut s = base;
        (s.stuck_min, s.stuck_max, s.stuck_random) = (0.05, 0.1, 0.02);
        let mut p = pop(&s, n, 9);
        let mut r = rng(10);
        let (mut at_min, mut at_max, mut random, mut rand_pos) =
            (0usize, 0usize, 0usize, Vec::new());
        let mut frozen = Vec::new();
        for i in 0..n {
            let (lo, hi) = p.bounds(i);
            if !p.is_stuck(i) {
                assert_eq!(p.state(i), lo, "healthy devices start at their minimum");
                continue;
            }
            frozen.push((i, p.state(i)));
            match p.state(i) {
                x if x == lo => at_min += 1,
                x if x == hi => at_max += 1,
                x => {
                    random += 1;
                    rand_pos.push(((x - lo) / (hi - lo)) as f64);
                }
            }
        }
        for (count, f, what) in [
            (at_min, 0.05, "stuck_min"),
            (at_max, 0.1, "stuck_max"),
            (random, 0.02, "stuck_random"),
        ] {
            let sd = (n as f64 * f * (1.0 - f)).sqrt();
            assert!(
                (count as f64 - n as f64 * f).abs() < 5.0 * sd,
                "{}: {what}: {count} of {n} devices, want {}",
                s.model.name(),
                n as f64 * f
            );
        }
        // Stuck-at-random positions are uniform over the range.
        let (m, sd) = mean_sd(&rand_pos);
        assert!(
            (m - 0.5).abs() < 0.03 && (sd - (1.0 / 12f64).sqrt()).abs() < 0.03,
            "stuck_random {m} {sd}"
        );
        // Stuck devices ignore pulses and resets; healthy ones do move.
        for i in 0..n {
            p.pulse(i, 40, &mut r);
            p.pulse(i, -2, &mut r);
            if i % 3 == 0 {
                p.reset_to_max(i);
            }
            if i % 5 == 0 {
                p.reset_to_min(i);
                p.pulse(i, 1, &mut r);
            }
        }
        for (i, v) in frozen {
            assert_eq!(p.state(i).to_bits(), v.to_bits(), "stuck device {i} moved");
        }
        let moved = (0..n)
            .filter(|i| !p.is_stuck(*i) && p.state(*i) != p.bounds(*i).0)
            .count();
        assert!(
            moved as f64 > 0.8 * 0.83 * n as f64,
            "only {moved} healthy devices moved"
        );
    }

    #[test]
    fn fractions_are_realised_and_stuck_devices_never_move() {
        let mut noisy_step = step_spec(StepKind::SoftBounds, 0.05, None);
        noisy_step.c2c = 0.2;
        let mut noisy_ns = neurosim_spec(50, 50, 3.68, -6.76);
        noisy_ns.c2c = 0.01;
        noisy_ns
            .d2d
            .push((Param::GMax, var(Dist::Normal, Spread::Relative(0.1))));
        for s in [
            noisy_step,
            step_spec(StepKind::Pow, 0.05, Some(8)),
            noisy_ns,
            table_spec(),
        ] {
            check_fractions(s);
        }
    }

    #[test]
    fn everything_stuck() {
        let mut s = neurosim_spec(10, 10, 1.0, 1.0);
        s.stuck_max = 1.0;
        let mut p = pop(&s, 100, 0);
        let mut r = rng(0);
        for i in 0..100 {
            assert!(p.is_stuck(i));
            p.pulse(i, -9, &mut r);
            p.reset_to_min(i);
            assert_eq!(p.conductance(i), 10.0);
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Validation: every physically impossible input is rejected, naming the offending key
// ------------------------------------------------------------------------------------------------

mod validation {
    use super::*;

    fn rejects(s: DeviceSpec, key: &str) {
        let e = s
            .validate()
            .expect_err(&format!("accepted a spec with a bad `{key}`: {s:?}"));
        assert_eq!(e.key, key, "wrong key for: {}", e.message);
        assert!(!e.message.is_empty());
        let e2 =
            Population::new(&s, 3, &mut rng(0)).expect_err("Population::new must validate too");
        assert_eq!(e2.key, key);
    }

    fn step() -> DeviceSpec {
        step_spec(StepKind::Linear, 0.01, None)
    }

    fn ns() -> DeviceSpec {
        neurosim_spec(97, 100, 2.4, -4.88)
    }

    fn with<T>(mut x: T, f: impl FnOnce(&mut T)) -> T {
        f(&mut x);
        x
    }

    fn step_with(f: impl FnOnce(&mut StepParams)) -> DeviceSpec {
        with(step(), |s| {
            if let Model::Step(p) = &mut s.model {
                f(p)
            }
        })
    }

    fn ns_with(f: impl FnOnce(&mut NeuroSimParams)) -> DeviceSpec {
        with(ns(), |s| {
            if let Model::NeuroSim(p) = &mut s.model {
                f(p)
            }
        })
    }

    #[test]
    fn the_reference_specs_are_valid() {
        for s in [
            step(),
            ns(),
            table_spec(),
            noisy(step(), 0.1),
            noisy(ns(), 0.01),
            noisy(table_spec(), 0.01),
        ] {
            s.validate().unwrap();
        }
    }

    #[test]
    fn conductance_range() {
        rejects(with(ns(), |s| s.g_min = s.g_max), "g_min");
        rejects(with(ns(), |s| s.g_min = 11.0), "g_min");
        rejects(with(ns(), |s| s.g_min = -1.0), "g_min");
        rejects(with(ns(), |s| s.g_max = f64::NAN), "g_max");
        rejects(step_with(|p| p.g_range = Some((5.0, 5.0))), "g_min");
        rejects(step_with(|p| p.g_range = Some((-1.0, 5.0))), "g_min");
        rejects(with(table_spec(), |s| s.g_max = s.g_min - 1.0), "g_min");
    }

    #[test]
    fn levels() {
        rejects(step_with(|p| p.levels = Some(1)), "levels");
        rejects(step_with(|p| p.levels = Some(0)), "levels");
        rejects(ns_with(|p| p.levels_up = 1), "levels");
        rejects(ns_with(|p| p.levels_down = 0), "levels_down");
        step_with(|p| p.levels = Some(2)).validate().unwrap();
    }

    #[test]
    fn negative_noise() {
        rejects(with(step(), |s| s.c2c = -0.01), "c2c");
        rejects(with(ns(), |s| s.read_noise = -0.1), "read_noise");
        rejects(with(ns(), |s| s.c2c = f64::INFINITY), "c2c");
        let bad = |dist, spread| with(step(), |s| s.d2d.push((Param::DwMin, var(dist, spread))));
        rejects(
            bad(Dist::Normal, Spread::Absolute(-0.1)),
            "d2d.dw_min.sigma",
        );
        rejects(
            bad(Dist::LogNormal, Spread::Relative(-0.1)),
            "d2d.dw_min.cv",
        );
        rejects(
            bad(Dist::Uniform, Spread::Absolute(-0.1)),
            "d2d.dw_min.half_width",
        );
        rejects(
            bad(Dist::Uniform, Spread::Relative(f64::NAN)),
            "d2d.dw_min.rel_half_width",
        );
    }

    #[test]
    fn stuck_fractions() {
        rejects(with(ns(), |s| s.stuck_min = -0.1), "stuck_min");
        rejects(with(ns(), |s| s.stuck_max = 1.5), "stuck_max");
        rejects(with(ns(), |s| s.stuck_random = f64::NAN), "stuck_random");
        rejects(
            with(ns(), |s| {
                (s.stuck_min, s.stuck_max, s.stuck_random) = (0.5, 0.4, 0.2)
            }),
            "stuck_min",
        );
        with(ns(), |s| {
            (s.stuck_min, s.stuck_max, s.stuck_random) = (0.5, 0.3, 0.2)
        })
        .validate()
        .unwrap();
    }

    #[test]
    fn table_must_be_monotone() {
        let t = |up: Vec<f64>, down: Vec<f64>| {
            let mut s = DeviceSpec::new(Model::Table(TableCurve { up, down }));
            (s.g_min, s.g_max) = (0.0, 10.0);
            s
        };
        rejects(t(vec![1.0, 2.0, 2.0, 3.0], vec![3.0, 1.0]), "table.up");
        rejects(t(vec![1.0, 3.0, 2.0], vec![3.0, 1.0]), "table.up");
        rejects(t(vec![1.0, 3.0], vec![3.0, 2.0, 2.5]), "table.down");
        rejects(t(vec![1.0], vec![3.0, 1.0]), "table.up");
        rejects(t(vec![-1.0, 3.0], vec![3.0, 1.0]), "table.up");
        t(vec![1.0, 3.0], vec![3.0, 1.0]).validate().unwrap();
    }

    #[test]
    fn nonlinearity_label_limit() {
        rejects(ns_with(|p| p.nl_up = 10.01), "nl_up");
        rejects(ns_with(|p| p.nl_down = -12.0), "nl_down");
        rejects(ns_with(|p| p.nl_down = f64::NAN), "nl_down");
        ns_with(|p| p.nl_up = 10.0).validate().unwrap();
        ns_with(|p| p.nl_down = -10.0).validate().unwrap();
    }

    #[test]
    fn lognormal_needs_a_nonzero_nominal() {
        // up_down's nominal is 0 by default.
        let ln = var(Dist::LogNormal, Spread::Relative(0.1));
        rejects(
            with(step(), |s| s.d2d.push((Param::UpDown, ln))),
            "d2d.up_down",
        );
        rejects(
            with(step(), |s| {
                s.d2d
                    .push((Param::UpDown, var(Dist::LogNormal, Spread::Absolute(0.1))))
            }),
            "d2d.up_down",
        );
        rejects(
            with(ns_with(|p| p.nl_up = 0.0), |s| {
                s.d2d.push((Param::NlUp, ln))
            }),
            "d2d.nl_up",
        );
        with(step(), |s| {
            s.d2d
                .push((Param::UpDown, var(Dist::Normal, Spread::Absolute(0.1))))
        })
        .validate()
        .unwrap();
    }

    #[test]
    fn d2d_on_a_parameter_the_model_lacks() {
        let v = var(Dist::Normal, Spread::Relative(0.1));
        let d2d = |s: DeviceSpec, p: Param| with(s, |s| s.d2d.push((p, v)));
        rejects(d2d(step(), Param::NlUp), "d2d.nl_up");
        rejects(
            d2d(step_spec(StepKind::Constant, 0.01, None), Param::GammaUp),
            "d2d.gamma_up",
        );
        rejects(
            d2d(
                step_spec(StepKind::SoftBounds, 0.01, None),
                Param::GammaDown,
            ),
            "d2d.gamma_down",
        );
        rejects(d2d(step(), Param::A), "d2d.a");
        rejects(
            d2d(step_spec(StepKind::Pow, 0.01, None), Param::AUp),
            "d2d.a_up",
        );
        rejects(d2d(step(), Param::GMax), "d2d.g_max");
        rejects(d2d(ns(), Param::DwMin), "d2d.dw_min");
        rejects(d2d(ns(), Param::GammaUp), "d2d.gamma_up");
        rejects(d2d(table_spec(), Param::NlUp), "d2d.nl_up");
        rejects(d2d(table_spec(), Param::WMax), "d2d.w_max");
        // What each model does have is accepted.
        for p in [Param::NlUp, Param::NlDown, Param::GMin, Param::GMax] {
            d2d(ns(), p).validate().unwrap();
        }
        for p in [
            Param::A,
            Param::B,
            Param::AUp,
            Param::ADown,
            Param::GammaUp,
            Param::DwMin,
            Param::WMin,
        ] {
            d2d(step_spec(StepKind::Exp, 0.01, None), p)
                .validate()
                .unwrap();
        }
        d2d(table_spec(), Param::GMax).validate().unwrap();
    }

    #[test]
    fn step_parameters() {
        rejects(step_with(|p| p.dw_min = 0.0), "dw_min");
        rejects(step_with(|p| p.dw_min = 3.0), "dw_min");
        rejects(step_with(|p| p.w_min = 1.0), "w_min");
        rejects(step_with(|p| p.up_down = 1.5), "up_down");
        rejects(step_with(|p| p.gamma_up = f64::NAN), "gamma_up");
        rejects(step_with(|p| p.w_min = 0.2), "w_min"); // linear-step needs w_min < 0 < w_max
        rejects(
            with(step_spec(StepKind::SoftBounds, 0.01, None), |s| {
                if let Model::Step(p) = &mut s.model {
                    p.w_max = -0.1;
                    p.w_min = -0.5;
                }
            }),
            "w_min",
        );
        rejects(
            with(step_spec(StepKind::Pow, 0.01, None), |s| {
                if let Model::Step(p) = &mut s.model {
                    p.gamma_down = -1.0;
                }
            }),
            "gamma_down",
        );
    }
}

/// The weight granularity that pulse schemes size by (aihwkit's convention): `dw_min` for the
/// constant, linear and soft-bounds models; `dw_min 0.5^gamma` for pow-step; the step of one down pulse
/// at `w = 0` for exp-step (measured here by pulsing a device at 0); `1/(levels-1)` for curves.
#[test]
fn granularity_follows_aihwkit() {
    let frac = |_: &Population, w: f64| (w / 2.0) as f32; // nominal range [-1, 1]
    for kind in [StepKind::Constant, StepKind::Linear, StepKind::SoftBounds] {
        let p = pop(&step_spec(kind, 0.004, None), 1, 0);
        assert_eq!(p.granularity(), frac(&p, 0.004), "{kind:?}");
    }
    let mut s = step_params(StepKind::Pow, 0.004);
    s.gamma_up = 2.0;
    s.gamma_down = 2.0;
    let p = pop(&DeviceSpec::new(Model::Step(s)), 1, 0);
    assert!((p.granularity() - frac(&p, 0.001)).abs() < 1e-9);
    // Exp-step: walk a device to w = 0 exactly is awkward; compare with the formula's own step instead,
    // measured as the change of one noise-free down pulse from the state closest to 0 reached by pulsing.
    let mut e = step_params(StepKind::Exp, 0.004);
    e.a = -1.0;
    e.b = 0.5;
    e.a_up = 0.01;
    e.a_down = 0.4;
    e.gamma_up = 2.0;
    e.gamma_down = 3.0;
    let mut p = pop(&DeviceSpec::new(Model::Step(e)), 1, 0);
    let mut r = rng(1);
    for _ in 0..10_000 {
        if p.state(0) >= 0.0 {
            break;
        }
        p.pulse(0, 1, &mut r);
    }
    assert!(p.state(0) >= 0.0, "the device must climb to 0");
    let w0 = p.state(0);
    p.pulse(0, -1, &mut r);
    let measured = (w0 - p.state(0)) as f64;
    let at_zero = 0.004 * (1.0 - 0.4 * (-3.0f64 * 0.5).exp());
    assert!(
        (measured - at_zero).abs() < 0.02 * at_zero,
        "{measured} vs {at_zero}"
    );
    assert!((p.granularity() as f64 - at_zero / 2.0).abs() < 1e-7);
    let n = pop(&neurosim_spec(65, 33, 2.0, -2.0), 1, 0);
    assert_eq!(n.granularity(), 1.0 / 64.0);
}

/// Write noise (aihwkit's `write_noise_std`): reads see the stored weight plus `write_noise dw_min xi`,
/// redrawn at each write; the stored weight evolves exactly as without it (here without c2c, so the
/// only draws are the write noise's).
#[test]
fn write_noise_is_seen_by_reads_and_not_stored() {
    let n = 4000;
    let clean = step_spec(StepKind::SoftBounds, 0.01, None);
    let mut noisy = clean.clone();
    noisy.write_noise = 5.0;
    clean.validate().unwrap();
    let (mut a, mut b) = (pop(&clean, n, 3), pop(&noisy, n, 3));
    let (mut ra, mut rb) = (rng(4), rng(4));
    for i in 0..n {
        a.pulse(i, 7, &mut ra);
        b.pulse(i, 7, &mut rb);
    }
    assert_eq!(
        a.states(),
        b.states(),
        "the stored weight ignores write noise"
    );
    assert!(a.plain_reads() && !b.plain_reads());
    let dev: Vec<f64> = (0..n)
        .map(|i| (b.read_fraction(i) - b.fraction(i)) as f64 * 2.0)
        .collect();
    let (mean, sd) = mean_sd(&dev);
    assert_rel(sd, 0.05, 0.05, "write-noise sd in weight units");
    assert!(mean.abs() < 4.0 * 0.05 / (n as f64).sqrt(), "mean {mean}");
    // Redrawn at the next write only.
    let before = b.read_fraction(0);
    assert_eq!(b.read_fraction(0), before);
    b.pulse(0, 1, &mut rb);
    assert_ne!(b.read_fraction(0) - b.fraction(0), before - a.fraction(0));
    let mut bad = noisy.clone();
    bad.model = neurosim_spec(33, 33, 1.0, -1.0).model;
    assert_eq!(bad.validate().unwrap_err().key, "write_noise");
}

/// Additive c2c (aihwkit's `mult_noise = false`): the noise of a step is `c2c dw_min xi` whatever the
/// step's size, so a soft-bounds device at its upper bound (step 0) still jitters by `c2c dw_min`,
/// while multiplicative noise vanishes with the step.
#[test]
fn additive_c2c_keeps_its_size_where_the_step_shrinks() {
    let n = 4000;
    let mut spec = step_spec(StepKind::SoftBounds, 0.01, None);
    spec.c2c = 0.5;
    let mut add = spec.clone();
    add.c2c_additive = true;
    for (s, additive) in [(&spec, false), (&add, true)] {
        let mut p = pop(s, n, 1);
        let mut r = rng(2);
        // Drive every device to near its upper bound, then measure one down pulse at w = 0.99 b_max:
        // the nominal step there is dw (1 - 0.99 b_max / b_min) ~ 2 dw; instead compare the spread of
        // one up pulse near the top, where the multiplicative step is ~ 0.
        let mut steps = Vec::new();
        for i in 0..n {
            p.pulse(i, 3000, &mut r);
            let w0 = p.state(i) as f64;
            p.pulse(i, -1, &mut r);
            let w1 = p.state(i) as f64;
            steps.push(w1 - w0);
        }
        let (_, sd) = mean_sd(&steps);
        if additive {
            assert_rel(sd, 0.5 * 0.01, 0.1, "additive c2c sd near the top");
        } else {
            // Multiplicative: sd = c2c * |down step| at the top = 0.5 * 0.01 * 2 = 0.01.
            assert_rel(
                sd,
                0.5 * 0.01 * 2.0,
                0.1,
                "multiplicative c2c sd near the top",
            );
        }
    }
    let mut bad = neurosim_spec(33, 33, 1.0, -1.0);
    bad.c2c_additive = true;
    assert_eq!(bad.validate().unwrap_err().key, "c2c_mode");
}

/// `lognormal-median` keeps the median of a parameter at its nominal value (aihwkit's log-normal
/// draws), `lognormal` its mean.
#[test]
fn lognormal_median_keeps_the_median() {
    let mut r = rng(5);
    let v = Variation {
        dist: Dist::LogNormalMedian,
        spread: Spread::Absolute(0.5),
    };
    let mut xs: Vec<f64> = (0..20001).map(|_| v.sample(0.002, &mut r)).collect();
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert_rel(xs[10000], 0.002, 0.03, "median");
    let mean = xs.iter().sum::<f64>() / xs.len() as f64;
    assert_rel(mean, 0.002 * (0.125f64).exp(), 0.03, "mean exp(sigma^2/2)");
    let logs: Vec<f64> = xs.iter().map(|x| (x / 0.002).ln()).collect();
    assert_rel(mean_sd(&logs).1, 0.5, 0.03, "sigma of ln");
}

/// SoftBoundsReference: reads see `w - r`; with `subtract_symmetry_point` a device read at 0 sits at its
/// symmetry point, where an up and a down step are equal.
#[test]
fn reference_devices_read_against_their_symmetry_point() {
    let mut s = step_params(StepKind::SoftBounds, 0.004);
    s.w_min = -0.75;
    s.w_max = 1.25;
    s.up_down = 0.2;
    s.reference = Some(aimsim_devices::spec::Reference {
        mean: 0.1,
        std: 0.0,
        subtract_symmetry_point: true,
    });
    let spec = DeviceSpec::new(Model::Step(s.clone()));
    spec.validate().unwrap();
    let p = pop(&spec, 1, 0);
    // dw_up = dw (1 + min(ud, 0)) = 0.004, dw_down = dw (1 - 0.2) = 0.0032.
    let (up, down) = (0.004f64, 0.0032f64);
    let sp = (up - down) / (up / 1.25 - down / -0.75);
    let r = 0.1 + sp;
    let state = p.state(0) as f64;
    // Nominal range [-0.75, 1.25]: a read is the fraction of (w - r) above -0.75.
    let expect = ((state - r) + 0.75) / 2.0;
    let got = p.read_fraction(0) as f64;
    assert!((got - expect).abs() < 1e-5, "{got} vs {expect}");
    assert!((p.fraction(0) as f64 - (state + 0.75) / 2.0).abs() < 1e-6);
    // At w = sp the two steps balance: dw_up (1 - w / b_max) = dw_down (1 - w / b_min).
    let (su, sd) = (up * (1.0 - sp / 1.25), down * (1.0 - sp / -0.75));
    assert!((su - sd).abs() < 1e-12);
    s.kind = StepKind::Linear;
    assert_eq!(
        DeviceSpec::new(Model::Step(s)).validate().unwrap_err().key,
        "reference_mean"
    );
}

/// What a read sees in conductance units equals the stored conductance for plain devices and carries the
/// write noise otherwise (the quantity `aimsim device` traces).
#[test]
fn read_conductance_carries_write_noise() {
    let mut spec = step_spec(StepKind::SoftBounds, 0.01, None);
    let mut p = pop(&spec, 200, 1);
    let mut r = rng(3);
    for i in 0..200 {
        p.pulse(i, 5, &mut r);
        assert_eq!(p.read_conductance(i), p.conductance(i));
    }
    spec.write_noise = 10.0;
    let mut p = pop(&spec, 200, 1);
    let mut moved = 0;
    for i in 0..200 {
        p.pulse(i, 5, &mut r);
        // g_range (1, 21) over w in [-1, 1]: 10 uS per weight unit; write noise sigma 0.1 w = 1 uS.
        let d = (p.read_conductance(i) - p.conductance(i)).abs();
        assert!(d < 6.0, "{d}");
        moved += usize::from(d > 1e-4);
    }
    assert!(moved > 190);
}
