//! Tests of `mlp_batch.rs`: mini-batches and convolutional layers against hand-computed cases, the
//! single-sample path, finite differences and thread counts.

use super::*;
use crate::conv::{ConvFront, ConvSpec, PoolKind};
use aimsim_devices::{Model, StepKind, StepParams};
use aimsim_sim::io::IoConfig;
use aimsim_sim::tile::CellKind;
use rand::SeedableRng;
use rand_pcg::Pcg64;

/// Noisy devices (c2c), stochastic pulses, small tiles so that layers span several; the periphery
/// noisy (default) or ideal, with or without zeroing the errors of outputs at the bound.
fn hardware(ideal: bool, zero_grad: bool) -> Hardware {
    let mut device = DeviceSpec::new(Model::Step(StepParams::new(StepKind::Constant, 0.01)));
    device.c2c = 0.3;
    let mut io = if ideal {
        IoConfig::ideal()
    } else {
        IoConfig::default()
    };
    if zero_grad {
        io.zero_grad_at_bound = true;
        io.out_bound = 1.5;
    }
    Hardware {
        device,
        tile: TileConfig {
            rows: 8,
            cols: 8,
            cell: CellKind::Single,
            forward: io.clone(),
            backward: io,
            zero_reference: false,
        },
        controller: ControllerSpec::default(),
        w_scale: 1.0,
        cost: CostModel::default(),
        seed: 7,
    }
}

fn config(sizes: Vec<usize>, bias: BiasMode, conv: Option<ConvFront>) -> MlpConfig {
    MlpConfig {
        sizes,
        activation: Activation::Tanh,
        loss: Loss::CrossEntropy,
        bias,
        init_scale: 1.0,
        exact_init: false,
        conv,
    }
}

/// 1x6x6 images: conv 3x3 1->3 (padding 1, 6x6 maps) with 2x2 max pooling (3x3), conv 2x2 3->2
/// (2x2) with overlapping 2x2 pooling of stride 1 (1x1), then the dense layers.
fn small_front(pool2: PoolKind) -> ConvFront {
    ConvFront {
        image: (1, 6, 6),
        layers: vec![
            ConvSpec {
                channels: 3,
                kernel: 3,
                stride: 1,
                padding: 1,
                pool: Some((PoolKind::Max, 2, 2)),
            },
            ConvSpec {
                channels: 2,
                kernel: 2,
                stride: 1,
                padding: 0,
                pool: Some((pool2, 2, 1)),
            },
        ],
    }
}

fn samples(n: usize, inputs: usize, classes: usize, seed: u64) -> Vec<(Vec<f32>, usize)> {
    let mut rng = Pcg64::seed_from_u64(seed);
    (0..n)
        .map(|k| {
            let x = (0..inputs)
                .map(|j| {
                    if j % 5 == 0 {
                        0.0
                    } else {
                        rng.random_range(0.0..1.0)
                    }
                })
                .collect();
            (x, k % classes)
        })
        .collect()
}

#[test]
fn the_batch_path_at_batch_1_is_the_single_sample_step_bit_for_bit() {
    // A dense network trained through train_batch one sample at a time against train_step: the same
    // losses, predictions, ledger and network state, with both bias modes, a noisy periphery, and
    // errors zeroed at the bound (recorded per read in the batch path).
    for (bias, zero_grad) in [
        (BiasMode::Digital, false),
        (BiasMode::Tile, false),
        (BiasMode::Digital, true),
    ] {
        let hw = hardware(false, zero_grad);
        let cfg = config(vec![20, 12, 4], bias, None);
        let mut a = Mlp::new(&cfg, Some(&hw), &mut Pcg64::seed_from_u64(4)).unwrap();
        let mut b = Mlp::new(&cfg, Some(&hw), &mut Pcg64::seed_from_u64(4)).unwrap();
        let (mut la, mut lb) = (Ledger::default(), Ledger::default());
        for (k, (x, y)) in samples(30, 20, 4, 12).iter().enumerate() {
            let l1 = a.train_step(x, *y, 0.5, &mut la, Par::Seq);
            let r = b.train_batch(x, &[*y], 0.5, BatchUpdate::Sequential, &mut lb, Par::Seq);
            assert_eq!(
                l1.to_bits(),
                r[0].0.to_bits(),
                "{bias:?}: loss of sample {k}"
            );
            assert_eq!(a.predicted(), r[0].1);
        }
        assert_eq!(a.export_state(), b.export_state(), "{bias:?} {zero_grad}");
        assert_eq!(la.total_cycles(), lb.total_cycles());
        assert_eq!(
            la.total_energy_pj().to_bits(),
            lb.total_energy_pj().to_bits()
        );
        assert_eq!(la.samples(), lb.samples());
    }
    // Float layers with hardware-aware weight noise: the same noise streams.
    let cfg = config(vec![20, 12, 4], BiasMode::Digital, None);
    let mut a = Mlp::new(&cfg, None, &mut Pcg64::seed_from_u64(4)).unwrap();
    let mut b = Mlp::new(&cfg, None, &mut Pcg64::seed_from_u64(4)).unwrap();
    a.set_weight_noise(0.1, 3);
    b.set_weight_noise(0.1, 3);
    let (mut la, mut lb) = (Ledger::default(), Ledger::default());
    for (x, y) in &samples(20, 20, 4, 13) {
        let l1 = a.train_step(x, *y, 0.5, &mut la, Par::Seq);
        let r = b.train_batch(x, &[*y], 0.5, BatchUpdate::Sequential, &mut lb, Par::Seq);
        assert_eq!(l1.to_bits(), r[0].0.to_bits());
    }
    assert_eq!(a.export_state(), b.export_state());
}

