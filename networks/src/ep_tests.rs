//! Tests of `ep.rs` (kept apart so the module reads as its code).

use super::*;
use aimsim_devices::{DeviceSpec, Model, StepKind, StepParams};
use aimsim_sim::io::IoConfig;
use aimsim_sim::ledger::CostModel;
use aimsim_sim::tile::{CellKind, TileConfig};
use aimsim_sim::update::{ControllerSpec, PulseScheme};
use rand::SeedableRng;
use rand_pcg::Pcg64;

/// Ideal devices (a fine constant step, no noise, no variation), an ideal periphery, counted pulses.
fn ideal_hw() -> Hardware {
    Hardware {
        device: DeviceSpec::new(Model::Step(StepParams::new(StepKind::Constant, 1e-5))),
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
        w_scale: 2.0,
        cost: CostModel::default(),
        seed: 5,
    }
}

fn tiny(nudge: Nudge, beta: f32) -> EpConfig {
    EpConfig {
        sizes: vec![6, 8, 3],
        activation: EpActivation::Clip,
        steps_free: 400,
        steps_nudged: 400,
        eps: 0.5,
        beta,
        nudge,
        feedback: Feedback::Transpose,
        update: EpUpdate::Decomposed,
        init_scale: 0.8,
        tolerance: 0.0,
    }
}

fn samples() -> Vec<(Vec<f32>, usize)> {
    let mut rng = Pcg64::seed_from_u64(21);
    (0..6)
        .map(|k| ((0..6).map(|_| rng.random_range(0.0..1.0)).collect(), k % 3))
        .collect()
}

#[test]
fn relaxation_decreases_the_energy_monotonically_and_converges() {
    for act in [EpActivation::Clip, EpActivation::HardSigmoid] {
        let mut cfg = tiny(Nudge::Symmetric, 0.1);
        cfg.sizes = vec![6, 7, 5, 3];
        cfg.activation = act;
        cfg.eps = 0.3;
        let mut net =
            EpNetwork::new(&cfg, Some(&ideal_hw()), &mut Pcg64::seed_from_u64(3), 1).unwrap();
        let mut ledger = Ledger::default();
        for (x, _) in samples() {
            net.reset_states();
            let mut e = vec![net.energy(&x)];
            for _ in 0..400 {
                net.relax(&x, None, 1, &mut ledger, Par::Seq);
                e.push(net.energy(&x));
            }
            // Up to the rounding of f32 states near the fixed point.
            for w in e.windows(2) {
                assert!(
                    w[1] <= w[0] + 1e-6,
                    "{act:?}: energy rose {} -> {}",
                    w[0],
                    w[1]
                );
            }
            assert!(e[0] - e[400] > 1e-3, "{act:?}: the relaxation did nothing");
            let before = net.states().to_vec();
            net.relax(&x, None, 1, &mut ledger, Par::Seq);
            let moved = net
                .states()
                .iter()
                .flatten()
                .zip(before.iter().flatten())
                .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(
                moved < 1e-5,
                "{act:?}: not converged, still moving by {moved}"
            );
        }
        // Every step read the tiles: forward reads of every layer, backward of all but the first.
        assert_eq!(
            ledger.phase(aimsim_sim::ledger::Phase::Forward).steps,
            6 * 401 * 3
        );
        assert_eq!(
            ledger.phase(aimsim_sim::ledger::Phase::Backward).steps,
            6 * 401 * 2
        );
    }
}

#[test]
fn exact_gradient_matches_finite_differences() {
    let cfg = tiny(Nudge::Symmetric, 0.1);
    let mut net = EpNetwork::new(&cfg, None, &mut Pcg64::seed_from_u64(3), 1).unwrap();
    for (x, y) in samples().iter().take(3) {
        let (g, _) = net.exact_gradient(x, *y).unwrap();
        let h = 1e-3f32;
        let mut num = Vec::new();
        for k in 0..2 {
            let w = net.w[k].weights();
            for i in 0..w.len() {
                let mut wp = w.clone();
                wp[i] += h;
                net.w[k].program(&wp);
                let lp = net.exact_gradient(x, *y).unwrap().1;
                wp[i] -= 2.0 * h;
                net.w[k].program(&wp);
                let lm = net.exact_gradient(x, *y).unwrap().1;
                net.w[k].program(&w);
                num.push((lp - lm) / (2.0 * h as f64));
            }
        }
        let (cos, rel, _, nb) = compare(&num, &flat(&g));
        assert!(nb > 1e-4, "a vanishing gradient tests nothing: {nb}");
        assert!(
            cos > 0.9999 && rel < 1e-2,
            "cosine {cos}, relative error {rel}"
        );
    }
}

