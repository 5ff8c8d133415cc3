//! Tests of `tile.rs` (kept apart so the module reads as its code).

use super::*;
use aimsim_devices::{Model, StepKind, StepParams};

fn fine_device() -> DeviceSpec {
    DeviceSpec::new(Model::Step(StepParams::new(StepKind::Constant, 1e-4)))
}

/// A noisy device with d2d spread, so that every write draws noise and devices differ.
fn noisy_device() -> DeviceSpec {
    use aimsim_devices::{Dist, Param, Spread, Variation};
    let mut spec = DeviceSpec::new(Model::Step(StepParams::new(StepKind::Constant, 0.01)));
    spec.c2c = 0.3;
    spec.d2d.push((
        Param::DwMin,
        Variation {
            dist: Dist::Normal,
            spread: Spread::Relative(0.3),
        },
    ));
    spec
}

#[test]
fn a_forward_batch_is_its_inputs_read_one_by_one() {
    let mut spec = noisy_device();
    spec.read_noise = 0.02;
    // Default periphery (noise, DAC, ADC) with bound management and a low output bound, so that
    // some inputs need several passes; one input all zero.
    let io = IoConfig {
        bound_management: true,
        out_bound: 3.0,
        ..IoConfig::default()
    };
    let cfg = TileConfig {
        rows: 13,
        cols: 37,
        cell: CellKind::Pair,
        forward: io.clone(),
        backward: io,
        zero_reference: false,
    };
    let mut a = Tile::new(2, &cfg, &spec, 4).unwrap();
    let target: Vec<f32> = (0..13 * 37)
        .map(|i| ((i * 7) % 11) as f32 / 5.0 - 1.0)
        .collect();
    a.program(&target);
    let mut b = a.clone();
    let batch = 6;
    let xs: Vec<f32> = (0..batch * 37)
        .map(|k| {
            if k / 37 == 3 {
                0.0
            } else {
                ((k * 13) % 17) as f32 / 8.0 - 1.0
            }
        })
        .collect();
    let mut ys = vec![0.0; batch * 13];
    let reports = b.forward_batch(&xs, &mut ys, batch);
    assert!(reports.iter().any(|r| r.mvm.passes > 1), "{reports:?}");
    assert_eq!(reports[3].mvm.passes, 0);
    for k in 0..batch {
        let mut y = vec![0.0; 13];
        let r = a.forward(&xs[k * 37..(k + 1) * 37], &mut y);
        assert_eq!(r, reports[k], "input {k}");
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&y), bits(&ys[k * 13..(k + 1) * 13]), "input {k}");
    }
    assert_eq!(a.export_state(), b.export_state());
}

#[test]
fn write_verify_reaches_the_tolerance_or_spends_the_budget() {
    let cfg = TileConfig {
        rows: 6,
        cols: 8,
        cell: CellKind::Pair,
        forward: IoConfig::ideal(),
        backward: IoConfig::ideal(),
        zero_reference: false,
    };
    let target: Vec<f32> = (0..48).map(|i| (i as f32 / 24.0) - 1.0).collect();
    // A fine ideal device: every device ends within the tolerance (0.005 of its range, so within
    // 0.01 of the weight for a pair).
    let spec = DeviceSpec::new(Model::Step(StepParams::new(StepKind::Constant, 1e-3)));
    let mut t = Tile::new(0, &cfg, &spec, 1).unwrap();
    let r = t.write_verify(&target, 0.005, 10_000);
    assert_eq!((r.devices, r.unconverged), (96, 0));
    assert_eq!(r.pulses_up + r.pulses_down, t.tally().up + t.tally().down);
    assert!(r.reads > r.devices);
    for (w, g) in t.weights().iter().zip(&target) {
        assert!((w - g).abs() <= 0.0101, "{w} vs {g}");
    }
    // A budget of one pulse per device leaves most devices short of their goal.
    let mut t = Tile::new(0, &cfg, &spec, 1).unwrap();
    let r = t.write_verify(&target, 0.005, 1);
    assert!(r.unconverged > 48, "{r:?}");
    assert!(r.pulses_up + r.pulses_down <= 96);
    // A noisy device: a tighter tolerance gives a smaller programming error.
    let rms = |tol: f32| {
        let mut t = Tile::new(0, &cfg, &noisy_device(), 1).unwrap();
        t.write_verify(&target, tol, 1000);
        let e: f32 = t
            .weights()
            .iter()
            .zip(&target)
            .map(|(w, g)| (w - g).powi(2))
            .sum();
        (e / 48.0).sqrt()
    };
    assert!(rms(0.01) < rms(0.1), "{} vs {}", rms(0.01), rms(0.1));
}

