//! Tests of `update.rs` (kept apart so the module reads as its code).

use super::*;
use crate::tile::{CellKind, TileConfig};
use aimsim_devices::{DeviceSpec, Model, NeuroSimParams};

fn tile(cell: CellKind) -> Tile {
    let mut spec = DeviceSpec::new(Model::NeuroSim(NeuroSimParams {
        levels_up: 64,
        levels_down: 64,
        nl_up: 2.4,
        nl_down: -4.88,
    }));
    spec.g_min = 0.1;
    spec.g_max = 10.0;
    let cfg = TileConfig {
        rows: 6,
        cols: 5,
        cell,
        ..TileConfig::default()
    };
    Tile::new(1, &cfg, &spec, 3).unwrap()
}

/// A single-cell tile of the batched constant-step model (continuous, c2c noise): `d2d` spreads
/// the step and the bounds device by device, `up_down` makes it asymmetric.
fn batched_tile(rows: usize, cols: usize, d2d: bool, up_down: f64, g_range: bool) -> Tile {
    use aimsim_devices::{Dist, Param, Spread, StepKind, StepParams, Variation};
    let mut p = StepParams::new(StepKind::Constant, 0.02);
    p.up_down = up_down;
    if g_range {
        p.g_range = Some((0.5, 20.0));
    }
    let mut spec = DeviceSpec::new(Model::Step(p));
    spec.c2c = 0.4;
    if d2d {
        for param in [Param::DwMin, Param::WMin, Param::WMax] {
            spec.d2d.push((
                param,
                Variation {
                    dist: Dist::Normal,
                    spread: Spread::Relative(0.3),
                },
            ));
        }
    }
    let cfg = TileConfig {
        rows,
        cols,
        cell: CellKind::Single,
        ..TileConfig::default()
    };
    Tile::new(7, &cfg, &spec, 11).unwrap()
}

/// The row kernel (AVX2) against the hit-list path: same states, weights, energy sums, counters,
/// tallies, random streams and reports, bit for bit, across shapes with and without a column tail,
/// symmetric and asymmetric steps, shared and per-device parameters, train lengths up to 32,
/// sparse and dense inputs (few and many pulses per device, so that every way of fetching draws
/// runs), and devices driven into their bounds.
#[test]
fn the_row_kernel_writes_exactly_what_the_hit_list_path_writes() {
    use rand::{RngExt, SeedableRng};
    let probe = batched_tile(2, 8, false, 0.0, false);
    if !probe.trains_kernel() {
        eprintln!("no AVX2 here: the row kernel is not used, nothing to compare");
        return;
    }
    let mut rng = rand_pcg::Pcg64::seed_from_u64(5);
    let cases = [
        (24, 64, false, 0.0, false),
        (17, 21, true, 0.0, false),
        (9, 40, true, 0.3, true),
        (12, 7, true, -0.2, false),
        (5, 35, false, 0.5, true),
    ];
    for (k, (rows, cols, d2d, up_down, g_range)) in cases.into_iter().enumerate() {
        let mut fast = batched_tile(rows, cols, d2d, up_down, g_range);
        let mut reference = fast.clone();
        assert!(fast.trains_kernel());
        for step in 0..40 {
            // Inputs with zeros and both signs; every fourth step a large rate saturates devices.
            let x: Vec<f32> = (0..cols)
                .map(|_| match rng.random_range(0..4) {
                    0 => 0.0,
                    _ => rng.random_range(-1.0f32..1.0),
                })
                .collect();
            let d: Vec<f32> = (0..rows)
                .map(|_| match rng.random_range(0..3) {
                    0 => 0.0,
                    _ => rng.random_range(-1.0f32..1.0),
                })
                .collect();
            let lr = if step % 4 == 3 { 5.0 } else { 0.05 };
            let bl = [31, 32, 7, 1, 16][step % 5];
            let (um, blm) = (step % 2 == 0, step % 3 == 0);
            let run = |tile: &mut Tile, kernel: bool| {
                stochastic(
                    tile,
                    &x,
                    &d,
                    lr,
                    Routing::Cell,
                    bl,
                    um,
                    blm,
                    kernel,
                    &mut |t, r, c, n| t.pulse_row(r, c, n, Routing::Cell),
                )
            };
            let (a, b) = (run(&mut fast, true), run(&mut reference, false));
            let what = format!("case {k}, step {step}");
            assert_eq!(a.evaluations, b.evaluations, "{what}");
            assert_eq!(a.slots, b.slots, "{what}");
            let (sa, sb) = (fast.export_state(), reference.export_state());
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            let bits64 = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&sa.states[0]), bits(&sb.states[0]), "{what}: states");
            assert_eq!(
                bits(fast.weights()),
                bits(reference.weights()),
                "{what}: weights"
            );
            assert_eq!(bits64(&sa.g_row), bits64(&sb.g_row), "{what}: row sums");
            assert_eq!(bits64(&sa.g_col), bits64(&sb.g_col), "{what}: column sums");
            assert_eq!(sa.up_count, sb.up_count, "{what}: up counters");
            assert_eq!(sa.down_count, sb.down_count, "{what}: down counters");
            assert_eq!(sa.tally, sb.tally, "{what}: tallies");
            assert_eq!(sa.rng, sb.rng, "{what}: train stream");
            assert_eq!(sa.lanes, sb.lanes, "{what}: noise lanes");
        }
        // The inputs moved the devices, and some of them into a bound.
        let s = fast.export_state();
        let p = fast.array(0);
        assert!(s.tally.up > 0 && s.tally.down > 0, "case {k}");
        assert!(
            (0..rows * cols).any(|i| {
                let (lo, hi) = p.bounds(i);
                s.states[0][i] == lo || s.states[0][i] == hi
            }),
            "case {k}: no device reached a bound"
        );
    }
}

