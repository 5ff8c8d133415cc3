//! Seeded random streams. Every consumer of randomness gets its own stream, derived from the scenario's
//! master seed, a purpose and an index (a tile id, a sweep point), so results do not depend on the order
//! in which threads run.

use std::convert::Infallible;

use rand::TryRng;

/// What a random stream is used for; part of the stream's identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub enum Purpose {
    /// Device-to-device variation and stuck devices, drawn once at construction.
    DeviceDraw = 1,
    /// Cycle-to-cycle write noise and read noise.
    Write = 2,
    /// Order of the training samples, per epoch.
    Shuffle = 3,
    /// Initial weights of a network.
    Init = 4,
    /// Which devices are traced.
    Trace = 5,
    /// Generated datasets.
    Data = 6,
    /// Seeds of sweep points: index = the point's index in the expanded plan.
    SweepPoint = 7,
    /// Signs of random nudges (equilibrium propagation), per sample.
    Nudge = 8,
    /// Local-rule experiments: teachers, inputs, flipped neurons.
    Local = 9,
    /// Seeds of a tile's bulk write-noise lanes (the batched constant-step write path).
    WriteNoise = 10,
    /// Deployment: statistical programming noise and each device's drift, relaxation and failure
    /// draws (index: layer, tile and device array).
    Deploy = 11,
    /// Deployment: the 1/f read noise of the conductances at one time of one repeat.
    Aging = 12,
    /// Deployment: the periphery's noise of the reads at one time of one repeat and one
    /// compensation (each tile's stream is replaced by this one).
    InferRead = 13,
    /// Hardware-aware training: the weight noise injected into a float network's forward pass, per
    /// training sample (index: the samples the training ledger has counted).
    WeightNoise = 14,
}

/// SplitMix64 finaliser: spreads nearby seeds over the whole state space.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The stream for `(seed, purpose, index)`: a PCG64 whose state comes from the seed and whose stream
/// selector comes from the purpose and index, so streams of different indices never overlap.
pub fn stream(seed: u64, purpose: Purpose, index: u64) -> Pcg {
    let state = (u128::from(mix(seed)) << 64) | u128::from(mix(seed ^ 0xA1B2_C3D4_E5F6_0718));
    let selector = (u128::from(purpose as u64) << 64) | u128::from(index);
    Pcg::new(state, selector)
}

/// The LCG multiplier of PCG64 (XSL RR 128/64).
const MULTIPLIER: u128 = 0x2360_ED05_1FC6_5DA4_4385_DF64_9FCC_F645;

/// PCG64 (XSL RR 128/64, the `rand_pcg::Pcg64` generator): the same outputs and the same
/// `(state, increment)` pair, plus [`Pcg::train`], which draws a stochastic pulse train with four
/// independent LCG jumps per round instead of one dependent step per draw.
///
/// An LCG step is a 128-bit multiply-add whose result feeds the next step, so a plain loop of draws
/// waits on the multiplier's latency. `train` computes states `s + 1 .. s + 4` from `s` with the
/// precomputed jumps `s -> M^k s + C_k`, then the next four from `s + 4`: the same states, the same
/// outputs, four times as many multiplies in flight.
#[derive(Clone, PartialEq, Eq)]
pub struct Pcg {
    state: u128,
    increment: u128,
    /// `(M^k, C_k)` for `k = 1..=4`: `k` steps from state `s` lead to `M^k s + C_k`.
    jumps: [(u128, u128); 4],
}

impl std::fmt::Debug for Pcg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Like `rand_pcg`: the state stays private.
        f.write_str("Pcg {}")
    }
}

impl Pcg {
    /// The generator `rand_pcg::Pcg64::new(state, stream)` builds (same outputs).
    pub fn new(state: u128, stream: u128) -> Self {
        let increment = (stream << 1) | 1;
        let mut p = Pcg::from_parts(state.wrapping_add(increment), increment);
        p.step();
        p
    }

    /// The generator with this exact `(state, increment)` (the increment made odd), as stored by
    /// [`Pcg::parts`].
    pub fn from_parts(state: u128, increment: u128) -> Self {
        let increment = increment | 1;
        let mut jumps = [(MULTIPLIER, increment); 4];
        for k in 1..4 {
            let (m, c) = jumps[k - 1];
            jumps[k] = (
                m.wrapping_mul(MULTIPLIER),
                c.wrapping_mul(MULTIPLIER).wrapping_add(increment),
            );
        }
        Pcg {
            state,
            increment,
            jumps,
        }
    }

