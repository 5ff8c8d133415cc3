//! A fast standard-normal sampler for write noise: the ziggurat method of Marsaglia and Tsang (2000,
//! "The Ziggurat Method for Generating Random Variables", J. Stat. Softw. 5(8)) with 128 layers, drawing
//! one 64-bit word per sample in the common case.
//!
//! The 64-bit word is split so that the layer index (low 7 bits) and the signed 32-bit abscissa (high 32
//! bits) come from disjoint bits; the classic 32-bit form takes both from the same word and correlates
//! them. About 98.8% of the draws return at once; the rest take the wedge test (one more word and an
//! `exp`) or the tail (two more words and two `ln`s per try) and are exact.

use std::sync::LazyLock;

use rand::Rng;

/// Layers of the ziggurat.
const LAYERS: usize = 128;
/// Right edge of the base strip (the start of the tail).
const R: f64 = 3.442_619_855_899;
/// Area of each layer (and of the base strip with its tail).
const V: f64 = 9.912_563_035_262_17e-3;
/// Scale of the signed 32-bit abscissa.
const M1: f64 = 2_147_483_648.0;

/// Acceptance thresholds `k`, widths `w` and density values `f` of the layers.
struct Tables {
    k: [u32; LAYERS],
    w: [f32; LAYERS],
    f: [f32; LAYERS],
}

static TABLES: LazyLock<Tables> = LazyLock::new(|| {
    let mut k = [0u32; LAYERS];
    let mut w = [0f32; LAYERS];
    let mut f = [0f32; LAYERS];
    let mut dn = R;
    let mut tn = dn;
    let q = V / (-0.5 * dn * dn).exp();
    k[0] = ((dn / q) * M1) as u32;
    k[1] = 0;
    w[0] = (q / M1) as f32;
    w[LAYERS - 1] = (dn / M1) as f32;
    f[0] = 1.0;
    f[LAYERS - 1] = (-0.5 * dn * dn).exp() as f32;
    for i in (1..LAYERS - 1).rev() {
        dn = (-2.0 * (V / dn + (-0.5 * dn * dn).exp()).ln()).sqrt();
        k[i + 1] = ((dn / tn) * M1) as u32;
        tn = dn;
        f[i] = (-0.5 * dn * dn).exp() as f32;
        w[i] = (dn / M1) as f32;
    }
    Tables { k, w, f }
});

/// A uniform draw in `(0, 1]` from the high 24 bits of a word (never 0, so `ln` is finite).
#[inline]
fn open_unit(bits: u64) -> f32 {
    ((bits >> 40) as f32 + 1.0) * (1.0 / 16_777_216.0)
}

/// One standard-normal sample.
#[inline]
pub fn standard_normal<R: Rng + ?Sized>(rng: &mut R) -> f32 {
    let t = &*TABLES;
    let bits = rng.next_u64();
    let i = (bits & (LAYERS as u64 - 1)) as usize;
    let hz = (bits >> 32) as u32 as i32;
    if hz.unsigned_abs() < t.k[i] {
        return hz as f32 * t.w[i];
    }
    slow(rng, t, hz, i)
}

/// The rare cases: the tail beyond `R` (layer 0) and the wedges between layers.
#[cold]
fn slow<G: Rng + ?Sized>(rng: &mut G, t: &Tables, mut hz: i32, mut i: usize) -> f32 {
    loop {
        let x = hz as f32 * t.w[i];
        if i == 0 {
            // Tail: Marsaglia's exact method for |x| > R.
            loop {
                let a = -(open_unit(rng.next_u64()) as f64).ln() / R;
                let b = -(open_unit(rng.next_u64()) as f64).ln();
                if b + b >= a * a {
                    let v = (R + a) as f32;
                    return if hz > 0 { v } else { -v };
                }
            }
        }
        let u = open_unit(rng.next_u64());
        if t.f[i] + u * (t.f[i - 1] - t.f[i]) < (-0.5 * x * x).exp() {
            return x;
        }
        let bits = rng.next_u64();
        i = (bits & (LAYERS as u64 - 1)) as usize;
        hz = (bits >> 32) as u32 as i32;
        if hz.unsigned_abs() < t.k[i] {
            return hz as f32 * t.w[i];
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_pcg::Pcg64;

    /// Standard normal CDF (Abramowitz-Stegun 7.1.26 erf approximation, |error| < 1.5e-7).
    pub(crate) fn phi(x: f64) -> f64 {
        let z = x.abs() / std::f64::consts::SQRT_2;
        let t = 1.0 / (1.0 + 0.327_591_1 * z);
        let poly = t
            * (0.254_829_592
                + t * (-0.284_496_736
                    + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
        let erf = 1.0 - poly * (-z * z).exp();
        if x >= 0.0 {
            0.5 * (1.0 + erf)
        } else {
            0.5 * (1.0 - erf)
        }
    }

    /// Checks the mean, variance and kurtosis of `xs` and its Kolmogorov-Smirnov distance to the
    /// standard normal (at the 1% level, critical value `1.63 / sqrt(n)`); leaves `xs` sorted.
    pub(crate) fn assert_standard_normal(xs: &mut [f64]) {
        let n = xs.len();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        let kurt = xs.iter().map(|x| (x - mean).powi(4)).sum::<f64>() / n as f64 / (var * var);
        assert!(mean.abs() < 0.005, "mean {mean}");
        assert!((var - 1.0).abs() < 0.006, "variance {var}");
        assert!((kurt - 3.0).abs() < 0.05, "kurtosis {kurt}");
        xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let d = xs
            .iter()
            .enumerate()
            .map(|(k, x)| {
                let c = phi(*x);
                (c - k as f64 / n as f64)
                    .abs()
                    .max(((k + 1) as f64 / n as f64 - c).abs())
            })
            .fold(0.0, f64::max);
        assert!(d < 1.63 / (n as f64).sqrt(), "KS distance {d}");
    }

    #[test]
    fn moments_and_distribution_match_the_standard_normal() {
        let mut rng = Pcg64::seed_from_u64(11);
        let n = 1_000_000;
        let mut xs: Vec<f64> = (0..n).map(|_| standard_normal(&mut rng) as f64).collect();
        assert_standard_normal(&mut xs);
        // The tail beyond R comes from the exact tail sampler: its mass must be right too.
        let tail = xs.iter().filter(|x| x.abs() > R).count() as f64 / n as f64;
        let want = 2.0 * (1.0 - phi(R));
        assert!(
            (tail - want).abs() < 4.0 * (want / n as f64).sqrt(),
            "tail {tail} vs {want}"
        );
    }

    #[test]
    fn layers_are_consistent() {
        let t = &*TABLES;
        // Widths grow towards the base; densities fall; every threshold lies inside its layer.
        for i in 1..LAYERS {
            assert!(t.f[i] < t.f[i - 1], "density not decreasing at {i}");
            assert!(t.w[i] > 0.0);
        }
        for i in 2..LAYERS {
            assert!(t.k[i] > 0 && (t.k[i] as f64) < M1, "threshold {i}");
        }
    }
}
