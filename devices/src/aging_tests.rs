//! Tests of `aging.rs` (kept apart so the module reads as its code).

use super::*;
use crate::normal::tests::phi;
use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;

fn rng(seed: u64) -> Pcg64Mcg {
    Pcg64Mcg::seed_from_u64(seed)
}

fn close(a: f64, b: f64, tol: f64) {
    assert!((a - b).abs() <= tol, "{a} vs {b} (tol {tol})");
}

fn mean_sd(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let m = xs.iter().sum::<f64>() / n;
    let v = xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0);
    (m, v.sqrt())
}

/// Mean and standard deviation of `|X|`, `X ~ N(mu, s^2)` (the folded normal).
fn folded(mu: f64, s: f64) -> (f64, f64) {
    let a = mu / s;
    let pdf = (-0.5 * a * a).exp() / (2.0 * std::f64::consts::PI).sqrt();
    let m = mu * (1.0 - 2.0 * phi(-a)) + 2.0 * s * pdf;
    (m, (mu * mu + s * s - m * m).sqrt())
}

// -------------------------------------------------------------------- hand-computed formulas

#[test]
fn pcm_programming_sigma_by_hand() {
    // g = 0: c0 = 0.26348.
    close(pcm_prog_sigma(0.0, 25.0), 0.26348, 1e-12);
    // g = 0.5: 0.26348 + 1.9650 * 0.5 - 1.1731 * 0.25 = 0.26348 + 0.9825 - 0.293275 = 0.952705.
    close(pcm_prog_sigma(12.5, 25.0), 0.952705, 1e-12);
    // g = 1: 0.26348 + 1.9650 - 1.1731 = 1.05538.
    close(pcm_prog_sigma(25.0, 25.0), 1.05538, 1e-12);
    // g_max = 50 uS, g = 0.5: twice the 25 uS value, 1.90541.
    close(pcm_prog_sigma(25.0, 50.0), 1.90541, 1e-12);
    // g = 0.2: 0.26348 + 0.393 - 0.046924 = 0.609556.
    close(pcm_prog_sigma(5.0, 25.0), 0.609556, 1e-12);
    // Outside the fit's range g is clamped: above g_max as at g_max, below 0 as at 0.
    close(pcm_prog_sigma(60.0, 25.0), 1.05538, 1e-12);
    close(pcm_prog_sigma(-1.0, 25.0), 0.26348, 1e-12);
    assert_eq!(Programming::Exact.sigma_us(3.0, 25.0), 0.0);
    assert_eq!(
        Programming::Constant { sigma_us: 0.7 }.sigma_us(3.0, 25.0),
        0.7
    );
    close(Programming::Pcm.sigma_us(12.5, 25.0), 0.952705, 1e-12);
}

#[test]
fn pcm_drift_exponent_by_hand() {
    // g = 0.5: ln 0.5 = -0.693147; mu = 0.0155 * 0.693147 + 0.0244 = 0.035144 -> clamped to 0.049;
    // s = 0.0125 * 0.693147 - 0.0059 = 0.002764 -> clamped to 0.008.
    close(pcm_nu_mean(0.5), 0.049, 1e-15);
    close(pcm_nu_sd(0.5), 0.008, 1e-15);
    // g = 1: mu = 0.0244 -> 0.049; s = -0.0059 -> 0.008.
    close(pcm_nu_mean(1.0), 0.049, 1e-15);
    close(pcm_nu_sd(1.0), 0.008, 1e-15);
    // g = 0.1: ln 0.1 = -2.302585; mu = 0.035690 + 0.0244 = 0.060090 (inside the clamp);
    // s = 0.028782 - 0.0059 = 0.022882 (inside).
    close(pcm_nu_mean(0.1), 0.060_090_07, 1e-7);
    close(pcm_nu_sd(0.1), 0.022_882_32, 1e-7);
    // g = 0.05: ln 0.05 = -2.995732; mu = 0.046434 + 0.0244 = 0.070834; s = 0.037447 - 0.0059
    // = 0.031547.
    close(pcm_nu_mean(0.05), 0.070_833_85, 1e-7);
    close(pcm_nu_sd(0.05), 0.031_546_66, 1e-7);
    // g = 0.01: ln 0.01 = -4.605170; mu = 0.071380 + 0.0244 = 0.095780 (inside);
    // s = 0.057565 - 0.0059 = 0.051665 -> clamped to 0.045.
    close(pcm_nu_mean(0.01), 0.095_780_14, 1e-7);
    close(pcm_nu_sd(0.01), 0.045, 1e-15);
    // g = 0.001: mu = 0.0155 * 6.907755 + 0.0244 = 0.131470 -> 0.1.
    close(pcm_nu_mean(0.001), 0.1, 1e-15);
    // g = 0 is floored at 1e-7, deep in the clamps: the fit's values for an empty device.
    close(pcm_nu_mean(0.0), 0.1, 1e-15);
    close(pcm_nu_sd(0.0), 0.045, 1e-15);
    // Through the enum: g_prog = 2.5 uS of 25 is g = 0.1.
    let (m, s) = Drift::Pcm.nu_mean_sd(2.5, 25.0);
    close(m, 0.060_090_07, 1e-7);
    close(s, 0.022_882_32, 1e-7);
}

