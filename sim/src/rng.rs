//! Seeded random streams. Every consumer of randomness gets its own stream, derived from the scenario's
//! master seed, a purpose and an index (a tile id, a sweep point), so results do not depend on the order
//! in which threads run.

use rand_pcg::Pcg64;

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
pub fn stream(seed: u64, purpose: Purpose, index: u64) -> Pcg64 {
    let state = (u128::from(mix(seed)) << 64) | u128::from(mix(seed ^ 0xA1B2_C3D4_E5F6_0718));
    let selector = (u128::from(purpose as u64) << 64) | u128::from(index);
    Pcg64::new(state, selector)
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
}