#[test]
fn symmetric_estimate_matches_the_exact_gradient_and_one_sided_bias_grows_with_beta() {
    let data = samples();
    let batch: Vec<(&[f32], usize)> = data.iter().map(|(x, y)| (x.as_slice(), *y)).collect();
    let hw = ideal_hw();
    let build = || {
        EpNetwork::new(
            &tiny(Nudge::Symmetric, 0.1),
            Some(&hw),
            &mut Pcg64::seed_from_u64(3),
            1,
        )
    };
    let betas = [0.01, 0.1, 0.3, 0.6, 1.0];
    let pts = fidelity(
        &build,
        &batch,
        &betas,
        &[Nudge::OneSided, Nudge::Symmetric],
        1e-3,
        Par::Seq,
    )
    .unwrap();
    let get = |beta: f32, n: Nudge| {
        pts.iter()
            .find(|p| p.beta == beta && p.nudge == n)
            .unwrap()
            .clone()
    };
    let sym = get(0.01, Nudge::Symmetric);
    assert!(
        sym.cosine > 0.99,
        "symmetric cosine at beta 0.01: {}",
        sym.cosine
    );
    assert!(
        sym.rel_error < 0.05,
        "symmetric error at beta 0.01: {}",
        sym.rel_error
    );
    // The update the controllers applied on ideal devices follows the estimate.
    assert!(
        sym.cosine_applied > 0.99,
        "applied cosine {}",
        sym.cosine_applied
    );
    let one: Vec<f64> = betas
        .iter()
        .map(|b| get(*b, Nudge::OneSided).rel_error)
        .collect();
    for w in one.windows(2) {
        assert!(
            w[1] > w[0],
            "one-sided bias does not grow with beta: {one:?}"
        );
    }
    for b in &betas[1..4] {
        let (o, s) = (get(*b, Nudge::OneSided), get(*b, Nudge::Symmetric));
        assert!(
            s.rel_error < o.rel_error,
            "beta {b}: symmetric {} vs one-sided {}",
            s.rel_error,
            o.rel_error
        );
    }
}

#[test]
fn ep_training_on_glyphs_learns_well_above_chance() {
    let data = crate::data::glyphs(600, 200, 8, 4);
    let cfg = EpConfig {
        sizes: vec![data.inputs, 32, data.classes],
        steps_free: 20,
        steps_nudged: 6,
        beta: 0.5,
        ..EpConfig::default()
    };
    let hw = Hardware {
        device: DeviceSpec::new(Model::Step(StepParams::new(StepKind::Constant, 0.001))),
        tile: TileConfig::default(),
        controller: ControllerSpec::default(),
        w_scale: 1.0,
        cost: CostModel::default(),
        seed: 2,
    };
    let mut net = EpNetwork::new(&cfg, Some(&hw), &mut Pcg64::seed_from_u64(1), 1).unwrap();
    let mut ledger = Ledger::default();
    for _ in 0..4 {
        for i in 0..data.train_len() {
            let (x, y) = data.train_sample(i);
            net.train_step(x, y as usize, 0.1, &mut ledger, Par::Seq);
        }
    }
    let correct = (0..data.test_len())
        .filter(|&i| {
            let (x, y) = data.test_sample(i);
            net.predict(x, &mut ledger, Par::Seq) == y as usize
        })
        .count();
    let acc = correct as f64 / data.test_len() as f64;
    assert!(acc > 0.6, "test accuracy {acc} (chance 0.1)");
    assert!(ledger.phase(aimsim_sim::ledger::Phase::Update).pulses_up > 0);
}

#[test]
fn separate_feedback_starts_close_to_the_forward_weights_and_is_updated_too() {
    let mut cfg = tiny(Nudge::OneSided, 0.2);
    cfg.feedback = Feedback::Separate;
    let mut hw = ideal_hw();
    hw.device = DeviceSpec::new(Model::Step(StepParams::new(StepKind::Constant, 1e-3)));
    hw.device.d2d.push((
        aimsim_devices::Param::DwMin,
        aimsim_devices::Variation {
            dist: aimsim_devices::Dist::Normal,
            spread: aimsim_devices::Spread::Relative(0.3),
        },
    ));
    let mut net = EpNetwork::new(&cfg, Some(&hw), &mut Pcg64::seed_from_u64(3), 1).unwrap();
    let w = net.weights();
    let fb = net.feedback_weights();
    assert!(fb[0].is_none());
    let f1 = fb[1].clone().unwrap();
    assert_ne!(f1, w[1], "separate devices are programmed separately");
    let gap = f1
        .iter()
        .zip(&w[1])
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(gap < 0.01, "programming gap {gap}");
    let mut ledger = Ledger::default();
    for (x, y) in samples() {
        net.train_step(&x, y, 0.5, &mut ledger, Par::Seq);
    }
    let moved = net.feedback_weights()[1]
        .clone()
        .unwrap()
        .iter()
        .zip(&f1)
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(moved > 0.01, "feedback weights did not learn: {moved}");
}

/// A random, diagonally dominant (well-conditioned) `n x n` system with a known solution.
fn random_system(n: usize, seed: u64) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut rng = Pcg64::seed_from_u64(seed);
    let mut m: Vec<f64> = (0..n * n).map(|_| rng.random_range(-1.0..1.0)).collect();
    for i in 0..n {
        m[i * n + i] += if i % 2 == 0 { n as f64 } else { -(n as f64) };
    }
    let x: Vec<f64> = (0..n).map(|_| rng.random_range(-10.0..10.0)).collect();
    let v = (0..n)
        .map(|i| (0..n).map(|j| m[i * n + j] * x[j]).sum())
        .collect();
    (m, v, x)
}