#[test]
fn a_batch_of_two_is_two_single_updates_in_sequence() {
    // Ideal periphery (reads are exact, so the errors do not depend on read order), stochastic pulses
    // with c2c noise (so the order of the updates on each tile's stream matters), dense and conv.
    for conv in [None, Some(small_front(PoolKind::Avg))] {
        let hw = hardware(true, false);
        let inputs = 36;
        let cfg = config(vec![inputs, 5, 3], BiasMode::Digital, conv.clone());
        let net = || Mlp::new(&cfg, Some(&hw), &mut Pcg64::seed_from_u64(5)).unwrap();
        let data = samples(2, inputs, 3, 21);
        let lr = 0.4;
        // The batch of two.
        let mut batch = net();
        let xs: Vec<f32> = data.iter().flat_map(|(x, _)| x.clone()).collect();
        let labels: Vec<usize> = data.iter().map(|(_, y)| *y).collect();
        let mut lbatch = Ledger::default();
        let r = batch.train_batch(
            &xs,
            &labels,
            lr,
            BatchUpdate::Sequential,
            &mut lbatch,
            Par::Seq,
        );
        // Each sample alone on the starting weights: its error (through train_batch at batch 1 on a
        // fresh copy) is the batch's error of that sample.
        let mut per_sample = Vec::new();
        for (x, y) in &data {
            let mut one = net();
            let mut l = Ledger::default();
            let r1 = one.train_batch(x, &[*y], lr, BatchUpdate::Sequential, &mut l, Par::Seq);
            per_sample.push((
                r1[0],
                one.layers
                    .iter()
                    .map(|l| (l.buf.xs.clone(), l.buf.ds.clone()))
                    .collect::<Vec<_>>(),
            ));
        }
        for (b, (r1, _)) in per_sample.iter().enumerate() {
            assert_eq!(r[b].0.to_bits(), r1.0.to_bits(), "loss of sample {b}");
        }
        // Two single updates in sequence, each with lr / 2 (the batch-mean loss), from those errors.
        let mut seq = net();
        let mut lseq = Ledger::default();
        for (_, layers) in &per_sample {
            for (k, (layer, (x, d))) in seq.layers.iter_mut().zip(layers).enumerate() {
                let rows = d.len() / layer.out_dim;
                let jobs =
                    layer
                        .weights
                        .update_batch_jobs(x, d, rows, lr / 2.0, BatchUpdate::Sequential);
                Par::Seq.run(jobs);
                layer.weights.finish_update(&mut lseq);
                let _ = k;
            }
        }
        for (a, b) in batch.layers.iter().zip(&seq.layers) {
            assert_eq!(a.weights.export_state(), b.weights.export_state());
        }
        // The same pulses and energy (the batch is charged as one step per layer, its latency the
        // slowest tile's updates in sequence).
        let (pb, ps) = (
            lbatch.phase(aimsim_sim::ledger::Phase::Update),
            lseq.phase(aimsim_sim::ledger::Phase::Update),
        );
        assert_eq!(
            (pb.pulses_up, pb.pulses_down),
            (ps.pulses_up, ps.pulses_down)
        );
        assert_eq!(pb.energy_pj.to_bits(), ps.energy_pj.to_bits());
        // The digital bias moved by the batch mean of the errors.
        let d0 = &per_sample[0].1.last().unwrap().1;
        let d1 = &per_sample[1].1.last().unwrap().1;
        for (k, b) in batch.layers.last().unwrap().bias.iter().enumerate() {
            let want = -(lr / 2.0) * (d0[k] + d1[k]);
            assert!((b - want).abs() < 1e-6, "bias {k}: {b} vs {want}");
        }
    }
}