#[test]
fn drift_factor_by_hand() {
    // nu = 0.05, t = 2000 s, t0 = 20 s: 100^-0.05 = exp(-0.05 * 4.605170) = exp(-0.230259)
    // = 0.794328.
    close(drift_factor(0.05, 2000.0, 20.0), 0.794_328_23, 1e-8);
    // One year (3.1536e7 s), nu = 0.1: (1.5768e6)^-0.1 = exp(-0.1 * 14.270870) = exp(-1.427087)
    // = 0.240006.
    close(drift_factor(0.1, 3.1536e7, 20.0), 0.240_006_13, 1e-8);
    // No drift up to t0, and none with nu = 0.
    assert_eq!(drift_factor(0.1, 0.0, 20.0), 1.0);
    assert_eq!(drift_factor(0.1, 19.9, 20.0), 1.0);
    assert_eq!(drift_factor(0.1, 20.0, 20.0), 1.0);
    assert_eq!(drift_factor(0.0, 1e9, 20.0), 1.0);
}

#[test]
fn pcm_read_noise_by_hand() {
    // g = 1: 0.0088 / 1 = 0.0088.
    close(pcm_q_s(1.0), 0.0088, 1e-15);
    // g = 0.5: 0.5^0.65 = exp(-0.65 * 0.693147) = exp(-0.450546) = 0.637280; 0.0088 / 0.637280
    // = 0.013809.
    close(pcm_q_s(0.5), 0.013_808_68, 1e-7);
    // g = 0.1: 0.1^0.65 = exp(-1.496654) = 0.223872; 0.0088 / 0.223872 = 0.039308.
    close(pcm_q_s(0.1), 0.039_308_3, 1e-6);
    // g = 1e-4: 1e-4^0.65 = 0.002512; 0.0088 / 0.002512 = 3.50 -> capped at 0.2.
    close(pcm_q_s(1e-4), 0.2, 1e-15);
    // g = 0: the floor 1e-3 gives 8.8 -> capped at 0.2.
    close(pcm_q_s(0.0), 0.2, 1e-15);
    // Time factor at t = 1 s: (1 + 2.5e-7) / 5e-7 = 2000000.5; ln = 14.508658; sqrt = 3.809023.
    close(read_noise_time_factor(1.0, PCM_T_READ), 3.809_023, 1e-6);
    // t = 0 gives ln 0.5 < 0 and t = t_read gives ln 1 = 0: no noise.
    assert_eq!(read_noise_time_factor(0.0, PCM_T_READ), 0.0);
    assert_eq!(read_noise_time_factor(PCM_T_READ, PCM_T_READ), 0.0);
    // Through the enum: g = 12.5 of 25 uS is g = 0.5.
    close(ReadNoise1f::Pcm.q_s(12.5, 25.0), 0.013_808_68, 1e-7);
    assert_eq!(ReadNoise1f::Constant { q_s: 0.03 }.q_s(1.0, 25.0), 0.03);
    assert_eq!(ReadNoise1f::None.q_s(1.0, 25.0), 0.0);
}

