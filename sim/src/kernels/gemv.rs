//! Matrix-vector products of a tile's weights: `y = W x` ([`gemv`]) for forward reads and `z = W^T d`
//! ([`gemv_t`]) for backward reads, in a fixed summation order, bit-identical whichever instruction set
//! runs them.

/// Lanes of the MVM kernels' partial sums: wide enough for the compiler to fill AVX registers.
const LANES: usize = 16;

/// `y = W x` for a row-major `rows x cols` matrix. Each row's dot product keeps `LANES` independent
/// partial sums (a fixed summation order, so results are reproducible) that the compiler vectorizes.
/// On x86-64 CPUs with AVX2 the same loop runs in 256-bit registers: the same multiplications and
/// additions in the same order (no fused multiply-add), so the results are bit-identical.
pub fn gemv(w: &[f32], rows: usize, cols: usize, x: &[f32], y: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2.
        return unsafe { gemv_avx2(w, rows, cols, x, y) };
    }
    gemv_body(w, rows, cols, x, y)
}

/// [`gemv`] in AVX2 registers, four rows at a time: each input chunk is loaded once for the four rows,
/// and the rows' sixteen partial sums are transposed so that their final additions (in lane order,
/// as in [`gemv_body`]) run side by side. The same additions in the same order: the same bits.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn gemv_avx2(w: &[f32], rows: usize, cols: usize, x: &[f32], y: &mut [f32]) {
    assert!(w.len() >= rows * cols && x.len() >= cols && y.len() >= rows);
    let live = live_chunks(x, cols / LANES);
    let mut r = 0;
    while r + 4 <= rows {
        // SAFETY: the CPU supports AVX2 (this function's feature); rows `r..r + 4` exist.
        unsafe { block4_avx2(w, r, cols, x, &live, &mut y[r..r + 4]) };
        r += 4;
    }
    gemv_rows(w, r, rows, cols, x, &live, y);
}

/// Rows `r..r + 4` of `y = W x` into `y4`: the body of [`gemv_avx2`].
///
/// # Safety
/// The CPU must support AVX2, and `r + 4 <= rows` with `w` holding `rows x cols` and `x` `cols` values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn block4_avx2(w: &[f32], r: usize, cols: usize, x: &[f32], live: &[usize], y4: &mut [f32]) {
    use std::arch::x86_64::*;
    debug_assert!(w.len() >= (r + 4) * cols && x.len() >= cols && y4.len() >= 4);
    let chunks = cols / LANES;
    let (wp, xp) = (w.as_ptr(), x.as_ptr());
    let mut acc = [[_mm256_setzero_ps(); 2]; 4];
    for c in live {
        let o = c * LANES;
        // SAFETY: `o + LANES <= cols` (a whole chunk) and row `r + k < rows`: inside `x` and `w`.
        let (xa, xb) = unsafe { (_mm256_loadu_ps(xp.add(o)), _mm256_loadu_ps(xp.add(o + 8))) };
        for (k, a) in acc.iter_mut().enumerate() {
            let p = unsafe { wp.add((r + k) * cols + o) };
            let (wa, wb) = unsafe { (_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8))) };
            a[0] = _mm256_add_ps(a[0], _mm256_mul_ps(wa, xa));
            a[1] = _mm256_add_ps(a[1], _mm256_mul_ps(wb, xb));
        }
    }
    // Lane `l` of the four rows side by side: 4x4 transposes of each group of four lanes.
    let mut sum = _mm_setzero_ps();
    for g in 0..4 {
        let q = |k: usize| {
            let v = acc[k][g / 2];
            if g % 2 == 0 {
                _mm256_castps256_ps128(v)
            } else {
                _mm256_extractf128_ps(v, 1)
            }
        };
        let (q0, q1, q2, q3) = (q(0), q(1), q(2), q(3));
        let (t0, t1) = (_mm_unpacklo_ps(q0, q1), _mm_unpacklo_ps(q2, q3));
        let (t2, t3) = (_mm_unpackhi_ps(q0, q1), _mm_unpackhi_ps(q2, q3));
        let lanes = [
            _mm_movelh_ps(t0, t1),
            _mm_movehl_ps(t1, t0),
            _mm_movelh_ps(t2, t3),
            _mm_movehl_ps(t3, t2),
        ];
        for (j, v) in lanes.into_iter().enumerate() {
            // The first lane starts the sum (a partial sum is never -0, so this equals adding it
            // to a zero start).
            sum = if g == 0 && j == 0 {
                v
            } else {
                _mm_add_ps(sum, v)
            };
        }
    }
    let mut s = [0.0f32; 4];
    // SAFETY: four floats fit the array.
    unsafe { _mm_storeu_ps(s.as_mut_ptr(), sum) };
    for (k, s) in s.iter_mut().enumerate() {
        let row = &w[(r + k) * cols..(r + k + 1) * cols];
        for j in chunks * LANES..cols {
            *s += row[j] * x[j];
        }
        y4[k] = *s;
    }
}