#[test]
fn aged_reads_of_the_own_states_are_the_cached_weights_and_restore_undoes_them() {
    let mut spec = noisy_device();
    spec.write_noise = 0.05;
    for (cell, zero) in [
        (CellKind::Single, false),
        (CellKind::Single, true),
        (CellKind::Pair, false),
        (CellKind::OneSided, false),
        (CellKind::MultiArray { gamma: 0.2 }, false),
    ] {
        let cfg = TileConfig {
            rows: 5,
            cols: 7,
            cell,
            forward: IoConfig::ideal(),
            backward: IoConfig::ideal(),
            zero_reference: zero,
        };
        let mut t = Tile::new(1, &cfg, &spec, 3).unwrap();
        let target: Vec<f32> = (0..35).map(|i| (i as f32 / 17.0) - 1.0).collect();
        t.program(&target);
        let (w, g_row, g_col) = (t.w.clone(), t.g_row.clone(), t.g_col.clone());
        let own: Vec<Vec<f32>> = (0..cell.arrays()).map(|a| t.state_fractions(a)).collect();
        t.set_read_fractions(&own);
        for (a, b) in t.w.iter().zip(&w) {
            assert!((a - b).abs() < 1e-5, "{cell:?}: {a} vs {b}");
        }
        for (a, b) in t.g_row.iter().zip(&g_row).chain(t.g_col.iter().zip(&g_col)) {
            assert!(
                (a - b).abs() < 1e-4 * b.abs().max(1.0),
                "{cell:?}: {a} vs {b}"
            );
        }
        // Every device at half its state fraction: a pair's weight halves exactly.
        let half: Vec<Vec<f32>> = own
            .iter()
            .map(|v| v.iter().map(|f| f / 2.0).collect())
            .collect();
        t.set_read_fractions(&half);
        if cell == CellKind::Pair {
            for i in 0..35 {
                let p0 = t.array(0);
                let p1 = t.array(1);
                let want = (p0.read_fraction(i) - p0.fraction(i) / 2.0)
                    - (p1.read_fraction(i) - p1.fraction(i) / 2.0);
                assert!((t.w[i] - want).abs() < 1e-6);
            }
        }
        t.restore_reads();
        assert_eq!(t.w, w, "{cell:?}");
    }
}

#[test]
fn row_writes_keep_weights_energy_sums_and_counters_current() {
    use rand::{RngExt, SeedableRng};
    for (cell, routing) in [
        (CellKind::Single, Routing::Cell),
        (CellKind::Pair, Routing::Bidirectional),
        (CellKind::Pair, Routing::Unidirectional),
        (CellKind::OneSided, Routing::Cell),
        (CellKind::MultiArray { gamma: 0.1 }, Routing::Bidirectional),
    ] {
        let cfg = TileConfig {
            rows: 9,
            cols: 13,
            cell,
            forward: IoConfig::ideal(),
            backward: IoConfig::ideal(),
            zero_reference: false,
        };
        let mut t = Tile::new(3, &cfg, &noisy_device(), 5).unwrap();
        t.program(&vec![0.1; 9 * 13]);
        let mut r = rand_pcg::Pcg64Mcg::seed_from_u64(9);
        let (mut up, mut down) = (0u64, 0u64);
        let before = t.tally();
        for _ in 0..300 {
            let row = r.random_range(0..9);
            let cols: Vec<u32> = (0..13).filter(|_| r.random::<f32>() < 0.4).collect();
            let n: Vec<i32> = cols.iter().map(|_| r.random_range(-5..=5)).collect();
            for k in &n {
                let devices = if cell == CellKind::Single { 1 } else { 2 };
                let one_way = routing == Routing::Unidirectional || cell == CellKind::OneSided;
                let (u, d) = match (devices, one_way) {
                    (1, _) | (_, true) => (k.max(&0).unsigned_abs(), k.min(&0).unsigned_abs()),
                    _ => (k.unsigned_abs(), k.unsigned_abs()),
                };
                if one_way && devices == 2 {
                    // Potentiation of G+ or of G-: all pulses count as potentiation.
                    up += k.unsigned_abs() as u64;
                } else {
                    up += u as u64;
                    down += d as u64;
                }
            }
            t.pulse_row(row, &cols, &n, routing);
        }
        let after = t.tally();
        assert_eq!(
            (after.up - before.up, after.down - before.down),
            (up, down),
            "{cell:?} {routing:?}: pulse tally"
        );
        let (w, g_row, g_col) = (t.w.clone(), t.g_row.clone(), t.g_col.clone());
        t.recompute_all();
        assert_eq!(w, t.w, "{cell:?}: weight cache");
        for (a, b) in g_row.iter().zip(&t.g_row).chain(g_col.iter().zip(&t.g_col)) {
            assert!(
                (a - b).abs() < 1e-6 * b.abs().max(1.0),
                "{cell:?}: energy sum {a} vs {b}"
            );
        }
    }
}