#[test]
fn relaxation_by_hand() {
    let r = Relaxation {
        g_relaxed: 0.5,
        rate_median: 0.1,
        rate_sigma: 0.0,
        tau: 1.0,
    };
    // G_r = 12.5 uS; t = 9 s: ln(10) = 2.302585; factor 1 - 0.2302585 = 0.7697415;
    // 12.5 + 7.5 * 0.7697415 = 18.273061.
    close(r.conductance(20.0, 0.1, 9.0, 25.0), 18.273_061, 1e-6);
    // From below: 2 uS -> 12.5 - 10.5 * 0.7697415 = 4.417714.
    close(r.conductance(2.0, 0.1, 9.0, 25.0), 4.417_714, 1e-6);
    // At t = 0 as programmed; after ln(1 + t / tau) >= 1 / r = 10 (t >= e^10 - 1 = 22025.5 s)
    // fully relaxed.
    assert_eq!(r.conductance(20.0, 0.1, 0.0, 25.0), 20.0);
    assert_eq!(r.conductance(20.0, 0.1, 22_100.0, 25.0), 12.5);
    assert_eq!(relaxation_factor(0.1, 1e12, 1.0), 0.0);
}

#[test]
fn weibull_by_hand() {
    // tau = 100 s, shape 2, t = 50 s: 1 - exp(-0.25) = 0.221199.
    close(
        weibull_failed_fraction(50.0, 100.0, 2.0),
        0.221_199_22,
        1e-8,
    );
    // At t = tau: 1 - 1/e = 0.632121.
    close(
        weibull_failed_fraction(100.0, 100.0, 0.5),
        0.632_120_56,
        1e-8,
    );
    assert_eq!(weibull_failed_fraction(0.0, 100.0, 2.0), 0.0);
}

// -------------------------------------------------------------------- Aging::at, deterministic

#[test]
fn drift_through_at_matches_the_formula() {
    let aging = Aging {
        retention: Retention::Drift {
            nu: Drift::Constant {
                nu_mean: 0.05,
                nu_sd: 0.0,
            },
            t0: 20.0,
        },
        ..Aging::default()
    };
    let g = [10.0, 0.0, 25.0];
    let d = aging.draw(&g, 25.0, &mut rng(1));
    assert_eq!(d.nu, vec![0.05; 3]);
    let mut out = [0.0; 3];
    aging.at(&d, &g, 2000.0, 25.0, &mut rng(2), &mut out);
    // 10 * 0.794328 = 7.94328; 25 * 0.794328 = 19.858206.
    close(out[0], 7.943_282_3, 1e-6);
    assert_eq!(out[1], 0.0);
    close(out[2], 19.858_205_9, 1e-6);
    aging.at(&d, &g, 10.0, 25.0, &mut rng(2), &mut out);
    assert_eq!(out, g, "no drift before t0");
}

#[test]
fn failed_devices_are_stuck() {
    let all_fail = |p_high| Aging {
        retention: Retention::Relaxation(Relaxation::default()),
        failures: Some(Failures {
            tau: 1e-12,
            shape: 1.0,
            p_high,
        }),
        ..Aging::default()
    };
    let g = [3.0, 7.0, 11.0];
    let mut out = [0.0; 3];
    for (p, want) in [(1.0, 25.0), (0.0, 0.0)] {
        let a = all_fail(p);
        let d = a.draw(&g, 25.0, &mut rng(5));
        // The failure times are ~1e-12 s: at 1 s every device is stuck.
        a.at(&d, &g, 1.0, 25.0, &mut rng(6), &mut out);
        assert_eq!(out, [want; 3]);
    }
    // Never-failing devices relax normally.
    let a = Aging {
        failures: Some(Failures {
            tau: 1e30,
            shape: 1.0,
            p_high: 1.0,
        }),
        ..all_fail(1.0)
    };
    let d = a.draw(&g, 25.0, &mut rng(5));
    a.at(&d, &g, 0.0, 25.0, &mut rng(6), &mut out);
    assert_eq!(out, g);
}

// -------------------------------------------------------------------- statistics