#[test]
fn solve_recovers_the_known_solution_of_a_well_conditioned_system() {
    for (n, seed) in [(1, 1), (2, 2), (7, 3), (26, 4), (120, 5)] {
        let (m, v, x) = random_system(n, seed);
        let sol = solve(&m, &v, n).unwrap();
        let err = sol
            .iter()
            .zip(&x)
            .fold(0.0f64, |e, (a, b)| e.max((a - b).abs()));
        assert!(err < 1e-10, "n = {n}: max error {err:e}");
    }
    // Row exchanges are needed (a zero leading entry) and harmless.
    let sol = solve(&[0.0, 2.0, 3.0, 1.0], &[4.0, 5.0], 2).unwrap();
    assert!((sol[0] - 1.0).abs() < 1e-15 && (sol[1] - 2.0).abs() < 1e-15);
    assert_eq!(solve(&[], &[], 0), Ok(vec![]));
}

#[test]
fn solve_refuses_a_singular_system() {
    // Two equal rows: exactly singular. The old elimination set the unknown to 0 and went on.
    let (mut m, mut v, _) = random_system(6, 7);
    let n = 6;
    let row: Vec<f64> = m[n..2 * n].to_vec();
    m[4 * n..5 * n].copy_from_slice(&row);
    v[4] = v[1];
    match solve(&m, &v, n) {
        Err(Singularity::Pivot { value, tol, .. }) => {
            assert!(
                value.abs() <= tol && tol > 0.0,
                "pivot {value:e}, tol {tol:e}"
            )
        }
        other => panic!("two equal rows must be singular, got {other:?}"),
    }
    // Numerically singular: a row equal to another up to rounding.
    let mut m2 = m.clone();
    m2[4 * n] = m2[n] * (1.0 + f64::EPSILON);
    assert!(
        matches!(solve(&m2, &v, n), Err(Singularity::Pivot { .. })),
        "{:?}",
        solve(&m2, &v, n)
    );
    // A zero matrix, and non-finite entries.
    assert!(matches!(
        solve(&[0.0; 4], &[1.0, 1.0], 2),
        Err(Singularity::Pivot { unknown: 0, .. })
    ));
    assert_eq!(
        solve(&[1.0, 0.0, f64::NAN, 1.0], &[1.0, 1.0], 2),
        Err(Singularity::NonFiniteSystem { row: 1 })
    );
    assert_eq!(
        solve(&[1.0, 0.0, 0.0, 1.0], &[f64::INFINITY, 1.0], 2),
        Err(Singularity::NonFiniteSystem { row: 0 })
    );
}

/// A 6-8-3 software network with one hidden unit and one output unit coupled by `-1` and both
/// biased by 1: its free fixed point is `s = 0.5` on both (the rest sit at 0), on a line of fixed
/// points, so the Hessian on the free units is `[[1, 1], [1, 1]]`: singular.
fn singular_net() -> Result<EpNetwork, SpecError> {
    let mut net = EpNetwork::new(
        &tiny(Nudge::Symmetric, 0.1),
        None,
        &mut Pcg64::seed_from_u64(3),
        1,
    )?;
    net.w[0].program(&[0.0; 6 * 8]);
    let mut w2 = [0.0f32; 8 * 3];
    w2[2] = -1.0; // output 0, hidden 2
    net.w[1].program(&w2);
    net.b = vec![vec![0.0; 8], vec![0.0; 3]];
    net.b[0][2] = 1.0;
    net.b[1][0] = 1.0;
    Ok(net)
}

#[test]
fn a_singular_hessian_is_an_error_naming_the_unit_and_the_sample() {
    let (x, y) = samples()[0].clone();
    let err = singular_net().unwrap().exact_gradient(&x, y).unwrap_err();
    assert_eq!(err.n, 2);
    assert_eq!(err.at, Some((2, 0)), "{err}");
    assert!(matches!(err.reason, Singularity::Pivot { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("singular") && msg.contains("layer 2 unit 0"),
        "{msg}"
    );
    let batch = [(x.as_slice(), y)];
    let err = fidelity(
        &singular_net,
        &batch,
        &[0.1],
        &[Nudge::Symmetric],
        1e-3,
        Par::Seq,
    )
    .unwrap_err();
    match &err {
        FidelityError::Singular { sample, label, .. } => {
            assert_eq!((*sample, *label), (0, y))
        }
        other => panic!("expected a singular system, got {other:?}"),
    }
    let chain = format!(
        "{err}: {}",
        std::error::Error::source(&err).expect("the singular system is the source")
    );
    assert!(
        chain.contains("sample 0") && chain.contains("singular") && chain.contains("layer 2"),
        "{chain}"
    );
}
