//! Bulk standard-normal samples for the write noise of the batched write path: eight independent
//! xoshiro128++ generators (Blackman and Vigna, "Scrambled linear pseudorandom number generators",
//! ACM TOMS 47(4), 2021) side by side, their words turned into normal pairs by the Box-Muller transform
//! (Box and Muller, Ann. Math. Stat. 29(2), 1958) in single precision.
//!
//! Every operation is a lane-wise integer or IEEE-754 operation (adds, multiplies, one division, one
//! square root, no fused multiply-add), written as loops over the eight lanes that the compiler turns
//! into SIMD instructions. On x86-64 CPUs with AVX2 the same loops run in 256-bit registers; the
//! results are the same bits on every CPU (tested).
//!
//! Accuracy: the logarithm and the sine and cosine are polynomials with relative errors below
//! `2e-7` (single precision). The radius uses 31 random bits, so the largest magnitude a sample can
//! reach is `sqrt(2 ln 2^32) = 6.66`; beyond it the normal law has a mass of `3e-11` (about one sample
//! in 37 billion is cut off). The angle uses 32 bits.

// Lane loops index several arrays in step on purpose: that is the shape the vectorizer recognizes.
#![allow(clippy::needless_range_loop)]

use rand::Rng;

/// Lanes: independent generators stepped together.
pub const LANES: usize = 8;

/// Words of state ([`NormalLanes::words`]).
pub const WORDS: usize = 4 * LANES;

/// Samples produced per step of all lanes (two per lane).
pub const BLOCK: usize = 2 * LANES;

/// Eight xoshiro128++ generators, stepped together, with a Box-Muller transform on top. The whole
/// state is the 128 bytes of [`NormalLanes::words`]; it can be saved and restored exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalLanes {
    s: [[u32; LANES]; 4],
}

impl NormalLanes {
    /// Seeds the lanes from `rng` (each lane's 128-bit state is drawn; an all-zero lane, which would
    /// stay zero, is replaced).
    pub fn from_rng<R: Rng + ?Sized>(rng: &mut R) -> Self {
        let mut s = [[0u32; LANES]; 4];
        for l in 0..LANES {
            loop {
                let (a, b) = (rng.next_u64(), rng.next_u64());
                let w = [a as u32, (a >> 32) as u32, b as u32, (b >> 32) as u32];
                if w != [0; 4] {
                    for (k, v) in w.into_iter().enumerate() {
                        s[k][l] = v;
                    }
                    break;
                }
            }
        }
        NormalLanes { s }
    }

    /// The state as 32 words (lane-major: lane 0's four words first).
    pub fn words(&self) -> [u32; WORDS] {
        let mut out = [0u32; WORDS];
        for l in 0..LANES {
            for k in 0..4 {
                out[4 * l + k] = self.s[k][l];
            }
        }
        out
    }

    /// Restores a state made by [`NormalLanes::words`]; refuses an all-zero lane (it cannot come from
    /// a seeded generator and would stay zero).
    pub fn from_words(words: &[u32; WORDS]) -> Option<Self> {
        let mut s = [[0u32; LANES]; 4];
        for l in 0..LANES {
            if words[4 * l..4 * l + 4] == [0; 4] {
                return None;
            }
            for k in 0..4 {
                s[k][l] = words[4 * l + k];
            }
        }
        Some(NormalLanes { s })
    }