#[test]
fn coincidences_equal_popcounts_in_column_order() {
    use rand::{RngExt, SeedableRng};
    let mut r = rand_pcg::Pcg64Mcg::seed_from_u64(4);
    for bl in [1u32, 2, 5, 31, 64] {
        let mask = if bl == 64 { u64::MAX } else { (1u64 << bl) - 1 };
        for _ in 0..50 {
            let cols = r.random_range(0..200);
            // Sparse and dense trains, some columns silent.
            let density = r.random::<f64>();
            let bits: Vec<u64> = (0..cols)
                .map(|_| {
                    (0..bl).fold(0u64, |b, s| {
                        b | (u64::from(r.random::<f64>() < density) << s)
                    }) & mask
                })
                .collect();
            let mut found = Coincidences::new(&bits, bl);
            for _ in 0..20 {
                let row = r.random::<u64>()
                    & mask
                    & if r.random() {
                        u64::MAX
                    } else {
                        1 << r.random_range(0..bl)
                    };
                let mut got = Vec::new();
                found.row(row, |k, n| got.push((k, n)));
                let want: Vec<(usize, i32)> = bits
                    .iter()
                    .enumerate()
                    .filter(|(_, b)| *b & row != 0)
                    .map(|(k, b)| (k, (b & row).count_ones() as i32))
                    .collect();
                assert_eq!(got, want, "bl {bl}, row {row:b}");
            }
        }
    }
}

#[test]
fn unidirectional_never_depresses_and_refreshes_saturating_pairs() {
    let mut t = tile(CellKind::Pair);
    t.program(&[0.0; 30]);
    let mut c = Unidirectional::new(PulseScheme::Count { max_pulses: 8 }, Refresh::default());
    let x = [1.0, -0.5, 0.8, 0.2, -1.0];
    let mut refreshes = 0;
    for k in 0..200 {
        // Alternate the sign so both devices of each pair climb.
        let s = if k % 2 == 0 { 1.0 } else { -1.0 };
        let d = [s * 0.3, -s * 0.2, s * 0.1, s * 0.25, -s * 0.3, s * 0.05];
        let r = c.update(&mut t, &x, &d, 0.1);
        assert_eq!(r.down, 0, "a depression pulse was sent");
        refreshes += r.refreshes;
    }
    assert_eq!(t.tally().down, 0);
    assert!(
        refreshes > 0,
        "alternating updates must saturate pairs and trigger refreshes"
    );
    // After refresh no pair has both devices high.
    for i in 0..30 {
        let (p, m) = (t.array(0).fraction(i), t.array(1).fraction(i));
        assert!(!(p.max(m) > 0.75 && p.min(m) > 0.25), "cell {i}: {p} {m}");
    }
}