#[test]
fn a_3x3_image_through_a_2x2_kernel_by_hand() {
    // One kernel [[1, 2], [3, 4]] with bias 0.5 on the image 1..9: outputs
    // (1+4+12+20, 2+6+15+24, 4+10+21+32, 5+12+24+36) + 0.5, then tanh.
    let front = ConvFront {
        image: (1, 3, 3),
        layers: vec![ConvSpec {
            channels: 1,
            kernel: 2,
            stride: 1,
            padding: 0,
            pool: None,
        }],
    };
    for bias in [BiasMode::Digital, BiasMode::Tile] {
        let cfg = config(vec![9, 2], bias, Some(front.clone()));
        let mut net = Mlp::new(&cfg, None, &mut Pcg64::seed_from_u64(1)).unwrap();
        assert_eq!(net.layers[0].in_dim(), 4);
        assert_eq!(net.layers[0].output_len(), 4);
        assert_eq!(net.layers[1].in_dim(), 4);
        net.set_parameters(0, &[1.0, 2.0, 3.0, 4.0], &[0.5], true)
            .unwrap();
        let img: Vec<f32> = (1..=9).map(|v| v as f32 * 0.01).collect();
        net.forward_many(&img, 1, &mut Ledger::default(), Par::Seq, false);
        let want = [37.0f32, 47.0, 67.0, 77.0].map(|v| v * 0.01 + 0.5);
        for (z, w) in net.layers[0].buf.zs.iter().zip(want) {
            assert!((z - w).abs() < 1e-6, "{bias:?}: {z} vs {w}");
        }
        for (a, w) in net.layers[0].buf.out.iter().zip(want) {
            assert!((a - w.tanh()).abs() < 1e-6);
        }
    }
}

#[test]
fn conv_network_gradients_match_finite_differences() {
    // Float weights: one step with lr moves every weight by -lr dL/dw; compare with central
    // differences of the loss, for every weight of both convolutions (padding, stride, max and
    // average pooling) and of the dense layers.
    for pool2 in [PoolKind::Max, PoolKind::Avg] {
        let cfg = config(vec![36, 5, 3], BiasMode::Digital, Some(small_front(pool2)));
        let mut rng = Pcg64::seed_from_u64(3);
        let net0 = Mlp::new(&cfg, None, &mut rng).unwrap();
        let (x, y) = samples(1, 36, 3, 8).remove(0);
        let params: Vec<(Vec<f32>, Vec<f32>)> =
            net0.layers.iter().map(|l| l.parameters()).collect();
        let build = |p: &[(Vec<f32>, Vec<f32>)]| {
            let mut n = Mlp::new(&cfg, None, &mut Pcg64::seed_from_u64(3)).unwrap();
            for (k, (w, b)) in p.iter().enumerate() {
                n.set_parameters(k, w, b, true).unwrap();
            }
            n
        };
        let loss = |p: &[(Vec<f32>, Vec<f32>)]| {
            let mut n = build(p);
            n.forward_many(&x, 1, &mut Ledger::default(), Par::Seq, false);
            n.loss_of(y) as f64
        };
        let lr = 1e-3;
        let mut stepped = build(&params);
        stepped.train_batch(
            &x,
            &[y],
            lr,
            BatchUpdate::Sequential,
            &mut Ledger::default(),
            Par::Seq,
        );
        let mut checked = 0;
        for k in 0..params.len() {
            let after = stepped.layers[k].parameters().0;
            for (j, a) in after.iter().enumerate() {
                let grad = (params[k].0[j] - a) as f64 / lr as f64;
                let h = 1e-3f32;
                let mut p = params.clone();
                p[k].0[j] += h;
                let up = loss(&p);
                p[k].0[j] -= 2.0 * h;
                let down = loss(&p);
                let num = (up - down) / (2.0 * h as f64);
                assert!(
                    (num - grad).abs() < 2e-3 + 0.05 * num.abs(),
                    "{pool2:?} layer {k} weight {j}: numeric {num} vs backprop {grad}"
                );
                checked += 1;
            }
        }
        // conv 3x(1x3x3), conv 2x(3x2x2), then 2 pooled values -> 5 -> 3.
        assert_eq!(checked, 3 * 9 + 2 * 3 * 4 + 5 * 2 + 3 * 5);
    }
}