#[test]
fn pcm_exponents_match_the_fit_over_many_devices() {
    let n = 200_000;
    let aging = Aging::pcm();
    for (g_norm, mu, s) in [
        (0.1, 0.060_090_07, 0.022_882_32),
        (0.5, 0.049, 0.008),
        (0.01, 0.095_780_14, 0.045),
    ] {
        let g = vec![g_norm * 25.0; n];
        let d = aging.draw(&g, 25.0, &mut rng(7));
        assert!(d.nu.iter().all(|&nu| nu >= 0.0));
        let (m, sd) = mean_sd(&d.nu);
        let (want_m, want_sd) = folded(mu, s);
        // Folding barely matters here (mu / s >= 2.1): the folded mean is within 1% of mu.
        assert!((want_m - mu).abs() < 0.01 * mu);
        let se = want_sd / (n as f64).sqrt();
        close(m, want_m, 5.0 * se);
        close(sd, want_sd, 0.01 * want_sd);
    }
}

#[test]
fn constant_exponents_fold_at_zero() {
    // nu_mean = 0, nu_sd = 0.02: |N(0, s^2)| has mean s sqrt(2 / pi) = 0.0159577.
    let n = 200_000;
    let drift = Drift::Constant {
        nu_mean: 0.0,
        nu_sd: 0.02,
    };
    let g = vec![1.0; n];
    let mut nu = vec![0.0; n];
    drift.draw_nu(&g, 25.0, &mut rng(8), &mut nu);
    let (m, _) = mean_sd(&nu);
    close(m, 0.015_957_69, 5.0 * 0.012 / (n as f64).sqrt());
    assert!(nu.iter().all(|&x| x >= 0.0));
}

#[test]
fn programming_noise_has_the_fitted_spread() {
    let n = 200_000;
    // g = 0.5 of 25 uS: sigma 0.952705 uS; 12.5 uS is 13 sigma above 0, so no clipping.
    let target = vec![12.5; n];
    let mut out = vec![0.0; n];
    Programming::Pcm.program(&target, 25.0, None, &mut rng(9), &mut out);
    let (m, sd) = mean_sd(&out);
    close(m, 12.5, 5.0 * 0.952705 / (n as f64).sqrt());
    close(sd, 0.952705, 0.01 * 0.952705);
    // Exact draws nothing and copies.
    let mut r = rng(9);
    Programming::Exact.program(&target, 25.0, None, &mut r, &mut out);
    assert_eq!(out, target);
    let mut r0 = rng(9);
    assert_eq!(r.next_u64(), r0.next_u64(), "Exact drew from the generator");
}

#[test]
fn programming_clips_to_the_bounds() {
    let n = 20_000;
    // At 0 and at g_max the spread reaches past both bounds.
    let target: Vec<f64> = (0..n)
        .map(|i| if i % 2 == 0 { 0.0 } else { 25.0 })
        .collect();
    let mut out = vec![0.0; n];
    Programming::Constant { sigma_us: 2.0 }.program(
        &target,
        25.0,
        Some(25.0),
        &mut rng(10),
        &mut out,
    );
    assert!(out.iter().all(|&g| (0.0..=25.0).contains(&g)));
    // About half of each end sits on its bound.
    let at_bounds = out.iter().filter(|&&g| g == 0.0 || g == 25.0).count();
    close(at_bounds as f64 / n as f64, 0.5, 0.03);
    // Without an upper bound only 0 clips.
    Programming::Pcm.program(&target, 25.0, None, &mut rng(10), &mut out);
    assert!(out.iter().all(|&g| g >= 0.0));
    assert!(out.iter().any(|&g| g > 25.0));
}

#[test]
fn read_noise_has_the_fitted_spread() {
    let n = 200_000;
    let aging = Aging {
        read_noise: ReadNoise1f::Pcm,
        ..Aging::default()
    };
    let g = vec![12.5; n];
    let d = aging.draw(&g, 25.0, &mut rng(11));
    let mut out = vec![0.0; n];
    aging.at(&d, &g, 1.0, 25.0, &mut rng(12), &mut out);
    // Relative sd q_s(0.5) * 3.809023 = 0.013809 * 3.809023 = 0.052598 -> 0.657 uS.
    let want = 12.5 * 0.013_808_68 * 3.809_023;
    let (m, sd) = mean_sd(&out);
    close(m, 12.5, 5.0 * want / (n as f64).sqrt());
    close(sd, want, 0.01 * want);
    // A new read draws new noise.
    let first = out.clone();
    aging.at(&d, &g, 1.0, 25.0, &mut rng(13), &mut out);
    assert_ne!(first, out);
}