/// `y_b = W x_b` for `batch` inputs (`xs` holds them one after another, `cols` values each; `ys` the
/// outputs, `rows` each): every output is the same bits as [`gemv`] of its input alone. Each block of
/// rows is applied to every input of the batch while it is in cache, so a batch reads the weights
/// once instead of once per input.
pub fn gemv_batch(w: &[f32], rows: usize, cols: usize, xs: &[f32], ys: &mut [f32], batch: usize) {
    assert!(xs.len() >= batch * cols && ys.len() >= batch * rows);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2.
        return unsafe { gemv_batch_avx2(w, rows, cols, xs, ys, batch) };
    }
    for b in 0..batch {
        gemv_body(
            w,
            rows,
            cols,
            &xs[b * cols..(b + 1) * cols],
            &mut ys[b * rows..(b + 1) * rows],
        );
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn gemv_batch_avx2(w: &[f32], rows: usize, cols: usize, xs: &[f32], ys: &mut [f32], batch: usize) {
    assert!(w.len() >= rows * cols);
    let lives: Vec<Vec<usize>> = (0..batch)
        .map(|b| live_chunks(&xs[b * cols..(b + 1) * cols], cols / LANES))
        .collect();
    let mut r = 0;
    while r + 4 <= rows {
        for (b, live) in lives.iter().enumerate() {
            let x = &xs[b * cols..(b + 1) * cols];
            // SAFETY: the CPU supports AVX2 (this function's feature); rows `r..r + 4` exist.
            unsafe { block4_avx2(w, r, cols, x, live, &mut ys[b * rows + r..b * rows + r + 4]) };
        }
        r += 4;
    }
    for (b, live) in lives.iter().enumerate() {
        let x = &xs[b * cols..(b + 1) * cols];
        gemv_rows(w, r, rows, cols, x, live, &mut ys[b * rows..(b + 1) * rows]);
    }
}

/// Indices of the input chunks that are not all zero.
#[inline(always)]
fn live_chunks(x: &[f32], chunks: usize) -> Vec<usize> {
    (0..chunks)
        .filter(|c| x[c * LANES..(c + 1) * LANES].iter().any(|v| *v != 0.0))
        .collect()
}

#[inline(always)]
fn gemv_body(w: &[f32], rows: usize, cols: usize, x: &[f32], y: &mut [f32]) {
    debug_assert_eq!(w.len(), rows * cols);
    // Chunks of the input that are all zero are skipped in every row: their products are +-0, which
    // leave a partial sum unchanged (a sum that starts at +0 never becomes -0), so the result is the
    // same bits, and sparse inputs (dark pixels) skip whole cache lines of weights.
    let live = live_chunks(x, cols / LANES);
    gemv_rows(w, 0, rows, cols, x, &live, y);
}

/// Rows `r0..r1` of [`gemv_body`], over the `live` chunks.
#[inline(always)]
fn gemv_rows(
    w: &[f32],
    r0: usize,
    r1: usize,
    cols: usize,
    x: &[f32],
    live: &[usize],
    y: &mut [f32],
) {
    let chunks = cols / LANES;
    for (r, out) in y.iter_mut().enumerate().take(r1).skip(r0) {
        let row = &w[r * cols..(r + 1) * cols];
        let mut acc = [0.0f32; LANES];
        for c in live {
            let (wc, xc) = (
                &row[c * LANES..(c + 1) * LANES],
                &x[c * LANES..(c + 1) * LANES],
            );
            for l in 0..LANES {
                acc[l] += wc[l] * xc[l];
            }
        }
        let mut s = acc.iter().sum::<f32>();
        for j in chunks * LANES..cols {
            s += row[j] * x[j];
        }
        *out = s;
    }
}

/// `z = W^T d` for a row-major `rows x cols` matrix: rows are added in order, scaled by `d`, so the inner
/// loop is a vectorizable axpy (in 256-bit registers on CPUs with AVX2, bit-identically).
pub fn gemv_t(w: &[f32], rows: usize, cols: usize, d: &[f32], z: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2.
        return unsafe { gemv_t_avx2(w, rows, cols, d, z) };
    }
    gemv_t_body(w, rows, cols, d, z)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn gemv_t_avx2(w: &[f32], rows: usize, cols: usize, d: &[f32], z: &mut [f32]) {
    gemv_t_body(w, rows, cols, d, z)
}

#[inline(always)]
fn gemv_t_body(w: &[f32], rows: usize, cols: usize, d: &[f32], z: &mut [f32]) {
    debug_assert_eq!(w.len(), rows * cols);
    z.iter_mut().for_each(|v| *v = 0.0);
    for (row, di) in w.chunks_exact(cols).zip(d) {
        if *di == 0.0 {
            continue;
        }
        for (o, v) in z.iter_mut().zip(row) {
            *o += di * v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_match_a_plain_loop() {
        let (rows, cols) = (37, 53);
        let w: Vec<f32> = (0..rows * cols)
            .map(|k| ((k * 7919) % 101) as f32 / 50.0 - 1.0)
            .collect();
        let x: Vec<f32> = (0..cols).map(|k| (k as f32 * 0.37).sin()).collect();
        let d: Vec<f32> = (0..rows).map(|k| (k as f32 * 0.11).cos()).collect();
        let mut y = vec![0.0; rows];
        gemv(&w, rows, cols, &x, &mut y);
        for i in 0..rows {
            let r: f64 = (0..cols)
                .map(|j| w[i * cols + j] as f64 * x[j] as f64)
                .sum();
            assert!((y[i] as f64 - r).abs() < 1e-4, "row {i}");
        }
        let mut z = vec![0.0; cols];
        gemv_t(&w, rows, cols, &d, &mut z);
        for j in 0..cols {
            let r: f64 = (0..rows)
                .map(|i| w[i * cols + j] as f64 * d[i] as f64)
                .sum();
            assert!((z[j] as f64 - r).abs() < 1e-4, "col {j}");
        }
    }

    #[test]
    fn skipping_zero_input_chunks_keeps_the_bits() {
        // The same lane order without the skip: every product added, including the +-0 ones.
        fn full(w: &[f32], rows: usize, cols: usize, x: &[f32]) -> Vec<f32> {
            (0..rows)
                .map(|i| {
                    let row = &w[i * cols..(i + 1) * cols];
                    let mut acc = [0.0f32; LANES];
                    for (wc, xc) in row.chunks_exact(LANES).zip(x.chunks_exact(LANES)) {
                        for l in 0..LANES {
                            acc[l] += wc[l] * xc[l];
                        }
                    }
                    let mut s = acc.iter().sum::<f32>();
                    for j in cols / LANES * LANES..cols {
                        s += row[j] * x[j];
                    }
                    s
                })
                .collect()
        }
        let (rows, cols) = (29, 16 * 6 + 5);
        let w: Vec<f32> = (0..rows * cols)
            .map(|k| ((k * 7919) % 1009) as f32 / 500.0 - 1.0)
            .collect();
        // Chunks 0, 2 and 5 all zero (some of them -0), the tail partly zero.
        let x: Vec<f32> = (0..cols)
            .map(|k| match k / LANES {
                0 | 5 => 0.0,
                2 => -0.0,
                _ if k % 3 == 0 => 0.0,
                _ => (k as f32 * 0.37).sin(),
            })
            .collect();
        let mut y = vec![0.0; rows];
        gemv(&w, rows, cols, &x, &mut y);
        let want = full(&w, rows, cols, &x);
        let bits = |v: &[f32]| v.iter().map(|a| a.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&y), bits(&want));
    }

    #[test]
    fn a_batch_gives_the_bits_of_its_inputs_one_by_one() {
        for (rows, cols, batch) in [(37, 53, 5), (256, 784, 3), (10, 128, 7), (3, 40, 2)] {
            let w: Vec<f32> = (0..rows * cols)
                .map(|k| ((k * 7919) % 1009) as f32 / 500.0 - 1.0)
                .collect();
            let xs: Vec<f32> = (0..batch * cols)
                .map(|k| {
                    if (k / 16) % (3 + k / cols) == 1 {
                        0.0
                    } else {
                        (k as f32 * 0.37).sin()
                    }
                })
                .collect();
            let mut ys = vec![0.0; batch * rows];
            gemv_batch(&w, rows, cols, &xs, &mut ys, batch);
            for b in 0..batch {
                let mut y = vec![0.0; rows];
                gemv(&w, rows, cols, &xs[b * cols..(b + 1) * cols], &mut y);
                let bits = |v: &[f32]| v.iter().map(|a| a.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(&ys[b * rows..(b + 1) * rows]),
                    bits(&y),
                    "{rows}x{cols} #{b}"
                );
            }
        }
    }

    #[test]
    fn dispatched_kernels_give_the_portable_bits() {
        // Whatever instruction set `gemv`/`gemv_t` pick at run time, results equal the portable loops
        // bit for bit, so outputs do not depend on the CPU.
        for (rows, cols) in [
            (37, 53),
            (256, 256),
            (10, 128),
            (5, 16),
            (3, 40),
            (130, 784),
        ] {
            let w: Vec<f32> = (0..rows * cols)
                .map(|k| ((k * 7919) % 1009) as f32 / 500.0 - 1.0)
                .collect();
            // Some all-zero input chunks (skipped) and some exact zeros inside live chunks.
            let x: Vec<f32> = (0..cols)
                .map(|k| {
                    if (k / 16) % 3 == 1 || k % 7 == 0 {
                        0.0
                    } else {
                        (k as f32 * 0.37).sin()
                    }
                })
                .collect();
            let d: Vec<f32> = (0..rows).map(|k| (k as f32 * 0.11).cos()).collect();
            let (mut y, mut y0) = (vec![0.0; rows], vec![0.0; rows]);
            gemv(&w, rows, cols, &x, &mut y);
            gemv_body(&w, rows, cols, &x, &mut y0);
            let bits = |v: &[f32]| v.iter().map(|a| a.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&y), bits(&y0), "{rows}x{cols} forward");
            let (mut z, mut z0) = (vec![0.0; cols], vec![0.0; cols]);
            gemv_t(&w, rows, cols, &d, &mut z);
            gemv_t_body(&w, rows, cols, &d, &mut z0);
            assert_eq!(bits(&z), bits(&z0), "{rows}x{cols} backward");
        }
    }
}