#[test]
fn conv_training_is_bit_identical_on_one_and_three_threads() {
    let team = aimsim_sim::par::Team::with_spread(3, aimsim_sim::par::Spread::Always);
    let hw = hardware(false, true);
    let cfg = config(
        vec![36, 5, 3],
        BiasMode::Tile,
        Some(small_front(PoolKind::Max)),
    );
    let mut a = Mlp::new(&cfg, Some(&hw), &mut Pcg64::seed_from_u64(4)).unwrap();
    let mut b = Mlp::new(&cfg, Some(&hw), &mut Pcg64::seed_from_u64(4)).unwrap();
    let data = samples(12, 36, 3, 30);
    let (mut la, mut lb) = (Ledger::default(), Ledger::default());
    for chunk in data.chunks(4) {
        let xs: Vec<f32> = chunk.iter().flat_map(|(x, _)| x.clone()).collect();
        let ys: Vec<usize> = chunk.iter().map(|(_, y)| *y).collect();
        let ra = a.train_batch(&xs, &ys, 0.3, BatchUpdate::Sequential, &mut la, Par::Seq);
        let rb = b.train_batch(&xs, &ys, 0.3, BatchUpdate::Sequential, &mut lb, team.par());
        assert_eq!(ra, rb);
    }
    assert_eq!(a.export_state(), b.export_state());
    assert_eq!(
        la.total_energy_pj().to_bits(),
        lb.total_energy_pj().to_bits()
    );
    // Evaluation through the batch path, in chunks, is the samples read one by one.
    let xs: Vec<f32> = data.iter().flat_map(|(x, _)| x.clone()).collect();
    let batched = a.predict_batch(&xs, data.len(), &mut Ledger::default());
    let single: Vec<usize> = data
        .iter()
        .map(|(x, _)| {
            b.forward(x, &mut Ledger::default(), Par::Seq);
            b.predicted()
        })
        .collect();
    assert_eq!(batched, single);
}

#[test]
fn accumulated_batches_differ_from_sequential_ones_only_where_the_rule_accumulates() {
    // Float weights: the accumulated step is the sum of the sequential ones (to rounding).
    let cfg = config(vec![20, 6, 4], BiasMode::Digital, None);
    let data = samples(4, 20, 4, 40);
    let xs: Vec<f32> = data.iter().flat_map(|(x, _)| x.clone()).collect();
    let ys: Vec<usize> = data.iter().map(|(_, y)| *y).collect();
    let mut s = Mlp::new(&cfg, None, &mut Pcg64::seed_from_u64(2)).unwrap();
    let mut a = Mlp::new(&cfg, None, &mut Pcg64::seed_from_u64(2)).unwrap();
    let mut l = Ledger::default();
    s.train_batch(&xs, &ys, 0.5, BatchUpdate::Sequential, &mut l, Par::Seq);
    a.train_batch(&xs, &ys, 0.5, BatchUpdate::Accumulated, &mut l, Par::Seq);
    for (ls, la) in s.layers.iter().zip(&a.layers) {
        for (u, v) in ls.weights.weights().iter().zip(la.weights.weights()) {
            assert!((u - v).abs() < 1e-5);
        }
    }
    // Mixed precision: one transfer per batch instead of one per sample, so fewer pulse slots.
    let mut hw = hardware(true, false);
    hw.controller = ControllerSpec::MixedPrecision { max_pulses: 1000 };
    let mut seq = Mlp::new(&cfg, Some(&hw), &mut Pcg64::seed_from_u64(2)).unwrap();
    let mut acc = Mlp::new(&cfg, Some(&hw), &mut Pcg64::seed_from_u64(2)).unwrap();
    let (mut l1, mut l2) = (Ledger::default(), Ledger::default());
    seq.train_batch(&xs, &ys, 2.0, BatchUpdate::Sequential, &mut l1, Par::Seq);
    acc.train_batch(&xs, &ys, 2.0, BatchUpdate::Accumulated, &mut l2, Par::Seq);
    assert_ne!(seq.export_state(), acc.export_state());
    assert!(
        l2.phase(aimsim_sim::ledger::Phase::Update).cycles
            < l1.phase(aimsim_sim::ledger::Phase::Update).cycles
    );
}
