//! Row writes of single-device cells with the batched constant-step model: the bookkeeping that every
//! write of a device does, and an AVX2 kernel that takes a row's pulse trains straight to the devices,
//! eight columns at a time. The pulse itself is the devices' equation, `aimsim_devices::step::pulse`,
//! instantiated on eight lanes.
//!
//! [`Tile::pulse_row`](crate::tile::Tile::pulse_row) receives a row's hits (columns with their signed
//! pulse counts), found by the pulse scheme, and writes them device by device. Under stochastic pulses
//! the kernel here does the same work from the trains themselves: the coincidence counts of eight
//! columns by a vector popcount, then the pulses of eight devices in vector registers, round by round,
//! each lane taking its own draws from the row's noise batch. The result is bit-identical to the
//! device-by-device path: the same draws reach the same pulses, every lane does the same arithmetic
//! (no fused multiply-add), and the sums that depend on order (the row's energy sum) are added in
//! column order. Tests compare the two paths bit for bit.

use aimsim_devices::ConstantStepView;
#[cfg(target_arch = "x86_64")]
use aimsim_devices::step::{self, Arith};
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::{
    __m256, _mm256_add_ps, _mm256_max_ps, _mm256_min_ps, _mm256_mul_ps, _mm256_set1_ps,
};

/// Eight `f32` lanes in an AVX register, for [`step::pulse`] inside [`write_row`]: each operation is
/// the single-precision operation of `f32` on every lane (no fused multiply-add), so the kernel
/// computes the bits of the scalar writes.
///
/// Values of this type are made only inside [`write_row`], which runs only on CPUs with AVX2 (its
/// safety contract); the methods rely on that.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct F32x8(__m256);

#[cfg(target_arch = "x86_64")]
impl Arith for F32x8 {
    #[inline(always)]
    fn one() -> Self {
        // SAFETY: AVX is present wherever an `F32x8` exists (see the type).
        F32x8(unsafe { _mm256_set1_ps(1.0) })
    }
    #[inline(always)]
    fn add(self, other: Self) -> Self {
        // SAFETY: as in `one`.
        F32x8(unsafe { _mm256_add_ps(self.0, other.0) })
    }
    #[inline(always)]
    fn mul(self, other: Self) -> Self {
        // SAFETY: as in `one`.
        F32x8(unsafe { _mm256_mul_ps(self.0, other.0) })
    }
    #[inline(always)]
    fn clip(self, lo: Self, hi: Self) -> Self {
        // `max(lo, v)` is `v < lo ? lo : v` and `min(hi, v)` is `v > hi ? hi : v`: the scalar clip.
        // SAFETY: as in `one`.
        F32x8(unsafe { _mm256_min_ps(hi.0, _mm256_max_ps(lo.0, self.0)) })
    }
}

/// Where one row's writes are booked: the row's slices of the weight cache and pulse counters, the
/// column energy sums, and the running totals of the row.
pub(crate) struct RowBook<'a> {
    /// The row's cached weights.
    pub w: &'a mut [f32],
    /// The row's depression and potentiation counters (in that order).
    pub counters: [&'a mut [u32]; 2],
    /// The tile's conductance sums by column.
    pub g_col: &'a mut [f64],
    /// The weight map `w = 2 (state - off) inv - 1`.
    pub off: f32,
    /// See `off`.
    pub inv: f32,
    /// Read-energy conductance per unit of state.
    pub scale: f64,
    /// Change of the row's conductance sum so far (start it at 0), added in column order.
    pub row_sum: f64,
    /// Potentiation pulses so far.
    pub up: u64,
}