    /// Fills `out` with standard-normal samples. Whole blocks of [`BLOCK`] samples are generated: the
    /// unused rest of the last block is dropped, so the stream advances by `ceil(len / BLOCK)` steps.
    pub fn fill(&mut self, out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2.
            return unsafe { fill_avx2(&mut self.s, out) };
        }
        fill_body(&mut self.s, out)
    }

    /// [`NormalLanes::fill`] without the run-time choice of instructions (the portable build of the
    /// same loops); for tests that compare the two.
    pub fn fill_portable(&mut self, out: &mut [f32]) {
        fill_body(&mut self.s, out)
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn fill_avx2(s: &mut [[u32; LANES]; 4], out: &mut [f32]) {
    fill_body(s, out)
}

#[inline(always)]
fn fill_body(s: &mut [[u32; LANES]; 4], out: &mut [f32]) {
    let mut chunks = out.chunks_exact_mut(BLOCK);
    for c in &mut chunks {
        let b = block(s);
        c.copy_from_slice(&b);
    }
    let rest = chunks.into_remainder();
    if !rest.is_empty() {
        let b = block(s);
        rest.copy_from_slice(&b[..rest.len()]);
    }
}

/// One xoshiro128++ step of every lane: the output words.
#[inline(always)]
fn next(s: &mut [[u32; LANES]; 4]) -> [u32; LANES] {
    let [s0, s1, s2, s3] = s;
    let mut sum = [0u32; LANES];
    for l in 0..LANES {
        sum[l] = s0[l].wrapping_add(s3[l]);
    }
    let mut r = [0u32; LANES];
    for l in 0..LANES {
        r[l] = rotl(sum[l], 7).wrapping_add(s0[l]);
    }
    for l in 0..LANES {
        let t = s1[l] << 9;
        s2[l] ^= s0[l];
        s3[l] ^= s1[l];
        s1[l] ^= s2[l];
        s0[l] ^= s3[l];
        s2[l] ^= t;
        s3[l] = rotl(s3[l], 11);
    }
    r
}

/// `x` rotated left by `k` (`0 < k < 32`) as two shifts, which vectorize on every x86-64 level.
#[inline(always)]
fn rotl(x: u32, k: u32) -> u32 {
    (x << k).wrapping_add(x >> (32 - k))
}

const LN2: f32 = std::f32::consts::LN_2;
const FRAC_PI_2: f32 = std::f32::consts::FRAC_PI_2;

/// `ln(u)` for `u` in `(0, 1]`: `u = m 2^e` with `m` in `[sqrt(1/2), sqrt(2))`, then
/// `ln m = 2 atanh(t)` with `t = (m - 1) / (m + 1)`, `|t| < 0.172`, as its series to `t^9`.
#[inline(always)]
fn ln_unit(u: f32) -> f32 {
    let bits = u.to_bits();
    let e = ((bits >> 23) & 0xff) as i32 - 127;
    let m = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000);
    let big = m > std::f32::consts::SQRT_2;
    let m = if big { m * 0.5 } else { m };
    let e = e + i32::from(big);
    let t = (m - 1.0) / (m + 1.0);
    let t2 = t * t;
    let series = 1.0 + t2 * (1.0 / 3.0 + t2 * (1.0 / 5.0 + t2 * (1.0 / 7.0 + t2 * (1.0 / 9.0))));
    2.0 * t * series + e as f32 * LN2
}

/// `(cos a, sin a)` for `|a| <= pi/4`: Taylor series to `a^10` and `a^9`.
#[inline(always)]
fn cos_sin(a: f32) -> (f32, f32) {
    let a2 = a * a;
    let c = 1.0
        + a2 * (-1.0 / 2.0
            + a2 * (1.0 / 24.0
                + a2 * (-1.0 / 720.0 + a2 * (1.0 / 40_320.0 + a2 * (-1.0 / 3_628_800.0)))));
    let s = a
        * (1.0
            + a2 * (-1.0 / 6.0
                + a2 * (1.0 / 120.0 + a2 * (-1.0 / 5040.0 + a2 * (1.0 / 362_880.0)))));
    (c, s)
}

