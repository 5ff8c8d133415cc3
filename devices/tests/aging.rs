//! Bounds of the after-training models over random parameters (proptest): programming stays within
//! `[0, upper]`, every read is finite and non-negative, and without read noise a device programmed
//! within `[0, g_max]` stays there at every time (drift only lowers, relaxation moves between the
//! programmed and the relaxed conductance, a failed device sits on a bound).
//!
//! The formulas, statistics and order of draws are tested next to the code (`devices/src/aging.rs`).

use aimsim_devices::{Aging, Drift, Failures, Programming, ReadNoise1f, Relaxation, Retention};
use proptest::prelude::*;
use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;

#[path = "support/props.rs"]
mod support;
use support::props;

fn programming() -> impl Strategy<Value = Programming> {
    prop_oneof![
        Just(Programming::Exact),
        Just(Programming::Pcm),
        (0.0..10.0f64).prop_map(|sigma_us| Programming::Constant { sigma_us }),
    ]
}

fn retention() -> impl Strategy<Value = Retention> {
    let drift = prop_oneof![
        Just(Drift::None),
        Just(Drift::Pcm),
        (0.0..1.0f64, 0.0..0.5f64).prop_map(|(nu_mean, nu_sd)| Drift::Constant { nu_mean, nu_sd }),
    ];
    prop_oneof![
        Just(Retention::None),
        (drift, 1e-3..1e3f64).prop_map(|(nu, t0)| Retention::Drift { nu, t0 }),
        (0.0..=1.0f64, 0.0..2.0f64, 0.0..3.0f64, 1e-3..1e4f64).prop_map(
            |(g_relaxed, rate_median, rate_sigma, tau)| {
                Retention::Relaxation(Relaxation {
                    g_relaxed,
                    rate_median,
                    rate_sigma,
                    tau,
                })
            }
        ),
    ]
}

fn failures() -> impl Strategy<Value = Option<Failures>> {
    proptest::option::of(
        (1e-3..1e9f64, 0.1..5.0f64, 0.0..=1.0f64).prop_map(|(tau, shape, p_high)| Failures {
            tau,
            shape,
            p_high,
        }),
    )
}

fn read_noise() -> impl Strategy<Value = ReadNoise1f> {
    prop_oneof![
        Just(ReadNoise1f::None),
        Just(ReadNoise1f::Pcm),
        (0.0..1.0f64).prop_map(|q_s| ReadNoise1f::Constant { q_s }),
    ]
}

proptest! {
    #![proptest_config(props(128))]

    #[test]
    fn programming_stays_within_its_bounds(
        prog in programming(),
        g_max in 0.1..100.0f64,
        upper in proptest::option::of(0.0..=1.0f64),
        fracs in proptest::collection::vec(0.0..=1.0f64, 1..64),
        seed in any::<u64>(),
    ) {
        prog.validate().unwrap();
        let target: Vec<f64> = fracs.iter().map(|f| f * g_max).collect();
        let upper = upper.map(|u| u * g_max);
        let mut out = vec![0.0; target.len()];
        prog.program(&target, g_max, upper, &mut Pcg64Mcg::seed_from_u64(seed), &mut out);
        for &g in &out {
            prop_assert!(g.is_finite() && g >= 0.0, "{g}");
            if let Some(u) = upper {
                prop_assert!(g <= u, "{g} above {u}");
            }
        }
    }

    #[test]
    fn reads_are_never_negative_and_stay_in_range_without_noise(
        retention in retention(),
        noise in read_noise(),
        failures in failures(),
        g_max in 0.1..100.0f64,
        fracs in proptest::collection::vec(0.0..=1.0f64, 1..64),
        log_t in -9.0..10.0f64,
        seed in any::<u64>(),
    ) {
        let g_prog: Vec<f64> = fracs.iter().map(|f| f * g_max).collect();
        let t = 10f64.powf(log_t);
        let mut rng = Pcg64Mcg::seed_from_u64(seed);
        for read_noise in [ReadNoise1f::None, noise] {
            let aging = Aging { retention, read_noise, failures, ..Aging::default() };
            aging.validate().unwrap();
            let draw = aging.draw(&g_prog, g_max, &mut rng);
            let mut out = vec![0.0; g_prog.len()];
            for t in [0.0, t] {
                aging.at(&draw, &g_prog, t, g_max, &mut rng, &mut out);
                for &g in &out {
                    prop_assert!(g.is_finite() && g >= 0.0, "{g} at t = {t}");
                    if read_noise == ReadNoise1f::None {
                        prop_assert!(g <= g_max * (1.0 + 1e-12), "{g} above {g_max} at t = {t}");
                    }
                }
            }
        }
    }
}