impl<'a> RowBook<'a> {
    /// The book of one row: the weight map `(off, inv)` of its devices, the read-energy scale, the
    /// row's weights and (depression, potentiation) counters, and the tile's column sums; the row's
    /// totals start at 0.
    pub fn new(
        (off, inv): (f32, f32),
        scale: f64,
        w: &'a mut [f32],
        counters: [&'a mut [u32]; 2],
        g_col: &'a mut [f64],
    ) -> Self {
        RowBook {
            w,
            counters,
            g_col,
            off,
            inv,
            scale,
            row_sum: 0.0,
            up: 0,
        }
    }

    /// Writes `m` pulses to the device of column `c` (row start `base`) with draws `z` (at least
    /// `max(|m|, 2)` of them) and books them. Returns the draws used, `|m|`.
    #[inline(always)]
    pub fn write(
        &mut self,
        view: &mut ConstantStepView,
        base: usize,
        c: usize,
        m: i32,
        z: &[f32],
    ) -> usize {
        let (w0, w1) = view.write(base + c, m, z);
        let a = m.unsigned_abs();
        let g = (w1 - w0) as f64 * self.scale;
        self.row_sum += g;
        self.g_col[c] += g;
        self.w[c] = 2.0 * ((w1 - self.off) * self.inv) - 1.0;
        // The polarity's counter is picked by indexing a pair of slices (a select on the sign would
        // compile to a branch that random signs defeat).
        let up = usize::from(m > 0);
        let n = &mut self.counters[up][c];
        *n = n.saturating_add(a);
        self.up += u64::from(a) * up as u64;
        a as usize
    }
}

/// A tile update's column trains, laid out for [`write_row`].
#[derive(Debug, Default, Clone)]
pub(crate) struct Trains {
    /// Per tile column, its pulse train (slots `0..bl`, `bl <= 32`); 0 for a silent column.
    pub bits: Vec<u32>,
    /// Per tile column, all ones when the column's input is not positive, else 0.
    pub neg: Vec<u32>,
    /// Indices `k` of the eight-column chunks (columns `8k..8k + 8`) with a pulse in some column.
    pub chunks: Vec<u32>,
}

impl Trains {
    /// Lists the chunks with pulses (call after filling `bits` and `neg` for `cols` columns).
    pub fn index_chunks(&mut self) {
        self.chunks.clear();
        for (k, c) in self.bits.chunks_exact(8).enumerate() {
            if c.iter().any(|b| *b != 0) {
                self.chunks.push(k as u32);
            }
        }
    }
}

/// One row's share of a stochastic update: its index, its pulse train and its sign word (all ones
/// when the row's error is not positive).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RowTrain {
    /// Row index in the tile.
    pub row: u32,
    /// Pulse train (slots `0..bl`, `bl <= 32`).
    pub bits: u32,
    /// All ones when the row's error is not positive, else 0.
    pub neg: u32,
}

/// Spare values past a row's draws in its noise buffer: the kernel reads draws sixteen at a time, and
/// [`RowBook::write`] wants two.
const PAD: usize = 16;

/// Per-row scratch of [`write_row`].
#[derive(Debug, Default, Clone)]
pub(crate) struct Scratch {
    counts: Vec<i32>,
    /// The row's write noise (one draw per pulse, `PAD` spare).
    noise: Vec<f32>,
}