/// Sixteen samples: lane `l` gives samples `2l` and `2l + 1`.
#[inline(always)]
fn block(s: &mut [[u32; LANES]; 4]) -> [f32; BLOCK] {
    let ra = next(s);
    let rb = next(s);
    let mut out = [0.0f32; BLOCK];
    let mut z1 = [0.0f32; LANES];
    let mut z2 = [0.0f32; LANES];
    for l in 0..LANES {
        // Radius: u in (0, 1] from 31 bits (never 0, so the logarithm is finite).
        let u = ((ra[l] >> 1) as i32 as f32 + 0.5) * (1.0 / 2_147_483_648.0);
        let r = (-2.0 * ln_unit(u)).max(0.0).sqrt();
        // Angle: a quadrant from 2 bits, an offset in (-pi/4, pi/4) from 30 bits.
        let q = rb[l] >> 30;
        let f = ((rb[l] & 0x3fff_ffff) as i32 as f32 + 0.5) * (1.0 / 1_073_741_824.0);
        let (c, sn) = cos_sin((f - 0.5) * FRAC_PI_2);
        // Rotate (cos a, sin a) by q quarter turns: swap on odd q, then the signs.
        let odd = q & 1 == 1;
        let (x, y) = if odd { (sn, c) } else { (c, sn) };
        let neg_x = (q ^ (q >> 1)) & 1;
        let neg_y = q >> 1;
        let x = f32::from_bits(x.to_bits() ^ (neg_x << 31));
        let y = f32::from_bits(y.to_bits() ^ (neg_y << 31));
        z1[l] = r * x;
        z2[l] = r * y;
    }
    out[..LANES].copy_from_slice(&z1);
    out[LANES..].copy_from_slice(&z2);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normal::tests::{assert_standard_normal, phi};
    use rand::SeedableRng;
    use rand_pcg::Pcg64;

    fn lanes(seed: u64) -> NormalLanes {
        NormalLanes::from_rng(&mut Pcg64::seed_from_u64(seed))
    }

    #[test]
    fn fills_are_consecutive_blocks() {
        // Whatever the length, a fill is the next blocks of the stream in order, and the unused rest
        // of the last block is dropped.
        for len in [0, 1, 15, 16, 17, 31, 32, 33, 47, 48, 64, 100, 257] {
            let (mut a, mut b) = (lanes(3), lanes(3));
            let mut out = vec![0.0f32; len];
            a.fill(&mut out);
            let mut want = Vec::new();
            while want.len() < len {
                want.extend_from_slice(&block(&mut b.s));
            }
            want.truncate(len);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&out), bits(&want), "length {len}");
            assert_eq!(a, b, "stream position after {len}");
        }
    }

    #[test]
    fn the_generator_is_xoshiro128_plus_plus() {
        // Reference values of xoshiro128++ from the state (1, 2, 3, 4), stepped with plain scalar code.
        let mut s = [[0u32; LANES]; 4];
        for l in 0..LANES {
            for k in 0..4 {
                s[k][l] = (k + 1) as u32;
            }
        }
        let (mut a, mut b, mut c, mut d) = (1u32, 2u32, 3u32, 4u32);
        for _ in 0..100 {
            let want = a.wrapping_add(d).rotate_left(7).wrapping_add(a);
            let t = b << 9;
            c ^= a;
            d ^= b;
            b ^= c;
            a ^= d;
            c ^= t;
            d = d.rotate_left(11);
            assert_eq!(next(&mut s), [want; LANES]);
        }
        // The published first output of xoshiro128++ from (1, 2, 3, 4) is rotl(1 + 4, 7) + 1 = 641.
        let mut s = [[1u32; LANES], [2; LANES], [3; LANES], [4; LANES]];
        assert_eq!(next(&mut s)[0], 641);
    }

    #[test]
    fn dispatched_and_portable_fills_give_the_same_bits() {
        let (mut a, mut b) = (lanes(3), lanes(3));
        for len in [1usize, 15, 16, 17, 1000, 4099] {
            let mut x = vec![0.0f32; len];
            let mut y = vec![0.0f32; len];
            a.fill(&mut x);
            b.fill_portable(&mut y);
            let xb: Vec<u32> = x.iter().map(|v| v.to_bits()).collect();
            let yb: Vec<u32> = y.iter().map(|v| v.to_bits()).collect();
            assert_eq!(xb, yb, "len {len}");
        }
        assert_eq!(a, b);
    }

    #[test]
    fn fills_advance_by_whole_blocks_and_state_round_trips() {
        let mut a = lanes(5);
        let saved = NormalLanes::from_words(&a.words()).unwrap();
        assert_eq!(saved, a);
        let mut x = vec![0.0f32; 20];
        a.fill(&mut x);
        let mut b = saved.clone();
        let mut y = vec![0.0f32; 32];
        b.fill(&mut y);
        // 20 samples take two blocks, like 32: same prefix, same state after.
        assert_eq!(x[..], y[..20]);
        assert_eq!(a, b);
        assert!(NormalLanes::from_words(&[0; WORDS]).is_none());
    }

    #[test]
    fn samples_follow_the_standard_normal_law() {
        let mut g = lanes(11);
        let n = 1_000_000;
        let mut buf = vec![0.0f32; n];
        g.fill(&mut buf);
        let mut xs: Vec<f64> = buf.iter().map(|v| *v as f64).collect();
        assert_standard_normal(&mut xs);
        // The two samples of a pair are uncorrelated, and so are neighbouring lanes.
        let pair: f64 = buf
            .chunks_exact(BLOCK)
            .flat_map(|b| (0..LANES).map(move |l| b[l] as f64 * b[l + LANES] as f64))
            .sum::<f64>()
            / (n / 2) as f64;
        let lane: f64 = buf
            .windows(2)
            .map(|w| w[0] as f64 * w[1] as f64)
            .sum::<f64>()
            / n as f64;
        assert!(pair.abs() < 0.01 && lane.abs() < 0.01, "{pair} {lane}");
        // Tail mass beyond 3 sigma.
        let tail = xs.iter().filter(|x| x.abs() > 3.0).count() as f64 / n as f64;
        let want = 2.0 * (1.0 - phi(3.0));
        assert!(
            (tail - want).abs() < 4.0 * (want / n as f64).sqrt(),
            "tail {tail} vs {want}"
        );
    }

    #[test]
    fn logarithm_and_rotation_are_accurate() {
        for k in 1..2000 {
            let u = k as f32 / 2000.0;
            let got = ln_unit(u) as f64;
            let want = (u as f64).ln();
            assert!((got - want).abs() <= 2e-7 * want.abs().max(1e-3), "ln {u}");
        }
        assert_eq!(ln_unit(1.0), 0.0);
        for k in -100..=100 {
            let a = k as f32 / 100.0 * FRAC_PI_2 / 2.0;
            let (c, s) = cos_sin(a);
            assert!((c as f64 - (a as f64).cos()).abs() < 2e-7);
            assert!((s as f64 - (a as f64).sin()).abs() < 2e-7);
        }
    }
}