    /// `(state, increment)`: the generator's whole state, in the field order of `rand_pcg::Pcg64`.
    pub fn parts(&self) -> (u128, u128) {
        (self.state, self.increment)
    }

    #[inline(always)]
    fn step(&mut self) {
        self.state = self
            .state
            .wrapping_mul(MULTIPLIER)
            .wrapping_add(self.increment);
    }

    #[inline(always)]
    fn output(state: u128) -> u64 {
        let rot = (state >> 122) as u32;
        (((state >> 64) as u64) ^ (state as u64)).rotate_right(rot)
    }

    /// A `bl`-slot pulse train (`1 <= bl <= 64`) that fires in each slot with probability `p`: bit `s`
    /// is set when slot `s` fires. `p <= 0` gives no pulses and `p >= 1` pulses in every slot, neither
    /// drawing anything; otherwise the train takes `ceil(bl / 2)` draws, each deciding two slots (its
    /// low 32 bits the earlier one) by comparing them with `p 2^32`, and a spare slot past `bl` is
    /// dropped. Exactly the bits and the draws of that loop over [`TryRng::try_next_u64`].
    #[inline]
    pub fn train(&mut self, p: f32, bl: u32) -> u64 {
        debug_assert!((1..=64).contains(&bl));
        let mask = if bl >= 64 { u64::MAX } else { (1u64 << bl) - 1 };
        if p <= 0.0 {
            return 0;
        }
        if p >= 1.0 {
            return mask;
        }
        // `p < 1`, so the threshold fits 32 bits.
        let threshold = (p as f64 * 4_294_967_296.0) as u32;
        let draws = bl.div_ceil(2) as usize;
        if draws <= 2 {
            // Short trains (the common case under BL management): only the draws they take, the
            // second one jumped to from the same state as the first.
            let s = self.state;
            let (m1, c1) = self.jumps[0];
            let s1 = s.wrapping_mul(m1).wrapping_add(c1);
            let mut r = [Self::output(s1), 0, 0, 0];
            self.state = s1;
            if draws == 2 {
                let (m2, c2) = self.jumps[1];
                let s2 = s.wrapping_mul(m2).wrapping_add(c2);
                r[1] = Self::output(s2);
                self.state = s2;
            }
            return u64::from(slots_below(r, threshold)) & mask;
        }
        let (mut bits, mut done, mut s) = (0u64, 0usize, self.state);
        while done < draws {
            let next = self.jumps.map(|(m, c)| s.wrapping_mul(m).wrapping_add(c));
            // Four draws decide eight slots; draws past the train only set bits that `mask` drops.
            bits |= u64::from(slots_below(next.map(Self::output), threshold)) << (2 * done);
            let take = (draws - done).min(4);
            s = next[take - 1];
            done += take;
        }
        self.state = s;
        bits & mask
    }
}

impl Pcg {
    /// [`Pcg::train`] as the plain loop it reproduces: one draw per two slots, in order, through the
    /// generator interface. The same bits and the same stream position; the reference of the tests
    /// and of `aimsim bench kernels`.
    pub fn train_plain(&mut self, p: f32, bl: u32) -> u64 {
        use rand::Rng;
        if p <= 0.0 {
            return 0;
        }
        let mask = if bl >= 64 { u64::MAX } else { (1u64 << bl) - 1 };
        if p >= 1.0 {
            return mask;
        }
        let threshold = (p as f64 * 4_294_967_296.0) as u64;
        let mut bits = 0u64;
        let mut slot = 0;
        while slot < bl {
            let r = self.next_u64();
            bits |= u64::from((r & 0xFFFF_FFFF) < threshold) << slot;
            if slot + 1 < 64 {
                bits |= u64::from((r >> 32) < threshold) << (slot + 1);
            }
            slot += 2;
        }
        bits & mask
    }
}