#[test]
fn relaxation_rates_are_log_normal() {
    let n = 200_000;
    let r = Relaxation {
        g_relaxed: 0.3,
        rate_median: 0.05,
        rate_sigma: 0.4,
        tau: 2.0,
    };
    let aging = Aging {
        retention: Retention::Relaxation(r),
        ..Aging::default()
    };
    let d = aging.draw(&vec![1.0; n], 25.0, &mut rng(14));
    let logs: Vec<f64> = d.rate.iter().map(|x| x.ln()).collect();
    let (m, sd) = mean_sd(&logs);
    // ln 0.05 = -2.995732.
    close(m, -2.995_732, 5.0 * 0.4 / (n as f64).sqrt());
    close(sd, 0.4, 0.01 * 0.4);
}

#[test]
fn failure_fraction_follows_the_weibull_law() {
    let n = 100_000;
    let f = Failures {
        tau: 100.0,
        shape: 2.0,
        p_high: 0.3,
    };
    let aging = Aging {
        failures: Some(f),
        ..Aging::default()
    };
    let g = vec![10.0; n];
    let d = aging.draw(&g, 25.0, &mut rng(15));
    let mut out = vec![0.0; n];
    for t in [0.0, 20.0, 50.0, 100.0, 300.0] {
        let p = f.failed_fraction(t);
        let failed = (0..n).filter(|&i| d.failed(i, t)).count() as f64 / n as f64;
        close(failed, p, 5.0 * (p * (1.0 - p) / n as f64).sqrt() + 1e-12);
        // What reads see agrees: failed devices at 0 or 25, the others at 10.
        aging.at(&d, &g, t, 25.0, &mut rng(16), &mut out);
        let stuck = out.iter().filter(|&&x| x != 10.0).count() as f64 / n as f64;
        assert_eq!(stuck, failed);
    }
    // At 300 s (1 - exp(-9): nearly all failed) a fraction p_high of them reads g_max.
    let high = out.iter().filter(|&&x| x == 25.0).count() as f64 / n as f64;
    close(
        high,
        0.3 * f.failed_fraction(300.0),
        5.0 * (0.21 / n as f64).sqrt(),
    );
}

// -------------------------------------------------------------------- determinism

fn everything() -> Aging {
    Aging {
        failures: Some(Failures {
            tau: 1e6,
            shape: 0.7,
            p_high: 0.5,
        }),
        ..Aging::pcm()
    }
}

#[test]
fn same_seed_same_conductances() {
    let a = everything();
    let g: Vec<f64> = (0..500).map(|i| i as f64 * 0.05).collect();
    let run = || {
        let d = a.draw(&g, 25.0, &mut rng(17));
        let mut out = vec![0.0; g.len()];
        a.at(&d, &g, 3600.0, 25.0, &mut rng(18), &mut out);
        (d, out)
    };
    assert_eq!(run(), run());
}

#[test]
fn first_devices_do_not_depend_on_how_many_follow() {
    let a = everything();
    let g: Vec<f64> = (0..400).map(|i| i as f64 * 0.06).collect();
    let long = a.draw(&g, 25.0, &mut rng(19));
    let short = a.draw(&g[..100], 25.0, &mut rng(19));
    assert_eq!(short.nu[..], long.nu[..100]);
    assert_eq!(short.fail_time[..], long.fail_time[..100]);
    assert_eq!(short.fail_high[..], long.fail_high[..100]);
}

