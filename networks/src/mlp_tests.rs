//! Tests of `mlp.rs` (kept apart so the module reads as its code).

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
            conv: None,
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
        conv: None,
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
        conv: None,
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
        conv: None,
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
            conv: None,
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
        conv: None,
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
        conv: None,
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