#[test]
fn refresh_preserves_the_weight_within_one_step() {
    let mut t = tile(CellKind::Pair);
    let step = t.array(0).nominal_step();
    let mut checked = 0;
    for i in 0..30 {
        // Put both devices high, with a known difference.
        let (hi, lo) = (0.95 - 0.005 * i as f32, 0.5 + 0.005 * i as f32);
        let (a, b) = if i % 2 == 0 { (0, 1) } else { (1, 0) };
        t.write_fraction(a, i, hi);
        t.write_fraction(b, i, lo);
        let before = t.weights()[i];
        let used = refresh_cell(&mut t, i, 0.75, 0.25);
        assert!(used.is_some(), "cell {i} should be refreshed");
        let after = t.weights()[i];
        // The write stops within half a nominal step; the largest step of a nonlinear curve is a
        // few nominal steps, so allow one curve step at the steep end.
        assert!(
            (after - before).abs() <= 4.0 * step,
            "cell {i}: {before} -> {after}"
        );
        let (p, m) = (t.array(0).fraction(i), t.array(1).fraction(i));
        assert!(p.min(m) <= 1e-6, "one device must be erased: {p} {m}");
        checked += 1;
    }
    assert_eq!(checked, 30);
}

#[test]
fn batches_are_sequential_updates_or_one_accumulated_transfer() {
    // Inputs and errors whose products are exact in binary, so sums do not depend on their order.
    let x = [0.5f32, 0.25, 1.0, 0.0, 0.5];
    let d1 = [0.5f32, 0.0, -0.25, 0.125, 0.0, -0.5];
    let d2 = [0.25f32, 0.5, 0.0, 0.125, 0.0, -0.25];
    let xs: Vec<f32> = x.iter().chain(&x).copied().collect();
    let ds: Vec<f32> = d1.iter().chain(&d2).copied().collect();
    let sum: Vec<f32> = d1.iter().zip(&d2).map(|(a, b)| a + b).collect();
    let lr = 0.5;
    // Sequential: the bits of two updates in a row, for a rule with state and one without.
    for spec in [
        ControllerSpec::MixedPrecision { max_pulses: 3 },
        ControllerSpec::default(),
    ] {
        let (mut a, mut b) = (tile(CellKind::Pair), tile(CellKind::Pair));
        let (mut ca, mut cb) = (spec.build(), spec.build());
        let ra = ca.update_batch(&mut a, &xs, &ds, 2, lr, BatchUpdate::Sequential);
        let mut rb = cb.update(&mut b, &x, &d1, lr);
        rb.add(&cb.update(&mut b, &x, &d2, lr));
        assert_eq!(ra, rb, "{spec:?}");
        assert_eq!(a.export_state(), b.export_state(), "{spec:?}");
        assert_eq!(ca.export_state(), cb.export_state(), "{spec:?}");
    }
    // Accumulated mixed precision: one transfer of the summed step (the same as one update by the
    // sum), fewer slots than two transfers.
    let spec = ControllerSpec::MixedPrecision { max_pulses: 3 };
    let (mut a, mut b, mut s) = (
        tile(CellKind::Pair),
        tile(CellKind::Pair),
        tile(CellKind::Pair),
    );
    let (mut ca, mut cb, mut cs) = (spec.build(), spec.build(), spec.build());
    assert!(ca.accumulates() && !ControllerSpec::default().build().accumulates());
    let ra = ca.update_batch(&mut a, &xs, &ds, 2, lr, BatchUpdate::Accumulated);
    let rb = cb.update(&mut b, &x, &sum, lr);
    assert_eq!(a.export_state(), b.export_state());
    assert_eq!(ca.export_state(), cb.export_state());
    assert_eq!(ra, rb);
    let rs = cs.update_batch(&mut s, &xs, &ds, 2, lr, BatchUpdate::Sequential);
    assert!(ra.slots < rs.slots, "{ra:?} vs {rs:?}");
}