/// Writes one row of single-device cells from pulse trains: row `base / width` with train `row_bits`
/// against the column trains `t`; a column's pulses potentiate when its `neg` word differs from
/// `row_neg` (all ones when the row's error is not positive), else depress. Exactly the writes, draws,
/// counters and sums of finding the row's hits (`popcount(row & column)` pulses per column, in column
/// order) and writing them with [`RowBook::write`] after one `lanes` fill of the row's total. Returns
/// the row's pulses; the book holds its energy sum and potentiation pulses.
///
/// # Safety
/// The CPU must support AVX2. `t.bits` and `t.neg` hold `width` columns, every chunk in `t.chunks`
/// lies inside them, and the book's slices span the row (`width` columns).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn write_row(
    view: &mut ConstantStepView,
    book: &mut RowBook,
    base: usize,
    width: usize,
    t: &Trains,
    row_bits: u32,
    row_neg: u32,
    lanes: &mut aimsim_devices::lanes::NormalLanes,
    s: &mut Scratch,
) -> u64 {
    use std::arch::x86_64::*;
    let full = width / 8 * 8;
    s.counts.resize(width, 0);
    let counts = s.counts.as_mut_ptr();
    let (bits, neg) = (t.bits.as_ptr(), t.neg.as_ptr());

    // Pass 1: coincidence counts and the row's total.
    let row = _mm256_set1_epi32(row_bits as i32);
    let nibble = _mm256_set1_epi8(0x0F);
    let lut = _mm256_setr_epi8(
        0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3,
        3, 4,
    );
    let (ones8, ones16) = (_mm256_set1_epi8(1), _mm256_set1_epi16(1));
    let mut sum = _mm256_setzero_si256();
    let one_slot = row_bits.is_power_of_two();
    if one_slot {
        // One slot: a column's count is its bit of that slot.
        let slot = _mm_cvtsi32_si128(row_bits.trailing_zeros() as i32);
        let one = _mm256_set1_epi32(1);
        for k in &t.chunks {
            let c = *k as usize * 8;
            // SAFETY: `c + 8 <= width` (the caller's chunk guarantee).
            let v = unsafe { _mm256_loadu_si256(bits.add(c).cast()) };
            let n = _mm256_and_si256(_mm256_srl_epi32(v, slot), one);
            // SAFETY: as above (`counts` holds `width` values).
            unsafe { _mm256_storeu_si256(counts.add(c).cast(), n) };
            sum = _mm256_add_epi32(sum, n);
        }
    } else {
        for k in &t.chunks {
            let c = *k as usize * 8;
            // SAFETY: as above.
            let v = _mm256_and_si256(row, unsafe { _mm256_loadu_si256(bits.add(c).cast()) });
            let lo = _mm256_shuffle_epi8(lut, _mm256_and_si256(v, nibble));
            let hi = _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(v, 4), nibble));
            let bytes = _mm256_add_epi8(lo, hi);
            let n = _mm256_madd_epi16(_mm256_maddubs_epi16(bytes, ones8), ones16);
            // SAFETY: as above.
            unsafe { _mm256_storeu_si256(counts.add(c).cast(), n) };
            sum = _mm256_add_epi32(sum, n);
        }
    }
    let mut lane_sums = [0i32; 8];
    // SAFETY: eight i32 fit the array.
    unsafe { _mm256_storeu_si256(lane_sums.as_mut_ptr().cast(), sum) };
    let mut total: usize = lane_sums.iter().map(|v| *v as usize).sum();
    for c in full..width {
        let n = (row_bits & t.bits[c]).count_ones();
        s.counts[c] = n as i32;
        total += n as usize;
    }
    if total == 0 {
        return 0;
    }
    s.noise.resize(total + PAD, 0.0);
    lanes.fill(&mut s.noise[..total]);
    let noise = s.noise.as_ptr();

    // Pass 2: the writes, eight devices at a time.
    let cols = view.columns();
    let state = cols.state.as_mut_ptr();
    let (lo_v, hi_v, up_v, dn_v) = (cols.lo, cols.hi, cols.up, cols.down);
    // A shared parameter is broadcast; a per-device one is loaded (index mask all ones).
    let param = |(v, mask): (&[f32], usize), i: usize| -> __m256 {
        if mask == 0 {
            _mm256_set1_ps(v[0])
        } else {
            // SAFETY: per-device columns hold one value per device and `i + 8 <= state.len()`.
            unsafe { _mm256_loadu_ps(v.as_ptr().add(i)) }
        }
    };
    let (c2c, one, two) = (
        _mm256_set1_ps(cols.c2c),
        _mm256_set1_ps(1.0),
        _mm256_set1_ps(2.0),
    );
    let (off, inv) = (_mm256_set1_ps(book.off), _mm256_set1_ps(book.inv));
    let scale = _mm256_set1_pd(book.scale);
    let sign = _mm256_set1_epi32(i32::MIN);
    let row_neg_v = _mm256_set1_epi32(row_neg as i32);
    let zero = _mm256_setzero_si256();
    let all = _mm256_set1_epi32(-1);
    let seven = _mm256_set1_epi32(7);
    let (w_cache, g_col) = (book.w.as_mut_ptr(), book.g_col.as_mut_ptr());
    let (down_n, up_n) = (book.counters[0].as_mut_ptr(), book.counters[1].as_mut_ptr());
    let mut up_acc = _mm256_setzero_si256();
    let mut next = 0i32;
    let mut row_sum = book.row_sum;
    for k in &t.chunks {
        let c = *k as usize * 8;
        let i = base + c;
        // SAFETY (all loads and stores of this loop): columns `c..c + 8` lie in the row (chunk
        // guarantee), so `i..i + 8` are devices of the tile and `c..c + 8` index the row's slices.
        let n = unsafe { _mm256_loadu_si256(counts.add(c).cast()) };
        if _mm256_testz_si256(n, n) != 0 {
            continue;
        }
        // All ones where the pulses potentiate (lanes without pulses do not matter).
        let up = _mm256_xor_si256(unsafe { _mm256_loadu_si256(neg.add(c).cast()) }, row_neg_v);
        // Every load of the chunk comes before its first store: the tile's arrays share their
        // offsets within a page, so a load issued after a store to another array at the same
        // offset would wait on a false dependency.
        let w0 = unsafe { _mm256_loadu_ps(state.add(i)) };
        let gc = unsafe {
            [
                _mm256_loadu_pd(g_col.add(c)),
                _mm256_loadu_pd(g_col.add(c + 4)),
            ]
        };
        let counted = unsafe {
            [
                _mm256_loadu_si256(up_n.add(c).cast()),
                _mm256_loadu_si256(down_n.add(c).cast()),
            ]
        };
        let (lo, hi, dn) = (param(lo_v, i), param(hi_v, i), param(dn_v, i));
        let dw = if cols.symmetric {
            // `dn` with the sign bit set where the pulses depress.
            _mm256_or_ps(dn, _mm256_castsi256_ps(_mm256_andnot_si256(up, sign)))
        } else {
            let p = _mm256_and_ps(_mm256_castsi256_ps(up), one);
            _mm256_sub_ps(
                _mm256_mul_ps(p, param(up_v, i)),
                _mm256_mul_ps(_mm256_sub_ps(one, p), dn),
            )
        };
        // Each lane's first draw: the counts of the lanes before it (from the chunk's first draw).
        let x = _mm256_add_epi32(n, _mm256_slli_si256(n, 4));
        let x = _mm256_add_epi32(x, _mm256_slli_si256(x, 8));
        let carry = _mm256_permutevar8x32_epi32(x, _mm256_setr_epi32(0, 0, 0, 0, 3, 3, 3, 3));
        let carry = _mm256_blend_epi32(zero, carry, 0b1111_0000);
        let inclusive = _mm256_add_epi32(x, carry);
        let first = _mm256_sub_epi32(inclusive, n);
        let pulses = _mm256_extract_epi32(inclusive, 7);
        // SAFETY: the chunk's draws start at `next < total`; `noise` holds `total + PAD` values.
        let z0 = unsafe { noise.add(next as usize) };
        next += pulses;
        // The draw of lane `j` in round `p` is `z0[first_j + p]`: among the chunk's first sixteen
        // draws it is picked by two permutations, further on it is gathered.
        let near = [unsafe { _mm256_loadu_ps(z0) }, unsafe {
            _mm256_loadu_ps(z0.add(8))
        }];
        let draws = |at: __m256i, pulse: __m256i| -> __m256 {
            if one_slot {
                // At most one pulse per lane: the chunk's draws are its first eight at most.
                _mm256_permutevar8x32_ps(near[0], at)
            } else if pulses <= 16 {
                let far = _mm256_castsi256_ps(_mm256_cmpgt_epi32(at, seven));
                _mm256_blendv_ps(
                    _mm256_permutevar8x32_ps(near[0], at),
                    _mm256_permutevar8x32_ps(near[1], at),
                    far,
                )
            } else {
                // SAFETY: a pulsing lane's draw lies among the chunk's `pulses` draws.
                unsafe {
                    _mm256_mask_i32gather_ps::<4>(
                        _mm256_setzero_ps(),
                        z0,
                        at,
                        _mm256_castsi256_ps(pulse),
                    )
                }
            }
        };
        let pulse_round = |w: __m256, p: i32| -> __m256 {
            let pv = _mm256_set1_epi32(p);
            let pulse = _mm256_cmpgt_epi32(n, pv);
            let z = draws(_mm256_add_epi32(first, pv), pulse);
            // The devices' equation, on eight lanes; lanes without a pulse this round keep `w`.
            let v = step::pulse(
                F32x8(w),
                F32x8(dw),
                F32x8(c2c),
                F32x8(z),
                F32x8(lo),
                F32x8(hi),
            );
            _mm256_blendv_ps(w, v.0, _mm256_castsi256_ps(pulse))
        };
        // A row that fires in one slot gives each device at most one pulse: one round. Other rows
        // take two rounds always (counts of 1 and 2 alternate unpredictably), more while some lane
        // has pulses left.
        let mut w = pulse_round(w0, 0);
        if !one_slot {
            w = pulse_round(w, 1);
            let mut p = 2;
            loop {
                let more = _mm256_cmpgt_epi32(n, _mm256_set1_epi32(p));
                if _mm256_testz_si256(more, more) != 0 {
                    break;
                }
                w = pulse_round(w, p);
                p += 1;
            }
        }
        // Weights and energy sums of all eight columns: a lane without pulses keeps its state, so it
        // rewrites the weight it had (the cache always equals this map of the state) and adds +0 to
        // its column sum (never -0: a sum of such terms never rounds to -0).
        let weight = _mm256_sub_ps(
            _mm256_mul_ps(two, _mm256_mul_ps(_mm256_sub_ps(w, off), inv)),
            one,
        );
        let d = _mm256_sub_ps(w, w0);
        let g = [
            _mm256_mul_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(d)), scale),
            _mm256_mul_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(d, 1)), scale),
        ];
        // Counters: saturating adds of the pulse counts to the polarity's counter.
        let sat_add = |old: __m256i, a: __m256i| {
            let sum = _mm256_add_epi32(old, a);
            let fits = _mm256_cmpeq_epi32(_mm256_max_epu32(sum, old), sum);
            _mm256_or_si256(sum, _mm256_xor_si256(fits, all))
        };
        let a_up = _mm256_and_si256(n, up);
        let new_up = sat_add(counted[0], a_up);
        let new_down = sat_add(counted[1], _mm256_andnot_si256(up, n));
        unsafe {
            _mm256_storeu_ps(state.add(i), w);
            _mm256_storeu_ps(w_cache.add(c), weight);
            _mm256_storeu_pd(g_col.add(c), _mm256_add_pd(gc[0], g[0]));
            _mm256_storeu_pd(g_col.add(c + 4), _mm256_add_pd(gc[1], g[1]));
            _mm256_storeu_si256(up_n.add(c).cast(), new_up);
            _mm256_storeu_si256(down_n.add(c).cast(), new_down);
        }
        // In column order (lanes without pulses add +0, which leaves a sum that never is -0
        // unchanged).
        for g in g {
            let (a, b) = (_mm256_castpd256_pd128(g), _mm256_extractf128_pd(g, 1));
            row_sum += _mm_cvtsd_f64(a);
            row_sum += _mm_cvtsd_f64(_mm_unpackhi_pd(a, a));
            row_sum += _mm_cvtsd_f64(b);
            row_sum += _mm_cvtsd_f64(_mm_unpackhi_pd(b, b));
        }
        up_acc = _mm256_add_epi32(up_acc, a_up);
    }
    book.row_sum = row_sum;
    // SAFETY: eight i32 fit the array.
    unsafe { _mm256_storeu_si256(lane_sums.as_mut_ptr().cast(), up_acc) };
    book.up += lane_sums.iter().map(|v| *v as u64).sum::<u64>();

    // The columns past the last whole chunk, one by one.
    let mut next = next as usize;
    for c in full..width {
        let n = s.counts[c];
        if n != 0 {
            let m = if (t.neg[c] ^ row_neg) != 0 { n } else { -n };
            next += book.write(view, base, c, m, &s.noise[next..]);
        }
    }
    debug_assert_eq!(next, total);
    total as u64
}