#[test]
fn draws_per_device_are_as_documented() {
    // Drift + failures: one normal and two uniforms (three words in the common case) per device;
    // checked by replaying the documented order by hand.
    let a = everything();
    let g = [5.0, 20.0];
    let d = a.draw(&g, 25.0, &mut rng(20));
    let mut r = rng(20);
    let f = a.failures.unwrap();
    for (i, &gi) in g.iter().enumerate() {
        let nu = (pcm_nu_mean(gi / 25.0) + pcm_nu_sd(gi / 25.0) * normal(&mut r)).abs();
        assert_eq!(d.nu[i], nu);
        let u: f64 = r.random();
        assert_eq!(
            d.fail_time[i],
            f.tau * (-(1.0 - u).ln()).powf(1.0 / f.shape)
        );
        assert_eq!(d.fail_high[i], r.random::<f64>() < f.p_high);
    }
    // A read draws one normal per device and nothing else, at any t.
    let mut out = [0.0; 2];
    for t in [0.0, 1e5] {
        let mut r = rng(21);
        a.at(&d, &g, t, 25.0, &mut r, &mut out);
        let mut r0 = rng(21);
        normal(&mut r0);
        normal(&mut r0);
        assert_eq!(r.next_u64(), r0.next_u64());
    }
}

// -------------------------------------------------------------------- validation

#[test]
fn every_parameter_is_validated() {
    assert!(Aging::pcm().validate().is_ok());
    assert!(everything().validate().is_ok());
    assert!(Aging::default().validate().is_ok());
    let relax = |f: fn(&mut Relaxation)| {
        let mut r = Relaxation::default();
        f(&mut r);
        Aging {
            retention: Retention::Relaxation(r),
            ..Aging::default()
        }
    };
    let fail = |f: fn(&mut Failures)| {
        let mut x = Failures {
            tau: 1.0,
            shape: 1.0,
            p_high: 0.5,
        };
        f(&mut x);
        Aging {
            failures: Some(x),
            ..Aging::default()
        }
    };
    let drift = |nu_mean, nu_sd, t0| Aging {
        retention: Retention::Drift {
            nu: Drift::Constant { nu_mean, nu_sd },
            t0,
        },
        ..Aging::default()
    };
    let cases: Vec<(Aging, &str)> = vec![
        (drift(-0.1, 0.0, 20.0), "drift.nu_mean"),
        (drift(f64::NAN, 0.0, 20.0), "drift.nu_mean"),
        (drift(0.1, -1.0, 20.0), "drift.nu_sd"),
        (drift(0.1, f64::INFINITY, 20.0), "drift.nu_sd"),
        (drift(0.1, 0.0, 0.0), "drift.t0"),
        (drift(0.1, 0.0, f64::NAN), "drift.t0"),
        (
            Aging {
                read_noise: ReadNoise1f::Constant { q_s: -0.1 },
                ..Aging::default()
            },
            "read_noise.q_s",
        ),
        (
            Aging {
                t_read: 0.0,
                ..Aging::default()
            },
            "t_read",
        ),
        (relax(|r| r.g_relaxed = 1.5), "relaxation.g_relaxed"),
        (relax(|r| r.g_relaxed = f64::NAN), "relaxation.g_relaxed"),
        (relax(|r| r.rate_median = -1.0), "relaxation.rate_median"),
        (relax(|r| r.rate_sigma = 11.0), "relaxation.rate_sigma"),
        (relax(|r| r.rate_sigma = f64::NAN), "relaxation.rate_sigma"),
        (relax(|r| r.tau = 0.0), "relaxation.tau"),
        (relax(|r| r.tau = f64::INFINITY), "relaxation.tau"),
        (fail(|f| f.tau = -1.0), "failures.tau"),
        (fail(|f| f.shape = 0.0), "failures.shape"),
        (fail(|f| f.shape = f64::NAN), "failures.shape"),
        (fail(|f| f.p_high = 1.01), "failures.p_high"),
    ];
    for (a, key) in cases {
        let e = a.validate().expect_err(key);
        assert_eq!(e.key, key, "{e}");
    }
    let e = Programming::Constant { sigma_us: -1.0 }
        .validate()
        .unwrap_err();
    assert_eq!(e.key, "programming.sigma_us");
    assert!(e.to_string().starts_with("programming.sigma_us: "), "{e}");
    assert!(Programming::Pcm.validate().is_ok());
}