/// The slot decisions of four draws: bit `2k` set when the low 32 bits of draw `k` are below `t`,
/// bit `2k + 1` when its high 32 bits are.
#[inline(always)]
fn slots_below(r: [u64; 4], t: u32) -> u8 {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        // SSE2 (every x86-64 CPU), in registers: unsigned `a < t` is signed `a ^ MIN < t ^ MIN`.
        // SAFETY: SSE2 is part of x86-64.
        unsafe {
            let flip = _mm_set1_epi32(i32::MIN);
            let tv = _mm_xor_si128(_mm_set1_epi32(t as i32), flip);
            let lo = _mm_xor_si128(_mm_set_epi64x(r[1] as i64, r[0] as i64), flip);
            let hi = _mm_xor_si128(_mm_set_epi64x(r[3] as i64, r[2] as i64), flip);
            let a = _mm_movemask_ps(_mm_castsi128_ps(_mm_cmplt_epi32(lo, tv)));
            let b = _mm_movemask_ps(_mm_castsi128_ps(_mm_cmplt_epi32(hi, tv)));
            (a | (b << 4)) as u8
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        r.iter().enumerate().fold(0u8, |b, (k, r)| {
            b | (u8::from((*r as u32) < t) << (2 * k))
                | (u8::from(((*r >> 32) as u32) < t) << (2 * k + 1))
        })
    }
}

impl TryRng for Pcg {
    type Error = Infallible;

    #[inline]
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        self.try_next_u64().map(|r| r as u32)
    }

    #[inline]
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        self.step();
        Ok(Self::output(self.state))
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), Infallible> {
        // Eight bytes per draw, little-endian; a short tail takes the low bytes of one more draw.
        for chunk in dest.chunks_mut(8) {
            let r = self.try_next_u64()?.to_le_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let a: Vec<u64> = (0..4)
            .map(|_| 0)
            .scan(stream(7, Purpose::Write, 0), |r, _| Some(r.next_u64()))
            .collect();
        let b: Vec<u64> = (0..4)
            .map(|_| 0)
            .scan(stream(7, Purpose::Write, 0), |r, _| Some(r.next_u64()))
            .collect();
        let c: Vec<u64> = (0..4)
            .map(|_| 0)
            .scan(stream(7, Purpose::Write, 1), |r, _| Some(r.next_u64()))
            .collect();
        let d: Vec<u64> = (0..4)
            .map(|_| 0)
            .scan(stream(8, Purpose::Write, 0), |r, _| Some(r.next_u64()))
            .collect();
        let e: Vec<u64> = (0..4)
            .map(|_| 0)
            .scan(stream(7, Purpose::DeviceDraw, 0), |r, _| Some(r.next_u64()))
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
        assert_ne!(a, e);
    }

    #[test]
    fn pcg_matches_rand_pcg_in_outputs_parts_and_bytes() {
        use rand_pcg::Pcg64;
        let (state, selector) = (
            0x0123_4567_89AB_CDEF_FEDC_BA98_7654_3210u128,
            0x55u128 << 70 | 9,
        );
        let mut ours = Pcg::new(state, selector);
        let mut theirs = Pcg64::new(state, selector);
        for _ in 0..100 {
            assert_eq!(ours.next_u64(), theirs.next_u64());
            assert_eq!(ours.next_u32(), theirs.next_u32());
        }
        for len in [0, 1, 7, 8, 13, 64] {
            let (mut a, mut b) = (vec![0u8; len], vec![0u8; len]);
            ours.fill_bytes(&mut a);
            theirs.fill_bytes(&mut b);
            assert_eq!(a, b, "{len} bytes");
        }
        // `parts` rebuilds the same generator; `advance` on the reference pins where it stands.
        let (s, inc) = ours.parts();
        let mut copy = Pcg::from_parts(s, inc);
        for _ in 0..10 {
            assert_eq!(copy.next_u64(), theirs.next_u64());
        }
    }

    #[test]
    fn trains_take_the_plain_draws_for_every_length() {
        let mut fast = stream(5, Purpose::Write, 3);
        let mut plain = fast.clone();
        let mut probe = stream(6, Purpose::Data, 0);
        for bl in 1..=64 {
            for _ in 0..20 {
                let u = (probe.next_u32() >> 8) as f32 / (1 << 24) as f32;
                let p = match probe.next_u32() % 8 {
                    0 => 0.0,
                    1 => 1.0,
                    2 => -0.5,
                    _ => u,
                };
                assert_eq!(
                    fast.train(p, bl),
                    plain.train_plain(p, bl),
                    "bl {bl}, p {p}"
                );
            }
            assert_eq!(
                fast.next_u64(),
                plain.next_u64(),
                "stream position after bl {bl}"
            );
        }
        // Firing frequency follows p.
        let ones: u32 = (0..4000).map(|_| fast.train(0.3, 31).count_ones()).sum();
        let rate = ones as f64 / (4000.0 * 31.0);
        assert!((rate - 0.3).abs() < 0.01, "{rate}");
    }
}