#[test]
fn row_writes_on_single_cells_equal_cell_by_cell_writes() {
    let cfg = TileConfig {
        rows: 4,
        cols: 6,
        cell: CellKind::Single,
        forward: IoConfig::ideal(),
        backward: IoConfig::ideal(),
        zero_reference: false,
    };
    let cols = [0u32, 2, 3, 5];
    let n = [3, -2, 1, -7];
    // Without write noise both paths are the same arithmetic.
    let mut quiet = noisy_device();
    quiet.c2c = 0.0;
    let mut a = Tile::new(0, &cfg, &quiet, 2).unwrap();
    a.program(&[0.2; 24]);
    let mut b = a.clone();
    a.pulse_row(2, &cols, &n, Routing::Cell);
    for (c, k) in cols.iter().zip(&n) {
        b.pulse_routed(2 * 6 + *c as usize, *k, Routing::Cell);
    }
    assert_eq!(a.weights(), b.weights());
    assert_eq!(a.tally(), b.tally());
    // With write noise the row write takes the batch's draws from the tile's lanes, in write order.
    let mut a = Tile::new(0, &cfg, &noisy_device(), 2).unwrap();
    a.program(&[0.2; 24]);
    let mut devices = a.array(0).clone();
    assert!(devices.batched_noise());
    let mut lanes = NormalLanes::from_words(&a.export_state().lanes).unwrap();
    let mut z = vec![0.0f32; 14];
    lanes.fill(&mut z);
    let counted: Vec<(u32, u32)> = cols
        .iter()
        .map(|c| a.device_pulses(0, 2 * 6 + *c as usize))
        .collect();
    a.pulse_row(2, &cols, &n, Routing::Cell);
    let mut next = 0;
    for (c, k) in cols.iter().zip(&n) {
        let m = k.unsigned_abs() as usize;
        devices.pulse_with_normals(2 * 6 + *c as usize, *k, &z[next..next + m]);
        next += m;
    }
    assert_eq!(a.array(0).states(), devices.states());
    assert_eq!(a.export_state().lanes, lanes.words());
    for ((c, k), (up, down)) in cols.iter().zip(&n).zip(&counted) {
        let want = if *k > 0 {
            (up + *k as u32, *down)
        } else {
            (*up, down + k.unsigned_abs())
        };
        assert_eq!(
            a.device_pulses(0, 2 * 6 + *c as usize),
            want,
            "counters of column {c}"
        );
    }
    let (off, inv) = devices.fraction_map();
    for (i, s) in devices.states().iter().enumerate() {
        assert_eq!(a.weights()[i], 2.0 * ((s - off) * inv) - 1.0, "weight {i}");
    }
}

#[test]
fn programming_reaches_targets_within_a_step() {
    for cell in [
        CellKind::Single,
        CellKind::Pair,
        CellKind::OneSided,
        CellKind::MultiArray { gamma: 0.1 },
    ] {
        let cfg = TileConfig {
            rows: 8,
            cols: 8,
            cell,
            ..TileConfig::default()
        };
        let mut t = Tile::new(3, &cfg, &fine_device(), 7).unwrap();
        let target: Vec<f32> = (0..64).map(|k| (k as f32 / 63.0) * 1.6 - 0.8).collect();
        let pulses = t.program(&target);
        assert!(pulses > 0);
        let tol = t.cell_step().max(2e-4) * 2.0;
        for (w, g) in t.weights().iter().zip(&target) {
            assert!((w - g).abs() <= tol, "{cell:?}: {w} vs {g}");
        }
    }
}
